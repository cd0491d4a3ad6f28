"""Matplotlib figures of the evaluation and the report, written as PNG atomically.

Every function takes numpy arrays or plain dicts, builds a ``matplotlib.figure.Figure`` (no
pyplot global state, Agg canvas, so it works headless and in threads), writes it to ``path``
when one is given and returns it (for ``mlflow.log_figure``). Figures are saved at ``DPI`` with
a fixed size, so a figure's pixel size is known in advance: ``figure_pixels(fig)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from autoencoders import fileio

DPI = 100
CELL_INCHES = 1.0  # one image of a grid
TITLE_INCHES = 0.5
MAX_SCATTER_POINTS = 5000


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def figure_pixels(figure: Figure) -> tuple[int, int]:
    """(width, height) in pixels of the PNG that ``save`` writes."""
    width, height = figure.get_size_inches()
    return int(round(width * DPI)), int(round(height * DPI))


def save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    with fileio.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return path


def finish(figure: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        save(figure, path)
    return figure


def _show_image(axes: Any, image: np.ndarray) -> None:
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        axes.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axes.imshow(image, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])


def example_indices(
    count: int, n: int, labels: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Indices of ``n`` of ``count`` images to show: seeded, one per class in class order
    before any class repeats when labels are given (test splits may be sorted by class)."""
    order = np.random.default_rng(seed).permutation(count)
    if labels is None:
        return order[:n]
    shuffled = np.asarray(labels)[order]
    rank = np.zeros(count, dtype=np.int64)  # the how-many-th of its class each image is
    for label in np.unique(shuffled):
        members = shuffled == label
        rank[members] = np.arange(members.sum())
    return order[np.lexsort((shuffled, rank))][:n]


def image_rows(
    rows: Sequence[np.ndarray],
    row_titles: Sequence[str],
    path: str | Path | None = None,
    title: str | None = None,
    n: int = 10,
) -> Figure:
    """A grid with one row per array of images (N, H, W, C); the first ``n`` of each."""
    if len(rows) != len(row_titles):
        raise ValueError(f"{len(rows)} rows of images but {len(row_titles)} row titles.")
    count = min([n] + [len(row) for row in rows])
    if count < 1:
        raise ValueError("no images to plot: pass at least one image per row.")
    figure = new_figure(count * CELL_INCHES, len(rows) * CELL_INCHES + TITLE_INCHES)
    grid = figure.subplots(len(rows), count, squeeze=False)
    for row_index, (images, row_title) in enumerate(zip(rows, row_titles, strict=True)):
        for column in range(count):
            axes = grid[row_index, column]
            _show_image(axes, images[column])
            if column == 0:
                axes.set_ylabel(row_title, fontsize=8)
    figure.subplots_adjust(
        left=0.06, right=0.99, bottom=0.01, top=1 - TITLE_INCHES / figure.get_figheight()
    )
    if title:
        figure.suptitle(title, fontsize=10)
    return finish(figure, path)


def plot_reconstructions(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    path: str | Path | None = None,
    n: int = 10,
    title: str = "Test images (top) and their reconstructions (bottom)",
) -> Figure:
    """Originals over reconstructions."""
    return image_rows([originals, reconstructions], ["original", "reconstructed"], path, title, n)


def plot_denoising(
    noisy: np.ndarray,
    denoised: np.ndarray,
    clean: np.ndarray,
    path: str | Path | None = None,
    n: int = 10,
    noise_std: float | None = None,
) -> Figure:
    """Rows: noisy input, the model's output, the clean image."""
    title = "Denoising" + (f" (noise std {noise_std:g})" if noise_std is not None else "")
    return image_rows([noisy, denoised, clean], ["noisy", "denoised", "clean"], path, title, n)


def plot_image_grid(
    images: np.ndarray,
    path: str | Path | None = None,
    n_columns: int = 8,
    title: str | None = None,
) -> Figure:
    """Images (N, H, W, C) in a grid of ``n_columns`` (e.g. VAE samples from the prior)."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, H, W, C) array, got {images.shape}.")
    n_columns = min(n_columns, len(images))
    n_rows = -(-len(images) // n_columns)
    figure = new_figure(n_columns * CELL_INCHES, n_rows * CELL_INCHES + TITLE_INCHES)
    grid = figure.subplots(n_rows, n_columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index < len(images):
            _show_image(axes, images[index])
        else:
            axes.axis("off")
    figure.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - TITLE_INCHES / figure.get_figheight()
    )
    if title:
        figure.suptitle(title, fontsize=10)
    return finish(figure, path)


def plot_prior_samples(
    samples: np.ndarray, path: str | Path | None = None, n_columns: int = 8
) -> Figure:
    """Decoder outputs for draws from the prior N(0, I)."""
    return plot_image_grid(samples, path, n_columns, "Decoded samples from the prior N(0, I)")


def project_codes(codes: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-d view of codes (N, D): the code itself when D == 2, else its first two PCA axes."""
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if codes.shape[1] == 2:
        return codes, "the 2-d code itself"
    if codes.shape[1] == 1:
        return np.column_stack([codes[:, 0], np.zeros(len(codes))]), "the 1-d code (y = 0)"
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(codes)
    explained = float(np.sum(pca.explained_variance_ratio_))
    return pca.transform(codes), f"PCA projection of the {codes.shape[1]}-d code ({explained:.0%})"


