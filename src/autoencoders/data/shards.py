"""uint8 shards: how a split of decoded images is written, checksummed and read back.

A split ``<split>`` of a directory is ``<split>-00000.npy``, ``<split>-00001.npy``, ... (uint8
N, H, W, C, about ``SHARD_BYTES`` each, plain ``np.save`` files that ``np.load(mmap_mode="r")``
maps without reading), ``<split>-labels.npy`` (int64, when the images have labels) and
``<split>-files.json`` (each image's path relative to the source folder, in row order).

``ShardedSplit`` reads one split through memory maps: ``len``, ``shape``, ``labels``,
``batch(i)`` (float32 in [0, 1]), ``take(indices)``; ``iter_batches`` yields its float32
batches, seeded-shuffled if asked, so memory stays bounded by the batch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import errors, fileio
from autoencoders.errors import DataError

SHARD_BYTES = 128 << 20

FIX = "re-run `dvc repro --force fetch preprocess`"


def unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1], the same bits as ``datasets.to_unit_float``."""
    return (images.astype(np.float32) / 255.0).astype(np.float32)


def shard_paths(directory: str | Path, split: str) -> list[Path]:
    """The shard files of ``split`` in ``directory``, in order (none: not a sharded split)."""
    pattern = re.compile(rf"{re.escape(split)}-\d{{5}}\.npy")
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if pattern.fullmatch(path.name))


def holds_shards(directory: str | Path, split: str = "train") -> bool:
    return (Path(directory) / f"{split}-00000.npy").is_file()


