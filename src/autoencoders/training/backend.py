"""Keras' backend, chosen per process from params.yaml before Keras is first imported.

A variant trains on ``train.backend`` (params.yaml ``train``, then the variant's ``train:``):
``tensorflow`` (the default) or ``jax``. Keras 3 fixes its backend when it is first imported, so
each stage process that trains (``train@V``, ``tune@V``) calls ``activate(variant_backend(...))``
before importing the trainer; ``make tune`` over variants of both backends runs one process per
backend. Weights files are backend-independent, so evaluation and ONNX export stay on
TensorFlow whatever the variant trained on.

Why JAX for the dense variants: TensorFlow's per-step cost dominates such small matrix products,
while convolutions run far slower on JAX's CPU backend than on TensorFlow's oneDNN kernels
(``make bench-train`` measures both, reports/train_bench.md). ``require`` guards the trainer
against the wrong backend. This module imports no Keras itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from autoencoders.config import ConfigError

BACKENDS = ("tensorflow", "jax")
DEFAULT = "tensorflow"


def variant_backend(params: Mapping[str, Any], variant: str) -> str:
    """The backend ``variant`` trains on: its ``train.backend``, else params.yaml's, else
    TensorFlow. Unknown names raise ConfigError naming the valid ones."""
    variant_train = ((params.get("variants") or {}).get(variant) or {}).get("train") or {}
    name = variant_train.get("backend", (params.get("train") or {}).get("backend", DEFAULT))
    if name not in BACKENDS:
        raise ConfigError(
            f"variants.{variant}.train.backend (or train.backend) is {name!r}; valid backends "
            f"are {list(BACKENDS)}."
        )
    return name


def activate(name: str) -> None:
    """Make ``name`` Keras' backend in this process (and the processes it spawns).

    When Keras is already loaded with another backend (the caller imported it first, e.g. a
    test calling a stage's main), nothing changes: ``require`` then refuses to train.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown Keras backend {name!r}; valid backends are {list(BACKENDS)}.")
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != name:
        return  # too late to switch (a caller imported Keras first): ``require`` refuses training
    os.environ["KERAS_BACKEND"] = name


def require(name: str, variant: str) -> None:
    """ConfigError unless this process's Keras runs on ``name``, ``variant``'s backend."""
    import keras

    if keras.backend.backend() != name:
        raise ConfigError(
            f"variant {variant!r} trains on Keras' {name} backend but this process loaded "
            f"{keras.backend.backend()}: call autoencoders.training.backend.activate({name!r}) "
            "before importing the trainer (the pipeline's stages do), or set KERAS_BACKEND."
        )
