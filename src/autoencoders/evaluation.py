"""Reconstruction and latent-space metrics, reference baselines, and the side-by-side summary.

Everything here is a plain function: numpy arrays in, a dict of floats out. Only
``model_outputs``, ``prior_samples`` and ``evaluate_autoencoder`` touch a Keras model, and they
import nothing from TensorFlow themselves (the model brings it), so the module imports fast.

Reconstruction (images (N, H, W, C) in [0, 1]):
- ``mse``: mean over every pixel of every image.
- ``bce``: binary cross-entropy, mean over every pixel (predictions clipped to [1e-7, 1 - 1e-7],
  Keras's epsilon), so it is comparable across image sizes.
- ``psnr``: 10 log10(1 / mse) of the whole split's mse (data range 1), in dB.
- ``ssim``: Wang et al. (2004) SSIM with a Gaussian window (sigma 1.5), K1 0.01, K2 0.03, data
  range 1, averaged over the valid window positions and channels of each image, then over images.
  The window is the standard 11x11; images smaller than 11 pixels on a side use the largest odd
  window that fits (7x7 for the 8x8 digits), same sigma. It matches ``tf.image.ssim``.

Latent space (codes flattened to (N, latent_dim)):
- k-means with k = number of classes (seeded, ``n_init`` restarts); ``cluster_accuracy`` is the
  share of images whose cluster maps to their class under the best one-to-one mapping (Hungarian
  matching), ``nmi`` and ``ari`` the usual scores of that clustering.
- ``silhouette``: of the true classes in code space (how well classes separate, independent of
  k-means), Euclidean, on a seeded sample of ``silhouette_sample`` codes.
- ``probe_accuracy``: a logistic regression fitted on standardized training codes, scored on
  the test codes.

Baselines: PCA with as many components as the code has units, fitted on the training split
(capped at min(n_samples, n_features), reported as ``pca_n_components``); k-means on raw pixels.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from autoencoders import tracking

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03
BCE_EPSILON = 1e-7
INFERENCE_BATCH = 1024
# A variant's test MSE must be at most this share of PCA's at the same code size.
PCA_RATIO_BAR = 0.7
# (variant, metric, bar, source): the seed articles' published figures, to be beaten.
ANCHORS = (
    ("deep_dense", "mse", 0.037, "the seed article's deep autoencoder: 0.0371 after 30 epochs"),
    ("dense", "bce", 0.088, "the Keras blog's simple autoencoder: about 0.09-0.10"),
)
QUALITY_CLUSTER_ACCURACY = 0.85

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


# --------------------------------------------------------------------------- input checks


def _check_images(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be images (N, H, W, C), got shape {x.shape}: add a channel axis with "
            "x[..., None] for grey images."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no images: pass a non-empty split.")
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"{name} contains NaN or infinite values: the model diverged; retrain it with a "
            "lower learning_rate (or check the input data)."
        )
    return x


def _check_pair(x: np.ndarray, reconstruction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _check_images(x, "x")
    reconstruction = _check_images(reconstruction, "reconstruction")
    if x.shape != reconstruction.shape:
        raise ValueError(
            f"x has shape {x.shape} but reconstruction has {reconstruction.shape}: pass the "
            "model's reconstruction of exactly these images."
        )
    return x, reconstruction


def check_codes(codes: np.ndarray, labels: np.ndarray | None = None, name: str = "codes"):
    """Validate codes (N, D) (and labels (N,)): finite, same length, at least two classes."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(
            f"{name} must be 2-d (N, latent_dim), got shape {codes.shape}: flatten them with "
            "codes.reshape(len(codes), -1)."
        )
    if codes.shape[0] < 2:
        raise ValueError(f"{name} holds {codes.shape[0]} rows: pass at least two images.")
    bad_rows = int(np.count_nonzero(~np.all(np.isfinite(codes), axis=1)))
    if bad_rows:
        raise ValueError(
            f"{name} contain NaN or infinite values ({bad_rows} of {codes.shape[0]} rows): the "
            "model diverged; retrain it with a lower learning_rate."
        )
    if labels is None:
        return codes, None
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-d (N,), got shape {labels.shape}.")
    if labels.shape[0] != codes.shape[0]:
        raise ValueError(
            f"{name} has {codes.shape[0]} rows but labels has {labels.shape[0]}: pass the labels "
            "of the same images, in the same order."
        )
    classes = np.unique(labels)
    if classes.size < 2:
        raise ValueError(
            f"labels hold a single class ({classes.tolist()}): clustering and probe metrics need "
            "at least two classes; evaluate on a split that has several."
        )
    return codes, labels


