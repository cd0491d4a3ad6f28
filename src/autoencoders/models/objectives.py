"""Objective registry: typed configs, reconstruction losses and the objectives' penalties.

Every objective has ``loss: mse | bce`` (per pixel, averaged over pixels and the batch).
- ``plain``: reconstruction only.
- ``denoising``: reconstruction of the clean image from a noisy one; the noise is made by the
  input pipeline (``data.make_dataset(noise_std=...)``), so the model itself is plain.
- ``sparse``: ``weight`` times an L1 activity penalty on the code (sum over units, mean over the
  batch), or KL sparsity towards ``target`` (``kind: kl``; needs a code in (0, 1)).
- ``contractive``: ``lambda`` times the squared Frobenius norm of d code / d input, mean over the
  batch. The params key is ``lambda``; the dataclass field is ``lambda_`` (a Python keyword).
- ``variational``: KL(q(z|x) || N(0, I)) summed over latent dims, mean over the batch, weighted by
  ``beta``. In the total loss it is divided by the pixel count, so that with the per-pixel
  reconstruction loss the optimum equals that of the usual per-image sum (keras-io VAE example).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import tensorflow as tf
from keras import ops

from autoencoders.config import ConfigError, registered_name
from autoencoders.config import lookup as config_lookup

LossName = Literal["mse", "bce"]
_EPSILON = 1e-7


class _CodeTerm:
    """What an objective adds on the code: none by default (plain, denoising, variational,
    clustering: their extra terms live in their own model classes)."""

    def code_and_penalty(self, encoder: Any, inputs: Any, training: bool) -> tuple[Any, Any]:
        """The code of ``inputs`` and the objective's penalty on it (None: no penalty)."""
        return encoder(inputs, training=training), None


@dataclasses.dataclass(frozen=True)
class PlainConfig(_CodeTerm):
    """Reconstruction loss only."""

    loss: LossName = "bce"


@dataclasses.dataclass(frozen=True)
class DenoisingConfig(_CodeTerm):
    """Gaussian input noise (std ``noise_std``, clipped to [0, 1]) made by the input pipeline."""

    loss: LossName = "bce"
    noise_std: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise_std <= 1.0:
            raise ConfigError(f"objective.noise_std must be in [0, 1], got {self.noise_std}.")


@dataclasses.dataclass(frozen=True)
class SparseConfig:
    """L1 activity penalty on the code, or KL sparsity towards ``target`` mean activation."""

    loss: LossName = "bce"
    kind: Literal["l1", "kl"] = "l1"
    weight: float = 1e-5
    target: float = 0.05

    def code_and_penalty(self, encoder: Any, inputs: Any, training: bool) -> tuple[Any, Any]:
        code = encoder(inputs, training=training)
        return code, sparse_penalty(code, kind=self.kind, weight=self.weight, target=self.target)

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ConfigError(f"objective.weight must be >= 0, got {self.weight}.")
        if not 0.0 < self.target < 1.0:
            raise ConfigError(f"objective.target must be in (0, 1), got {self.target}.")


@dataclasses.dataclass(frozen=True)
class ContractiveConfig:
    """Squared Frobenius norm of the encoder Jacobian times ``lambda`` (field ``lambda_``)."""

    loss: LossName = "bce"
    lambda_: float = dataclasses.field(default=1e-4, metadata={"key": "lambda"})

    def code_and_penalty(self, encoder: Any, inputs: Any, training: bool) -> tuple[Any, Any]:
        code, squared_norm = code_and_jacobian_norm(encoder, inputs, training=training)
        return code, self.lambda_ * ops.mean(squared_norm)

    def __post_init__(self) -> None:
        if self.lambda_ < 0:
            raise ConfigError(f"objective.lambda must be >= 0, got {self.lambda_}.")


@dataclasses.dataclass(frozen=True)
class VariationalConfig(_CodeTerm):
    """Mean/log-variance heads, reparameterised sampling, ``beta`` times the KL."""

    loss: LossName = "bce"
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ConfigError(f"objective.beta must be >= 0, got {self.beta}.")


