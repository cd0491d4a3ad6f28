"""The clustering head's figure: its 2-d view by cluster and by true class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from autoencoders import plots


def view_2d(embedding: np.ndarray, *, seed: int, how: str = "pca") -> tuple[np.ndarray, str]:
    """A 2-d view of the head's manifold: its first two principal axes, or a 2-d UMAP of it."""
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.shape[1] <= 2:
        points = np.c_[embedding, np.zeros((len(embedding), 2 - embedding.shape[1]))]
        return points, f"the {embedding.shape[1]}-d manifold itself"
    if how == "umap":
        from autoencoders.manifold import import_umap

        umap = import_umap()
        reducer = umap.UMAP(n_components=2, n_neighbors=20, min_dist=0.0, random_state=seed)
        return reducer.fit_transform(embedding), f"2-d UMAP of the {embedding.shape[1]}-d manifold"
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(embedding)
    share = float(np.sum(pca.explained_variance_ratio_))
    return pca.transform(embedding), f"PCA of the {embedding.shape[1]}-d manifold ({share:.0%})"


def plot_head_view(
    points: np.ndarray,
    assignments: np.ndarray,
    labels: np.ndarray | None,
    path: str | Path | None = None,
    how: str = "",
    title: str = "",
    seed: int = 0,
    max_points: int = plots.MAX_SCATTER_POINTS,
) -> Figure:
    """The clustering head's 2-d view coloured by cluster and, with labels, by true class;
    without labels the second panel shows the cluster sizes."""
    points = np.asarray(points, dtype=np.float64)
    assignments = np.asarray(assignments)
    if len(points) != len(assignments) or (labels is not None and len(labels) != len(points)):
        raise ValueError("points, assignments and labels must have one row per code.")
    sizes = np.bincount(assignments)
    shown = np.arange(len(points))
    if len(points) > max_points:  # a seeded subsample keeps the figure readable
        shown = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
    figure = plots.new_figure(11.0, 5.0)
    by_cluster, second = figure.subplots(1, 2)
    by_cluster.scatter(
        points[shown, 0], points[shown, 1], c=assignments[shown], cmap="tab10", s=3, alpha=0.7
    )
    by_cluster.set_title("coloured by head cluster", fontsize=9)
    if labels is not None:
        labels = np.asarray(labels)
        scatter = second.scatter(
            points[shown, 0], points[shown, 1], c=labels[shown], cmap="tab10", s=3, alpha=0.7
        )
        legend = second.legend(*scatter.legend_elements(), title="class", fontsize=7)
        legend.get_title().set_fontsize(8)
        second.set_title("coloured by true class (labels only score)", fontsize=9)
    else:
        second.bar(np.arange(len(sizes)), sizes, color="tab:blue")
        second.set_xlabel("cluster")
        second.set_ylabel("codes")
        second.set_title("cluster sizes (no labels)", fontsize=9)
    for axes in (by_cluster,) + ((second,) if labels is not None else ()):
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(f"{title}: {how}" if title else how, fontsize=10)
    figure.tight_layout()
    return plots.finish(figure, path)
