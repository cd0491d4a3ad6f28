"""One partition from several seeds' partitions of the same codes: their consensus.

    partition = consensus([head.assignments for head in heads], n_clusters=10, seed=42)

Each seed's UMAP gives another manifold, so the seeds' mixture likelihoods are not comparable
and keeping the likeliest is a draw. The consensus needs no such comparison: two codes belong
together as often as the seeds put them together (their co-association). Each code's seeds'
labels, one-hot and concatenated, make a point whose squared distance to another code's is
twice the number of seeds that split the two; k-means on those points (weighted by how many
codes share each label tuple, a few hundred distinct tuples rather than every code) finds the
partition that the seeds disagree with least. A solution that only some seeds land in (two
digits merged and another split) is outvoted by the others, so shifting the seeds moves the
result only where the seeds were split evenly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autoencoders.manifold import canonical_labels

KMEANS_RESTARTS = 20  # over a few hundred label tuples: milliseconds each


def consensus(partitions: Sequence[np.ndarray], n_clusters: int, seed: int) -> np.ndarray:
    """(N,) canonically labelled partition closest to all of ``partitions`` (each (N,) ints in
    [0, n_clusters)): k-means with ``n_clusters`` on their concatenated one-hot labels."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    table = np.stack([np.asarray(partition) for partition in partitions], axis=1)  # (N, seeds)
    if table.ndim != 2 or len(table) < n_clusters:
        raise ValueError(f"consensus needs (N >= {n_clusters},) partitions, got {table.shape}.")
    if table.shape[1] == 1:
        return canonical_labels(table[:, 0], n_clusters)[table[:, 0]]
    tuples, members, counts = np.unique(table, axis=0, return_inverse=True, return_counts=True)
    members = np.ravel(members)
    points = np.concatenate([np.eye(n_clusters)[column] for column in tuples.T], axis=1)
    k = min(n_clusters, len(tuples))
    # One thread (BLAS and OpenMP): k-means's chunked sums then round the same on any machine.
    with threadpool_limits(limits=1):
        kmeans = KMeans(k, n_init=KMEANS_RESTARTS, random_state=seed)
        labels = kmeans.fit(points, sample_weight=counts).labels_[members]
    return canonical_labels(labels, n_clusters)[labels]


def agreement(partitions: Sequence[np.ndarray], reference: np.ndarray) -> list[float]:
    """Adjusted Rand index of each partition with ``reference`` (label-free: how far each
    seed's head is from the consensus)."""
    from sklearn.metrics import adjusted_rand_score

    return [float(adjusted_rand_score(reference, partition)) for partition in partitions]


def modularity(indices: np.ndarray, partition: np.ndarray, n_clusters: int) -> float:
    """Newman's modularity of ``partition`` on the codes' k-nearest-neighbour graph
    (``indices`` (N, k), each row a code's neighbours, itself first as in
    ``Neighbours.indices``; edges undirected and unweighted, no self-loops).

    A label-free score in one space common to every seed (the codes' own graph, not a seed's
    manifold), so, unlike the mixtures' likelihoods, the seeds' values compare."""
    from scipy import sparse

    n = len(indices)
    rows = np.repeat(np.arange(n), indices.shape[1] - 1)
    directed = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, np.asarray(indices)[:, 1:].ravel())), shape=(n, n)
    )
    adjacency = ((directed + directed.T) > 0).astype(np.float64)
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    partition = np.asarray(partition)
    members = sparse.csr_matrix((np.ones(n), (np.arange(n), partition)), shape=(n, n_clusters))
    within = (members.T @ adjacency @ members).diagonal()
    degrees = members.T @ np.asarray(adjacency.sum(axis=1)).ravel()
    total = degrees.sum()
    return float(np.sum(within / total - (degrees / total) ** 2))
