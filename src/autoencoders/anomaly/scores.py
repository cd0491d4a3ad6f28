"""Per-image anomaly scores from an autoencoder's outputs; higher means more anomalous.

Every score reads numpy arrays (images, reconstructions, codes and, for a VAE, the posterior's
log-variance), so the same functions score the outputs of Keras or of ONNX Runtime; nothing here
imports TensorFlow. Labels are never used to fit anything.

- ``reconstruction_error``: the variant's reconstruction loss (``mse`` or ``bce`` per pixel, as
  in ``models.objectives.reconstruction_loss``, BCE clipped at the same 1e-7) summed over the
  pixels of each image instead of averaged over the batch, so that one image's score does not
  depend on the others.
- ``ssim_error``: 1 - SSIM of each image and its reconstruction (``evaluation.image_quality``).
- ``local_map`` / ``local_error``: the squared error averaged over the channels and smoothed
  by a Gaussian of ``sigma`` pixels (truncated at 3 sigma, each row of the filter renormalised
  at the borders), and its maximum per image: a local defect that the sums over the whole
  image hide under the texture's error everywhere else stands out in the maximum.
- ``negative_elbo``: the VAE's reconstruction sum plus ``beta`` x KL(q(z|x) || N(0, I)), the
  per-image form of its training loss (which is this divided by the pixel count). The
  likelihood term is read at the mean code (the exported, deterministic path), not sampled.

The latent-density scores are in ``densities``, their combination in ``score_model``.
``keras_outputs`` and ``onnx_outputs`` collect a ``ScoreInputs`` from either runtime::

    inputs = keras_outputs(model, x_val)    # or onnx_outputs(Encoder(path), Decoder(path), x)
    errors = reconstruction_error(inputs.images, inputs.reconstructions, loss="bce")  # (N,)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from autoencoders.anomaly.checks import AnomalyConfigError, AnomalyInputError
from autoencoders.anomaly.densities import check_codes
from autoencoders.evaluation import image_quality


def check_pair(images: Any, reconstructions: Any) -> tuple[np.ndarray, np.ndarray]:
    """Images and reconstructions as finite float64 (N, H, W, C) arrays of one shape."""
    arrays = []
    for name, value in (("images", images), ("reconstructions", reconstructions)):
        array = np.asarray(value, dtype=np.float64)
        if array.ndim != 4 or len(array) == 0:
            raise AnomalyInputError(
                f"{name} must be a non-empty batch (N, H, W, C), got shape {array.shape}: add "
                "a channel axis with x[..., None] for grey images."
            )
        if not np.all(np.isfinite(array)):
            raise AnomalyInputError(
                f"{name} contain NaN or infinite values: the model diverged or an input was "
                "not finite; retrain it or drop those images."
            )
        arrays.append(array)
    if arrays[0].shape != arrays[1].shape:
        raise AnomalyInputError(
            f"images have shape {arrays[0].shape} but reconstructions {arrays[1].shape}: pass "
            "the model's reconstruction of exactly these images."
        )
    return arrays[0], arrays[1]


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreInputs:
    """What the scores read: images (N, H, W, C) in [0, 1], their reconstructions (same shape),
    codes (N, *code_shape; a VAE's mean, kept flat as (N, D)) and, for the negative ELBO, the
    posterior's log-variance (N, D). Checked once here, so every score can trust them."""

    images: np.ndarray
    reconstructions: np.ndarray
    codes: np.ndarray
    log_var: np.ndarray | None = None

    def __post_init__(self) -> None:
        images, reconstructions = check_pair(self.images, self.reconstructions)
        codes = check_codes(self.codes)
        log_var = None if self.log_var is None else check_codes(self.log_var, name="log_var")
        if log_var is not None and log_var.shape != codes.shape:
            raise AnomalyInputError(
                f"log_var has shape {log_var.shape} but the codes (the means) {codes.shape}: "
                "pass the posterior's two outputs for the same images."
            )
        if len(codes) != len(images):
            raise AnomalyInputError(
                f"{len(images)} images but {len(codes)} codes: pass the model's outputs for "
                "exactly these images."
            )
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "reconstructions", reconstructions)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "log_var", log_var)

    def __len__(self) -> int:
        return len(self.images)


