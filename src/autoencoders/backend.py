"""Keras' backend, chosen per process from params.yaml before Keras is first imported.

A variant trains on ``train.backend`` (params.yaml ``train``, then the variant's ``train:``):
``tensorflow`` (the default) or ``jax``. Keras 3 fixes its backend when it is first imported, so
each stage process that trains (``train@V``, ``tune@V``) calls ``activate(variant_backend(...))``
before importing the trainer; ``make tune`` over variants of both backends runs one process per
backend. Weights files are backend-independent, so evaluation and ONNX export stay on
TensorFlow whatever the variant trained on.

Why JAX for the dense variants: measured on a 2-core CPU (``make bench-train``), Keras on JAX
trains the 784-32-784 autoencoder at about 3x the images/s of TensorFlow, where TensorFlow's
per-step cost dominates such small matrix products; convolutions run about 10x slower on
JAX's CPU backend than on TensorFlow's oneDNN kernels, so the convolutional variants stay.
This module imports no Keras.
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

    Raises RuntimeError when Keras is already loaded with another backend: the caller imported
    the trainer too early, and a process cannot switch.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown Keras backend {name!r}; valid backends are {list(BACKENDS)}.")
    if "keras" in sys.modules:
        loaded = sys.modules["keras"].backend.backend()
        if loaded != name:
            raise RuntimeError(
                f"Keras is already loaded with the {loaded} backend, so this process cannot "
                f"train on {name}: select the backend before importing the trainer (run the "
                "variant in its own process)."
            )
    os.environ["KERAS_BACKEND"] = name
