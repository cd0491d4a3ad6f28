"""The trainable autoencoder: functional ``encoder`` and ``decoder`` joined in a keras.Model
whose ``compute_loss`` adds the objective's penalty to the reconstruction loss, so that Keras'
own train and test steps train it on every backend (TensorFlow, JAX), plus building from a
config and saving/loading.

    model = build_autoencoder(config, input_shape=(28, 28, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(**data.fit_arguments(x, 128, seed=0, noise_std=config.noise_std), epochs=1)
    save_autoencoder(model, "models/conv")
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
from keras import layers, ops

from autoencoders import data, errors, fileio
from autoencoders.models import architectures, objectives
from autoencoders.models.variant import VariantConfig

SAVED_FILES = ("encoder.keras", "decoder.keras", "model.weights.h5", "config.json")
RETRAIN = "re-train the variant (dvc repro --force train@<variant>)"


def _tracker(name: str) -> keras.metrics.Mean:
    """A running mean of a per-batch loss, summed in float64.

    In float32, TensorFlow's graph optimizer folds ``total + (reconstruction + penalty)`` into
    one AddN whose order changes from process to process, so the same weights gave validation
    losses one ulp apart and a re-run changed history.json (seen on contractive). The cast to
    float64 ends that tree, and the sum of a few hundred batch means keeps its digits. JAX
    (without its x64 mode) has no float64 and XLA keeps the order: float32 there.
    """
    dtype = "float64" if keras.backend.backend() == "tensorflow" else "float32"
    return keras.metrics.Mean(name=name, dtype=dtype)


class Autoencoder(keras.Model):
    """Encoder + decoder trained on (input, target) batches; the loss is built in.

    Logged metrics: ``loss``, ``reconstruction_loss`` and, for sparse/contractive, ``penalty``.
    """

    # A subclass with its own clusters (IDEC) says so: the trainer then runs its second phase
    # (``fit_clusters``) and evaluation scores its assignments (``assign``) instead of k-means.
    owns_clusters: ClassVar[bool] = False

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        config: VariantConfig,
        image_shape: tuple[int, int, int],
        **kwargs: Any,
    ) -> None:
        super().__init__(name=kwargs.pop("name", "autoencoder"), **kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.config = config
        self.image_shape = tuple(int(size) for size in image_shape)
        self.code_shape = tuple(int(size) for size in encoder.output.shape[1:])
        self.latent_dim = math.prod(self.code_shape)
        self.loss_tracker = _tracker("loss")
        self.reconstruction_tracker = _tracker("reconstruction_loss")
        extra = objectives.lookup(config.objective_name).metric
        self.extra_tracker = _tracker(extra) if extra else None
        self.built = True  # every weight exists: the functional parts are built

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        # Listed here so that Keras resets them each epoch.
        trackers = [self.loss_tracker, self.reconstruction_tracker]
        return trackers + ([self.extra_tracker] if self.extra_tracker is not None else [])

    def compile(self, optimizer: Any = "adam", **kwargs: Any) -> None:
        """Compile with ``optimizer``; no loss argument, the objective's loss is built in."""
        if not objectives.lookup(self.config.objective_name).xla:
            # Keras auto-enables XLA on GPU; a nested tape (contractive's Jacobian) risks it.
            kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)

    def call(self, inputs: Any, training: bool = False) -> Any:
        """Deterministic reconstruction decoder(encoder(inputs)): (batch, H, W, C); uint8
        inputs are scaled to [0, 1] first (``data.scale_batch``)."""
        code = self.encoder(data.scale_batch(inputs), training=training)
        return self.decoder(code, training=training)

    def compute_losses(self, inputs: Any, targets: Any, training: bool = False) -> dict[str, Any]:
        """Scalar ``loss``, ``reconstruction_loss`` and the objective's extra term, if any."""
        objective = self.config.objective
        code, penalty = objective.code_and_penalty(self.encoder, inputs, training)
        outputs = self.decoder(code, training=training)
        reconstruction = objectives.reconstruction_loss(targets, outputs, objective.loss)
        values = {"loss": reconstruction, "reconstruction_loss": reconstruction}
        if penalty is not None:
            values["loss"] = reconstruction + penalty
            values["penalty"] = penalty
        return values

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """Keras' hook for every backend's train and test step: the objective's total loss,
        recomputed from ``x`` (``y_pred`` is unused); the loss trackers are updated here.
        uint8 batches (from shards) are scaled to [0, 1] here, inside the compiled step."""
        x = data.scale_batch(x)
        values = self.compute_losses(x, x if y is None else data.scale_batch(y), training=training)
        for tracker in self.metrics:
            tracker.update_state(values[tracker.name])
        return values["loss"]

    def _batched(self, function: Any, x: Any, batch_size: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), "
                f"got {x.shape}: preprocess them like the training data."
            )
        parts = [
            np.asarray(function(x[start : start + batch_size]))
            for start in range(0, len(x), batch_size)
        ]
        if not parts:
            return np.zeros((0,) + tuple(function(x[:1]).shape[1:]), dtype=np.float32)
        return np.concatenate(parts)

    def encode(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Deterministic codes (the VAE's mean) of images ``x`` (N, H, W, C): (N, *code_shape)."""
        return self._batched(lambda batch: self.encoder(batch, training=False), x, batch_size)

    def reconstruct(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """decoder(encoder(x)), deterministic, in batches: (N, H, W, C) in [0, 1]."""
        return self._batched(lambda batch: self(batch, training=False), x, batch_size)


class VariationalAutoencoder(Autoencoder):
    """A VAE: ``posterior`` gives [mean, log_var]; training decodes a reparameterised sample.

    ``encoder`` (exported) gives the mean. ``test_step`` decodes the mean, so validation losses
    are deterministic (early stopping and pruning compare like with like); ``kl_loss`` is the
    per-sample KL, and ``loss = reconstruction_loss + beta * kl_loss / (H * W * C)``.
    """

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        posterior: keras.Model,
        config: VariantConfig,
        image_shape: tuple[int, int, int],
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(encoder, decoder, config, image_shape, **kwargs)
        self.posterior = posterior
        self.seed_generator = keras.random.SeedGenerator(seed)

    def compute_losses(self, inputs: Any, targets: Any, training: bool = False) -> dict[str, Any]:
        mean, log_var = self.posterior(inputs, training=training)
        if training:
            noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
            latent = mean + ops.exp(0.5 * log_var) * noise
        else:
            latent = mean
        outputs = self.decoder(latent, training=training)
        reconstruction = objectives.reconstruction_loss(
            targets, outputs, self.config.objective.loss
        )
        kl_loss = ops.mean(objectives.kl_divergence(mean, log_var))
        pixels = float(math.prod(self.image_shape))
        loss = reconstruction + self.config.objective.beta * kl_loss / pixels
        return {"loss": loss, "reconstruction_loss": reconstruction, "kl_loss": kl_loss}


def build_autoencoder(
    config: VariantConfig, input_shape: tuple[int, int, int], seed: int | None = None
) -> Autoencoder:
    """A fresh, untrained autoencoder for ``config`` on images of ``input_shape`` (H, W, C).

    ``seed`` seeds the VAE's sampling (weights follow ``keras.utils.set_random_seed``).
    """
    builder = architectures.make_builder(config.architecture, input_shape)
    image_shape = builder.input_shape
    inputs = keras.Input(shape=image_shape, name="image")
    features = builder.trunk(inputs)
    if objectives.lookup(config.objective_name).variational:
        feature_shape = tuple(features.shape[1:])
        flat = (
            features if len(feature_shape) == 1 else layers.Flatten(name="flatten_code")(features)
        )
        latent_dim = builder.variational_latent_dim or math.prod(feature_shape)
        mean = layers.Dense(latent_dim, name="mean")(flat)  # (batch, latent_dim)
        log_var = layers.Dense(latent_dim, name="log_var")(flat)
        encoder = keras.Model(inputs, mean, name="encoder")
        posterior = keras.Model(inputs, [mean, log_var], name="posterior")
        code_input = keras.Input(shape=(latent_dim,), name="code")
        code = code_input
        if not builder.code_is_dense and len(feature_shape) > 1:
            code = layers.Reshape(feature_shape, name="unflatten_code")(code_input)
        decoder = keras.Model(code_input, builder.decode(code), name="decoder")
        return VariationalAutoencoder(encoder, decoder, posterior, config, image_shape, seed=seed)
    code = builder.code(features)
    encoder = keras.Model(inputs, code, name="encoder")
    code_input = keras.Input(shape=tuple(code.shape[1:]), name="code")
    decoder = keras.Model(code_input, builder.decode(code_input), name="decoder")
    model_class = MODEL_CLASSES.get(config.objective_name, Autoencoder)
    return model_class(encoder, decoder, config, image_shape)


# Objectives whose model adds parts beyond encoder and decoder (IDEC's cluster centres) register
# their Autoencoder subclass here; ``autoencoders.models`` imports them, so every caller sees them.
MODEL_CLASSES: dict[str, type[Autoencoder]] = {}


def register_model(objective: str) -> Any:
    """Class decorator: ``build_autoencoder`` builds this class for ``objective``."""

    def register(cls: type[Autoencoder]) -> type[Autoencoder]:
        MODEL_CLASSES[objective] = cls
        return cls

    return register


def parameter_count(model: Autoencoder) -> int:
    """Number of weights (encoder, decoder and, for a VAE, the log-variance head)."""
    return int(sum(math.prod(weight.shape) for weight in model.weights if weight.trainable))


def save_autoencoder(model: Autoencoder, directory: str | Path) -> None:
    """Write encoder.keras, decoder.keras, model.weights.h5 and config.json into ``directory``.

    Each file is written to a staging folder first and renamed into place; other files in
    ``directory`` (history.json, run.json, ...) are left alone.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving.", dir=directory))
    try:
        _save_keras(model.encoder, staging / "encoder.keras")
        _save_keras(model.decoder, staging / "decoder.keras")
        model.save_weights(staging / "model.weights.h5")
        fileio.write_json(
            staging / "config.json",
            {
                "name": model.config.name,
                "architecture": model.config.architecture_name,
                "objective": model.config.objective_name,
                "input_shape": list(model.image_shape),
                "code_shape": list(model.code_shape),
                "latent_dim": model.latent_dim,
                "parameter_count": parameter_count(model),
                "variant": model.config.to_params(),
                "keras_version": keras.__version__,
            },
        )
        for name in SAVED_FILES:
            os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save_keras(model: keras.Model, path: Path) -> None:
    """``model.save(path)``, byte-reproducible: Keras stamps the archive with the save time
    (``date_saved`` in metadata.json, the weights entry's zip date) and numbers objects shared
    between layers by their memory address, which would give the same model a new hash in
    dvc.lock on every run. The archive is rewritten without the stamps, the shared objects
    numbered in order of appearance."""
    raw = path.with_name(f"unstamped-{path.name}")
    model.save(raw)
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "metadata.json":
                metadata = json.loads(content)
                metadata.pop("date_saved", None)
                content = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                content = json.dumps(_renumber_shared_objects(json.loads(content), {})).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = info.compress_type
            entry.external_attr = info.external_attr
            target.writestr(entry, content)
    raw.unlink()


def _renumber_shared_objects(node: Any, numbers: dict[int, int]) -> Any:
    """A Keras config with every ``shared_object_id`` (an ``id()``) replaced by 0, 1, ... in
    order of first appearance: the same objects stay shared, the file is the same each run."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers))
            if key == "shared_object_id"
            else _renumber_shared_objects(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(value, numbers) for value in node]
    return node


def load_config(directory: str | Path) -> tuple[VariantConfig, tuple[int, int, int]]:
    """The VariantConfig and input shape saved in ``directory/config.json``."""
    path = Path(directory) / "config.json"
    payload = fileio.read_json(path)
    try:
        config = VariantConfig.from_params(payload["name"], payload["variant"])
        return config, tuple(int(size) for size in payload["input_shape"])
    except (KeyError, TypeError, ValueError) as error:
        raise errors.corrupt(path, error, RETRAIN) from None


def load_autoencoder(directory: str | Path) -> Autoencoder:
    """Rebuild the autoencoder saved by ``save_autoencoder`` and load its weights."""
    directory = Path(directory)
    missing = [name for name in SAVED_FILES if not (directory / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{directory} lacks {missing}: train the variant first (dvc repro train@<variant>)."
        )
    config, input_shape = load_config(directory)
    model = build_autoencoder(config, input_shape)
    weights = directory / "model.weights.h5"
    try:
        model.load_weights(weights)
    except (OSError, ValueError, KeyError) as error:  # truncated HDF5, other shapes or layers
        raise errors.corrupt(weights, error, RETRAIN) from None
    return model