def _squared_error(targets: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    return np.square(targets - outputs)


def _binary_cross_entropy(targets: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    # Clipped like the training loss (Keras's epsilon), so a saturated pixel stays finite.
    epsilon = image_quality.BCE_EPSILON
    probabilities = np.clip(outputs, epsilon, 1.0 - epsilon)
    return -(targets * np.log(probabilities) + (1.0 - targets) * np.log(1.0 - probabilities))


PIXEL_LOSSES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mse": _squared_error,
    "bce": _binary_cross_entropy,
}


def check_loss(loss: Any) -> str:
    """``loss`` if it names a pixel loss, else AnomalyConfigError listing the valid ones."""
    if loss not in PIXEL_LOSSES:
        raise AnomalyConfigError(
            f"unknown loss {loss!r}; valid losses are {sorted(PIXEL_LOSSES)} (the variant's "
            "objective.loss)."
        )
    return loss


def reconstruction_error(images: Any, reconstructions: Any, loss: str = "bce") -> np.ndarray:
    """The per-pixel ``loss`` summed over each image's pixels: (N,) float64."""
    function = PIXEL_LOSSES[check_loss(loss)]
    images, reconstructions = check_pair(images, reconstructions)
    per_pixel = function(images, reconstructions)
    return per_pixel.reshape(len(per_pixel), -1).sum(axis=1)


def ssim_error(images: Any, reconstructions: Any) -> np.ndarray:
    """1 - SSIM of each image and its reconstruction: (N,), 0 for a perfect copy."""
    images, reconstructions = check_pair(images, reconstructions)
    return 1.0 - image_quality.ssim_per_image(images, reconstructions)


def smoothing_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size): row i holds a Gaussian of ``sigma`` centred at i, truncated at
    ceil(3 sigma) and at the borders, renormalised to sum to 1; ``M @ x @ M'.T`` smooths the
    rows and columns of x with "same" output and no dark border. sigma 0 is the identity."""
    if sigma == 0:
        return np.eye(size)
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = np.arange(size)[None, :] - np.arange(size)[:, None]
    weights = np.where(np.abs(offsets) <= radius, np.exp(-0.5 * (offsets / sigma) ** 2), 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def local_map(images: Any, reconstructions: Any, sigma: float = 2.0) -> np.ndarray:
    """The channel-mean squared error smoothed by a Gaussian of ``sigma`` pixels:
    (N, H, W, 1) float64."""
    images, reconstructions = check_pair(images, reconstructions)
    squared = np.mean(np.square(images - reconstructions), axis=3)  # (N, H, W)
    _, height, width = squared.shape
    rows, columns = smoothing_matrix(height, sigma), smoothing_matrix(width, sigma)
    return (rows @ squared @ columns.T)[..., None]


def local_error(images: Any, reconstructions: Any, sigma: float = 2.0) -> np.ndarray:
    """The maximum of each image's ``local_map``: (N,)."""
    maps = local_map(images, reconstructions, sigma)
    return maps.reshape(len(maps), -1).max(axis=1)


def kl_divergence(mean: Any, log_var: Any) -> np.ndarray:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, summed over latent dims: (N,)."""
    mean, log_var = check_codes(mean, name="mean"), check_codes(log_var, name="log_var")
    if mean.shape != log_var.shape:
        raise AnomalyInputError(
            f"mean {mean.shape} and log_var {log_var.shape} differ: pass the posterior's outputs."
        )
    return -0.5 * np.sum(1.0 + log_var - np.square(mean) - np.exp(log_var), axis=1)


def negative_elbo(
    images: Any,
    reconstructions: Any,
    mean: Any,
    log_var: Any,
    loss: str = "bce",
    beta: float = 1.0,
) -> np.ndarray:
    """Reconstruction sum plus ``beta`` x KL per image (N,); ``beta`` 1 is the true bound."""
    inputs = ScoreInputs(images, reconstructions, mean, log_var)
    reconstruction = reconstruction_error(inputs.images, inputs.reconstructions, loss)
    return reconstruction + beta * kl_divergence(inputs.codes, inputs.log_var)


def keras_outputs(model: Any, images: Any, batch_size: int = 256) -> ScoreInputs:
    """Run a Keras ``Autoencoder`` on ``images`` in batches: codes, reconstructions (the
    decoder of those codes, as ``model.reconstruct`` computes them, without encoding twice)
    and, for a ``VariationalAutoencoder`` (the one with a ``posterior``), the log-variance."""
    images = np.asarray(images, dtype=np.float32)
    codes = model.encode(images, batch_size=batch_size)
    reconstructions = np.concatenate(
        [
            np.asarray(model.decoder(codes[start : start + batch_size], training=False))
            for start in range(0, len(codes), batch_size)
        ]
    )
    log_var = None
    posterior = getattr(model, "posterior", None)
    if posterior is not None:
        log_var = np.concatenate(
            [
                np.asarray(posterior(images[start : start + batch_size], training=False)[1])
                for start in range(0, len(images), batch_size)
            ]
        )
    return ScoreInputs(images, reconstructions, codes, log_var)


def onnx_outputs(encoder: Any, decoder: Any, images: Any) -> ScoreInputs:
    """Codes and reconstructions from ``inference.Encoder`` and ``Decoder``. No log-variance:
    the exported encoder gives the mean only. uint8 images are divided by 255, as they are."""
    array = np.asarray(images)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / np.float32(255.0)
    codes = encoder.encode(array)
    reconstructions = decoder.decode(codes)
    if array.size != reconstructions.size or len(array) != len(reconstructions):
        raise AnomalyInputError(
            f"images of shape {array.shape} do not match the decoder's {reconstructions.shape}: "
            "pass a batch of images (N, H, W, C)."
        )
    return ScoreInputs(array.reshape(reconstructions.shape), reconstructions, codes)


__all__ = [
    "PIXEL_LOSSES",
    "ScoreInputs",
    "check_loss",
    "check_pair",
    "keras_outputs",
    "kl_divergence",
    "local_error",
    "local_map",
    "negative_elbo",
    "onnx_outputs",
    "reconstruction_error",
    "smoothing_matrix",
    "ssim_error",
]
