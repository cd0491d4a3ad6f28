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

import contextlib
import hashlib
import json
import os
import re
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import errors, fileio
from autoencoders.errors import DataError

SHARD_BYTES = 128 << 20

FLOAT_ROWS = 1024  # rows ``floats`` reads at a time

FIX = "re-run `dvc repro --force fetch preprocess`"


def unit_float(images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 -> float32 in [0, 1] in one vectorised pass, into ``out`` when given: each pixel
    divided by 255 in float32, the same bits as ``datasets.to_unit_float``."""
    return np.divide(images, np.float32(255.0), out=out, dtype=np.float32)


def aligned_rows(count: int, shape: Sequence[int]) -> np.ndarray:
    """An empty uint8 array of ``count`` rows of ``shape`` whose data starts on a 64-byte
    boundary: TensorFlow takes such an array (a ``numpy_function``'s result) without copying
    it, and copies one that is not."""
    size = count * int(np.prod(shape))
    block = np.empty(size + 64, np.uint8)
    start = -block.ctypes.data % 64
    return block[start : start + size].reshape(count, *shape)


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


def _close(handles: list[Any]) -> None:
    for handle in handles:
        handle.close()


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
        self.handles: list[Any] = []  # open files, read with os.preadv by ``take``
        self.offsets: list[int] = []  # where each file's rows begin, after its .npy header
        weakref.finalize(self, _close, self.handles)
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

    def _open(self, path: Path) -> np.ndarray:
        """The shard's rows, memory-mapped (``np.load(mmap_mode="r")``); the file also stays
        open for the reads of ``rows`` and ``take``, which do not go through the map."""
        try:
            shard = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise errors.corrupt(path, error, FIX) from None
        if shard.dtype != np.uint8 or not shard.flags.c_contiguous:
            raise errors.corrupt(path, f"dtype {shard.dtype}, not C-ordered uint8", FIX)
        self.handles.append(path.open("rb", buffering=0))
        self.offsets.append(int(getattr(shard, "offset", 0)))
        return shard

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def num_batches(self) -> int:
        return -(-len(self) // self.batch_size)

    def files(self) -> list[str]:
        """Each row's source file, relative to the folder it came from."""
        return json.loads((self.directory / f"{self.split}-files.json").read_text("utf-8"))

    def _pieces(self, start: int, stop: int) -> Iterator[tuple[np.ndarray, int]]:
        """(contiguous slice of one shard, its offset from ``start``) covering ``start:stop``."""
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        position = start
        while position < stop:
            local = position - int(self.starts[shard])
            take = min(len(self.shards[shard]) - local, stop - position)
            yield self.shards[shard][local : local + take], position - start
            position += take
            shard += 1

    def _clip(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = max(0, start), min(len(self), stop)
        return start, max(start, stop)

    def rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 rows ``start:stop`` (clipped to the split), across shard boundaries, read
        with one ``os.preadv`` a shard (into ``out``'s first rows when given)."""
        start, stop = self._clip(start, stop)
        if out is None:
            out = np.empty((stop - start, *self.shape[1:]), np.uint8)
        out = out[: stop - start]
        row_bytes = int(np.prod(self.shape[1:]))
        flat = memoryview(out.reshape(-1))
        for piece, offset in self._pieces(start, stop):
            if not hasattr(os, "preadv"):
                out[offset : offset + len(piece)] = piece
                continue
            shard = int(np.searchsorted(self.starts, start + offset, side="right")) - 1
            local = start + offset - int(self.starts[shard])
            view = flat[offset * row_bytes : (offset + len(piece)) * row_bytes]
            self._read(shard, view, self.offsets[shard] + local * row_bytes)
        return out

    def _read(self, shard: int, view: memoryview, offset: int) -> None:
        """Fill ``view`` from shard ``shard``'s file at ``offset`` (short reads continued)."""
        number = self.handles[shard].fileno()
        while len(view):
            count = os.preadv(number, [view], offset)
            if count <= 0:
                raise errors.corrupt(self.handles[shard].name, "rows past its end", FIX)
            view, offset = view[count:], offset + count

    def floats(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (clipped) as float32 in [0, 1], read ``FLOAT_ROWS`` at a time
        into one uint8 buffer and converted into the result."""
        start, stop = self._clip(start, stop)
        out = np.empty((stop - start, *self.shape[1:]), np.float32)
        buffer = np.empty((min(FLOAT_ROWS, stop - start), *self.shape[1:]), np.uint8)
        for first in range(start, stop, FLOAT_ROWS):
            last = min(first + FLOAT_ROWS, stop)
            unit_float(self.rows(first, last, out=buffer), out=out[first - start : last - start])
        return out

    def take(self, indices: np.ndarray | Sequence[int], out: np.ndarray | None = None):
        """uint8 rows at ``indices``, in that order (into ``out``'s first rows when given).

        Each row is read from the page cache with one ``os.preadv`` into its place: nothing
        is mapped, so a shuffled pass does not leave the whole split in this process's
        resident memory (the kernel maps large folios around every row a map touches), and
        it is faster than a gather from the maps. Without ``os.preadv`` (Windows): the maps.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices outside the {len(self)} images of {self.split}")
        if out is None:
            out = np.empty((len(indices), *self.shape[1:]), np.uint8)
        out = out[: len(indices)]
        which = np.searchsorted(self.starts, indices, side="right") - 1
        if not hasattr(os, "preadv"):
            for shard in np.unique(which):
                positions = np.flatnonzero(which == shard)
                out[positions] = self.shards[shard][indices[positions] - self.starts[shard]]
            return out
        row_bytes = int(np.prod(self.shape[1:]))
        offsets = np.asarray(self.offsets)[which] + (indices - self.starts[which]) * row_bytes
        numbers = [handle.fileno() for handle in self.handles]
        flat = memoryview(out.reshape(-1))
        for row, (shard, offset) in enumerate(zip(which.tolist(), offsets.tolist(), strict=True)):
            view = flat[row * row_bytes : (row + 1) * row_bytes]
            if os.preadv(numbers[shard], [view], offset) != row_bytes:
                self._read(shard, view, offset)  # a short read: finish it or name the file
        return out

    def batch(self, index: int) -> np.ndarray:
        """The ``index``-th batch of ``batch_size`` rows as float32 in [0, 1]."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} outside the {self.num_batches} of {self.split}")
        start = index * self.batch_size
        return self.floats(start, start + self.batch_size)

    def to_array(self) -> np.ndarray:
        """The whole split as one float32 array: 4 bytes a pixel in memory (see docs)."""
        return self.floats(0, len(self))


def iter_batches(
    split_dir: str | Path,
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    with_labels: bool = False,
) -> Iterator[Any]:
    """float32 batches (N, H, W, C) in [0, 1] of a sharded split, read from its files.

    In row order, or with ``shuffle`` a seeded permutation of the rows (the same for the same
    seed); ``with_labels`` yields (images, labels or None) pairs. Each batch's uint8 rows are
    read into one reused buffer (``rows``, ``take``: nothing of the split is mapped, so memory
    stays bounded by the batch), then converted to float32 in one pass; with more than one
    usable core a second thread reads and converts the batch's second half (both passes
    release the GIL for most of their work). Every batch is a new array: a caller may keep it.
    """
    from concurrent.futures import ThreadPoolExecutor

    from autoencoders.threads import usable_cores

    source = ShardedSplit(split_dir, split, batch_size)
    order = np.random.default_rng(seed).permutation(len(source)) if shuffle else None
    stop = len(source) - len(source) % batch_size if drop_remainder else len(source)
    gathered = np.empty((min(batch_size, max(1, stop)), *source.shape[1:]), np.uint8)

    def fill(images: np.ndarray, start: int, low: int, high: int) -> None:
        """Rows ``low:high`` of the batch from ``start``: read, then converted into ``images``."""
        if order is None:
            source.rows(start + low, start + high, out=gathered[low:high])
        else:
            source.take(order[start + low : start + high], out=gathered[low:high])
        unit_float(gathered[low:high], out=images[low:high])

    with (
        ThreadPoolExecutor(1, "batch") if usable_cores() > 1 else contextlib.nullcontext() as pool
    ):
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, stop)
            images = np.empty((end - start, *source.shape[1:]), np.float32)
            half = (end - start) // 2 if pool is not None else end - start
            second = None if pool is None else pool.submit(fill, images, start, half, end - start)
            fill(images, start, 0, half)
            if second is not None:
                second.result()
            if with_labels:
                rows = slice(start, end) if order is None else order[start:end]
                yield images, (None if source.labels is None else source.labels[rows])
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
