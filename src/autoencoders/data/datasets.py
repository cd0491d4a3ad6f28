"""Raw and processed data: ``fetch`` to ``data/raw/``, ``preprocess`` to the splits, loading them,
and random shifts and rotations (input pipelines and trial subsets: ``data.pipelines``).

``fetch`` writes ``data/raw/dataset.npz`` (images as uint8, or float32 in [0, 1]) and
``data/raw/source.json``. ``preprocess`` writes ``data/processed/{train,val,test}.npz`` (float32
NHWC in [0, 1], labels for evaluation only) and ``data/processed/card.json``.
Where the images come from (sources, mirrors, checksums) is ``autoencoders.data.sources``.
For ``data.source: images`` both stages write uint8 shards instead (``autoencoders.data.images``).
"""

from __future__ import annotations

import dataclasses
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import errors, fileio
from autoencoders.data import classes, folders, images, shards, sources
from autoencoders.data.card import data_card
from autoencoders.errors import DataError

Arrays = dict[str, np.ndarray]


SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class DataParams(folders.FolderParams):
    """params.yaml ``data``: where the images come from, the validation share and, for
    anomaly detection, the classes that training and validation keep (``data.classes``); the
    ``images`` source's keys (``path``, ``labels``, ``image_size``, ...) are
    ``folders.FolderParams``'."""

    source: str = "mnist"
    npz_path: str | None = None
    val_fraction: float = 0.1
    normal_classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        sources.check_source(self.source)
        super().__post_init__()
        if self.source == "images" and not self.path:
            raise DataError(folders.MISSING_PATH)
        object.__setattr__(
            self, "normal_classes", classes.check_normal_classes(self.normal_classes)
        )
        if not 0.0 < self.val_fraction < 1.0:
            raise DataError(
                f"data.val_fraction must lie strictly between 0 and 1, got {self.val_fraction}."
            )


def read_npz(path: str | Path, fix: str) -> Arrays:
    """Every array of an ``.npz`` file; a missing or corrupted file names itself and ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {fix}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise errors.corrupt(path, error, fix) from None


def fetch(
    source: str,
    raw_dir: str | Path,
    npz_path: str | None = None,
    folder: folders.FolderParams | None = None,
) -> dict[str, Any]:
    """Fetch ``source`` into ``raw_dir`` (``dataset.npz`` + ``source.json``; for ``images``
    the folder ``folder.path`` as uint8 shards, ``images.fetch_images``); return the record
    plus the wall ``seconds`` it took (kept out of the file, which must be deterministic)."""
    sources.check_source(source)
    started = time.monotonic()
    if source == "images":
        record = images.fetch_images(folder or folders.FolderParams(), raw_dir)
        return {**record, "seconds": round(time.monotonic() - started, 2)}
    fetcher = sources.SOURCES[source]
    arrays, record = fetcher(npz_path) if source == "npz" else fetcher()
    raw_dir = Path(raw_dir)
    with fileio.atomic_directory(raw_dir) as staging:
        np.savez(staging / "dataset.npz", **arrays)
        record = {
            "source": source,
            **record,
            "counts": {key: int(len(value)) for key, value in arrays.items() if key[0] == "x"},
            "image_shape": list(arrays["x_train"].shape[1:]),
            "dataset_sha256": fileio.sha256_file(staging / "dataset.npz"),
        }
        # No seconds in the file: data/raw must hash the same on every fetch (dvc.lock in git).
        fileio.write_json(staging / "source.json", record)
    return {**record, "seconds": round(time.monotonic() - started, 2)}


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 0-255 (or float 0-255) -> float32 in [0, 1]; float already in [0, 1] is kept."""
    images = images if images.ndim == 4 else images[..., np.newaxis]
    if images.dtype.kind in "ui" or float(images.max()) > 1.0:
        return (images.astype(np.float32) / 255.0).astype(np.float32)
    return images.astype(np.float32)


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic, seeded (train, val) index split."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(
            f"data.val_fraction must lie strictly between 0 and 1, got {val_fraction}."
        )
    val_count = int(round(count * val_fraction))
    if val_count == 0 or val_count == count:
        raise DataError(
            f"data.val_fraction {val_fraction} leaves an empty split of {count} images; "
            "pick a fraction such as 0.1."
        )
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[val_count:]), np.sort(order[:val_count])


