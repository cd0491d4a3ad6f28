"""Keras' backend, chosen per process from params.yaml before Keras is first imported.

A variant trains on ``train.backend`` (params.yaml ``train``, then the variant's ``train:``):
``tensorflow`` (the default) or ``jax``. Keras 3 fixes its backend when it is first imported, so
each stage process that trains (``train@V``, ``tune@V``) calls ``activate(variant_backend(...))``
before importing the trainer; ``make tune`` over variants of both backends runs one process per
backend. Weights files are backend-independent, so evaluation and ONNX export stay on
TensorFlow whatever the variant trained on.

Why JAX for the dense variants: measured on a 2-core CPU (``make bench-train``), Keras on JAX
trains the 784-32-784 autoencoder at 5.2x the images/s of the seed's plain TensorFlow ``fit``,
where the project's TensorFlow trainer had reached 1.5x: TensorFlow's per-step cost dominates
such small matrix products. Convolutions run about 10x slower on
JAX's CPU backend than on TensorFlow's oneDNN kernels, so the convolutional variants stay.
``require`` guards the trainer against the wrong one; ``ChildTrainer`` runs a trainer on
another backend in a spawned process. This module imports no Keras itself.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Mapping
from typing import Any

from autoencoders.config import ConfigError

BACKENDS = ("tensorflow", "jax")
DEFAULT = "tensorflow"
# What a project trainer is built from: variant name, its params.yaml block, the train section
# and its best.json path (None: no search applies); see train_bench.variant_settings.
TrainerSpec = tuple[str, Mapping[str, Any], Mapping[str, Any], str | None]


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
            f"{keras.backend.backend()}: call autoencoders.backend.activate({name!r}) before "
            "importing the trainer (the pipeline's stages do), or set KERAS_BACKEND."
        )


class ChildTrainer:
    """A project trainer (``train_bench.project_trainer`` for ``spec``: variant, block, train
    section, best.json path) on another Keras backend, in a spawned process: ``trainer(epochs)``
    trains there and returns when it is done, so the parent times it like a local ``fit``;
    ``parameters`` is its model's weight count. ``make bench-train`` times the JAX variants
    from its TensorFlow process this way."""

    def __init__(
        self,
        backend_name: str,
        spec: TrainerSpec,
        x: Any,
        batch_size: int,
        seed: int,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve_trainer,
            args=(child_end, backend_name, spec, x, batch_size, seed),
            daemon=True,
        )
        # A spawned child re-imports the parent's main module (bench_train.py imports Keras)
        # before it runs a line of ours: the backend must be in the environment it inherits.
        previous = os.environ.get("KERAS_BACKEND")
        os.environ["KERAS_BACKEND"] = backend_name
        try:
            self._process.start()
        finally:
            if previous is None:
                del os.environ["KERAS_BACKEND"]
            else:
                os.environ["KERAS_BACKEND"] = previous
        child_end.close()
        self.parameters = self._reply()

    def _reply(self) -> Any:
        try:
            reply = self._connection.recv()
        except EOFError:
            raise RuntimeError(
                f"the bench's trainer process exited (code {self._process.exitcode})"
            ) from None
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def __call__(self, epochs: int) -> None:
        self._connection.send(epochs)
        self._reply()

    def close(self) -> None:
        self._connection.close()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()


def _serve_trainer(
    connection: Any,
    backend_name: str,
    spec: TrainerSpec,
    x: Any,
    batch_size: int,
    seed: int,
) -> None:
    """ChildTrainer's process: build the trainer on ``backend_name``, then fit on request."""
    try:
        activate(backend_name)
        import keras

        from autoencoders import models, train_bench

        config, settings = train_bench.variant_settings(*spec)
        keras.utils.set_random_seed(seed)
        model, fit = train_bench.project_trainer(config, settings, x, batch_size, seed)
        connection.send(models.parameter_count(model))
        while True:
            try:
                epochs = connection.recv()
            except EOFError:  # the parent closed the pipe: done
                return
            fit(epochs)
            connection.send(None)
    except Exception as error:  # sent to the parent, which raises it
        connection.send(RuntimeError(f"{type(error).__name__}: {error}"))
