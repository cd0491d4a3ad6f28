"""Every metric of one model: collect its outputs on the test split, then score them.

``model_outputs``, ``prior_samples`` and ``evaluate_autoencoder`` touch a Keras model; they
import nothing from TensorFlow themselves (the model brings it). ``evaluate_arrays`` scores
plain arrays.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from autoencoders.data.splits import Split, as_array
from autoencoders.evaluation import baselines, image_quality, latent

INFERENCE_BATCH = 1024


# Keys of metrics/<variant>.json that are test-set measurements (logged to MLflow as test_<key>);
# the rest of the file describes the model (size, training time) for the report.
TEST_METRIC_KEYS = (
    "mse",
    "bce",
    "psnr",
    "ssim",
    "pca_mse",
    "mse_over_pca",
    "cluster_accuracy",
    "nmi",
    "ari",
    "silhouette",
    "probe_accuracy",
    "psnr_noisy",
    "psnr_denoised",
    "psnr_gain",
    "kl",
)


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    """params.yaml ``evaluate``."""

    silhouette_sample: int = 2000
    probe_max_iter: int = 1000
    n_examples: int = 10
    kmeans_n_init: int = 10

    def __post_init__(self) -> None:
        for name in ("silhouette_sample", "probe_max_iter", "n_examples", "kmeans_n_init"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluate.{name} must be at least 1, got {getattr(self, name)}.")


def _flat_codes(
    train_codes: np.ndarray, test_codes: np.ndarray, n_test: int
) -> tuple[np.ndarray, np.ndarray]:
    """Codes flattened to (N, D) and checked; the test codes must be one per test image."""
    train_codes, _ = latent.check_codes(
        np.reshape(train_codes, (len(train_codes), -1)), None, "train"
    )
    test_codes, _ = latent.check_codes(np.reshape(test_codes, (len(test_codes), -1)), None, "test")
    if len(test_codes) != n_test:
        raise ValueError(
            f"test_codes has {len(test_codes)} rows but x_test has {n_test}: encode the "
            "same images."
        )
    return train_codes, test_codes


def _mean_kl(kl_per_sample: np.ndarray) -> float:
    kl = np.asarray(kl_per_sample, dtype=np.float64)
    if not np.all(np.isfinite(kl)):
        raise ValueError("the KL term is NaN or infinite: the VAE diverged; retrain it.")
    return float(np.mean(kl))


def evaluate_arrays(
    *,
    x_train: np.ndarray,
    x_test: np.ndarray,
    test_reconstructions: np.ndarray,
    train_codes: np.ndarray,
    test_codes: np.ndarray,
    y_train: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    seed: int = 0,
    silhouette_sample: int = 2000,
    probe_max_iter: int = 1000,
    kmeans_n_init: int = 10,
    noisy_test: np.ndarray | None = None,
    denoised_test: np.ndarray | None = None,
    kl_per_sample: np.ndarray | None = None,
    chunk_rows: int | None = None,
) -> dict[str, float | int | None]:
    """Every metric of one model from its outputs (see ``model_outputs``); plain floats.

    Clustering and probe metrics need labels and are left out without them; the denoising
    and KL metrics appear only when their arrays are given. ``chunk_rows`` (shards) computes
    the reconstruction metrics that many images at a time.
    """
    train_codes, test_codes = _flat_codes(train_codes, test_codes, len(x_test))
    latent_dim = test_codes.shape[1]
    metrics = image_quality.reconstruction_metrics_in_chunks(
        x_test, test_reconstructions, chunk_rows
    )
    metrics.update(baselines.pca_baseline_mse(x_train, x_test, latent_dim))
    # None when PCA is exact (code size >= pixels), which no finite ratio describes.
    metrics["mse_over_pca"] = (
        metrics["mse"] / metrics["pca_mse"] if metrics["pca_mse"] > 0 else None
    )
    if y_test is not None:
        metrics.update(
            latent.clustering_metrics(
                test_codes,
                y_test,
                seed=seed,
                n_init=kmeans_n_init,
                silhouette_sample=silhouette_sample,
            )
        )
        if y_train is not None:
            metrics["probe_accuracy"] = latent.linear_probe_accuracy(
                train_codes, y_train, test_codes, y_test, max_iter=probe_max_iter, seed=seed
            )
    if noisy_test is not None and denoised_test is not None:
        metrics.update(image_quality.denoising_metrics(x_test, noisy_test, denoised_test))
    if kl_per_sample is not None:
        metrics["kl"] = _mean_kl(kl_per_sample)
    metrics["latent_dim"] = int(latent_dim)
    metrics["n_test"] = int(len(x_test))
    # JSON has no inf: a perfect reconstruction's PSNR is written as null.
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in metrics.items()
    }


def _batched(function: Callable[[np.ndarray], Any], x: np.ndarray, batch_size: int) -> Any:
    """Apply a Keras model/callable in batches; concatenates outputs (lists of outputs too)."""
    parts = [function(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
    if isinstance(parts[0], (list, tuple)):
        return [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(len(parts[0]))]
    return np.concatenate([np.asarray(part) for part in parts])


def noise_std_of(model: Any) -> float:
    """The denoising noise std of a model's objective, or 0.0 when it trains on clean inputs."""
    objective = getattr(getattr(model, "config", None), "objective", None)
    return float(getattr(objective, "noise_std", 0.0) or 0.0)