def _split(
    raw: dict[str, np.ndarray], val_fraction: float, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """split name -> (images in [0, 1], labels or None): train/val seeded from the training
    images; the raw test set, or a seeded held-out fraction when there is none."""
    x_all = to_unit_float(raw["x_train"])
    y_all = raw.get("y_train")
    if "x_test" in raw:
        x_test, y_test = to_unit_float(raw["x_test"]), raw.get("y_test")
        pool = np.arange(len(x_all))
    else:
        # A user's npz without a test set: hold out the same fraction, seeded, as test.
        pool, test_index = split_indices(len(x_all), val_fraction, seed + 1)
        x_test = x_all[test_index]
        y_test = None if y_all is None else y_all[test_index]
    train_index, val_index = split_indices(len(pool), val_fraction, seed)
    splits = {
        "train": (x_all[pool[train_index]], None if y_all is None else y_all[pool[train_index]]),
        "val": (x_all[pool[val_index]], None if y_all is None else y_all[pool[val_index]]),
        "test": (x_test, y_test),
    }
    return splits


def preprocess(
    raw_dir: str | Path,
    processed_dir: str | Path,
    val_fraction: float,
    seed: int,
    test_fraction: float = 0.1,
    normal_classes: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Write the processed splits and the data card; return the card. ``test_fraction``: the
    share held out as test from a folder of images without a test/ sub-tree. With
    ``normal_classes`` train and val keep those classes only, the rest of val goes to
    ``val_anomalies.npz`` and the card records them (``data.classes``); without, nothing of the
    card changes."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(
            f"data.val_fraction must lie strictly between 0 and 1, got {val_fraction}."
        )
    raw_dir = Path(raw_dir)
    if shards.holds_shards(raw_dir):  # the images source: uint8 shards, split without a decode
        return images.preprocess_shards(
            raw_dir, processed_dir, val_fraction, test_fraction, seed, normal_classes
        )
    source = fileio.read_json(raw_dir / "source.json")
    refetch = "re-run `dvc repro --force fetch`"
    raw = read_npz(raw_dir / "dataset.npz", refetch)
    if "x_train" not in raw or not isinstance(source, dict) or "source" not in source:
        raise errors.corrupt(raw_dir, "no x_train or no source in its files", refetch)
    splits = _split(raw, val_fraction, seed)
    if normal_classes is not None:
        splits = classes.split_normal(splits, normal_classes)
    processed_dir = Path(processed_dir)
    with fileio.atomic_directory(processed_dir) as staging:
        checksums = {}
        for name, (x, y) in splits.items():
            payload = {"x": x} if y is None else {"x": x, "y": y.astype(np.int64)}
            np.savez(staging / f"{name}.npz", **payload)
            checksums[name] = fileio.sha256_file(staging / f"{name}.npz")
        card = data_card(source, splits, checksums, val_fraction, seed, normal_classes)
        fileio.write_json(staging / "card.json", card)
    return card


def load_split(processed_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x float32 NHWC in [0, 1], y int64 or None) of one processed split (npz or shards;
    iterate a large sharded split with ``shards.iter_batches`` instead: this holds it whole)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits are {list(SPLITS)}.")
    if shards.holds_shards(processed_dir, split):  # the whole split in memory: see shards
        return shards.load_split_arrays(processed_dir, split)
    path = Path(processed_dir) / f"{split}.npz"
    fix = "run `dvc repro --force preprocess`"
    arrays = read_npz(path, fix)
    if "x" not in arrays:
        raise errors.corrupt(path, f"no array 'x' among {sorted(arrays)}", fix)
    return arrays["x"], arrays.get("y")


def load_val_anomalies(processed_dir: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, y) of the validation images outside ``data.normal_classes``, or None without them
    (npz or shards, the whole split in memory)."""
    if shards.holds_shards(processed_dir, classes.VAL_ANOMALIES):
        return shards.load_split_arrays(processed_dir, classes.VAL_ANOMALIES)
    path = Path(processed_dir) / f"{classes.VAL_ANOMALIES}.npz"
    if not path.exists():
        return None
    arrays = read_npz(path, "run `dvc repro --force preprocess`")
    if "x" not in arrays or "y" not in arrays:
        raise errors.corrupt(
            path,
            f"no arrays 'x' and 'y' among {sorted(arrays)}",
            "run `dvc repro --force preprocess`",
        )
    return arrays["x"], arrays["y"]


def load_card(processed_dir: str | Path) -> dict[str, Any]:
    """The data card written by ``preprocess``."""
    path = Path(processed_dir) / "card.json"
    card = fileio.read_json(path)
    if not isinstance(card, dict) or not isinstance(card.get("checksum"), str):
        raise errors.corrupt(path, "no checksum", "run `dvc repro --force preprocess`")
    return card


def random_affine(images: Any, generator: Any, shift: float, rotation: float) -> Any:
    """Each image of a (N, H, W, C) batch moved by its own random shift and rotation.

    Shifts are uniform in +-``shift`` of the width and the height, rotations uniform in
    +-``rotation`` degrees; ``generator`` is a seeded ``tf.random.Generator``. DEC-DA's
    augmentation (Guo et al. 2018: shift 0.1, rotation 10) for IDEC's clustering phase.
    """
    import tensorflow as tf

    count = tf.shape(images)[:1]
    height, width = int(images.shape[1]), int(images.shape[2])
    return affine(
        images,
        degrees=generator.uniform(count, -rotation, rotation),
        dx=generator.uniform(count, -shift * width, shift * width),
        dy=generator.uniform(count, -shift * height, shift * height),
    )


def affine(images: Any, degrees: Any, dx: Any, dy: Any) -> Any:
    """Images (N, H, W, C) rotated by ``degrees`` (counter-clockwise as displayed, about the
    centre) then moved ``dx`` pixels right and ``dy`` down, one value per image; bilinear,
    zeros where the image moved away (MNIST's background)."""
    import math

    import tensorflow as tf

    angle = tf.convert_to_tensor(degrees, tf.float32) * (math.pi / 180.0)
    dx, dy = tf.convert_to_tensor(dx, tf.float32), tf.convert_to_tensor(dy, tf.float32)
    height, width = int(images.shape[1]), int(images.shape[2])
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    zero = tf.zeros_like(cos)
    # Output pixel (x, y) reads input pixel (a0 x + a1 y + a2, b0 x + b1 y + b2): the inverse
    # map, rotate back about the centre after undoing the shift (y points down).
    transforms = tf.stack(
        [
            cos,
            -sin,
            cx - cos * (cx + dx) + sin * (cy + dy),
            sin,
            cos,
            cy - sin * (cx + dx) - cos * (cy + dy),
            zero,
            zero,
        ],
        axis=1,
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.convert_to_tensor(images, tf.float32),
        transforms=transforms,
        output_shape=[height, width],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
