"""Decode image files in threads over every core into uint8 blocks (fetch of a folder).

``decode_block`` reads, checks (``imagefiles.inspect``) and decodes (``imagefiles.decode_row``:
plain PNGs by libspng, the rest by Pillow's ``render``) a list of files into the rows of one
preallocated uint8 block, chunk by chunk in a thread pool: each file is read once, its pixels
land in their row (the bytes never depend on the number of threads), and nothing is pickled
between processes. libspng and Pillow release the GIL while they decode, convert and resize, so
the threads run those on every core at once. The decoding itself is ``autoencoders.imagefiles``,
which every downstream path applies to new image files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import imagefiles
from autoencoders.threads import usable_cores

# Files a thread takes at once: enough that handing out work costs little, few enough that
# the last chunks of a block keep every core busy.
CHUNK_FILES = 64


def decode_into(
    out: np.ndarray,
    first_row: int,
    relatives: Sequence[str],
    root: str,
    settings: dict[str, Any],
    check_only: threading.Event,
    fail_fast: bool,
) -> list[str | None]:
    """Read, check and decode ``relatives`` below ``root`` into ``out[first_row:]``; return per
    file None or why it is bad. A bad file sets ``check_only`` when ``fail_fast``; once set,
    files are only checked (the stage will fail; the check costs a fraction of a decode)."""
    image_size, crop = settings["image_size"], settings["crop_to_aspect_ratio"]
    reasons: list[str | None] = []
    for row, relative in enumerate(relatives, start=first_row):
        try:
            data = imagefiles.read_file(os.path.join(root, relative))
        except OSError as error:
            reason, image = f"unreadable ({error.strerror})", None
        else:
            reason, image = imagefiles.inspect(data, relative, image_size, crop)
        if reason is None and not check_only.is_set():
            try:
                imagefiles.decode_row(out, row, image, settings)
            except imagefiles.DECODE_ERRORS as error:
                reason = f"could not be decoded ({' '.join(str(error).split())[:120]})"
        elif image is not None and not isinstance(image, imagefiles.PngFrame):
            image.close()
        if reason is not None and fail_fast:
            check_only.set()
        reasons.append(reason)
    return reasons


def decode_block(
    out: np.ndarray,
    relatives: Sequence[str],
    root: str | Path,
    settings: dict[str, Any],
    check_only: threading.Event,
    fail_fast: bool,
    executor: ThreadPoolExecutor | None = None,
    progress: Any = None,
) -> list[str | None]:
    """``decode_into`` over ``relatives`` (rows 0.. of ``out``) in chunks of ``CHUNK_FILES``,
    on ``executor``'s threads (or this one); the reasons in file order."""
    arguments = (str(root), settings, check_only, fail_fast)
    starts = range(0, len(relatives), CHUNK_FILES)
    chunks = [(out, start, relatives[start : start + CHUNK_FILES]) for start in starts]
    if executor is None:
        results = (decode_into(*chunk, *arguments) for chunk in chunks)
    else:
        futures = [executor.submit(decode_into, *chunk, *arguments) for chunk in chunks]
        results = (future.result() for future in futures)
    reasons: list[str | None] = []
    for result in results:
        reasons += result
        if progress is not None:
            progress.update(len(result))
    return reasons


def make_executor(workers: int | None = None) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads (default: one a core) for ``decode_block`` and the
    shard writes that overlap it."""
    return ThreadPoolExecutor(usable_cores() if workers is None else workers, "decode")