@dataclasses.dataclass(frozen=True)
class ClusteringConfig(_CodeTerm):
    """IDEC: reconstruction + ``gamma`` x KL(P || Q) after a plain pretraining (models/idec.py)."""

    loss: LossName = "bce"
    n_clusters: int = 10
    gamma: float = 0.1
    alpha: float = 1.0
    update_interval: int = 140  # batches between target-distribution refreshes
    tol: float = 0.001  # stop when fewer than this share of assignments change
    max_iterations: int = 2000  # clustering-phase batches at most
    init: Literal["kmeans", "manifold"] = "kmeans"  # initial centres (see models/idec.py)
    init_subsample: int = 10000  # init: manifold: images whose codes the N2D head partitions
    kmeans_n_init: int = 20  # init: kmeans: seeded k-means restarts that place the centres
    # init: manifold: the head's Gaussian-mixture restarts, best likelihood kept (one restart
    # can merge two digits).
    manifold_n_init: int = 10
    cluster_learning_rate: float = 1.0e-3  # Adam, clustering phase
    # Clustering-phase batches moved by a random shift (share of the image size) and rotation
    # (degrees) as in DEC-DA (Guo et al. 2018: 0.1, 10); P still comes from the clean images.
    augment_shift: float = 0.0
    augment_rotation: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "n_clusters": self.n_clusters >= 2,
            "gamma": self.gamma >= 0,
            "alpha": self.alpha > 0,
            "update_interval": self.update_interval >= 1,
            "tol": 0.0 <= self.tol < 1.0,
            "max_iterations": self.max_iterations >= 0,
            "kmeans_n_init": self.kmeans_n_init >= 1,
            "manifold_n_init": self.manifold_n_init >= 1,
            "init_subsample": self.init_subsample >= self.n_clusters,
            "cluster_learning_rate": self.cluster_learning_rate > 0,
            "augment_shift": 0.0 <= self.augment_shift < 0.5,
            "augment_rotation": 0.0 <= self.augment_rotation <= 180.0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"objective.{key} is out of range: {getattr(self, key)!r}.")


class Objective(NamedTuple):
    """A registered objective: its config and what the rest of the code asks of it."""

    config_class: type
    metric: str | None  # name of the logged extra metric: "penalty", "kl_loss" or none
    variational: bool = False  # an encoder with mean and log-variance heads (models, export)
    tensorflow_only: bool = False  # uses TensorFlow itself: refused on the JAX trainer
    xla: bool = True  # False: Keras must not auto-compile its step with XLA (nested tapes)


OBJECTIVES: dict[str, Objective] = {
    "plain": Objective(PlainConfig, None),
    "denoising": Objective(DenoisingConfig, None),
    "sparse": Objective(SparseConfig, "penalty"),
    "contractive": Objective(ContractiveConfig, "penalty", tensorflow_only=True, xla=False),
    "variational": Objective(VariationalConfig, "kl_loss", variational=True),
    "clustering": Objective(ClusteringConfig, None, tensorflow_only=True),
}


def objective_name(config: Any) -> str:
    """The registry name of an objective config instance."""
    return registered_name(OBJECTIVES, config, "objective")


def lookup(name: Any) -> Objective:
    """The registry entry for ``name``; an unknown name raises ConfigError listing the valid."""
    return config_lookup(OBJECTIVES, name, "objective")


def reconstruction_loss(targets: Any, outputs: Any, loss: str) -> Any:
    """Per-pixel ``mse`` or ``bce`` averaged over pixels and the batch (a scalar)."""
    # Flat (batch, pixels): XLA on the CPU runs (batch, H, W, 1) elementwise ops with a size-1
    # minor dimension far slower (docs/performance.md).
    outputs = ops.reshape(outputs, (ops.shape(outputs)[0], -1))
    targets = ops.reshape(ops.cast(targets, outputs.dtype), ops.shape(outputs))
    if loss == "mse":
        per_pixel = ops.square(targets - outputs)
    elif loss == "bce":
        probabilities = ops.clip(outputs, _EPSILON, 1.0 - _EPSILON)
        per_pixel = -(
            targets * ops.log(probabilities) + (1.0 - targets) * ops.log(1.0 - probabilities)
        )
    else:
        raise ConfigError(f"unknown loss {loss!r}; valid losses are ['bce', 'mse'].")
    return ops.mean(per_pixel)


def kl_divergence(mean: Any, log_var: Any) -> Any:
    """KL(N(mean, exp(log_var)) || N(0, I)) per sample, summed over latent dims: (batch,)."""
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)


