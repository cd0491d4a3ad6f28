"""One BLAS thread for the small linear algebra of the heads, mixtures and probes.

A Gaussian mixture on 10,000 codes of 10-32 numbers multiplies matrices of a few hundred
numbers, thousands of times. OpenBLAS's worker threads cost more than such products: on this
2-core machine, with two other processes busy, ``GaussianMixture(10, n_init=10)`` took 17-26 s
with OpenBLAS's two threads and 0.6-2.4 s with one, to the same lower bound. ``small_blas()``
limits BLAS (not OpenMP, ONNX Runtime or numba) to one thread inside a ``with`` block; BLAS
thread counts do not change these results beyond rounding, which the head's figures are
already checked against (tests/test_clustering.py runs the head under other thread counts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def small_blas() -> Iterator[None]:
    """Run the block with one BLAS thread, restoring the previous limits afterwards."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
