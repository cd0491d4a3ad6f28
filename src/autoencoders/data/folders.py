"""A folder of image files as a data source: its params, the index of its files, the pre-scan.

``data.source: images`` reads ``data.path`` the way ``keras.utils.image_dataset_from_directory``
does (the same argument names): ``labels: inferred`` takes one class per sub-folder (sorted,
hidden ones skipped, files at the root ignored) and every image below it, ``labels: null``
every image below the path with no labels. A tree with ``train/`` and ``test/`` sub-folders
keeps that split. Files Pillow does not decode by their extension are counted and ignored.

``index_tree`` lists the files (names only, nothing opened); the check of each file's bytes
and its decoding are ``autoencoders.imagefiles``, shared with every downstream path.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

from autoencoders.errors import DataError
from autoencoders.imagefiles import EXTENSION_FORMATS

MISSING_PATH = (
    "data.path is not set: data.source images reads a folder of images; set data.path in "
    "params.yaml (make sample-images writes one to data/sample-images)."
)


@dataclasses.dataclass(frozen=True)
class FolderParams:
    """params.yaml ``data`` keys of the ``images`` source (keras's names where it has one).

    ``path``: the folder (inside or outside the repository); ``labels``: ``inferred`` (one
    class per sub-folder) or None; ``color_mode``: grayscale, rgb or rgba; ``image_size``:
    [height, width] every image is resized to; ``interpolation``: Pillow's filter;
    ``crop_to_aspect_ratio`` / ``pad_to_aspect_ratio``: centre-crop or zero-pad to the target's
    aspect ratio first (never distort); ``test_fraction``: the seeded, class-stratified share
    held out as test when the tree has no ``train/`` and ``test/``; ``on_bad_file``: ``fail``
    (the stage stops, naming the files) or ``skip`` (left out and listed in the data card).
    """

    # params.yaml's placeholder: an empty folder that dvc.yaml can hash whatever the source.
    path: str | None = "examples/images"
    labels: Literal["inferred"] | None = "inferred"
    color_mode: Literal["grayscale", "rgb", "rgba"] = "rgb"
    image_size: tuple[int, ...] = (64, 64)
    interpolation: Literal[
        "nearest", "bilinear", "bicubic", "lanczos", "box", "area", "hamming"
    ] = "bilinear"
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    test_fraction: float = 0.1
    on_bad_file: Literal["fail", "skip"] = "fail"

    def __post_init__(self) -> None:
        size = tuple(self.image_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(
                f"image_size must be [height, width], two positive integers, got {list(size)}."
            )
        object.__setattr__(self, "image_size", size)
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError(
                "crop_to_aspect_ratio and pad_to_aspect_ratio cannot both be true: pick one."
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(
                f"test_fraction must lie strictly between 0 and 1, got {self.test_fraction}."
            )

    def check_path(self) -> Path:
        """The folder as a Path; a DataError naming ``data.path`` when unset or not a folder."""
        if not self.path:
            raise DataError(MISSING_PATH)
        path = Path(self.path).expanduser()
        if not path.is_dir():
            raise DataError(f"data.path {self.path} is not a directory: point it at your images.")
        return path


@dataclasses.dataclass(frozen=True)
class Index:
    """The files of a folder, before any is opened.

    ``splits`` maps ``train`` (and ``test`` for a tree with both sub-folders) to sorted
    (relative path, label) pairs, the label -1 without labels; ``class_names`` are the
    sub-folders' names in label order; ``empty`` the class folders holding no image file;
    ``ignored`` the files that are not images by their extension (or lie at the root).
    """

    root: Path
    splits: dict[str, list[tuple[str, int]]]
    class_names: list[str]
    empty: list[str]
    ignored: list[str]


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in EXTENSION_FORMATS


def _walk(directory: Path, prefix: str) -> tuple[list[str], list[str]]:
    """(image files, other files) below ``directory`` as paths relative to the root, sorted
    depth first; hidden files and folders (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``)
    are passed over, folder symlinks not followed (as keras)."""
    images, others = [], []
    with os.scandir(directory) as entries:
        listed = sorted(entries, key=lambda entry: entry.name)
    for entry in listed:
        relative = f"{prefix}{entry.name}"
        if entry.name.startswith("."):
            if not entry.is_dir(follow_symlinks=False):
                others.append(relative)
        elif entry.is_dir(follow_symlinks=False):
            more_images, more_others = _walk(Path(entry.path), relative + "/")
            images += more_images
            others += more_others
        elif entry.is_file():
            (images if _is_image(entry.name) else others).append(relative)
    return images, others


def _subfolders(directory: Path) -> list[str]:
    with os.scandir(directory) as entries:
        return sorted(
            entry.name
            for entry in entries
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
        )


def _index_one(root: Path, prefix: str, labels: str | None, class_names: list[str]):
    """(pairs, empty class folders, ignored files) of one tree (the root, or train/ or test/)."""
    directory = root / prefix if prefix else root
    if labels is None:
        images, ignored = _walk(directory, prefix)
        return [(path, -1) for path in images], [], ignored
    pairs, empty, ignored = [], [], []
    with os.scandir(directory) as entries:
        ignored += sorted(prefix + e.name for e in entries if not e.is_dir(follow_symlinks=False))
    for name in _subfolders(directory):
        if name not in class_names:
            raise DataError(
                f"{directory / name} is a class folder that {root / 'train'} lacks: a test "
                "class must also be a training class (add it to train/ or remove it)."
            )
        images, others = _walk(directory / name, f"{prefix}{name}/")
        pairs += [(path, class_names.index(name)) for path in images]
        ignored += others
        if not images:
            empty.append(f"{prefix}{name}/")
    return pairs, empty, ignored


def index_tree(root: str | Path, labels: str | None) -> Index:
    """List ``root``'s images (nothing is opened): see ``Index``."""
    root = Path(root)
    split_tree = (root / "train").is_dir() and (root / "test").is_dir()
    prefixes = {"train": "train/", "test": "test/"} if split_tree else {"train": ""}
    class_names = [] if labels is None else _subfolders(root / prefixes["train"])
    splits, empty, ignored = {}, [], []
    for split, prefix in prefixes.items():
        pairs, split_empty, split_ignored = _index_one(root, prefix, labels, class_names)
        splits[split] = pairs
        empty += split_empty
        ignored += split_ignored
    if split_tree:  # the root's other entries are outside both sub-trees
        with os.scandir(root) as entries:
            ignored += sorted(e.name for e in entries if e.name not in ("train", "test"))
    if labels is not None and not class_names:
        raise DataError(
            f"{root / prefixes['train']} has no class sub-folders (labels: inferred reads one "
            "folder per class); move the images into class folders or set data.labels: null."
        )
    if not any(splits.values()):
        raise DataError(
            f"{root} holds no image files ({', '.join(sorted(EXTENSION_FORMATS))}); "
            f"{len(ignored)} other files were passed over."
        )
    return Index(root, splits, class_names, empty, ignored)
