"""Threads and processes: one BLAS thread for small linear algebra, tasks over the usable cores.

A Gaussian mixture on 10,000 codes of 10-32 numbers multiplies matrices of a few hundred
numbers, thousands of times. OpenBLAS's worker threads cost more than such products, and they
round the sums differently per thread count (docs/determinism.md has the measurements).
``small_blas()`` limits BLAS (not OpenMP, ONNX Runtime or numba) to one thread inside a
``with`` block; tests/test_clustering.py checks that two processes at different BLAS thread
counts give the same mixture bytes.

``spread_over_processes`` runs independent single-threaded tasks (a seeded UMAP fit is one) on
this process and spawned ones, one per usable core: each task's result is what it would be alone.
``one_thread_everywhere`` gives a spawned worker one thread in every pool when the work is spread
over processes (the one-class benchmark's tasks).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


@contextlib.contextmanager
def small_blas() -> Iterator[None]:
    """Run the block with one BLAS thread, restoring the previous limits afterwards."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def tensorflow_threads(count: int) -> None:
    """``count`` threads for each of TensorFlow's op pools (intra- and inter-op) in this
    process: before TensorFlow runs its first op (a spawned worker's start)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(count)
    tf.config.threading.set_inter_op_parallelism_threads(count)


def one_thread_everywhere() -> None:
    """A spawned worker's start when the parallelism is in the processes: one thread for
    TensorFlow's op pools and for BLAS and OpenMP (``threadpoolctl``), for the process's life."""
    from threadpoolctl import threadpool_limits

    tensorflow_threads(1)
    threadpool_limits(limits=1)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def spread_over_processes(
    function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]], processes: int = 0
) -> list[Any]:
    """``[function(*args) for args in arguments]``, on this process and ``processes - 1``
    spawned ones (``0``: one per usable core; ``1``: here, in order).

    The spawned processes take tasks from the front of ``arguments`` (put the longest first),
    this one from the back, until none is left; results come in the order of ``arguments``.
    ``function`` must be importable by name (a module's top level), and its arguments and
    result picklable. A task that raises raises here, after the running ones end.
    """
    processes = min(usable_cores() if processes == 0 else processes, len(arguments))
    if processes <= 1:
        return [function(*args) for args in arguments]
    results: list[Any] = [None] * len(arguments)
    front, back = 0, len(arguments)
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(processes - 1, mp_context=context) as pool:
        running: dict[Future[Any], int] = {}

        def feed() -> None:
            nonlocal front
            for done in [future for future in running if future.done()]:
                results[running.pop(done)] = done.result()
            while front < back and len(running) < processes - 1:
                running[pool.submit(function, *arguments[front])] = front
                front += 1

        feed()
        while front < back:
            back -= 1
            results[back] = function(*arguments[back])
            feed()
        for future, index in running.items():
            results[index] = future.result()
    return results
