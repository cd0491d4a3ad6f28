"""The manifold partition of codes (the N2D recipe: UMAP, then a Gaussian mixture), pinned.

    head = fit_head(codes, n_clusters=10, seed=42)          # UMAP 10-d, GMM full covariance
    assignments = head.assignments                          # the fitted codes' clusters
    predicted = predict_head(head, other_codes)             # UMAP.transform + GMM.predict

A foundation shared by IDEC's initialisation (``models.idec``, at training) and the clustering
head (``clustering``, after export), so that neither imports the other's package.

numba's machine code for the host CPU reassociates the fastmath loops of UMAP's layout per CPU
family, and the layout is chaotic; UMAP's approximate neighbour search (pynndescent) compiles for
about a minute per process. ``import_umap`` pins numba first; ``ExactNeighbours`` replaces the
search with an exact one whose distances round the same on every machine; ``canonical_labels``
gives a partition one spelling whatever the mixture's component order.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import numpy as np

from autoencoders.threads import small_blas

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


@dataclasses.dataclass
class Head:
    """A fitted head: the UMAP reducer, the mixture, and what it saw."""

    reducer: Any  # umap.UMAP (None in the seeds' heads of score_head: not needed there)
    mixture: Any  # sklearn.mixture.GaussianMixture
    embedding: np.ndarray  # (N, n_components) manifold of the fitted codes
    assignments: np.ndarray  # (N,) clusters of the fitted codes, canonically labelled
    seconds: float
    relabel: np.ndarray | None = None  # (n_clusters,) canonical label of each component
    neighbours: Neighbours | None = None  # the fitted codes' neighbour graph


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """The exact ``k``-nearest-neighbour graph of some codes, as UMAP's ``precomputed_knn``."""

    index: ExactNeighbours
    indices: np.ndarray
    distances: np.ndarray
    k: int

    @classmethod
    def of(cls, flat: np.ndarray, metric: str, k: int) -> Neighbours:
        index = ExactNeighbours(flat, metric)
        indices, distances = index.graph(k)
        return cls(index, indices, distances, k)


def neighbour_count(n_neighbors: int, codes: int) -> int:
    """The neighbours a head on ``codes`` codes uses: ``n_neighbors``, fewer when they lack."""
    return max(2, min(n_neighbors, codes - 1))


def flat_codes(codes: Any, name: str = "codes") -> np.ndarray:
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
    neighbours: Neighbours | None = None,
) -> Head:
    """UMAP (``n_components``-d, ``n_neighbors``, ``min_dist``) then a GaussianMixture, seeded.

    Fewer codes than neighbours shrink ``n_neighbors`` (and the components) to what fits.
    ``neighbours``: the codes' exact neighbour graph from an earlier fit on the same codes (it
    does not depend on the seed), reused instead of recomputed.
    """
    umap = import_umap()
    flat = flat_codes(codes)
    if len(flat) < n_clusters:
        raise ValueError(f"{len(flat)} codes cannot make {n_clusters} clusters.")
    started = time.perf_counter()
    k = neighbour_count(n_neighbors, len(flat))
    components = max(1, min(n_components, len(flat) - 2))
    if neighbours is None or neighbours.k != k:
        neighbours = Neighbours.of(flat, metric, k)
    reducer = umap.UMAP(
        n_components=components,
        n_neighbors=k,
        min_dist=min_dist,
        metric=metric,
        n_epochs=n_epochs,
        random_state=seed,
        # Seeded UMAP runs single-threaded anyway; saying so silences its warning.
        n_jobs=1,
        transform_seed=seed,
        precomputed_knn=(neighbours.indices, neighbours.distances, neighbours.index),
    )
    with warnings.catch_warnings(), small_blas():
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        embedding = reducer.fit_transform(flat)
    mixture, components_of = fit_mixture(embedding, n_clusters, covariance_type, gmm_n_init, seed)
    relabel = canonical_labels(components_of, n_clusters)
    seconds = time.perf_counter() - started
    return Head(reducer, mixture, embedding, relabel[components_of], seconds, relabel, neighbours)


def fit_mixture(
    embedding: np.ndarray, n_clusters: int, covariance_type: str, n_init: int, seed: int
) -> tuple[Any, np.ndarray]:
    """(the seeded GaussianMixture, each point's component) on the manifold, with one BLAS
    thread: its thousands of small products round differently with more (``threads``)."""
    from sklearn.mixture import GaussianMixture

    mixture = GaussianMixture(
        n_components=n_clusters, covariance_type=covariance_type, n_init=n_init, random_state=seed
    )
    with small_blas():
        return mixture, mixture.fit_predict(embedding)


def predict_head(head: Head, codes: Any) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, clusters) of new codes: ``UMAP.transform`` then ``GaussianMixture.predict``."""
    flat = flat_codes(codes)
    with warnings.catch_warnings(), small_blas():
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        embedding = head.reducer.transform(flat)
        predicted = head.mixture.predict(embedding)
    return embedding, predicted if head.relabel is None else head.relabel[predicted]


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
