"""scorer.onnx: images -> anomaly ``score`` (N,), ``anomaly_map`` (N, H, W, C) and ``local_map``
(N, H, W, 1), one graph.

``ScorerGraph(autoencoder, score_model)`` is the fitted ``anomaly.ScoreModel`` written as a
TensorFlow computation: the encoder (a VAE's posterior when the ELBO is scored), the decoder,
the variant's per-pixel loss, each score of ``score_model.config.scores`` from the fitted
parameters held as constants, their standardisation and the sum. After the model's float32
outputs everything runs in float64, as the numpy library does, so the two differ only by what
ONNX Runtime and Keras differ by. ``anomaly_map`` is the per-pixel loss (float32): its sum over an
image is the ``reconstruction`` score before standardisation. ``local_map`` is the smoothed
squared error (``scores.local_map``) whose maximum is the ``local_error`` score; the stage
thresholds its pixels on the normal validation images (the card's ``pixel_threshold``).

``scorer_parity`` is the gate: ONNX Runtime's scores against the same graph in TensorFlow and
against ``ScoreModel.score`` on Keras' outputs, its maps against TensorFlow's. ``convert_scorer``
converts and gates the graph (the ``anomaly@V`` stage, ``anomaly.stage``, thresholds it and
stamps the threshold with ``scorer_metadata``); ``onnx_scores`` runs a scorer.onnx.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import anomaly, data, fileio
from autoencoders.anomaly.fitting import unsupported
from autoencoders.evaluation import image_quality
from autoencoders.export import card, convert

SCORER_FILE = "scorer.onnx"
SCORE_MODEL_FILE = "score_model.json"
SCORE_OUTPUT = "score"
MAP_OUTPUT = "anomaly_map"
LOCAL_MAP_OUTPUT = "local_map"


def _pixel_loss(loss: str) -> Callable[[Any, Any], Any]:
    import tensorflow as tf

    epsilon = image_quality.BCE_EPSILON

    def bce(images: Any, reconstructions: Any) -> Any:
        probabilities = tf.clip_by_value(reconstructions, epsilon, 1.0 - epsilon)
        return -(
            images * tf.math.log(probabilities) + (1.0 - images) * tf.math.log(1.0 - probabilities)
        )

    losses = {"mse": lambda images, outputs: tf.square(images - outputs), "bce": bce}
    return losses[anomaly.scores.check_loss(loss)]


def _band(size: int, window: np.ndarray) -> np.ndarray:
    """(size - len(window) + 1, size): row i holds the window at columns i .. i + len - 1, so
    a product with it is the valid part of a correlation (the numpy SSIM's cropped filter)."""
    rows = size - len(window) + 1
    band = np.zeros((rows, size))
    for row in range(rows):
        band[row, row : row + len(window)] = window
    return band


class ScorerGraph:
    """``__call__(images float32 (N, H, W, C)) -> {"score": (N,), "anomaly_map": (N, H, W, C)}``
    as TensorFlow ops, from the autoencoder's Keras parts and a fitted ScoreModel."""

    def __init__(self, autoencoder: Any, score_model: anomaly.ScoreModel) -> None:
        reason = unsupported(autoencoder, score_model.config.scores)
        if reason is not None:
            raise anomaly.AnomalyConfigError(f"no scorer: {reason}.")
        self.autoencoder = autoencoder
        self.model = score_model
        self.pixel_loss = _pixel_loss(score_model.config.loss)
        self.components: dict[str, Callable[[dict[str, Any]], Any]] = {
            "reconstruction": lambda parts: parts["reconstruction"],
            "ssim": self._ssim_error,
            "local_error": lambda parts: tf_max_per_image(parts["local_map"]),
            "elbo": self._elbo,
            "density": self._density,
            "mahalanobis": self._mahalanobis,
        }

    def __call__(self, images: Any) -> dict[str, Any]:
        import tensorflow as tf

        if "elbo" in self.model.config.scores:
            codes, log_var = self.autoencoder.posterior(images, training=False)
        else:
            codes, log_var = self.autoencoder.encoder(images, training=False), None
        reconstructions = self.autoencoder.decoder(codes, training=False)
        x, r = tf.cast(images, tf.float64), tf.cast(reconstructions, tf.float64)
        per_pixel = self.pixel_loss(x, r)  # (N, H, W, C)
        flat = tf.reshape(tf.cast(codes, tf.float64), (-1, math.prod(codes.shape[1:])))
        parts = {
            "images": x,
            "reconstructions": r,
            "reconstruction": tf.reduce_sum(per_pixel, axis=[1, 2, 3]),
            "codes": flat,
            "log_var": None if log_var is None else tf.cast(log_var, tf.float64),
            "local_map": self._local_map(x, r),
        }
        score = None
        for name, standardisation in self.model.standardisation.items():
            value = (self.components[name](parts) - standardisation.location) / (
                standardisation.scale
            )
            score = value if score is None else score + value
        return {
            SCORE_OUTPUT: tf.cast(score, tf.float32),
            MAP_OUTPUT: tf.cast(per_pixel, tf.float32),
            LOCAL_MAP_OUTPUT: tf.cast(parts["local_map"], tf.float32),
        }

    def _local_map(self, x: Any, r: Any) -> Any:
        import tensorflow as tf

        _, height, width, _ = x.shape
        sigma = self.model.config.local_sigma
        rows = tf.constant(anomaly.scores.smoothing_matrix(height, sigma))  # (H, H)
        columns = tf.constant(anomaly.scores.smoothing_matrix(width, sigma))  # (W, W)
        squared = tf.reduce_mean(tf.square(x - r), axis=3)  # (N, H, W)
        # Broadcast products, as the SSIM's smoothing (tensordot converts wrongly, see there).
        smoothed = tf.matmul(tf.matmul(rows, squared), columns, transpose_b=True)
        return smoothed[..., None]  # (N, H, W, 1)

    def _ssim_error(self, parts: dict[str, Any]) -> Any:
        import tensorflow as tf

        a, b = parts["images"], parts["reconstructions"]
        _, height, width, _ = a.shape
        size = image_quality.ssim_window_size(height, width)
        window = image_quality.gaussian_window(size, image_quality.SSIM_SIGMA)
        rows = tf.constant(_band(height, window))  # (H - 2r, H)
        columns = tf.constant(_band(width, window))  # (W - 2r, W)

        def smooth(images: Any) -> Any:
            # One layout transpose and broadcast products: tensordot's reshapes and transposes
            # around a conv decoder's output were rewritten wrongly by tf2onnx (SSIM off by up
            # to 0.96 standardised units on deep_conv, tests/test_one_class.py), and an Einsum
            # converts to other bytes each time.
            planes = tf.transpose(images, [0, 3, 1, 2])  # (N, C, H, W)
            return tf.matmul(tf.matmul(rows, planes), columns, transpose_b=True)

        c1, c2 = image_quality.SSIM_K1**2, image_quality.SSIM_K2**2
        mean_a, mean_b = smooth(a), smooth(b)
        var_a = smooth(a * a) - mean_a**2
        var_b = smooth(b * b) - mean_b**2
        covariance = smooth(a * b) - mean_a * mean_b
        numerator = (2 * mean_a * mean_b + c1) * (2 * covariance + c2)
        denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
        return 1.0 - tf.reduce_mean(numerator / denominator, axis=[1, 2, 3])

    def _elbo(self, parts: dict[str, Any]) -> Any:
        import tensorflow as tf

        mean, log_var = parts["codes"], tf.reshape(parts["log_var"], tf.shape(parts["codes"]))
        kl = -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mean) - tf.exp(log_var), axis=1)
        return parts["reconstruction"] + self.model.config.beta * kl

    def _density(self, parts: dict[str, Any]) -> Any:
        import tensorflow as tf

        mixture = self.model.mixture
        count, dimension = mixture.means.shape
        cholesky = mixture.precisions_cholesky  # (K, D, D)
        # (x - mu_k) L_k = x L_k - mu_k L_k: one product with every L_k side by side.
        stacked = tf.constant(np.concatenate(list(cholesky), axis=1))  # (D, K * D)
        offsets = tf.constant(np.einsum("kd,kde->ke", mixture.means, cholesky))  # (K, D)
        log_norm = (
            np.log(mixture.weights)
            + np.sum(np.log(np.diagonal(cholesky, axis1=1, axis2=2)), axis=1)
            - 0.5 * dimension * math.log(2.0 * math.pi)
        )
        whitened = tf.reshape(parts["codes"] @ stacked, (-1, count, dimension)) - offsets
        per_component = tf.constant(log_norm) - 0.5 * tf.reduce_sum(tf.square(whitened), axis=2)
        top = tf.reduce_max(per_component, axis=1, keepdims=True)  # log-sum-exp, no overflow
        total = tf.reduce_sum(tf.exp(per_component - top), axis=1, keepdims=True)
        return -(top + tf.math.log(total))[:, 0]

    def _mahalanobis(self, parts: dict[str, Any]) -> Any:
        import tensorflow as tf

        gaussian = self.model.gaussian
        centred = parts["codes"] - tf.constant(gaussian.location)
        return tf.reduce_sum((centred @ tf.constant(gaussian.precision)) * centred, axis=1)


