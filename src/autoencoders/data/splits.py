"""One processed split, whatever its storage: the seam every later stage reads data through.

``open_split("data/processed", "train")`` returns a ``Split``: for the npz splits (MNIST,
digits, a user's npz) the float32 array ``load_split`` has always returned, held in memory;
for uint8 shards (``data.source: images``) a ``ShardedSplit``, read a batch at a time (its
``take``: ``os.preadv`` from the page cache, nothing mapped), so a stage's memory is bounded by
the batch, not by the dataset. Both give ``len``,
``shape``, ``labels``, ``images(indices)`` (float32 rows), ``batches(size, shuffle, seed)``
(float32, the seeded order the same for the same seed), ``sample(size, seed)`` (a seeded
subset, a ``Split`` again) and ``first(n)``. ``in_memory`` says which; ``array`` is the npz
array itself, so that the npz path runs exactly the code it ran before (same bits).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from autoencoders.data import shards

# Pixels of one inference batch read from shards (8 MB of float32 input): at 64x64x3 that is
# 170 images, not the 1,024 whose conv activations alone take gigabytes.
STREAM_PIXELS = 1 << 21


def stream_batch(shape: tuple[int, ...], largest: int = 1024) -> int:
    """Rows of an inference batch of images ``shape`` (H, W, C) read from shards."""
    return int(max(1, min(largest, STREAM_PIXELS // max(1, int(np.prod(shape))))))


class Split:
    """A processed split: an in-memory float32 array (``x``) or uint8 shards (``source``),
    optionally restricted to the rows ``index`` of the shards (a seeded sample)."""

    def __init__(
        self,
        name: str,
        *,
        x: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        source: shards.ShardedSplit | None = None,
        index: np.ndarray | None = None,
    ) -> None:
        if (x is None) == (source is None):
            raise ValueError("a Split holds either an array x or shards, not both or neither.")
        self.name, self._x, self._source, self._index = name, x, source, index
        if source is not None:
            rows = len(source) if index is None else len(index)
            self.shape = (rows, *source.shape[1:])
            full = source.labels
            self.labels = full if full is None or index is None else full[index]
        else:
            self.shape = tuple(x.shape)
            self.labels = labels

    @property
    def in_memory(self) -> bool:
        return self._x is not None

    @property
    def array(self) -> np.ndarray:
        """The in-memory float32 array (npz splits only: shards are read in batches)."""
        if self._x is None:
            raise TypeError(
                f"the {self.name} split is read from uint8 shards: iterate split.batches() "
                "instead of holding it whole."
            )
        return self._x

    def __len__(self) -> int:
        return int(self.shape[0])

    def uint8(self, indices: np.ndarray) -> np.ndarray:
        """Shard rows at ``indices`` (positions in this split) as uint8, in that order, in a
        64-byte-aligned array (``shards.aligned_rows``: ``tf.data`` takes it without a copy)."""
        indices = np.asarray(indices, dtype=np.int64)
        rows = indices if self._index is None else self._index[indices]
        return self._source.take(rows, out=shards.aligned_rows(len(rows), self.shape[1:]))

    def images(self, indices: np.ndarray) -> np.ndarray:
        """float32 images in [0, 1] at ``indices`` (positions in this split), in that order."""
        if self._x is not None:
            return self._x[np.asarray(indices, dtype=np.int64)]
        return shards.unit_float(self.uint8(indices))

    def first(self, count: int) -> np.ndarray:
        """The first ``count`` images (all when fewer) as float32."""
        if self._x is not None:
            return self._x[:count]
        return self.images(np.arange(min(count, len(self))))

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator:
        """float32 batches in row order, or in one seeded permutation (same seed, same order)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        count = len(self)
        order = np.random.default_rng(seed).permutation(count) if shuffle else None
        for start in range(0, count, batch_size):
            if order is None:
                if self._x is not None:
                    yield self._x[start : start + batch_size]
                    continue
                indices = np.arange(start, min(start + batch_size, count))
            else:
                indices = order[start : start + batch_size]
            yield self.images(indices)

    def sample(self, size: int, seed: int) -> Split:
        """A seeded random subset of ``size`` images in row order (all when size is 0 or
        >= len): the rows ``data.subset`` picks, so an npz sample is the array it gave."""
        if size <= 0 or size >= len(self):
            return self
        indices = np.sort(np.random.default_rng(seed).choice(len(self), size=size, replace=False))
        labels = None if self.labels is None else self.labels[indices]
        if self._x is not None:
            return Split(self.name, x=self._x[indices], labels=labels)
        rows = indices if self._index is None else self._index[indices]
        return Split(self.name, source=self._source, index=rows)

    @property
    def codes_batch(self) -> int:
        """Rows of an inference batch of this split's images (``stream_batch``)."""
        return stream_batch(self.shape[1:])

    def codes(self, encode, batch_size: int | None = None) -> np.ndarray:
        """``encode`` (a batch of float32 images -> codes) over the split, flattened (N, D);
        batches of ``stream_batch`` rows unless ``batch_size`` says."""
        batch_size = batch_size or self.codes_batch
        parts = [np.asarray(encode(batch)) for batch in self.batches(batch_size)]
        return np.concatenate(parts).reshape(len(self), -1)


def open_split(processed_dir: str | Path, split: str) -> Split:
    """The processed ``split``: shards when ``preprocess`` wrote them, else the npz array."""
    from autoencoders.data import datasets

    if shards.holds_shards(processed_dir, split):
        return Split(split, source=shards.ShardedSplit(processed_dir, split))
    x, y = datasets.load_split(processed_dir, split)
    return Split(split, x=x, labels=y)


def as_array(images: np.ndarray | Split) -> np.ndarray:
    """An array as it is; an in-memory Split's array; shards are refused (read in batches)."""
    return images.array if isinstance(images, Split) else images
