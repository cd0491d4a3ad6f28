"""The data card of the processed splits (``data/processed/card.json``): what every later stage
and the report read about the data, byte-stable for the same splits."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from autoencoders import imagefiles


def data_card(
    source: Mapping[str, Any],
    splits: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    checksums: Mapping[str, str],
    val_fraction: float,
    seed: int,
    normal_classes: tuple[int, ...] | None,
) -> dict[str, Any]:
    """Counts, shape, class histogram, pixel means and checksums of ``splits``."""
    labels = [y for _, y in splits.values() if y is not None]
    labelled = np.unique(np.concatenate(labels)) if labels else np.array([], dtype=np.int64)
    card = {
        "source": source["source"],
        "mirror": source.get("mirror"),
        "raw_sha256": source.get("dataset_sha256"),
        "input_shape": list(splits["train"][0].shape[1:]),
        "dtype": "float32",
        "scaling": "pixel / 255, in [0, 1]",
        "val_fraction": val_fraction,
        "seed": seed,
        "counts": {name: int(len(x)) for name, (x, _) in splits.items()},
        "num_classes": int(len(labelled)),
        "class_histogram": {
            name: (None if y is None else np.bincount(y, minlength=len(labelled)).tolist())
            for name, (_, y) in splits.items()
        },
        "pixel_mean": {name: round(float(x.mean()), 6) for name, (x, _) in splits.items()},
        "split_sha256": checksums,
        "checksum": hashlib.sha256("".join(checksums.values()).encode()).hexdigest(),
    }
    card["input_contract"] = imagefiles.Contract.for_source(source, card["input_shape"])
    if normal_classes is not None:  # absent otherwise: the card stays byte-identical
        card["normal_classes"] = list(normal_classes)
    return card
