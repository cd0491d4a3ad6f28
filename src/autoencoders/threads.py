"""One BLAS thread for the small linear algebra of the heads, mixtures and probes.

A Gaussian mixture on 10,000 codes of 10-32 numbers multiplies matrices of a few hundred
numbers, thousands of times. OpenBLAS's worker threads cost more than such products, and they
round the sums differently per thread count (docs/determinism.md has the measurements).
``small_blas()`` limits BLAS (not OpenMP, ONNX Runtime or numba) to one thread inside a
``with`` block; tests/test_clustering.py checks that two processes at different BLAS thread
counts give the same mixture bytes.
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
