"""Autoencoders: an MLOps pipeline (DVC, Optuna, MLflow, ONNX) for a family of autoencoders.

The library lives here; the DVC stages in ``pipeline/`` are thin wrappers around it.
``autoencoders.inference`` is the one module meant for downstream use and imports no TensorFlow.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, CPU features) buries the stages' progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
