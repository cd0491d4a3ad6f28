"""Reference baselines: PCA with as many components as the code has units, fitted on the
training split (capped at min(n_samples, n_features), reported as ``pca_n_components``);
k-means on raw pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from autoencoders.evaluation import image_quality, latent


def pca_baseline(
    x_train: np.ndarray, x_test: np.ndarray, code_sizes: Iterable[int]
) -> dict[int, dict[str, float]]:
    """Test mse of PCA fitted on ``x_train`` for each code size, from one fit.

    The components of one PCA fit are ordered, so reconstructing with the first k of them is
    PCA with k components. Each size is capped at min(n_samples, n_features) of the training
    split; ``{size: {"mse": .., "n_components": capped size}}``.
    """
    from sklearn.decomposition import PCA

    train = image_quality.check_images(x_train, "x_train").reshape(len(x_train), -1)
    test = image_quality.check_images(x_test, "x_test").reshape(len(x_test), -1)
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
        pixels, labels = latent.check_codes(
            np.reshape(x_test, (len(x_test), -1)), y_test, "pixels"
        )
        predicted = latent.kmeans_labels(
            pixels, int(np.unique(labels).size), seed=seed, n_init=kmeans_n_init
        )
        result["kmeans_pixels"] = {
            "cluster_accuracy": latent.clustering_accuracy(labels, predicted),
            "nmi": float(metrics.normalized_mutual_info_score(labels, predicted)),
            "ari": float(metrics.adjusted_rand_score(labels, predicted)),
        }
    return result
