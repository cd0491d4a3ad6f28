"""The files of a batch-encoding job: input shards checked by their headers, and codes
written back atomically, one ``<stem>.codes.npy`` per shard with its rows in the shard's order.

Used by ``services.batch`` (the Ray job) on its driver; nothing here needs Ray, so the
guarantees (every row exactly once, no partial file) are plain code tested without a cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoencoders import errors, fileio

CODES_SUFFIX = ".codes.npy"


class ShardError(errors.UserError, ValueError):
    """A shard cannot be encoded, or a job did not deliver each of its rows exactly once."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One input shard: its path, its number of images and the codes file it gives."""

    path: Path
    rows: int
    target: Path


def _accepts(image_shape: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a shard of ``shape`` holds images the encoder takes (channel axis optional
    when C == 1)."""
    per_image = tuple(shape[1:])
    return per_image == image_shape or (image_shape[-1] == 1 and per_image == image_shape[:-1])


def list_sources(
    input_dir: str | Path, output_dir: str | Path, image_shape: Sequence[int]
) -> list[Source]:
    """The ``.npy`` shards of ``input_dir`` in name order, each header checked against the
    encoder's image shape and dtype rules before any work is sent to the cluster."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder {input_dir} not found.")
    if output_dir.resolve() == input_dir.resolve():
        raise ShardError(
            f"--output {output_dir} is the input folder: write codes to another folder, or the "
            "next run reads them as images."
        )
    paths = sorted(input_dir.glob("*.npy"))
    if not paths:
        raise ShardError(f"{input_dir} holds no .npy files to encode.")
    image_shape = tuple(image_shape)
    sources = []
    for path in paths:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as error:
            raise errors.corrupt(path, error, "pass .npy files written by numpy") from None
        if not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
            raise ShardError(
                f"{path} has dtype {array.dtype}; pass uint8 (0-255) or float in [0, 1] images."
            )
        if array.ndim < 2 or not _accepts(image_shape, array.shape):
            raise ShardError(
                f"{path} has shape {array.shape}; the encoder takes (N, "
                f"{', '.join(map(str, image_shape))}) images."
            )
        target = output_dir / f"{path.stem}{CODES_SUFFIX}"
        sources.append(Source(path=path, rows=int(array.shape[0]), target=target))
    return sources


def chunk_descriptors(sources: Sequence[Source], batch_size: int) -> list[dict[str, int]]:
    """One row per ``batch_size`` images: (shard index, first row, row after the last)."""
    return [
        {"source": index, "start": start, "stop": min(start + batch_size, source.rows)}
        for index, source in enumerate(sources)
        for start in range(0, source.rows, batch_size)
    ]


class CodeWriter:
    """Scatters encoded rows into one temporary ``.npy`` per shard (memory-mapped, each row at
    its shard position, so arrival order does not matter) and renames it onto its target once
    every row has arrived; a row that arrives twice, or never, is an error, not a file."""

    def __init__(self, sources: Sequence[Source], code_shape: Sequence[int]) -> None:
        self.sources = list(sources)
        self.code_shape = tuple(code_shape)
        self._stacks: dict[int, contextlib.ExitStack] = {}
        self._codes: dict[int, np.ndarray] = {}
        self._seen: dict[int, np.ndarray] = {}
        self.written: list[Path] = []
        for index, source in enumerate(self.sources):
            if source.rows == 0:
                self._open(index)
                self._finish(index)

    def _open(self, index: int) -> None:
        source = self.sources[index]
        stack = contextlib.ExitStack()
        temporary = stack.enter_context(fileio.atomic_path(source.target))
        self._stacks[index] = stack
        self._codes[index] = np.lib.format.open_memmap(
            temporary, mode="w+", dtype=np.float32, shape=(source.rows, *self.code_shape)
        )
        self._seen[index] = np.zeros(source.rows, dtype=np.bool_)

    def _finish(self, index: int) -> None:
        codes = self._codes.pop(index)
        codes.flush()
        del codes  # unmap before the rename
        del self._seen[index]
        self._stacks.pop(index).close()  # renames the temporary file onto the target
        self.written.append(self.sources[index].target)

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Write one batch of (shard index, row, code) rows."""
        for index in np.unique(batch["source"]).tolist():
            mask = batch["source"] == index
            rows, codes = batch["row"][mask], batch["code"][mask]
            if index not in self._stacks:
                self._open(index)
            seen = self._seen[index]
            unique, counts = np.unique(rows, return_counts=True)
            twice = np.union1d(unique[counts > 1], rows[seen[rows]])
            if len(twice):
                raise ShardError(
                    f"{self.sources[index].path}: {len(twice)} rows arrived twice (first "
                    f"{int(twice[0])}); nothing was written for this shard."
                )
            seen[rows] = True
            self._codes[index][rows] = codes.reshape((len(rows), *self.code_shape))
            if seen.all():
                self._finish(index)

    def close(self) -> None:
        """Raise unless every shard was completed and renamed onto its target."""
        written = set(self.written)
        missing = {
            str(source.path): int((~self._seen[index]).sum())
            if index in self._seen
            else source.rows
            for index, source in enumerate(self.sources)
            if source.target not in written
        }
        if missing:
            self.abort()
            raise ShardError(
                f"the job ended before every row came back (missing rows by shard: {missing}); "
                "nothing was written for those shards."
            )

    def abort(self) -> None:
        """Drop every unfinished temporary file; finished targets stay (they are complete)."""
        for index in list(self._stacks):
            self._codes.pop(index, None)
            self._seen.pop(index, None)
            stack = self._stacks.pop(index)
            stack.__exit__(ShardError, ShardError("aborted"), None)