def tf_max_per_image(maps: Any) -> Any:
    """(N, ...) -> (N,): each image's maximum."""
    import tensorflow as tf

    return tf.reduce_max(tf.reshape(maps, (tf.shape(maps)[0], -1)), axis=1)


def score_tolerance(tolerance: float, terms: int) -> float:
    """The gate on scores: ``tolerance`` per summed term, grown as sqrt(terms) like the
    rounding of a sum of independent terms (a score sums every pixel's loss and the code)."""
    return tolerance * math.sqrt(max(1, terms))


def _difference(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """max |actual - expected|, and the same divided by max(1, max |expected|); for maps the
    second is taken on the per-image sums (see ``scorer_parity``)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    difference = float(np.max(np.abs(actual - expected)))
    if actual.ndim > 1:
        actual, expected = (part.reshape(len(part), -1).sum(axis=1) for part in (actual, expected))
    summed = float(np.max(np.abs(actual - expected)))
    return difference, summed / max(1.0, float(np.max(np.abs(expected))))


def scorer_parity(
    onnx_path: str | Path, graph: ScorerGraph, images: np.ndarray, batch_sizes: Sequence[int]
) -> dict[str, Any]:
    """ONNX Runtime's score and map against the graph in TensorFlow, and its score against
    ``ScoreModel.score`` of Keras' outputs, at each batch size. ``scaled_diff`` divides by
    max(1, max |reference|) as ``convert.parity`` does; for the map it is taken on each image's
    sum (its reconstruction score): one pixel's BCE moves by |dp| / p where the reconstruction
    p is near 0 or 1, so a per-pixel figure would fail where the decoder passed its own gate."""
    import onnxruntime as ort
    import tensorflow as tf

    session = ort.InferenceSession(str(onnx_path), providers=[convert.PARITY_PROVIDER])
    figures: dict[str, dict[str, Any]] = {
        key: {"max_abs_diff": 0.0, "scaled_diff": 0.0, "by_batch_size": {}}
        for key in ("keras", "score_model", "anomaly_map", "local_map")
    }
    for size in batch_sizes:
        batch = convert.cycle(np.asarray(images, dtype=np.float32), size)
        score, anomaly_map, local = session.run(
            [SCORE_OUTPUT, MAP_OUTPUT, LOCAL_MAP_OUTPUT], {convert.ENCODER_INPUT: batch}
        )
        expected = graph(tf.constant(batch))
        reference = graph.model.score(anomaly.keras_outputs(graph.autoencoder, batch))
        for key, actual, wanted in (
            ("keras", score, np.asarray(expected[SCORE_OUTPUT])),
            ("score_model", score, reference),
            ("anomaly_map", anomaly_map, np.asarray(expected[MAP_OUTPUT])),
            ("local_map", local, np.asarray(expected[LOCAL_MAP_OUTPUT])),
        ):
            if np.shape(actual) != np.shape(wanted):
                raise convert.ParityError(
                    f"scorer {key}: ONNX output shape {np.shape(actual)} != "
                    f"{np.shape(wanted)} at batch size {size}."
                )
            difference, scaled = _difference(actual, wanted)
            entry = figures[key]
            entry["by_batch_size"][str(size)] = difference
            entry["max_abs_diff"] = max(entry["max_abs_diff"], difference)
            entry["scaled_diff"] = max(entry["scaled_diff"], scaled)
    return figures


def convert_scorer(
    graph: ScorerGraph,
    path: Path,
    common: dict[str, Any],
    config: convert.ExportConfig,
    parity_images: np.ndarray,
) -> tuple[Any, dict[str, Any]]:
    """Convert ``graph`` to ``path`` (canonical, as the export's models) and gate it with
    ``scorer_parity`` on ``parity_images``; (the ModelProto, the card's parity figures).
    A difference above ``score_tolerance`` raises ``convert.ParityError``."""
    import onnx

    dims = list(common["image_shape"])
    proto = convert.convert_function(
        graph,
        input_name=convert.ENCODER_INPUT,
        input_dims=dims,
        opset=common["opset"],
        name=f"the {common['variant']} anomaly scorer",
    )
    onnx.save_model(proto, str(path))
    images = parity_images[: max(config.parity_batch_sizes)]
    figures = scorer_parity(path, graph, images, config.parity_batch_sizes)
    terms = int(np.prod(common["image_shape"])) + int(common["latent_dim"])
    allowed = score_tolerance(config.tolerance, terms)
    against = {
        "keras": "the score of the TensorFlow graph",
        "score_model": "ScoreModel.score on Keras' outputs",
        "anomaly_map": "the TensorFlow graph's map (per-image sums)",
        "local_map": "the TensorFlow graph's local map (per-image sums)",
    }
    for key, what in against.items():
        if figures[key]["scaled_diff"] > allowed:
            raise convert.ParityError(
                f"{common['variant']} scorer: ONNX Runtime differs from {what} by up to "
                f"{figures[key]['max_abs_diff']:.3g} (scaled {figures[key]['scaled_diff']:.3g}"
                f") > tolerance {allowed:.3g}, by batch size {figures[key]['by_batch_size']};"
                " the previous scorer is kept."
            )
    keras_figures = figures.pop("keras")
    return proto, {**keras_figures, "score_tolerance": allowed, **figures}


def save_scorer(proto: Any, path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Stamp ``metadata`` on the scorer, check and save it; its card entry (file, checksum,
    input and outputs)."""
    import onnx

    card.set_metadata(proto, metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise convert.ExportError(
            f"{metadata['variant']} scorer: onnx.checker rejected it: {error}"
        ) from error
    onnx.save_model(proto, str(path))
    dims = list(metadata["image_shape"])
    return {
        "path": SCORER_FILE,
        "sha256": fileio.sha256_file(path),
        "input": {"name": convert.ENCODER_INPUT, "shape": [None, *dims], "dtype": "float32"},
        "outputs": [
            {"name": SCORE_OUTPUT, "shape": [None], "dtype": "float32"},
            {"name": MAP_OUTPUT, "shape": [None, *dims], "dtype": "float32"},
            {"name": LOCAL_MAP_OUTPUT, "shape": [None, *dims[:2], 1], "dtype": "float32"},
        ],
    }


def scorer_metadata(common: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    """The scorer's ONNX metadata: the export's interface, its outputs and the card's
    ``anomaly`` section (threshold, rule, validation FPR, scores, standardisation)."""
    dims = list(common["image_shape"])
    threshold = section["threshold"]
    return {
        **common,
        "model": "scorer",
        "input_name": convert.ENCODER_INPUT,
        "input_shape": [convert.BATCH_AXIS, *dims],
        "output_names": [SCORE_OUTPUT, MAP_OUTPUT, LOCAL_MAP_OUTPUT],
        "output_shapes": [
            [convert.BATCH_AXIS],
            [convert.BATCH_AXIS, *dims],
            [convert.BATCH_AXIS, *dims[:2], 1],
        ],
        "threshold": threshold["value"],
        "threshold_rule": threshold["rule"],
        "validation_fpr": threshold["fpr"],
        "target_fpr": threshold["target_fpr"],
        "flag": section["flag"],
        "score_components": section["scores"],
        "standardisation": section["standardisation"],
        "pixel_loss": section["pixel_loss"],
        "pixel_threshold": section["pixel_threshold"]["value"],
        "pixel_target_fpr": section["pixel_threshold"]["target_fpr"],
        "local_sigma": section["local_sigma"],
    }


def onnx_scores(path: str | Path, images: np.ndarray) -> np.ndarray:
    """The ``score`` output of a scorer.onnx for ``images`` (float32 NHWC), in batches: (N,)."""
    return onnx_run(path, images, (SCORE_OUTPUT,))[0]


def onnx_run(
    path: str | Path, images: np.ndarray, outputs: Sequence[str] = (SCORE_OUTPUT,)
) -> list[np.ndarray]:
    """The named outputs of a scorer.onnx for ``images`` (float32 NHWC), run in batches."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=[convert.PARITY_PROVIDER])
    images = np.asarray(images, dtype=np.float32)
    # Batches sized by their pixels: 1,024 MNIST digits, 170 images of 64x64x3 (the scorer's
    # activations of 1,024 of those held gigabytes).
    batch = data.splits.stream_batch(images.shape[1:])
    runs = [
        session.run(list(outputs), {convert.ENCODER_INPUT: images[i : i + batch]})
        for i in range(0, len(images), batch)
    ]
    return [np.concatenate([run[k] for run in runs]) for k in range(len(outputs))]


__all__ = [
    "LOCAL_MAP_OUTPUT",
    "MAP_OUTPUT",
    "SCORER_FILE",
    "SCORE_MODEL_FILE",
    "SCORE_OUTPUT",
    "ScorerGraph",
    "convert_scorer",
    "onnx_run",
    "onnx_scores",
    "save_scorer",
    "score_tolerance",
    "scorer_metadata",
    "scorer_parity",
    "tf_max_per_image",
]
