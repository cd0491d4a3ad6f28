"""Latent-space metrics on codes flattened to (N, latent_dim).

- k-means with k = number of classes (seeded, ``n_init`` restarts); ``cluster_accuracy`` is the
  share of images whose cluster maps to their class under the best one-to-one mapping (Hungarian
  matching), ``nmi`` and ``ari`` the usual scores of that clustering.
- ``silhouette``: of the true classes in code space (how well classes separate, independent of
  k-means), Euclidean, on a seeded sample of ``silhouette_sample`` codes.
- ``probe_accuracy``: a logistic regression fitted on standardized training codes, scored on
  the test codes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from autoencoders.manifold import canonical_labels


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


def label_scores(labels: np.ndarray, assignments: np.ndarray, prefix: str) -> dict[str, float]:
    """``{prefix}accuracy`` (best one-to-one mapping), ``{prefix}nmi``, ``{prefix}ari``.

    Scored on the canonically labelled partition: the same partition gives the same bytes.
    """
    from sklearn import metrics

    assignments = np.asarray(assignments)
    assignments = canonical_labels(assignments, int(assignments.max()) + 1)[assignments]

    return {
        f"{prefix}accuracy": clustering_accuracy(labels, assignments),
        f"{prefix}nmi": float(metrics.normalized_mutual_info_score(labels, assignments)),
        f"{prefix}ari": float(metrics.adjusted_rand_score(labels, assignments)),
    }


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
