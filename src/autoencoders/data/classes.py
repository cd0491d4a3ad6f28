"""Normal classes for anomaly detection: training and validation keep only the classes that
``data.normal_classes`` names, so that the autoencoder and its score model see normal data only.

``split_normal(splits, normal_classes)`` takes ``preprocess``'s splits (name -> (images,
labels)) and returns them with train and val filtered; the validation images of every other
class are kept aside as ``val_anomalies`` (labelled anomalies for choosing a design or an F1
threshold, never for fitting); the test split keeps every class, so that the export can measure
how well a score separates them. The order of the images within a split is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from autoencoders.config import ConfigError

Splits = dict[str, tuple[np.ndarray, np.ndarray | None]]
KEY = "data.normal_classes"
VAL_ANOMALIES = "val_anomalies"


def check_normal_classes(normal_classes: Sequence[int] | None) -> tuple[int, ...] | None:
    """``normal_classes`` as a tuple of distinct class labels >= 0 (None: no filtering)."""
    if normal_classes is None:
        return None
    classes = tuple(normal_classes)
    if not classes:
        raise ConfigError(f"{KEY} is empty: name at least one class, e.g. [0], or set null.")
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in classes):
        raise ConfigError(f"{KEY} must list class labels (integers >= 0), got {list(classes)}.")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"{KEY} lists a class twice ({list(classes)}): list each once.")
    return classes


def normal_rows(
    labels: Mapping[str, np.ndarray | None], normal_classes: Sequence[int]
) -> dict[str, np.ndarray]:
    """Which rows of the ``train`` and ``val`` labels are of ``normal_classes`` (a boolean mask
    each); a class the labels lack, a split left empty, or no labels raise ConfigError."""
    classes = check_normal_classes(normal_classes) or ()
    if any(labels[name] is None for name in ("train", "val")):
        raise ConfigError(
            f"{KEY} needs labels but the data has none (an npz without y, or images read with "
            f"labels: null): add them or set {KEY}: null."
        )
    present = np.unique(np.concatenate([labels["train"], labels["val"]]))
    missing = sorted(set(classes) - set(present.tolist()))
    if missing:
        raise ConfigError(
            f"{KEY} names class(es) {missing} that the data lacks (its classes: "
            f"{present.tolist()}): pick classes from that list."
        )
    if set(present.tolist()) <= set(classes):
        raise ConfigError(
            f"{KEY} lists every class of the data ({present.tolist()}): nothing is left as an "
            "anomaly; drop one or set null."
        )
    masks = {}
    for name in ("train", "val"):
        masks[name] = np.isin(labels[name], classes)
        if not masks[name].any():
            raise ConfigError(
                f"{KEY} {list(classes)} leaves the {name} split empty: raise data.val_fraction "
                "or pick classes the split holds."
            )
    return masks


def split_normal(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray | None]], normal_classes: Sequence[int]
) -> Splits:
    """train and val with only ``normal_classes``, ``val_anomalies`` the rest of val, test as
    it was (the checks of ``normal_rows``)."""
    masks = normal_rows({name: splits[name][1] for name in ("train", "val")}, normal_classes)
    (x_train, y_train), (x_val, y_val) = splits["train"], splits["val"]
    return {
        "train": (x_train[masks["train"]], y_train[masks["train"]]),
        "val": (x_val[masks["val"]], y_val[masks["val"]]),
        "test": splits["test"],
        VAL_ANOMALIES: (x_val[~masks["val"]], y_val[~masks["val"]]),
    }


__all__ = ["KEY", "VAL_ANOMALIES", "Splits", "check_normal_classes", "normal_rows", "split_normal"]
