"""Autoencoders: an MLOps pipeline (DVC, Optuna, MLflow, ONNX) for a family of autoencoders.

The library lives here; the DVC stages in ``pipeline/`` are thin wrappers around it.
``autoencoders.inference`` is the one module meant for downstream use and imports no TensorFlow.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, CPU features) buries the stages' progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's matrix products (Dense, LSTM, convolutions through Eigen) call oneDNN's sgemm, which
# picks its kernels by the CPU's instruction set: an AVX-512 machine sums in another order than an
# AVX2 one, and trained weights drift apart. Capped at AVX2, every AVX2-or-newer x86 CPU runs the
# same kernels (docs/determinism.md: what it fixes, what it cannot).
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

__version__ = "0.1.0"