def model_outputs(
    model: Any,
    x_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int = 0,
    noise_std: float | None = None,
    batch_size: int = INFERENCE_BATCH,
) -> dict[str, np.ndarray]:
    """Codes, reconstructions and the variant's extras, as numpy arrays.

    ``x_train`` may be a ``data.Split`` of shards, encoded a batch at a time (only its codes
    are held). Keys: ``train_codes`` and ``test_codes`` (N, latent_dim),
    ``test_reconstructions``; for a denoising model (``noise_std`` > 0, default from its
    config) ``noisy_test`` (seeded noise) and ``denoised_test``; for a VAE (a model with
    ``.posterior``) ``kl_per_sample`` from ``models.objectives.kl_divergence`` of the
    posterior mean and log-variance.
    """
    x_test = image_quality.check_images(x_test, "x_test").astype(np.float32)

    def encode(batch):
        return model.encoder(batch, training=False)

    if isinstance(x_train, Split) and not x_train.in_memory:  # shards: encoded batch by batch
        train_codes = x_train.codes(encode, batch_size)
    else:
        x_train = image_quality.check_images(as_array(x_train), "x_train").astype(np.float32)
        train_codes = _batched(encode, x_train, batch_size).reshape(len(x_train), -1)
    outputs = {
        "train_codes": train_codes,
        "test_codes": _batched(encode, x_test, batch_size).reshape(len(x_test), -1),
        "test_reconstructions": np.asarray(
            model.reconstruct(x_test, batch_size=min(batch_size, 256)), dtype=np.float32
        ),
    }
    noise_std = noise_std_of(model) if noise_std is None else noise_std
    if noise_std > 0:
        noisy = image_quality.add_noise(x_test, noise_std, seed)
        outputs["noisy_test"] = noisy
        denoised = model.reconstruct(noisy, batch_size=min(batch_size, 256))
        outputs["denoised_test"] = np.asarray(denoised, dtype=np.float32)
    posterior = getattr(model, "posterior", None)
    if posterior is not None:
        from autoencoders.models import objectives

        def kl(batch):
            mean, log_var = posterior(batch, training=False)
            return objectives.kl_divergence(mean, log_var)

        outputs["kl_per_sample"] = _batched(kl, x_test, batch_size).reshape(-1)
    return outputs


def prior_samples(model: Any, n: int, seed: int) -> np.ndarray:
    """Images decoded from ``n`` seeded draws of N(0, I) in code space: (n, H, W, C)."""
    rng = np.random.default_rng(seed)
    code_shape = tuple(model.code_shape)
    codes = rng.standard_normal((n, *code_shape)).astype(np.float32)
    return np.asarray(model.decoder(codes, training=False), dtype=np.float32)


def evaluate_autoencoder(
    model: Any,
    *,
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    seed: int = 0,
    silhouette_sample: int = 2000,
    probe_max_iter: int = 1000,
    kmeans_n_init: int = 10,
    batch_size: int = INFERENCE_BATCH,
    chunk_rows: int | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every metric of a model on the test split, and the ``model_outputs`` they came from
    (encoded ``batch_size`` images at a time; ``chunk_rows``: see ``evaluate_arrays``)."""
    noise_std = noise_std_of(model)
    outputs = model_outputs(
        model, x_train, x_test, seed=seed, noise_std=noise_std, batch_size=batch_size
    )
    metrics = evaluate_arrays(
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        seed=seed,
        silhouette_sample=silhouette_sample,
        probe_max_iter=probe_max_iter,
        kmeans_n_init=kmeans_n_init,
        chunk_rows=chunk_rows,
        **outputs,
    )
    if noise_std > 0:
        metrics["noise_std"] = noise_std
    return metrics, outputs
