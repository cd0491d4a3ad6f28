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


def split_normal(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray | None]], normal_classes: Sequence[int]
) -> Splits:
    """train and val with only ``normal_classes``, ``val_anomalies`` the rest of val, test as
    it was; a class the training labels lack, or a split left empty, raises ConfigError."""
    classes = check_normal_classes(normal_classes) or ()
    labels = [y for name, (_, y) in splits.items() if name in ("train", "val")]
    if any(y is None for y in labels):
        raise ConfigError(
            f"{KEY} needs labels but the data has none (an npz without y): add y or set "
            f"{KEY}: null."
        )
    present = np.unique(np.concatenate(labels))
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
    result: Splits = {}
    for name in ("train", "val"):
        x, y = splits[name]
        normal = np.isin(y, classes)
        if not normal.any():
            raise ConfigError(
                f"{KEY} {list(classes)} leaves the {name} split empty: raise data.val_fraction "
                "or pick classes the split holds."
            )
        result[name] = (x[normal], y[normal])
        if name == "val":
            result[VAL_ANOMALIES] = (x[~normal], y[~normal])
    result["test"] = splits["test"]
    return {name: result[name] for name in ("train", "val", "test", VAL_ANOMALIES)}


__all__ = ["KEY", "VAL_ANOMALIES", "Splits", "check_normal_classes", "split_normal"]
