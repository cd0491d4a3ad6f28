"""A clustering head on any latent space: the N2D recipe (UMAP manifold, then a Gaussian mixture).

    head = fit_head(codes, n_clusters=10, seed=42)          # UMAP 10-d, GMM full covariance
    assignments = head.assignments                          # the fitted codes' clusters
    predicted = predict_head(head, other_codes)             # UMAP.transform + GMM.predict

``score_head`` runs both protocols on one variant's codes and returns the metrics that the
``cluster@<variant>`` stage writes to ``metrics/cluster/<variant>.json``:

- N2D protocol (McConville et al., rymc/n2d): the head is fitted on the test split's codes and
  scored on those same codes (``head_accuracy``, ``head_nmi``, ``head_ari``);
- over seeds (``cluster.seeds``): the head is fitted with seeds ``seed`` to
  ``seed + seeds - 1`` on the same codes (one neighbour graph) and the reported partition is
  their consensus (``clustering.consensus``: co-association, no seed is picked), so shifting
  the seeds hardly moves it; ``head_accuracy_mean`` / ``_std``, ... give the single seeds'
  spread and ``head_seeds`` each seed's figures and agreement (ARI) with the consensus;
- inductive: the same seeds' consensus on a seeded subsample of training codes
  (``arrays["train_partition"]``), which ``clustering.deploy`` distils into an exported
  clusterer and scores on the test images (``head_inductive_accuracy``).

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autoencoders.clustering.consensus import agreement, consensus, modularity
from autoencoders.config import ConfigError
from autoencoders.evaluation.latent import label_scores
from autoencoders.manifold import (
    Head,
    Neighbours,
    fit_head,
    flat_codes,
    neighbour_count,
)
from autoencoders.threads import spread_over_processes


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
    gmm_n_init: int = 10  # restarts, the best likelihood kept
    inductive_subsample: int = 10000  # training codes the inductive head is fitted on (0: none)
    seeds: int = 5  # N2D fits over this many seeds: their consensus reported, mean and std
    processes: int = 0  # fits run side by side in this many processes (0: one a usable core)
    # The reported partition: "consensus" of the seeds' partitions (co-association), or the
    # seed's partition of highest "modularity" on the codes' own neighbour graph.
    partition: str = "consensus"
    clusterer_hidden_units: int = 256  # the exported clusterer's hidden layer (clusters.onnx)
    clusterer_epochs: int = 100  # its training budget (Adam epochs on the training codes)
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
            "processes": self.processes >= 0,
            "seeds": self.seeds >= 1,
            "clusterer_hidden_units": self.clusterer_hidden_units >= 1,
            "clusterer_epochs": self.clusterer_epochs >= 1,
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
        if self.partition not in ("consensus", "modularity"):
            raise ConfigError(
                f"cluster.partition must be 'consensus' or 'modularity', got {self.partition!r}."
            )
        if self.view not in ("pca", "umap"):
            raise ConfigError(f"cluster.view must be 'pca' or 'umap', got {self.view!r}.")

    def recipe(self) -> str:
        """The head in words, as metrics and the report show it."""
        return (
            f"UMAP {self.n_components}-d ({self.n_neighbors} neighbours, min_dist "
            f"{self.min_dist:g}) + GaussianMixture ({self.covariance_type}, "
            f"k={self.n_clusters}), {self.partition} of {self.seeds} seeds"
        )

    def fit_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``fit_head`` these params set."""
        keys = ("n_clusters", "n_components", "n_neighbors", "min_dist", "metric", "n_epochs")
        return {key: getattr(self, key) for key in (*keys, "covariance_type", "gmm_n_init")}


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