class ShardWriter:
    """Append uint8 images (with labels and file names) to a split's shards in ``directory``.

    ``add`` copies images into a buffer of one shard's rows (``rows_per_shard``) and saves it
    when it is full, so memory stays at one shard; ``write_shard`` saves a block the caller
    filled as one shard of its own, without a copy (``fetch`` decodes into such blocks).
    ``close`` writes the rest, the labels and the file list, and returns the count and each
    written file's SHA-256.
    """

    def __init__(self, directory: str | Path, split: str, image_shape: Sequence[int]) -> None:
        self.directory, self.split = Path(directory), split
        self.image_shape = tuple(int(n) for n in image_shape)
        self.rows_per_shard = max(1, SHARD_BYTES // max(1, int(np.prod(self.image_shape))))
        self.buffer: np.ndarray | None = None  # allocated by the first ``add``
        self.filled = 0
        self.count = 0
        self.shard_count = 0
        self.labels: list[np.ndarray] = []
        self.files: list[str] = []
        self.checksums: dict[str, str] = {}

    def _check(self, images: np.ndarray, labels, files: Sequence[str]) -> None:
        if images.shape[1:] != self.image_shape or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 {self.image_shape} images, got {images.shape}")
        if labels is not None:
            self.labels.append(np.asarray(labels, np.int64))
        self.files += list(files)

    def add(self, images: np.ndarray, labels: np.ndarray | None, files: Sequence[str]) -> None:
        self._check(images, labels, files)
        if self.buffer is None:
            self.buffer = np.empty((self.rows_per_shard, *self.image_shape), np.uint8)
        start = 0
        while start < len(images):
            take = min(len(images) - start, len(self.buffer) - self.filled)
            self.buffer[self.filled : self.filled + take] = images[start : start + take]
            self.filled += take
            start += take
            if self.filled == len(self.buffer):
                self._flush()

    def write_shard(
        self, images: np.ndarray, labels: np.ndarray | None, files: Sequence[str]
    ) -> None:
        """Save ``images`` (at most ``rows_per_shard``) as the next shard, as they are."""
        if self.filled:
            raise ValueError("write_shard after add: flush the buffer first (close)")
        if len(images) > self.rows_per_shard:
            raise ValueError(f"{len(images)} rows exceed a shard's {self.rows_per_shard}")
        self._check(images, labels, files)
        self._save_shard(images)

    def _save_shard(self, images: np.ndarray) -> None:
        if len(images) == 0:
            return
        path = self.directory / f"{self.split}-{self.shard_count:05d}.npy"
        np.save(path, images)
        self.checksums[path.name] = fileio.sha256_file(path)
        self.count += len(images)
        self.shard_count += 1

    def _flush(self) -> None:
        if self.buffer is not None and self.filled:
            self._save_shard(self.buffer[: self.filled])
        self.filled = 0

    def _save(self, name: str, write) -> None:
        path = self.directory / name
        write(path)
        self.checksums[name] = fileio.sha256_file(path)

    def close(self, relabel: np.ndarray | None = None) -> dict[str, Any]:
        """Write what is left (labels mapped through ``relabel`` when given); return
        ``{"count": N, "files": {name: sha256}}``."""
        self._flush()
        self.buffer = None
        if self.count == 0:
            raise DataError(f"the {self.split} split holds no images: nothing was written.")
        if self.labels:
            labels = np.concatenate(self.labels)
            labels = labels if relabel is None else np.asarray(relabel, np.int64)[labels]
            self._save(f"{self.split}-labels.npy", lambda path: np.save(path, labels))
        text = json.dumps(self.files, ensure_ascii=False, indent=0) + "\n"
        self._save(f"{self.split}-files.json", lambda path: path.write_text(text, "utf-8"))
        return {"count": self.count, "files": dict(self.checksums)}


def split_digest(checksums: dict[str, str]) -> str:
    """One SHA-256 over a split's files' names and checksums."""
    lines = "".join(f"{name} {checksums[name]}\n" for name in sorted(checksums))
    return hashlib.sha256(lines.encode()).hexdigest()


class ShardedSplit:
    """One split of uint8 shards, memory-mapped: ``len(split)`` images of ``split.shape``,
    ``split.labels`` (int64 or None), ``split.batch(i)`` the i-th float32 batch of
    ``batch_size`` rows, ``split.take(indices)`` any rows as uint8."""

    def __init__(self, directory: str | Path, split: str, batch_size: int = 256) -> None:
        paths = shard_paths(directory, split)
        if not paths:
            raise FileNotFoundError(f"{Path(directory) / split}-00000.npy not found: {FIX}.")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.directory, self.split, self.batch_size = Path(directory), split, batch_size
        self.shards = [self._open(path) for path in paths]
        shapes = {shard.shape[1:] for shard in self.shards}
        if len(shapes) != 1 or any(shard.ndim != 4 for shard in self.shards):
            raise errors.corrupt(self.directory, f"{split} shards of shapes {shapes}", FIX)
        self.starts = np.cumsum([0] + [len(shard) for shard in self.shards])
        self.shape = (int(self.starts[-1]), *shapes.pop())
        labels_path = self.directory / f"{split}-labels.npy"
        self.labels = np.load(labels_path) if labels_path.is_file() else None
        if self.labels is not None and len(self.labels) != self.shape[0]:
            raise errors.corrupt(labels_path, f"{len(self.labels)} labels", FIX)

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        try:
            shard = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise errors.corrupt(path, error, FIX) from None
        if shard.dtype != np.uint8:
            raise errors.corrupt(path, f"dtype {shard.dtype}, not uint8", FIX)
        return shard

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def num_batches(self) -> int:
        return -(-len(self) // self.batch_size)

    def files(self) -> list[str]:
        """Each row's source file, relative to the folder it came from."""
        return json.loads((self.directory / f"{self.split}-files.json").read_text("utf-8"))

    def rows(self, start: int, stop: int) -> np.ndarray:
        """uint8 rows ``start:stop`` (clipped to the split), across shard boundaries."""
        start, stop = max(0, start), min(len(self), stop)
        return self.take(np.arange(start, max(start, stop)))

    def take(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """uint8 rows at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices outside the {len(self)} images of {self.split}")
        out = np.empty((len(indices), *self.shape[1:]), np.uint8)
        which = np.searchsorted(self.starts, indices, side="right") - 1
        for shard in np.unique(which):
            mask = which == shard
            local = indices[mask] - self.starts[shard]
            order = np.argsort(local, kind="stable")  # read each map forwards
            out[np.flatnonzero(mask)[order]] = self.shards[shard][local[order]]
        return out

    def batch(self, index: int) -> np.ndarray:
        """The ``index``-th batch of ``batch_size`` rows as float32 in [0, 1]."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} outside the {self.num_batches} of {self.split}")
        start = index * self.batch_size
        return unit_float(self.rows(start, start + self.batch_size))

    def to_array(self) -> np.ndarray:
        """The whole split as one float32 array: 4 bytes a pixel in memory (see docs)."""
        out = np.empty(self.shape, np.float32)
        for shard, start in zip(self.shards, self.starts, strict=False):
            out[start : start + len(shard)] = unit_float(np.asarray(shard))
        return out


def iter_batches(
    split_dir: str | Path,
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    with_labels: bool = False,
) -> Iterator[Any]:
    """float32 batches (N, H, W, C) in [0, 1] of a sharded split, read from its memory maps.

    In row order, or with ``shuffle`` a seeded permutation (the same for the same seed);
    ``with_labels`` yields (images, labels or None) pairs.
    """
    source = ShardedSplit(split_dir, split, batch_size)
    order = np.random.default_rng(seed).permutation(len(source)) if shuffle else None
    stop = len(source) - len(source) % batch_size if drop_remainder else len(source)
    for start in range(0, stop, batch_size):
        if order is None:
            indices = np.arange(start, min(start + batch_size, len(source)))
        else:
            indices = order[start : start + batch_size]
        images = unit_float(source.take(indices))
        if with_labels:
            yield images, (None if source.labels is None else source.labels[indices])
        else:
            yield images


def load_split_arrays(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x float32 NHWC in [0, 1], y int64 or None) of a sharded split, the whole split in
    memory as ``load_split`` returns it for the npz splits."""
    source = ShardedSplit(directory, split)
    return source.to_array(), source.labels


def verify(directory: str | Path, checksums: dict[str, str]) -> None:
    """Check each file against its SHA-256 (the card's ``shards``); CorruptFileError if not."""
    for name, expected in sorted(checksums.items()):
        path = Path(directory) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {FIX}.")
        if fileio.sha256_file(path) != expected:
            raise errors.corrupt(path, "SHA-256 differs from card.json's", FIX)