def plot_code_space(
    codes: np.ndarray,
    labels: np.ndarray | None,
    path: str | Path | None = None,
    seed: int = 0,
    max_points: int = MAX_SCATTER_POINTS,
    title: str | None = None,
) -> Figure:
    """Scatter of the codes in 2-d coloured by label; the title says which projection."""
    codes = np.asarray(codes).reshape(len(codes), -1)
    if labels is not None and len(labels) != len(codes):
        raise ValueError(f"{len(codes)} codes but {len(labels)} labels: pass matching arrays.")
    points, how = project_codes(codes, seed)
    if len(points) > max_points:  # a seeded subsample keeps the figure readable
        chosen = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
        points = points[chosen]
        labels = None if labels is None else np.asarray(labels)[chosen]
    figure = new_figure(6.0, 5.0)
    axes = figure.add_subplot()
    if labels is None:
        axes.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6, color="tab:blue")
    else:
        scatter = axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7)
        legend = axes.legend(
            *scatter.legend_elements(), title="label", fontsize=7, loc="best", markerscale=0.8
        )
        legend.get_title().set_fontsize(8)
    axes.set_title((title + ": " if title else "Code space: ") + how, fontsize=9)
    axes.set_xlabel("axis 1")
    axes.set_ylabel("axis 2")
    figure.tight_layout()
    return finish(figure, path)


def plot_training_curves(
    history: Mapping[str, Sequence[float]], path: str | Path | None = None, title: str = ""
) -> Figure:
    """One panel per logged quantity (loss, reconstruction_loss, ...), train and val_ curves."""
    names = [key for key in history if not key.startswith("val_") and len(history[key]) > 0]
    names += [
        key.removeprefix("val_")
        for key in history
        if key.startswith("val_") and key.removeprefix("val_") not in history
    ]
    if not names:
        raise ValueError("history holds no curves: pass models/<variant>/history.json's content.")
    figure = new_figure(4.0 * len(names), 3.5)
    grid = figure.subplots(1, len(names), squeeze=False)[0]
    for axes, name in zip(grid, names, strict=True):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            values = history.get(key)
            if values:
                axes.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return finish(figure, path)


def plot_comparison(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path | None = None,
    kmeans_pixels_accuracy: float | None = None,
    cluster_bar: float | None = None,
) -> Figure:
    """The report's figure: test MSE against PCA at the same code size, and clustering and
    probe accuracy, per variant (missing variants are left empty and marked)."""
    names = [row["variant"] for row in rows]
    if not names:
        raise ValueError("no variants to compare: params.yaml lists none.")

    def column(key: str) -> np.ndarray:
        return np.array([np.nan if row.get(key) is None else float(row[key]) for row in rows])

    positions = np.arange(len(names))
    width = 0.4
    figure = new_figure(max(8.0, 1.1 * len(names) * 2), 4.5)
    mse_axes, cluster_axes = figure.subplots(1, 2)
    mse_axes.bar(positions - width / 2, column("mse"), width, label="autoencoder")
    mse_axes.bar(positions + width / 2, column("pca_mse"), width, label="PCA, same code size")
    mse_axes.set_ylabel("test MSE (lower is better)")
    mse_axes.set_title("Reconstruction", fontsize=10)
    cluster_axes.bar(positions - width / 2, column("cluster_accuracy"), width, label="k-means acc")
    cluster_axes.bar(positions + width / 2, column("probe_accuracy"), width, label="linear probe")
    if kmeans_pixels_accuracy is not None:
        cluster_axes.axhline(
            kmeans_pixels_accuracy, color="grey", ls="--", lw=1, label="k-means on pixels"
        )
    if cluster_bar is not None:
        cluster_axes.axhline(cluster_bar, color="red", ls=":", lw=1, label=f"bar {cluster_bar}")
    cluster_axes.set_ylim(0, 1)
    cluster_axes.set_ylabel("test accuracy")
    cluster_axes.set_title("Code space", fontsize=10)
    for axes in (mse_axes, cluster_axes):
        axes.set_xticks(positions)
        axes.set_xticklabels(
            [
                name + ("\n(missing)" if row.get("status") != "ok" else "")
                for name, row in zip(names, rows, strict=True)
            ],
            rotation=45,
            ha="right",
            fontsize=8,
        )
        axes.legend(fontsize=7)
    figure.tight_layout()
    return finish(figure, path)


HISTORY_CSV = "history.csv"


def write_history_csv(history: Mapping[str, Sequence[float]], path: str | Path) -> None:
    """The training curves as a DVC data plot: ``epoch`` (from 1), ``loss``, ``val_loss``, then
    any other per-epoch figure, one row per epoch (``dvc plots show/diff``, x: epoch)."""
    epochs = len(history.get("loss", []))
    first = [name for name in ("loss", "val_loss") if name in history]
    names = first + sorted(
        name for name, values in history.items() if name not in first and len(values) == epochs
    )
    lines = [",".join(["epoch", *names])]
    lines += [
        ",".join([str(epoch + 1), *(repr(float(history[name][epoch])) for name in names)])
        for epoch in range(epochs)
    ]
    with fileio.atomic_path(path) as temporary:
        temporary.write_text("\n".join(lines) + "\n")