# --------------------------------------------------------------------------- reconstruction


def mean_squared_error(x: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean squared error over every pixel."""
    x, reconstruction = _check_pair(x, reconstruction)
    difference = x.astype(np.float64) - reconstruction.astype(np.float64)
    return float(np.mean(np.square(difference)))


def binary_cross_entropy(x: np.ndarray, reconstruction: np.ndarray) -> float:
    """Binary cross-entropy (nats), mean over every pixel; predictions clipped like Keras."""
    x, reconstruction = _check_pair(x, reconstruction)
    target = x.astype(np.float64)
    predicted = np.clip(reconstruction.astype(np.float64), BCE_EPSILON, 1.0 - BCE_EPSILON)
    loss = -(target * np.log(predicted) + (1.0 - target) * np.log(1.0 - predicted))
    return float(np.mean(loss))


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for a perfect reconstruction."""
    if mse < 0:
        raise ValueError(f"mse must be >= 0, got {mse}.")
    if mse == 0:
        return math.inf
    return float(10.0 * math.log10(data_range**2 / mse))


def psnr(x: np.ndarray, reconstruction: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR (dB) of the whole set: 10 log10(data_range^2 / mse)."""
    return psnr_from_mse(mean_squared_error(x, reconstruction), data_range)


def ssim_window_size(height: int, width: int) -> int:
    """11, or the largest odd size that fits an image smaller than 11 pixels on a side."""
    side = min(SSIM_WINDOW, height, width)
    return side if side % 2 == 1 else side - 1


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def ssim_per_image(
    x: np.ndarray,
    reconstruction: np.ndarray,
    data_range: float = 1.0,
    sigma: float = SSIM_SIGMA,
    window_size: int | None = None,
    batch_size: int = 512,
) -> np.ndarray:
    """SSIM of each image pair (N,), Gaussian window, valid positions only (see module doc)."""
    from scipy import ndimage

    x, reconstruction = _check_pair(x, reconstruction)
    _, height, width, _ = x.shape
    size = window_size or ssim_window_size(height, width)
    if size < 1 or size % 2 == 0 or size > min(height, width):
        raise ValueError(
            f"SSIM window_size must be odd and at most {min(height, width)}, got {size}."
        )
    window = _gaussian_window(size, sigma)
    radius = size // 2
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    def smooth(images: np.ndarray) -> np.ndarray:
        # Separable Gaussian over H and W; positions whose window leaves the image are cropped,
        # so the padding mode never matters. (n, H - 2r, W - 2r, C)
        out = ndimage.correlate1d(images, window, axis=1, mode="constant")
        out = ndimage.correlate1d(out, window, axis=2, mode="constant")
        return out[:, radius : height - radius, radius : width - radius, :]

    scores = []
    for start in range(0, x.shape[0], batch_size):
        a = x[start : start + batch_size].astype(np.float64)
        b = reconstruction[start : start + batch_size].astype(np.float64)
        mean_a, mean_b = smooth(a), smooth(b)
        var_a = smooth(a * a) - mean_a**2
        var_b = smooth(b * b) - mean_b**2
        covariance = smooth(a * b) - mean_a * mean_b
        numerator = (2 * mean_a * mean_b + c1) * (2 * covariance + c2)
        denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
        scores.append(np.mean(numerator / denominator, axis=(1, 2, 3)))
    return np.concatenate(scores)


def ssim(x: np.ndarray, reconstruction: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM over images (see module doc for the window)."""
    return float(np.mean(ssim_per_image(x, reconstruction, data_range=data_range)))


def reconstruction_metrics(x: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """``{"mse", "bce", "psnr", "ssim"}`` of a reconstruction of ``x``."""
    mse = mean_squared_error(x, reconstruction)
    return {
        "mse": mse,
        "bce": binary_cross_entropy(x, reconstruction),
        "psnr": psnr_from_mse(mse),
        "ssim": ssim(x, reconstruction),
    }


def add_noise(x: np.ndarray, noise_std: float, seed: int) -> np.ndarray:
    """``x`` plus seeded Gaussian noise of std ``noise_std``, clipped to [0, 1] (float32)."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    rng = np.random.default_rng(seed)
    noisy = np.asarray(x, dtype=np.float32) + rng.normal(0.0, noise_std, size=np.shape(x))
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def denoising_metrics(clean: np.ndarray, noisy: np.ndarray, denoised: np.ndarray) -> dict:
    """PSNR (dB) of the noisy input and of the denoised output against the clean images."""
    psnr_noisy = psnr(clean, noisy)
    psnr_denoised = psnr(clean, denoised)
    return {
        "psnr_noisy": psnr_noisy,
        "psnr_denoised": psnr_denoised,
        "psnr_gain": psnr_denoised - psnr_noisy,
    }


# --------------------------------------------------------------------------- PCA baseline


def pca_baseline(
    x_train: np.ndarray, x_test: np.ndarray, code_sizes: Iterable[int]
) -> dict[int, dict[str, float]]:
    """Test mse of PCA fitted on ``x_train`` for each code size, from one fit.

    The components of one PCA fit are ordered, so reconstructing with the first k of them is
    PCA with k components. Each size is capped at min(n_samples, n_features) of the training
    split; ``{size: {"mse": .., "n_components": capped size}}``.
    """
    from sklearn.decomposition import PCA

    train = _check_images(x_train, "x_train").reshape(len(x_train), -1)
    test = _check_images(x_test, "x_test").reshape(len(x_test), -1)
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            f"x_train has {train.shape[1]} features per image but x_test has {test.shape[1]}: "
            "pass splits of the same data."
        )
    sizes = sorted({int(size) for size in code_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"code_sizes must be positive integers, got {sizes}.")
    limit = min(train.shape)
    largest = min(sizes[-1], limit)
    # With few features (784 for MNIST) the eigendecomposition of the covariance is exact and
    # ~10x faster than an SVD of the (n_samples, n_features) matrix; float64 keeps it precise.
    solver = "covariance_eigh" if train.shape[1] <= 2048 else "full"
    pca = PCA(n_components=largest, svd_solver=solver).fit(train.astype(np.float64))
    centred = (test - pca.mean_).astype(np.float64)
    components = pca.components_.astype(np.float64)  # (largest, features)
    projections = centred @ components.T  # (N, largest)
    results = {}
    for size in sizes:
        used = min(size, limit)
        reconstruction = projections[:, :used] @ components[:used]
        mse = float(np.mean(np.square(centred - reconstruction)))
        results[size] = {"mse": mse, "n_components": used}
    return results


def pca_baseline_mse(x_train: np.ndarray, x_test: np.ndarray, n_components: int) -> dict:
    """``{"pca_mse", "pca_n_components"}`` for one code size (capped, see ``pca_baseline``)."""
    result = pca_baseline(x_train, x_test, [n_components])[int(n_components)]
    return {"pca_mse": result["mse"], "pca_n_components": result["n_components"]}


# --------------------------------------------------------------------------- clustering


def clustering_accuracy(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Share of samples correctly labelled under the best one-to-one cluster->class mapping."""
    from scipy.optimize import linear_sum_assignment

    labels_true = np.asarray(labels_true)
    labels_pred = np.asarray(labels_pred)
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise ValueError(
            f"labels_true {labels_true.shape} and labels_pred {labels_pred.shape} must be 1-d "
            "and of the same length: pass one cluster id per labelled sample."
        )
    if labels_true.size == 0:
        raise ValueError("no labels given: pass at least one sample.")
    _, true_index = np.unique(labels_true, return_inverse=True)
    _, pred_index = np.unique(labels_pred, return_inverse=True)
    contingency = np.zeros((pred_index.max() + 1, true_index.max() + 1), dtype=np.int64)
    np.add.at(contingency, (pred_index, true_index), 1)
    rows, columns = linear_sum_assignment(contingency, maximize=True)
    return float(contingency[rows, columns].sum() / labels_true.size)


def kmeans_labels(codes: np.ndarray, n_clusters: int, seed: int, n_init: int = 10) -> np.ndarray:
    """Cluster ids from k-means (k-means++ init, ``n_init`` seeded restarts)."""
    from sklearn.cluster import KMeans

    codes, _ = check_codes(codes)
    if not 1 <= n_clusters <= len(codes):
        raise ValueError(f"n_clusters must be in [1, {len(codes)}], got {n_clusters}.")
    with warnings.catch_warnings():
        # Collapsed codes (an untrained or dead model) give fewer distinct clusters than k;
        # the scores below then say so, a warning adds nothing.
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
        return model.fit_predict(codes.astype(np.float64))


def clustering_metrics(
    codes: np.ndarray,
    labels: np.ndarray,
    seed: int,
    n_init: int = 10,
    silhouette_sample: int = 2000,
) -> dict[str, float]:
    """k-means (k = number of classes) on the codes: accuracy, NMI, ARI; class silhouette."""
    from sklearn import metrics

    codes, labels = check_codes(codes, labels)
    n_classes = int(np.unique(labels).size)
    predicted = kmeans_labels(codes, n_classes, seed=seed, n_init=n_init)
    return {
        "cluster_accuracy": clustering_accuracy(labels, predicted),
        "nmi": float(metrics.normalized_mutual_info_score(labels, predicted)),
        "ari": float(metrics.adjusted_rand_score(labels, predicted)),
        "silhouette": silhouette(codes, labels, seed=seed, sample=silhouette_sample),
    }


def silhouette(codes: np.ndarray, labels: np.ndarray, seed: int, sample: int = 2000) -> float:
    """Silhouette of the classes ``labels`` in code space, on a seeded sample of codes."""
    from sklearn import metrics

    codes, labels = check_codes(codes, labels)
    rng = np.random.default_rng(seed)
    if sample < len(codes):
        chosen = rng.choice(len(codes), size=sample, replace=False)
        codes, labels = codes[chosen], labels[chosen]
    if np.unique(labels).size < 2:
        raise ValueError(
            f"the silhouette sample of {sample} codes holds a single class: raise "
            "evaluate.silhouette_sample."
        )
    if np.all(codes == codes[0]):
        return 0.0  # every code identical: no separation at all (sklearn would divide 0 by 0)
    return float(metrics.silhouette_score(codes.astype(np.float64), labels))


def linear_probe_accuracy(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
    max_iter: int = 1000,
    seed: int = 0,
) -> float:
    """Accuracy on the test codes of a logistic regression fitted on standardized train codes."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_codes, train_labels = check_codes(train_codes, train_labels, "train_codes")
    test_codes, test_labels = check_codes(test_codes, test_labels, "test_codes")
    if train_codes.shape[1] != test_codes.shape[1]:
        raise ValueError(
            f"train_codes have {train_codes.shape[1]} dimensions but test_codes "
            f"{test_codes.shape[1]}: encode both splits with the same model."
        )
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(train_codes.astype(np.float64), train_labels)
    if any(issubclass(item.category, ConvergenceWarning) for item in caught):
        warnings.warn(
            f"the linear probe did not converge in {max_iter} iterations: raise "
            "evaluate.probe_max_iter for an exact figure.",
            RuntimeWarning,
            stacklevel=2,
        )
    return float(probe.score(test_codes.astype(np.float64), test_labels))


# --------------------------------------------------------------------------- all metrics


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
) -> dict[str, float | int | None]:
    """Every metric of one model from its outputs (see ``model_outputs``); plain floats.

    Clustering and probe metrics need labels and are left out without them; the denoising
    and KL metrics appear only when their arrays are given.
    """
    train_codes, _ = check_codes(np.reshape(train_codes, (len(train_codes), -1)), None, "train")
    test_codes, _ = check_codes(np.reshape(test_codes, (len(test_codes), -1)), None, "test")
    if len(test_codes) != len(x_test):
        raise ValueError(
            f"test_codes has {len(test_codes)} rows but x_test has {len(x_test)}: encode the "
            "same images."
        )
    latent_dim = test_codes.shape[1]
    metrics: dict[str, float] = reconstruction_metrics(x_test, test_reconstructions)
    metrics.update(pca_baseline_mse(x_train, x_test, latent_dim))
    # None when PCA is exact (code size >= pixels), which no finite ratio describes.
    metrics["mse_over_pca"] = (
        metrics["mse"] / metrics["pca_mse"] if metrics["pca_mse"] > 0 else None
    )
    if y_test is not None:
        metrics.update(
            clustering_metrics(
                test_codes,
                y_test,
                seed=seed,
                n_init=kmeans_n_init,
                silhouette_sample=silhouette_sample,
            )
        )
        if y_train is not None:
            metrics["probe_accuracy"] = linear_probe_accuracy(
                train_codes, y_train, test_codes, y_test, max_iter=probe_max_iter, seed=seed
            )
    if noisy_test is not None and denoised_test is not None:
        metrics.update(denoising_metrics(x_test, noisy_test, denoised_test))
    if kl_per_sample is not None:
        kl = np.asarray(kl_per_sample, dtype=np.float64)
        if not np.all(np.isfinite(kl)):
            raise ValueError("the KL term is NaN or infinite: the VAE diverged; retrain it.")
        metrics["kl"] = float(np.mean(kl))
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

    Keys: ``train_codes`` and ``test_codes`` (N, latent_dim), ``test_reconstructions``; for a
    denoising model (``noise_std`` > 0, default from its config) ``noisy_test`` (seeded noise)
    and ``denoised_test``; for a VAE (a model with ``.posterior``) ``kl_per_sample`` from
    ``models.objectives.kl_divergence`` of the posterior mean and log-variance.
    """
    x_train = _check_images(x_train, "x_train").astype(np.float32)
    x_test = _check_images(x_test, "x_test").astype(np.float32)

    def encode(batch):
        return model.encoder(batch, training=False)

    outputs = {
        "train_codes": _batched(encode, x_train, batch_size).reshape(len(x_train), -1),
        "test_codes": _batched(encode, x_test, batch_size).reshape(len(x_test), -1),
        "test_reconstructions": np.asarray(model.reconstruct(x_test), dtype=np.float32),
    }
    noise_std = noise_std_of(model) if noise_std is None else noise_std
    if noise_std > 0:
        noisy = add_noise(x_test, noise_std, seed)
        outputs["noisy_test"] = noisy
        outputs["denoised_test"] = np.asarray(model.reconstruct(noisy), dtype=np.float32)
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
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every metric of a model on the test split, and the ``model_outputs`` they came from."""
    noise_std = noise_std_of(model)
    outputs = model_outputs(model, x_train, x_test, seed=seed, noise_std=noise_std)
    metrics = evaluate_arrays(
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        seed=seed,
        silhouette_sample=silhouette_sample,
        probe_max_iter=probe_max_iter,
        kmeans_n_init=kmeans_n_init,
        **outputs,
    )
    if noise_std > 0:
        metrics["noise_std"] = noise_std
    return metrics, outputs


def pixel_baselines(
    *,
    x_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    code_sizes: Iterable[int],
    seed: int,
    kmeans_n_init: int = 10,
) -> dict[str, Any]:
    """Reference baselines computed live: k-means on raw test pixels, PCA at each code size.

    ``{"kmeans_pixels": {"cluster_accuracy", "nmi", "ari"} or None without labels,
    "pca": {size: {"mse", "n_components"}}}``.
    """
    from sklearn import metrics

    result: dict[str, Any] = {"pca": pca_baseline(x_train, x_test, code_sizes)}
    result["kmeans_pixels"] = None
    if y_test is not None:
        pixels, labels = check_codes(np.reshape(x_test, (len(x_test), -1)), y_test, "pixels")
        predicted = kmeans_labels(
            pixels, int(np.unique(labels).size), seed=seed, n_init=kmeans_n_init
        )
        result["kmeans_pixels"] = {
            "cluster_accuracy": clustering_accuracy(labels, predicted),
            "nmi": float(metrics.normalized_mutual_info_score(labels, predicted)),
            "ari": float(metrics.adjusted_rand_score(labels, predicted)),
        }
    return result


SUMMARY_COLUMNS = (
    # (key in a summary row, markdown header, format)
    ("parameter_count", "params", "{:,.0f}"),
    ("latent_dim", "code", "{:.0f}"),
    ("mse", "test MSE", "{:.5f}"),
    ("pca_mse", "PCA MSE", "{:.5f}"),
    ("pca_ratio", "/ PCA", "{:.2f}"),
    ("beats_pca", "<= 0.7 PCA", "{}"),
    ("bce", "BCE", "{:.4f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("cluster_accuracy", "cluster acc", "{:.3f}"),
    ("nmi", "NMI", "{:.3f}"),
    ("ari", "ARI", "{:.3f}"),
    ("silhouette", "silhouette", "{:.3f}"),
    ("probe_accuracy", "probe acc", "{:.3f}"),
    ("epochs_run", "epochs", "{:.0f}"),
    ("parity_max_abs_diff", "ONNX max diff", "{:.1e}"),
)


def summary_row(
    name: str,
    metrics: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None = None,
    parity: Mapping[str, Any] | None = None,
    pca: Mapping[int, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """One variant's row of the summary; ``status`` is "missing" when it has no metrics.

    ``pca`` (from ``pixel_baselines``) supplies the PCA mse at the variant's code size computed
    live, which takes precedence over the figure in its metrics file.
    """
    row: dict[str, Any] = {"variant": name}
    if metrics is None:
        row["status"] = "missing"
        return row
    row["status"] = "ok"
    for key, _, _ in SUMMARY_COLUMNS:
        if key in metrics:
            row[key] = metrics[key]
    for key in ("psnr_noisy", "psnr_denoised", "psnr_gain", "kl"):
        if key in metrics:
            row[key] = metrics[key]
    training = training or {}
    for key in ("parameter_count", "epochs_run"):
        if row.get(key) is None and training.get(key) is not None:
            row[key] = training[key]
    tuning = training.get("tuning") or {}
    if tuning.get("value") is not None:
        # The search's best validation loss at its cheap fidelity, beside the final test figures.
        row["search_best_value"] = tuning["value"]
        row["search_params"] = dict(tuning.get("params") or {})
    size = row.get("latent_dim")
    if pca is not None and size is not None and int(size) in pca:
        row["pca_mse"] = pca[int(size)]["mse"]
    if row.get("mse") is not None and row.get("pca_mse") is not None:
        row["pca_ratio"] = round(float(row["mse"]) / float(row["pca_mse"]), 4)
        row["beats_pca"] = bool(row["mse"] <= PCA_RATIO_BAR * row["pca_mse"])
    if parity:
        differences = [
            float(value)
            for key, value in tracking.flatten(parity).items()
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and key.endswith("max_abs_diff")
        ]
        if differences:
            row["parity_max_abs_diff"] = max(differences)
    return row


# `dvc metrics show`: one row per variant (reports/metrics/<V>.json), the figures users compare,
# in about 120 columns; every other figure stays in the per-stage files and reports/summary.json.
METRIC_ROW_KEYS = ("mse", "pca_ratio", "ssim", "probe_accuracy", "cluster_accuracy")


def metric_row(row: Mapping[str, Any], head: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A variant's DVC metrics row from its summary row and its clustering head's figures."""
    figures = {key: row[key] for key in METRIC_ROW_KEYS if row.get(key) is not None}
    if head and head.get("head_accuracy") is not None:
        figures["head_accuracy"] = head["head_accuracy"]
    return figures


def quality_check(
    rows: Sequence[Mapping[str, Any]], min_cluster_accuracy: float = QUALITY_CLUSTER_ACCURACY
) -> dict[str, Any]:
    """The quality bar: every variant's test MSE <= 0.7x PCA's at its code size, the seed anchors
    beaten (ANCHORS), and the best cluster accuracy >= ``min_cluster_accuracy``."""
    present = [row for row in rows if row.get("status") == "ok"]
    missing = [row["variant"] for row in rows if row.get("status") != "ok"]
    losing = [row["variant"] for row in present if row.get("beats_pca") is not True]
    anchors = []
    for variant, metric, bar, source in ANCHORS:
        row = next((row for row in present if row["variant"] == variant), None)
        value = None if row is None else row.get(metric)
        anchors.append(
            {
                "variant": variant,
                "metric": metric,
                "value": value,
                "bar": bar,
                "source": source,
                "met": value is not None and value <= bar,
            }
        )
    accuracies = [
        (row["cluster_accuracy"], row["variant"])
        for row in present
        if row.get("cluster_accuracy") is not None
    ]
    best_accuracy, best_variant = max(accuracies) if accuracies else (None, None)
    all_beat = bool(present) and not losing and not missing
    clusters = best_accuracy is not None and best_accuracy >= min_cluster_accuracy
    reconstruction = all_beat and all(anchor["met"] for anchor in anchors)
    return {
        "pca_ratio_bar": PCA_RATIO_BAR,
        "all_beat_pca": all_beat,
        "not_beating_pca": losing,
        "anchors": anchors,
        "reconstruction_passed": bool(reconstruction),
        "missing": missing,
        "best_cluster_accuracy": best_accuracy,
        "best_cluster_variant": best_variant,
        "cluster_accuracy_bar": min_cluster_accuracy,
        "cluster_bar_met": bool(clusters),
        "passed": bool(reconstruction and clusters),
    }


def _format(value: Any, pattern: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "nan"
    try:
        return pattern.format(value)
    except (TypeError, ValueError):
        return str(value)


def build_summary(
    rows: Sequence[Mapping[str, Any]],
    baselines: Mapping[str, Any],
    data_card: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON summary: ``{"data", "variants": {name: row}, "baselines", "quality"}``.

    PCA sizes become string keys (JSON objects), so ``dvc metrics show`` can flatten it.
    """
    card = dict(data_card or {})
    return {
        "data": {
            "source": card.get("source"),
            "input_shape": card.get("input_shape"),
            "checksum": card.get("checksum"),
            "n_test": (card.get("counts") or {}).get("test"),
        },
        "variants": {row["variant"]: dict(row) for row in rows},
        "baselines": {
            "kmeans_pixels": baselines.get("kmeans_pixels"),
            "pca": {str(size): dict(value) for size, value in baselines.get("pca", {}).items()},
        },
        "quality": quality_check(rows),
    }


def render_summary_markdown(summary: Mapping[str, Any]) -> str:
    """The markdown report from ``build_summary``'s result."""
    rows = list(summary["variants"].values())
    baselines = summary["baselines"]
    quality = summary["quality"]
    lines = ["# Autoencoder variants side by side", ""]
    source = summary.get("data", {})
    if source:
        lines.append(
            f"Data: `{source.get('source')}`, test split of {source.get('n_test')} images "
            f"{source.get('input_shape')}, checksum `{(source.get('checksum') or '?')[:12]}`. "
            "Every figure is on the test split; PCA baselines are fitted on the training split."
        )
        lines.append("")
    headers = ["variant"] + [header for _, header, _ in SUMMARY_COLUMNS]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * len(SUMMARY_COLUMNS)) + "|")
    for row in rows:
        if row.get("status") != "ok":
            note = f"**missing**: run `dvc repro evaluate@{row['variant']}`"
            cells = [f"`{row['variant']}`", note] + [""] * (len(SUMMARY_COLUMNS) - 1)
        else:
            cells = [f"`{row['variant']}`"] + [
                _format(row.get(key), pattern) for key, _, pattern in SUMMARY_COLUMNS
            ]
        lines.append("| " + " | ".join(cells) + " |")
    extras = [row for row in rows if row.get("psnr_gain") is not None or row.get("kl") is not None]
    if extras:
        lines += ["", "Variant extras:", ""]
        for row in extras:
            if row.get("psnr_gain") is not None:
                lines.append(
                    f"- `{row['variant']}` denoising: PSNR of the noisy input "
                    f"{_format(row.get('psnr_noisy'), '{:.2f}')} dB, of its output "
                    f"{_format(row.get('psnr_denoised'), '{:.2f}')} dB "
                    f"(gain {_format(row.get('psnr_gain'), '{:+.2f}')} dB)."
                )
            if row.get("kl") is not None:
                lines.append(
                    f"- `{row['variant']}` VAE: mean KL(q(z|x) || N(0, I)) on test "
                    f"{_format(row.get('kl'), '{:.3f}')} nats."
                )
    lines += ["", "## Baselines (computed live in this run)", ""]
    kmeans = baselines.get("kmeans_pixels")
    lines.append("| baseline | code | test MSE | cluster acc | NMI | ARI |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    if kmeans:
        lines.append(
            "| k-means on raw pixels | – | – | "
            + " | ".join(
                _format(kmeans[key], "{:.3f}") for key in ("cluster_accuracy", "nmi", "ari")
            )
            + " |"
        )
    for size, result in sorted(baselines.get("pca", {}).items(), key=lambda item: int(item[0])):
        capped = (
            ""
            if int(result["n_components"]) == int(size)
            else (f" (capped at {result['n_components']} components)")
        )
        lines.append(
            f"| PCA, {size} components{capped} | {size} | {result['mse']:.5f} | – | – | – |"
        )
    tuned = [row for row in rows if row.get("search_best_value") is not None]
    if tuned:
        lines += [
            "",
            "## Tuning: the search's fidelity against the final run",
            "",
            "| variant | best val loss in the search | chosen | final test MSE | final test BCE |",
            "|---|---:|---|---:|---:|",
        ]
        for row in tuned:
            chosen = ", ".join(
                f"{k}={_format(v, '{:.3g}')}" for k, v in row["search_params"].items()
            )
            lines.append(
                f"| `{row['variant']}` | {_format(row['search_best_value'], '{:.4f}')} | "
                f"{chosen or '–'} | {_format(row.get('mse'), '{:.5f}')} | "
                f"{_format(row.get('bce'), '{:.4f}')} |"
            )
    lines += ["", "## Quality bar", ""]
    verdict = "PASS" if quality["passed"] else "FAIL"
    bar = quality.get("pca_ratio_bar", PCA_RATIO_BAR)
    beat = (
        f"every variant's test MSE <= {bar} x PCA's at its code size"
        if quality["all_beat_pca"]
        else f"above {bar} x PCA: "
        + (", ".join(quality["not_beating_pca"]) or "none")
        + ("; missing: " + ", ".join(quality["missing"]) if quality["missing"] else "")
    )
    for anchor in quality.get("anchors", []):
        lines.append(
            f"- `{anchor['variant']}` test {anchor['metric'].upper()} "
            f"{_format(anchor['value'], '{:.4f}')} "
            f"{'<=' if anchor['met'] else '>'} {anchor['bar']} ({anchor['source']})"
        )
    reconstruction = "PASS" if quality.get("reconstruction_passed") else "FAIL"
    lines += ["", f"Reconstruction: **{reconstruction}**.", ""]
    best = quality["best_cluster_accuracy"]
    cluster = (
        f"best clustering accuracy {_format(best, '{:.3f}')} "
        f"(`{quality['best_cluster_variant']}`) "
        f"{'>=' if quality['cluster_bar_met'] else '<'} {quality['cluster_accuracy_bar']}"
    )
    lines.append(f"**{verdict}**: {beat}; {cluster}.")
    lines.append("")
    return "\n".join(lines)
