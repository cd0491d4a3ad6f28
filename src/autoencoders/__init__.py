"""Autoencoders: an MLOps pipeline (DVC, Optuna, MLflow, ONNX) for a family of autoencoders.

The library lives here; the DVC stages in ``pipeline/`` are thin wrappers around it.
``autoencoders.inference`` is the one module meant for downstream use and imports no TensorFlow.
Importing the package sets nothing process-wide: the stage scripts, benchmarks and tests import
``autoencoders.runtime`` first for the CPU dispatch pins (docs/determinism.md).
"""

__version__ = "0.1.0"
