"""Process set-up for the project's own computing processes: the CPU dispatch pins and a quiet
TensorFlow start-up. Import it first, before numpy, as every stage script does::

    import autoencoders.runtime  # noqa: F401  (first: before numpy loads)

Importing the package (``import autoencoders``, ``autoencoders.inference``) changes nothing in
the host process: a downstream application keeps its own TensorFlow, JAX and BLAS settings.

The pins: matrix products pick their kernels by the CPU's instruction set (TensorFlow's through
oneDNN's sgemm, XLA's, i.e. JAX's and jit_compile's, through its own code generator): an AVX-512
machine sums in another order than an AVX2 one and trained weights drift apart. Capped at AVX2,
every AVX2-or-newer x86 CPU runs the same kernels (docs/determinism.md: what it fixes, what not).
They are environment variables, so the processes a stage spawns inherit them.

The quiet start-up: TensorFlow's C++ prints, before its logging is set up and whatever
``TF_CPP_MIN_LOG_LEVEL`` says, that oneDNN is on, that no CUDA driver was found and that cuInit
failed: on a CPU machine that is health, not a fault. Those lines are dropped while TensorFlow
loads and looks for devices; every other line it prints then is passed on to stderr.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

# The C++ start-up lines of a healthy machine without a GPU (TensorFlow 2.21, XLA's CUDA probe).
BENIGN_NATIVE_LINES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
)


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


def pin_cpu_dispatch() -> None:
    """Cap oneDNN, XLA, OpenBLAS and numpy's loops at AVX2 (x86 only; settings already made win).

    OpenBLAS and numpy read theirs when numpy loads: only before numpy's first import."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    flags = _cpu_flags()
    # OpenBLAS (numpy's and scipy's; the mixtures and the head): its AVX-512 kernels round
    # otherwise than the AVX2 ones every AVX2 CPU (Zen included) runs.
    if {"avx2", "fma"} <= flags:
        os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
    # numpy's own float64 exp and log (the mixtures' E-step) take AVX-512 code that rounds
    # otherwise than the C library's, which every AVX2 CPU runs (numpy 2.x target names).
    if "avx512f" in flags:
        os.environ.setdefault("NPY_DISABLE_CPU_FEATURES", "X86_V4 AVX512_ICL AVX512_SPR")
    if "xla_cpu_max_isa" not in os.environ.get("XLA_FLAGS", ""):
        flags_now = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags_now} --xla_cpu_max_isa=AVX2".strip()


@contextlib.contextmanager
def benign_native_lines_dropped() -> Iterator[None]:
    """Inside the block, lines written to file descriptor 2 (C++ included) are held back; after
    it, every line but the benign start-up ones is written to stderr, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not BENIGN_NATIVE_LINES.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


class _QuietTensorFlowLoader(importlib.abc.Loader):
    """Loads ``tensorflow`` with its benign start-up lines dropped, then probes its devices (where
    the cuInit line comes from) the same way; the thread settings can still be made after."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):  # noqa: ANN001, ANN201 (importlib's signature)
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with benign_native_lines_dropped():
            self.loader.exec_module(module)
            module.config.list_physical_devices("GPU")


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate it
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietTensorFlowLoader(spec.loader)
        return spec


def quiet_tensorflow_start() -> None:
    """Drop TensorFlow's benign C++ start-up lines when it is first imported in this process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(
        isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


pin_cpu_dispatch()
quiet_tensorflow_start()
