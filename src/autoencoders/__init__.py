"""Autoencoders: an MLOps pipeline (DVC, Optuna, MLflow, ONNX) for a family of autoencoders.

The library lives here; the DVC stages in ``pipeline/`` are thin wrappers around it.
``autoencoders.inference`` is the one module meant for downstream use and imports no TensorFlow.
"""

import os
import platform

# TensorFlow's C++ start-up chatter (CUDA probes, CPU features) buries the stages' progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Matrix products pick their kernels by the CPU's instruction set (TensorFlow's through oneDNN's
# sgemm, XLA's, i.e. JAX's and jit_compile's, through its own code generator): an AVX-512 machine
# sums in another order than an AVX2 one and trained weights drift apart. Capped at AVX2, every
# AVX2-or-newer x86 CPU runs the same kernels (docs/determinism.md: what it fixes, what not).


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or none where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    # OpenBLAS (numpy's and scipy's; the mixtures and the head) the same way: its AVX-512
    # kernels round otherwise than the AVX2 ones every AVX2 CPU (Zen included) runs. Read when
    # numpy loads, so only before numpy's first import, as in every stage script.
    _flags = _cpu_flags()
    if {"avx2", "fma"} <= _flags:
        os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
    # numpy's own loops dispatch at run time too: on an AVX-512 CPU its float64 exp and log
    # (the mixtures' E-step) take AVX-512 code that rounds otherwise than the C library's,
    # which every AVX2 CPU runs. Its AVX-512 targets are turned off (numpy 2.x names), so the
    # same pixels give the same head on both kinds of CPU (docs/determinism.md).
    if "avx512f" in _flags:
        os.environ.setdefault("NPY_DISABLE_CPU_FEATURES", "X86_V4 AVX512_ICL AVX512_SPR")
    if "xla_cpu_max_isa" not in os.environ.get("XLA_FLAGS", ""):
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_max_isa=AVX2".strip()

__version__ = "0.1.0"
