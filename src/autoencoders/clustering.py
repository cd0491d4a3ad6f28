"""A clustering head on any latent space: the N2D recipe (UMAP manifold, then a Gaussian mixture).

    head = fit_head(codes, n_clusters=10, seed=42)          # UMAP 10-d, GMM full covariance
    assignments = head.assignments                          # the fitted codes' clusters
    predicted = predict_head(head, other_codes)             # UMAP.transform + GMM.predict

``score_head`` runs both protocols on one variant's codes and returns the metrics that the
``cluster@<variant>`` stage writes to ``metrics/cluster/<variant>.json``:

- N2D protocol (McConville et al., rymc/n2d): the head is fitted on the test split's codes and
  scored on those same codes (``head_accuracy``, ``head_nmi``, ``head_ari``);
- inductive: fitted on a seeded subsample of training codes, then applied to the test codes
  (``head_inductive_accuracy``, ...), what a deployed head would see.

Labels only score: fitting never sees them, and without labels (an ``npz`` source without ``y``)
the head reports label-free figures instead (silhouette of its clusters in the manifold, cluster
sizes). Used by ``pipeline/cluster.py``; umap-learn compiles with numba on its first call in a
fresh environment (cold), and caches the compiled functions on disk for later processes (warm).

The same codes give the same figures, byte for byte, whatever the thread counts and the CPU
(within one instruction-set level): numba compiles UMAP's layout for one CPU per level rather
than the host's own (``pin_numba_target``), neighbour distances are recomputed without BLAS,
and a partition is labelled canonically (largest cluster first) before it is scored or its
sizes are listed.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autoencoders.config import ConfigError


@dataclasses.dataclass(frozen=True)
class HeadParams:
    """params.yaml ``cluster:``: the head's recipe (N2D defaults) and its protocols."""

    n_clusters: int = 10  # fixed here, never read from the labels
    n_components: int = 10  # UMAP output dimensions
    n_neighbors: int = 20
    min_dist: float = 0.0
    metric: str = "euclidean"
    n_epochs: int = 200  # UMAP optimisation epochs (its default: 500 up to 10,000 points)
    covariance_type: str = "full"
    gmm_n_init: int = 1
    inductive_subsample: int = 10000  # training codes the inductive head is fitted on (0: none)
    silhouette_sample: int = 2000
    view: str = "pca"  # the 2-d figure: "pca" of the manifold (free) or "umap" (a 2-d refit)

    def __post_init__(self) -> None:
        positive = {
            "n_clusters": self.n_clusters >= 2,
            "n_components": self.n_components >= 1,
            "n_neighbors": self.n_neighbors >= 2,
            "n_epochs": self.n_epochs >= 1,
            "gmm_n_init": self.gmm_n_init >= 1,
            "inductive_subsample": self.inductive_subsample >= 0,
            "silhouette_sample": self.silhouette_sample >= 2,
        }
        for key, ok in positive.items():
            if not ok:
                raise ConfigError(f"cluster.{key} is out of range: {getattr(self, key)!r}.")
        if not 0.0 <= self.min_dist <= 1.0:
            raise ConfigError(f"cluster.min_dist must be in [0, 1], got {self.min_dist}.")
        if self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise ConfigError(
                "cluster.covariance_type must be one of ['diag', 'full', 'spherical', 'tied'], "
                f"got {self.covariance_type!r}."
            )
        if self.view not in ("pca", "umap"):
            raise ConfigError(f"cluster.view must be 'pca' or 'umap', got {self.view!r}.")


# numba's machine code for the host CPU (AVX2, AVX-512, FMA contraction) reassociates the
# fastmath loops of UMAP's layout differently per CPU family; the layout is chaotic, so a
# last-bit difference becomes another manifold and other clusters. One target per instruction
# set level compiles the same code on every machine of that level: AVX2 with FMA ("haswell", the
# level oneDNN and XLA are capped at, see autoencoders/__init__.py) where the CPU has it, the
# architecture's baseline ("generic") elsewhere.
NUMBA_AVX2_CPU_NAME = "haswell"
NUMBA_BASELINE_CPU_NAME = "generic"