def sparse_penalty(code: Any, kind: str = "l1", weight: float = 1e-5, target: float = 0.05) -> Any:
    """``weight`` times the L1 activity (sum over code units, mean over the batch), or times the
    KL sparsity sum_j KL(target || mean activation of unit j over the batch)."""
    flat = ops.reshape(code, (ops.shape(code)[0], -1))
    if kind == "l1":
        return weight * ops.mean(ops.sum(ops.abs(flat), axis=-1))
    if kind == "kl":
        activation = ops.clip(ops.mean(flat, axis=0), _EPSILON, 1.0 - _EPSILON)
        divergence = target * ops.log(target / activation) + (1.0 - target) * ops.log(
            (1.0 - target) / (1.0 - activation)
        )
        return weight * ops.sum(divergence)
    raise ConfigError(f"unknown sparsity kind {kind!r}; valid kinds are ['kl', 'l1'].")


def code_and_jacobian_norm(encoder: Any, inputs: Any, training: bool = False) -> tuple[Any, Any]:
    """The code and the squared Frobenius norm of d code / d input per sample: (batch,).

    Differentiable with respect to the encoder's weights when called under an outer tape. An
    encoder that is Flatten -> Dense (the contractive variant's) gets the closed form of Rifai et
    al. (2011), the same numbers as the autodiff Jacobian at the cost of one extra elementwise
    gradient instead of one backward pass per code unit.
    """
    inputs = tf.convert_to_tensor(inputs, dtype=tf.float32)
    dense = _single_dense_layer(encoder)
    if dense is not None:
        return _dense_code_and_jacobian_norm(dense, inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        code = encoder(inputs, training=training)
        flat = tf.reshape(code, (tf.shape(code)[0], -1))  # (batch, latent)
    jacobian = tape.batch_jacobian(flat, inputs)  # (batch, latent, H, W, C)
    squared_norm = tf.reduce_sum(tf.square(jacobian), axis=tf.range(1, tf.rank(jacobian)))
    return code, squared_norm


def _single_dense_layer(encoder: Any) -> Any:
    """The encoder's Dense layer when the encoder is exactly Flatten -> Dense, else None."""
    import keras

    computing = [
        layer for layer in encoder.layers if not isinstance(layer, keras.layers.InputLayer)
    ]
    if (
        len(computing) == 2
        and isinstance(computing[0], keras.layers.Flatten)
        and type(computing[1]) is keras.layers.Dense
    ):
        return computing[1]
    return None


def _dense_code_and_jacobian_norm(dense: Any, inputs: Any) -> tuple[Any, Any]:
    """h = f(x W + b) with f elementwise: J = diag(f'(a)) W^T, so ||J||_F^2 = sum_j f'(a_j)^2
    ||W_:j||^2. f'(a) is the gradient of sum(f(a)) with respect to a (f acts elementwise)."""
    flat = tf.reshape(inputs, (tf.shape(inputs)[0], -1))
    pre_activation = tf.matmul(flat, dense.kernel)
    if dense.use_bias:
        pre_activation = pre_activation + dense.bias
    with tf.GradientTape() as tape:
        tape.watch(pre_activation)
        code = dense.activation(pre_activation)
    slope = tape.gradient(code, pre_activation)  # f'(a), (batch, latent)
    column_norms = tf.reduce_sum(tf.square(dense.kernel), axis=0)  # ||W_:j||^2, (latent,)
    return code, tf.reduce_sum(tf.square(slope) * column_norms, axis=1)


def contractive_penalty(encoder: Any, inputs: Any, weight: float = 1e-4) -> Any:
    """``weight`` times the batch mean of ||d encoder(x) / dx||_F^2 (a scalar)."""
    _, squared_norm = code_and_jacobian_norm(encoder, inputs)
    return weight * tf.reduce_mean(squared_norm)


__all__ = [
    "OBJECTIVES",
    "ClusteringConfig",
    "ContractiveConfig",
    "DenoisingConfig",
    "PlainConfig",
    "SparseConfig",
    "VariationalConfig",
    "code_and_jacobian_norm",
    "contractive_penalty",
    "kl_divergence",
    "lookup",
    "objective_name",
    "reconstruction_loss",
    "sparse_penalty",
]