def inductive_sample(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The seeded ``size`` rows the inductive head is fitted on (all of them when fewer):
    the same rows whether drawn from the images or from their codes."""
    if size >= len(rows):
        return rows
    return rows[np.random.default_rng(seed).choice(len(rows), size=size, replace=False)]


def score_head(
    test_codes: Any,
    test_labels: np.ndarray | None,
    *,
    params: HeadParams,
    seed: int,
    train_codes: Any | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both protocols on one variant's codes; returns (metrics, arrays).

    Metrics: ``head_accuracy``, ``head_nmi``, ``head_ari`` of the seeds' consensus (N2D
    protocol, with labels), label-free ``head_silhouette`` (in the first seed's manifold),
    ``head_cluster_sizes``, the spread of the single seeds, and the seconds the fits took.
    Arrays: ``embedding`` (the first seed's manifold) and ``assignments`` (the consensus) of
    the test codes, and ``train_partition``: the consensus on the seeded subsample of training
    codes ``train_rows`` (None without training codes). The fits (one a seed and split) are
    independent and single-threaded: they run side by side in ``params.processes`` processes,
    each giving what it gives alone.
    """
    test = flat_codes(test_codes, "test codes")
    train = None
    if train_codes is not None and params.inductive_subsample > 0:
        train = inductive_sample(
            flat_codes(train_codes, "training codes"), params.inductive_subsample, seed
        )
    started = time.perf_counter()
    heads, train_partitions, graphs = _fit_all(test, train, seed, params)
    graph = graphs[0]
    assignments = one_partition([h.assignments for h in heads], graph, params, seed)
    metrics: dict[str, Any] = {
        "head_recipe": params.recipe(),
        "head_codes": len(test),
        "head_seconds": round(time.perf_counter() - started, 3),
        "labelled": test_labels is not None,
    }
    if test_labels is not None:
        metrics.update(label_scores(np.asarray(test_labels), assignments, "head_"))
    embedding = heads[0].embedding
    metrics.update(
        label_free_scores(embedding, assignments, seed, params.silhouette_sample, "head_")
    )
    metrics["head_modularity"] = round(
        modularity(graph.indices, assignments, params.n_clusters), 6
    )
    if params.seeds > 1:
        metrics.update(_spread(heads, assignments, test_labels, seed, params))
        metrics["head_seeds"]["modularity"] = [
            round(modularity(graph.indices, fitted.assignments, params.n_clusters), 6)
            for fitted in heads
        ]
    train_partition = None
    if train is not None:
        train_partition = one_partition(train_partitions, graphs[1], params, seed)
        metrics["head_inductive_codes"] = len(train)
    arrays = {"embedding": embedding, "assignments": assignments}
    return metrics, arrays | {"train_partition": train_partition, "train_codes": train}


def one_partition(
    partitions: Sequence[np.ndarray], graph: Neighbours, params: HeadParams, seed: int
) -> np.ndarray:
    """The reported partition of the seeds' ``partitions`` (``params.partition``): their
    consensus, or the one of highest modularity on the codes' neighbour ``graph``."""
    if params.partition == "consensus":
        return consensus(partitions, params.n_clusters, seed)
    scores = [modularity(graph.indices, partition, params.n_clusters) for partition in partitions]
    return np.asarray(partitions[int(np.argmax(scores))])


def _fit_all(
    test: np.ndarray, train: np.ndarray | None, seed: int, params: HeadParams
) -> tuple[list[Head], list[np.ndarray], list[Neighbours]]:
    """(heads of seeds ``seed`` .. ``seed + seeds - 1`` on the test codes, the same seeds'
    partitions of the training codes, none without them, the splits' neighbour graphs),
    fitted side by side; the seeds share one neighbour graph of each split, computed here."""
    settings = params.fit_settings()
    seeds = range(seed, seed + params.seeds)
    tasks: list[tuple[Any, ...]] = []
    graphs = []
    for codes, kind in ((test, "test"), (train, "train")):
        if codes is not None:
            graphs.append(
                Neighbours.of(
                    codes, params.metric, neighbour_count(params.n_neighbors, len(codes))
                )
            )
            tasks += [(kind, codes, other, settings, graphs[-1]) for other in seeds]
    results = spread_over_processes(_fit_task, tasks, params.processes)
    return results[: len(seeds)], results[len(seeds) :], graphs


def _fit_task(
    kind: str, codes: np.ndarray, seed: int, settings: dict[str, Any], graph: Neighbours
) -> Any:
    """One of ``_fit_all``'s fits on ``codes`` with their neighbour ``graph``: ``test``, the
    head without its reducer; ``train``, only its partition of the codes."""
    fitted = fit_head(codes, seed=seed, neighbours=graph, **settings)
    if kind == "train":
        return fitted.assignments
    return dataclasses.replace(fitted, reducer=None, neighbours=None)


# The figures refitted over seeds; label-free data: the silhouette only.
SEED_KEYS = ("head_accuracy", "head_nmi", "head_ari")


def _spread(
    heads: Sequence[Head],
    assignments: np.ndarray,
    labels: np.ndarray | None,
    seed: int,
    params: HeadParams,
) -> dict[str, Any]:
    """``head_<figure>_mean`` / ``_std`` over the single heads of seeds ``seed``, ``seed + 1``,
    ..., with each seed's value and its agreement (ARI) with the consensus ``assignments`` in
    ``head_seeds``."""
    if labels is not None:
        results = [label_scores(np.asarray(labels), head.assignments, "head_") for head in heads]
        keys: tuple[str, ...] = SEED_KEYS
    else:
        results = [
            label_free_scores(
                head.embedding, head.assignments, seed, params.silhouette_sample, "head_"
            )
            for head in heads
        ]
        keys = ("head_silhouette",)
    summary = summarise_seeds(results, keys)
    partitions = [head.assignments for head in heads]
    spread: dict[str, Any] = {
        "head_seeds": {
            "seeds": list(range(seed, seed + len(heads))),
            "ari_with_consensus": [
                round(value, 6) for value in agreement(partitions, assignments)
            ],
        }
    }
    for key in keys:
        spread[f"{key}_mean"] = summary[key]["mean"]
        spread[f"{key}_std"] = summary[key]["std"]
        spread["head_seeds"][key] = summary[key]["values"]
    return spread


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