def numba_target() -> str:
    """The CPU name numba compiles for here: ``haswell`` on AVX2+FMA x86-64, else ``generic``."""
    import platform

    from llvmlite import binding

    features = binding.get_host_cpu_features()
    avx2 = features.get("avx2") and features.get("fma")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return NUMBA_AVX2_CPU_NAME if x86 and avx2 else NUMBA_BASELINE_CPU_NAME


def pin_numba_target() -> bool:
    """Compile numba code for ``numba_target()``, not this host's own CPU; True if pinned.

    Must run before numba creates its CPU target (the first ``njit`` function in the process):
    afterwards the host's code generator is fixed and the head warns that its figures may
    differ from another machine's.
    """
    import numba
    from numba.core import registry

    target = numba_target()
    if numba.config.CPU_NAME == target:
        return True
    if "_toplevel_target_context" in vars(registry.cpu_target):
        warnings.warn(
            "numba compiled for this host before the clustering head could pin its CPU target; "
            f"the head's figures may differ on another machine (set NUMBA_CPU_NAME={target} "
            "before starting Python).",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    numba.config.CPU_NAME = target
    numba.config.CPU_FEATURES = ""
    return True


def import_umap() -> Any:
    """``umap``, imported so that it neither loads TensorFlow nor recompiles in every process.

    umap-learn's ``__init__`` imports its parametric variant, which loads TensorFlow (seconds);
    marking that submodule absent skips it. Its numba kernels are compiled without
    ``cache=True``, so each new process (every DVC stage) would compile them again: while umap
    imports, ``numba.njit`` defaults to ``cache=True`` and later processes load the compiled
    kernels from ``__pycache__`` (kernels built at call time still compile per process). The
    kernels are compiled for one CPU per instruction-set level (``pin_numba_target``), so the
    same codes give the same manifold on every machine of that level.
    """
    import sys

    if "umap" in sys.modules:
        pin_numba_target()  # only warns: umap's kernels already exist
        return sys.modules["umap"]
    import numba

    pin_numba_target()
    sys.modules.setdefault("umap.parametric_umap", None)  # type: ignore[arg-type]
    original = numba.njit

    def cached_njit(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cache", True)
        return original(*args, **kwargs)

    numba.njit = cached_njit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import umap
    finally:
        numba.njit = original
    return umap


class ExactNeighbours:
    """Exact k nearest neighbours (scikit-learn) in the shape umap's ``transform`` queries.

    UMAP's own approximate search (pynndescent) compiles for about a minute in each new process;
    exact search on a few ten thousand codes takes a second and needs no compilation. The
    neighbours' distances are recomputed from the differences in float64 and ranked by
    (distance, index): the BLAS expansion that finds them rounds differently per CPU and thread
    count, and ties would otherwise come in the search's order.
    """

    _angular_trees = False  # read by umap's transform

    def __init__(self, data: np.ndarray, metric: str = "euclidean") -> None:
        from sklearn.neighbors import NearestNeighbors

        self.data = np.asarray(data)
        self.metric = metric
        self.index = NearestNeighbors(metric=metric).fit(data)

    def _exact(self, points: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances) ranked by exactly recomputed distance, then by index."""
        if self.metric == "euclidean":
            distances = np.empty(indices.shape)
            for start in range(0, len(points), 256):  # bounded memory for wide codes
                rows = slice(start, start + 256)
                # (256, k, d) differences, summed in float64: no cancellation, no BLAS.
                difference = points[rows, None, :].astype(np.float64) - self.data[indices[rows]]
                distances[rows] = np.sqrt(np.square(difference).sum(axis=-1))
        else:
            from sklearn.metrics import pairwise_distances

            distances = np.stack(
                [
                    pairwise_distances(point[None], self.data[row], metric=self.metric)[0]
                    for point, row in zip(points, indices, strict=True)
                ]
            )
        distances = distances.astype(np.float32)
        order = np.lexsort((indices, distances), axis=1)
        return (
            np.take_along_axis(indices, order, axis=1).astype(np.int32),
            np.take_along_axis(distances, order, axis=1),
        )

    def query(self, points: np.ndarray, k: int, epsilon: float = 0.0) -> tuple[Any, Any]:
        points = np.asarray(points)
        indices = self.index.kneighbors(points, n_neighbors=k, return_distance=False)
        return self._exact(points, indices)

    def graph(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each fitted point's k nearest (itself first), as umap's ``precomputed_knn`` wants."""
        indices = self.index.kneighbors(n_neighbors=k - 1, return_distance=False)
        indices, distances = self._exact(self.data, indices)
        own = np.arange(len(indices))[:, None]
        indices = np.hstack([own, indices]).astype(np.int32)
        distances = np.hstack([np.zeros((len(own), 1), np.float32), distances])
        return indices, distances


def canonical_labels(assignments: np.ndarray, n_clusters: int) -> np.ndarray:
    """(n_clusters,) new label of each cluster: 0 the largest, ties by their first member.

    A partition then has one spelling whatever the mixture's component order, so its sizes,
    figure colours and scores come out byte for byte the same.
    """
    assignments = np.asarray(assignments)
    sizes = np.bincount(assignments, minlength=n_clusters)
    first = np.full(n_clusters, len(assignments))
    np.minimum.at(first, assignments, np.arange(len(assignments)))
    order = np.lexsort((first, -sizes))  # clusters, largest first
    relabel = np.empty(n_clusters, dtype=np.int64)
    relabel[order] = np.arange(n_clusters)
    return relabel


@dataclasses.dataclass
class Head:
    """A fitted head: the UMAP reducer, the mixture, and what it saw."""

    reducer: Any  # umap.UMAP
    mixture: Any  # sklearn.mixture.GaussianMixture
    embedding: np.ndarray  # (N, n_components) manifold of the fitted codes
    assignments: np.ndarray  # (N,) clusters of the fitted codes, canonically labelled
    seconds: float
    relabel: np.ndarray | None = None  # (n_clusters,) canonical label of each component


def _flat_codes(codes: Any, name: str = "codes") -> np.ndarray:
    array = np.asarray(codes)
    if array.ndim < 2 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty batch (N, ...), got shape {array.shape}.")
    array = array.reshape(len(array), -1).astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values: check the encoder.")
    return array


def fit_head(
    codes: Any,
    *,
    n_clusters: int = 10,
    seed: int = 0,
    n_components: int = 10,
    n_neighbors: int = 20,
    min_dist: float = 0.0,
    metric: str = "euclidean",
    n_epochs: int | None = 200,
    covariance_type: str = "full",
    gmm_n_init: int = 1,
) -> Head:
    """UMAP (``n_components``-d, ``n_neighbors``, ``min_dist``) then a GaussianMixture, seeded.

    Fewer codes than neighbours shrink ``n_neighbors`` (and the components) to what fits.
    """
    from sklearn.mixture import GaussianMixture

    umap = import_umap()
    flat = _flat_codes(codes)
    if len(flat) < n_clusters:
        raise ValueError(f"{len(flat)} codes cannot make {n_clusters} clusters.")
    started = time.perf_counter()
    neighbours = max(2, min(n_neighbors, len(flat) - 1))
    components = max(1, min(n_components, len(flat) - 2))
    index = ExactNeighbours(flat, metric)
    knn_indices, knn_distances = index.graph(neighbours)
    reducer = umap.UMAP(
        n_components=components,
        n_neighbors=neighbours,
        min_dist=min_dist,
        metric=metric,
        n_epochs=n_epochs,
        random_state=seed,
        # Seeded UMAP runs single-threaded anyway; saying so silences its warning.
        n_jobs=1,
        transform_seed=seed,
        precomputed_knn=(knn_indices, knn_distances, index),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        embedding = reducer.fit_transform(flat)
    mixture = GaussianMixture(
        n_components=n_clusters,
        covariance_type=covariance_type,
        n_init=gmm_n_init,
        random_state=seed,
    )
    components_of = mixture.fit_predict(embedding)
    relabel = canonical_labels(components_of, n_clusters)
    seconds = time.perf_counter() - started
    return Head(reducer, mixture, embedding, relabel[components_of], seconds, relabel)


def predict_head(head: Head, codes: Any) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, clusters) of new codes: ``UMAP.transform`` then ``GaussianMixture.predict``."""
    flat = _flat_codes(codes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        embedding = head.reducer.transform(flat)
    predicted = head.mixture.predict(embedding)
    return embedding, predicted if head.relabel is None else head.relabel[predicted]


def label_scores(labels: np.ndarray, assignments: np.ndarray, prefix: str) -> dict[str, float]:
    """``{prefix}accuracy`` (best one-to-one mapping), ``{prefix}nmi``, ``{prefix}ari``.

    Scored on the canonically labelled partition: the same partition gives the same bytes.
    """
    from sklearn import metrics

    from autoencoders.evaluation.latent import clustering_accuracy

    assignments = np.asarray(assignments)
    assignments = canonical_labels(assignments, int(assignments.max()) + 1)[assignments]

    return {
        f"{prefix}accuracy": clustering_accuracy(labels, assignments),
        f"{prefix}nmi": float(metrics.normalized_mutual_info_score(labels, assignments)),
        f"{prefix}ari": float(metrics.adjusted_rand_score(labels, assignments)),
    }


def label_free_scores(
    embedding: np.ndarray, assignments: np.ndarray, seed: int, sample: int, prefix: str
) -> dict[str, Any]:
    """What needs no labels: silhouette of the clusters in the manifold, cluster sizes.

    Sizes are listed largest first: a partition's sizes, whatever its clusters are called.
    """
    from sklearn import metrics

    sizes = np.bincount(np.asarray(assignments), minlength=int(np.max(assignments)) + 1)
    result: dict[str, Any] = {
        f"{prefix}cluster_sizes": sorted((int(size) for size in sizes), reverse=True),
        f"{prefix}smallest_cluster_share": float(sizes.min() / sizes.sum()),
    }
    points, chosen = embedding, np.asarray(assignments)
    if sample < len(points):
        index = np.random.default_rng(seed).choice(len(points), size=sample, replace=False)
        points, chosen = points[index], chosen[index]
    result[f"{prefix}silhouette"] = (
        float(metrics.silhouette_score(points, chosen)) if np.unique(chosen).size > 1 else 0.0
    )
    return result


def score_head(
    test_codes: Any,
    test_labels: np.ndarray | None,
    *,
    params: HeadParams,
    seed: int,
    train_codes: Any | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both protocols on one variant's codes; returns (metrics, arrays for the figure).

    Metrics: ``head_accuracy``, ``head_nmi``, ``head_ari`` (N2D protocol, with labels),
    ``head_inductive_accuracy``/``_nmi``/``_ari`` (with training codes and labels), label-free
    ``head_silhouette``, ``head_cluster_sizes``, and the seconds each fit took.
    """
    settings = {
        "n_clusters": params.n_clusters,
        "n_components": params.n_components,
        "n_neighbors": params.n_neighbors,
        "min_dist": params.min_dist,
        "metric": params.metric,
        "n_epochs": params.n_epochs,
        "covariance_type": params.covariance_type,
        "gmm_n_init": params.gmm_n_init,
    }
    test = _flat_codes(test_codes, "test codes")
    head = fit_head(test, seed=seed, **settings)
    metrics: dict[str, Any] = {
        "head_recipe": (
            f"UMAP {params.n_components}-d ({params.n_neighbors} neighbours, min_dist "
            f"{params.min_dist:g}) + GaussianMixture ({params.covariance_type}, "
            f"k={params.n_clusters})"
        ),
        "head_codes": len(test),
        "head_seconds": round(head.seconds, 3),
        "labelled": test_labels is not None,
    }
    if test_labels is not None:
        metrics.update(label_scores(np.asarray(test_labels), head.assignments, "head_"))
    metrics.update(
        label_free_scores(
            head.embedding, head.assignments, seed, params.silhouette_sample, "head_"
        )
    )
    if train_codes is not None and params.inductive_subsample > 0:
        train = _flat_codes(train_codes, "training codes")
        if params.inductive_subsample < len(train):
            rng = np.random.default_rng(seed)
            train = train[rng.choice(len(train), size=params.inductive_subsample, replace=False)]
        started = time.perf_counter()
        inductive = fit_head(train, seed=seed, **settings)
        _, predicted = predict_head(inductive, test)
        metrics["head_inductive_codes"] = len(train)
        metrics["head_inductive_seconds"] = round(time.perf_counter() - started, 3)
        if test_labels is not None:
            metrics.update(label_scores(np.asarray(test_labels), predicted, "head_inductive_"))
        sizes = np.bincount(predicted, minlength=params.n_clusters)
        metrics["head_inductive_cluster_sizes"] = sorted((int(s) for s in sizes), reverse=True)
    arrays = {"embedding": head.embedding, "assignments": head.assignments}
    return metrics, arrays


def view_2d(embedding: np.ndarray, *, seed: int, how: str = "pca") -> tuple[np.ndarray, str]:
    """A 2-d view of the head's manifold: its first two principal axes, or a 2-d UMAP of it."""
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.shape[1] <= 2:
        points = np.c_[embedding, np.zeros((len(embedding), 2 - embedding.shape[1]))]
        return points, f"the {embedding.shape[1]}-d manifold itself"
    if how == "umap":
        umap = import_umap()
        reducer = umap.UMAP(n_components=2, n_neighbors=20, min_dist=0.0, random_state=seed)
        return reducer.fit_transform(embedding), f"2-d UMAP of the {embedding.shape[1]}-d manifold"
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(embedding)
    share = float(np.sum(pca.explained_variance_ratio_))
    return pca.transform(embedding), f"PCA of the {embedding.shape[1]}-d manifold ({share:.0%})"


def summarise_seeds(results: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Mean and sample standard deviation of ``keys`` over per-seed metrics."""
    summary: dict[str, Any] = {"runs": len(results)}
    for key in keys:
        values = [float(result[key]) for result in results if result.get(key) is not None]
        if values:
            mean = sum(values) / len(values)
            spread = (
                math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))
                if len(values) > 1
                else 0.0
            )
            summary[key] = {"mean": mean, "std": spread, "values": values}
    return summary


def score_clusters_onnx(
    export_dir: Any, images: np.ndarray, labels: np.ndarray | None
) -> dict[str, Any]:
    """An IDEC export's own assignments (argmax of clusters.onnx, ONNX Runtime alone) scored:
    ``cluster_accuracy``, ``nmi``, ``ari`` with labels; ``cluster_sizes`` always."""
    from autoencoders import inference

    assignments, _ = inference.Clusterer(export_dir, batch_size=1024).cluster(images)
    result: dict[str, Any] = {
        "cluster_sizes": [int(size) for size in np.bincount(assignments)],
        "images": len(assignments),
    }
    if labels is not None:
        scores = label_scores(np.asarray(labels), assignments, "")
        result.update({"cluster_accuracy": scores["accuracy"], **scores})
        del result["accuracy"]
    return result


def own_assignment_metrics(
    model: Any, metrics: Mapping[str, Any], x_test: np.ndarray, y_test: np.ndarray | None
) -> dict[str, Any]:
    """For a model with its own clusters (IDEC): ``cluster_accuracy``/``nmi``/``ari`` become
    those of its assignments (argmax Q) on the test split; k-means's move to ``kmeans_*``."""
    assignments = np.argmax(model.assign(x_test), axis=1)
    updated = dict(metrics)
    updated["cluster_source"] = "argmax Q (the model's own assignments)"
    updated["own_cluster_sizes"] = [int(size) for size in np.bincount(assignments)]
    if y_test is not None:
        for key in ("cluster_accuracy", "nmi", "ari"):
            if key in metrics:
                updated[f"kmeans_{key}"] = metrics[key]
        scores = label_scores(np.asarray(y_test), assignments, "")
        updated["cluster_accuracy"] = scores["accuracy"]
        updated["nmi"] = scores["nmi"]
        updated["ari"] = scores["ari"]
    return updated
