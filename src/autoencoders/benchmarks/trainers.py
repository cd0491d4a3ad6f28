"""The project's trainer as ``make bench-train`` times it: here, or on another Keras backend in a
spawned process.

Keras fixes its backend per process; the bench times the JAX variants from its TensorFlow process
by running their trainer in a child and timing each ``trainer(epochs)`` call like a local fit.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from autoencoders import data, models
from autoencoders.training import loop
from autoencoders.training.backend import activate

# What a project trainer is built from: variant name, its params.yaml block, the train section
# and its best.json path (None: no search applies); see variant_settings.
TrainerSpec = tuple[str, Mapping[str, Any], Mapping[str, Any], str | None]


class ChildTrainer:
    """A project trainer (``project_trainer`` for ``spec``: variant, block, train
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
        # A spawned child re-imports the parent's main module (which may import Keras)
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

        config, settings = variant_settings(*spec)
        keras.utils.set_random_seed(seed)
        model, fit = project_trainer(config, settings, x, batch_size, seed)
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


def project_trainer(
    config: Any, settings: loop.TrainSettings, x: np.ndarray, batch_size: int, seed: int
) -> tuple[Any, Callable[[int], Any]]:
    """The model and a ``fit(epochs)`` that trains it as ``loop.train_variant`` does (this
    process's Keras backend)."""
    model = loop.build_and_compile(
        config,
        tuple(x.shape[1:]),
        settings.learning_rate,
        seed,
        settings.steps_per_execution,
        settings.jit_compile,
    )
    arguments = data.fit_arguments(x, batch_size, seed, config.noise_std)
    return model, lambda epochs: model.fit(**arguments, epochs=epochs, verbose=0)


def trainer_for(
    spec: TrainerSpec,
    x: np.ndarray,
    batch_size: int | None,
    seed: int,
) -> tuple[int, loop.TrainSettings, Callable[[int], Any], Callable[[], None]]:
    """(weights, settings, fit, close) of ``spec``'s project trainer (variant, block, train
    section, best.json path) on its own backend: here, or in a ChildTrainer. ``batch_size``
    None: the variant's own."""
    import keras

    config, settings = variant_settings(*spec)
    batch_size = settings.batch_size if batch_size is None else batch_size
    if settings.backend != keras.backend.backend():
        child = ChildTrainer(settings.backend, spec, x, batch_size, seed)
        return child.parameters, settings, child, child.close
    keras.utils.set_random_seed(seed)
    model, fit = project_trainer(config, settings, x, batch_size, seed)
    return models.parameter_count(model), settings, fit, lambda: None


def variant_settings(
    variant: str,
    block: Mapping[str, Any],
    train_section: Mapping[str, Any],
    best_path: str | None,
) -> tuple[Any, loop.TrainSettings]:
    """The resolved config and settings ``train@variant`` would train with.

    ``best_path`` None: no search result applies (the seed models).
    """
    resolved, _ = loop.resolve_variant(variant, block, train_section, best_path)
    return resolved.config, resolved.settings
