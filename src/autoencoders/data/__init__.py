"""The first two stages: where the images come from and the splits every later stage reads.

``sources`` knows the datasets, their mirrors and checksums; ``datasets`` writes ``fetch`` and
``preprocess``'s outputs and loads them (splits, trial subsets, the training input pipeline);
``classes`` keeps the normal classes in train and val (``data.normal_classes``).
Their public names are importable from here.
"""

from autoencoders.data import classes, sources
from autoencoders.data.datasets import (
    SPLITS,
    Arrays,
    DataParams,
    affine,
    fetch,
    fit_arguments,
    load_card,
    load_split,
    load_subsets,
    load_val_anomalies,
    make_dataset,
    preprocess,
    random_affine,
    read_npz,
    split_indices,
    subset,
    to_unit_float,
)
from autoencoders.errors import DataError

__all__ = [
    "Arrays",
    "DataError",
    "DataParams",
    "SPLITS",
    "affine",
    "classes",
    "fetch",
    "fit_arguments",
    "load_card",
    "load_split",
    "load_subsets",
    "load_val_anomalies",
    "make_dataset",
    "preprocess",
    "random_affine",
    "read_npz",
    "sources",
    "split_indices",
    "subset",
    "to_unit_float",
]
