"""The first two stages: where the images come from and the splits every later stage reads.

``sources`` knows the datasets, their mirrors and checksums; ``datasets`` writes ``fetch`` and
``preprocess``'s outputs and loads them (splits, trial subsets, the training input pipeline);
``classes`` keeps the normal classes in train and val (``data.normal_classes``).
A folder of image files (``data.source: images``) is ``folders`` (params, index, pre-scan),
``decoding`` (Pillow, in threads) and ``images`` (fetch and preprocess into uint8 shards);
``shards`` writes and reads those (``ShardedSplit``, ``iter_batches``). ``samples`` writes a
folder of sample photographs (make sample-images). Their public names are importable from here.
"""

from autoencoders.data import classes, folders, shards, sources
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
from autoencoders.data.folders import FolderParams
from autoencoders.data.shards import ShardedSplit, iter_batches
from autoencoders.errors import DataError

__all__ = [
    "Arrays",
    "DataError",
    "DataParams",
    "FolderParams",
    "SPLITS",
    "ShardedSplit",
    "affine",
    "classes",
    "fetch",
    "fit_arguments",
    "folders",
    "iter_batches",
    "load_card",
    "load_split",
    "load_subsets",
    "load_val_anomalies",
    "make_dataset",
    "preprocess",
    "random_affine",
    "read_npz",
    "shards",
    "sources",
    "split_indices",
    "subset",
    "to_unit_float",
]
