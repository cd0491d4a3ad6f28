"""Read ahead: a background thread fills reused buffers with the next batches while the caller
works on the current one (the shards' input pipeline, ``shards.iter_batches``).

``prefetched(read, plan, shape, dtype)`` yields ``(item, buffer)`` for each item of ``plan``,
``buffer`` filled by ``read(item, buffer)`` in the reader thread, at most ``depth`` batches
ahead. A buffer goes back to the reader when the caller asks for the next batch, so the caller
copies or converts what it keeps before then. The reader's errors are raised in the caller;
a caller that stops early stops the reader.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

DEPTH = 2  # batches read ahead

_POLL_SECONDS = 0.1  # how often a blocked side looks whether the other has stopped


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _reader(read, plan, free: queue.Queue, ready: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in plan:
            buffer = None
            while buffer is None:
                if stop.is_set():
                    return
                try:
                    buffer = free.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
            _put(ready, (item, buffer, read(item, buffer)), stop)
    except BaseException as error:  # noqa: BLE001 (re-raised in the caller's thread)
        _put(ready, _Failed(error), stop)


def _put(ready: queue.Queue, value: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            ready.put(value, timeout=_POLL_SECONDS)
            return
        except queue.Full:
            continue


def prefetched(
    read: Callable[[Any, np.ndarray], np.ndarray],
    plan: Sequence[Any],
    shape: tuple[int, ...],
    dtype: Any,
    depth: int = DEPTH,
) -> Iterator[tuple[Any, np.ndarray]]:
    """``(item, read(item, buffer))`` for each item of ``plan``, in order, read ahead."""
    free: queue.Queue = queue.Queue()
    buffers = [np.empty(shape, dtype) for _ in range(depth + 1)]
    for buffer in buffers:
        free.put(buffer)
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(
        target=_reader, args=(read, plan, free, ready, stop), name="readahead", daemon=True
    )
    thread.start()
    try:
        for _ in plan:
            value = ready.get()
            if isinstance(value, _Failed):
                raise value.error
            item, buffer, filled = value
            yield item, filled
            free.put(buffer)
    finally:
        stop.set()
        thread.join()
