"""Reference baselines: PCA with as many components as the code has units, fitted on the
training split (capped at min(n_samples, n_features), reported as ``pca_n_components``);
k-means on raw pixels.

A training split of uint8 shards (a ``data.Split`` not in memory) fits the PCA incrementally
(``sklearn.decomposition.IncrementalPCA``, one ``partial_fit`` per batch of ``PCA_BATCH`` rows
or more, in float64) instead of holding it whole: the same subspace up to the incremental
SVD's rounding, memory bounded by the batch. The npz splits keep the exact one-shot PCA.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from autoencoders.data.splits import STREAM_PIXELS, Split
from autoencoders.evaluation import image_quality, latent

PCA_BATCH = 1024


def pca_baseline(
    x_train: np.ndarray, x_test: np.ndarray, code_sizes: Iterable[int]
) -> dict[int, dict[str, float]]:
    """Test mse of PCA fitted on ``x_train`` for each code size, from one fit.

    The components of one PCA fit are ordered, so reconstructing with the first k of them is
    PCA with k components. Each size is capped at min(n_samples, n_features) of the training
    split; ``{size: {"mse": .., "n_components": capped size}}``.
    """
    streamed = isinstance(x_train, Split) and not x_train.in_memory
    if isinstance(x_train, Split) and not streamed:
        x_train = x_train.array
    train_shape = (len(x_train), int(np.prod(x_train.shape[1:])))
    train = None if streamed else image_quality.check_images(x_train, "x_train")
    test = image_quality.check_images(x_test, "x_test").reshape(len(x_test), -1)
    if train_shape[1] != test.shape[1]:
        raise ValueError(
            f"x_train has {train_shape[1]} features per image but x_test has {test.shape[1]}: "
            "pass splits of the same data."
        )
    sizes = sorted({int(size) for size in code_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"code_sizes must be positive integers, got {sizes}.")
    limit = min(train_shape)
    largest = min(sizes[-1], limit)
    if not streamed:
        pca = _pca(train.reshape(train_shape), largest)
        return _test_mse(pca, test, sizes, limit)
    # Shards: the test mse too a few rows at a time (float64 temporaries are 8 bytes a pixel).
    pca = _incremental_pca(x_train, largest)
    rows = max(1, STREAM_PIXELS // test.shape[1])
    parts = [
        (_test_mse(pca, test[start : start + rows], sizes, limit), len(test[start : start + rows]))
        for start in range(0, len(test), rows)
    ]
    return {
        size: {
            "mse": float(sum(part[size]["mse"] * count for part, count in parts) / len(test)),
            "n_components": parts[0][0][size]["n_components"],
        }
        for size in sizes
    }


def _test_mse(pca: Any, test: np.ndarray, sizes: list[int], limit: int) -> dict:
    """``{size: {"mse", "n_components"}}`` of the fitted ``pca`` on the (N, features) test."""
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


def _pca(train: np.ndarray, components: int) -> Any:
    """One-shot PCA of the (N, features) training pixels, in float64."""
    from sklearn.decomposition import PCA

    # With few features (784 for MNIST) the eigendecomposition of the covariance is exact and
    # ~10x faster than an SVD of the (n_samples, n_features) matrix; float64 keeps it precise.
    solver = "covariance_eigh" if train.shape[1] <= 2048 else "full"
    return PCA(n_components=components, svd_solver=solver).fit(train.astype(np.float64))


def _incremental_pca(train: Split, components: int) -> Any:
    """IncrementalPCA over the split's batches of ``PCA_BATCH`` rows or fewer (8 MB of pixels),
    each at least twice ``components`` rows (the last, shorter batch joins the one before)."""
    from sklearn.decomposition import IncrementalPCA

    features = int(np.prod(train.shape[1:]))
    size = max(2 * components, min(PCA_BATCH, STREAM_PIXELS // features))
    pca = IncrementalPCA(n_components=components, batch_size=size)
    starts = list(range(0, len(train), size))
    if len(starts) > 1 and len(train) - starts[-1] < components:
        starts.pop()
    for number, start in enumerate(starts):
        stop = starts[number + 1] if number + 1 < len(starts) else len(train)
        batch = train.images(np.arange(start, stop))
        pixels = image_quality.check_images(batch, "x_train").reshape(len(batch), -1)
        pca.partial_fit(pixels.astype(np.float64))
    return pca


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
