"""The first two stages: where the images come from and the splits every later stage reads.

``sources`` knows the datasets, their mirrors and checksums; ``datasets`` writes ``fetch`` and
``preprocess``'s outputs and loads them (splits, trial subsets, the training input pipeline);
``classes`` keeps the normal classes in train and val (``data.normal_classes``).
Later stages read a split through ``splits.open_split`` (a ``Split``: the npz array in memory,
or shards read in batches); ``pipelines`` turns one into ``model.fit``'s batches.
A folder of image files (``data.source: images``) is ``folders`` (params, index, pre-scan),
``decoding`` (Pillow, in threads) and ``images`` (fetch and preprocess into uint8 shards);
``shards`` writes and reads those (``ShardedSplit``, ``iter_batches``). ``samples`` writes a
folder of sample photographs (make sample-images). Their public names are importable from here.
"""

from autoencoders.data import classes, folders, shards, sources, splits
from autoencoders.data.datasets import (
    SPLITS,
    Arrays,
    DataParams,
    affine,
    fetch,
    load_card,
    load_split,
    load_val_anomalies,
    preprocess,
    random_affine,
    read_npz,
    split_indices,
    to_unit_float,
)
from autoencoders.data.folders import FolderParams
from autoencoders.data.pipelines import (
    as_input,
    fit_arguments,
    load_subsets,
    make_dataset,
    make_split_dataset,
    scale_batch,
    subset,
)
from autoencoders.data.shards import ShardedSplit, iter_batches
from autoencoders.data.splits import Split, as_array, open_split
from autoencoders.errors import DataError

__all__ = [
    "Arrays",
    "DataError",
    "DataParams",
    "FolderParams",
    "SPLITS",
    "ShardedSplit",
    "Split",
    "affine",
    "as_array",
    "as_input",
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
    "make_split_dataset",
    "scale_batch",
    "open_split",
    "preprocess",
    "random_affine",
    "read_npz",
    "shards",
    "sources",
    "split_indices",
    "splits",
    "subset",
    "to_unit_float",
]
