"""Each figure is written as a non-empty PNG of the pixel size its layout promises."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from autoencoders import plots


def _png_size(path) -> tuple[int, int]:
    image = matplotlib.image.imread(path)
    return image.shape[1], image.shape[0]  # (width, height)


def _check_png(path, figure, expected: tuple[int, int]) -> None:
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.figure_pixels(figure) == expected
    assert _png_size(path) == expected
    image = matplotlib.image.imread(path)
    assert image[..., :3].std() > 0.01  # something was drawn, not a blank canvas
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((12, 8, 8, 1)).astype(np.float32)


def test_reconstructions_png(tmp_path, images):
    path = tmp_path / "reconstructions.png"
    figure = plots.plot_reconstructions(images, images[::-1], path, n=10)
    # 10 images of 1 inch, 2 rows + a 0.5 inch title, at 100 dpi.
    _check_png(path, figure, (1000, 250))


def test_denoising_png_has_three_rows(tmp_path, images):
    path = tmp_path / "denoising.png"
    figure = plots.plot_denoising(images, images, images, path, n=5, noise_std=0.2)
    _check_png(path, figure, (500, 350))


def test_prior_samples_png(tmp_path):
    samples = np.random.default_rng(1).random((20, 28, 28, 1))
    path = tmp_path / "prior_samples.png"
    figure = plots.plot_prior_samples(samples, path, n_columns=8)
    _check_png(path, figure, (800, 350))  # 3 rows of 8


def test_rgb_images_are_drawn(tmp_path):
    rgb = np.random.default_rng(2).random((3, 6, 6, 3))
    path = tmp_path / "rgb.png"
    figure = plots.image_rows([rgb], ["colour"], path, n=3)
    _check_png(path, figure, (300, 150))


@pytest.mark.parametrize("dims, projection", [(2, "the 2-d code itself"), (5, "PCA projection")])
def test_code_space_png_says_which_projection(tmp_path, dims, projection):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    codes = rng.normal(size=(150, dims)) + labels[:, None]
    path = tmp_path / "code_space.png"
    figure = plots.plot_code_space(codes, labels, path, seed=0)
    assert projection in figure.axes[0].get_title()
    _check_png(path, figure, (600, 500))


def test_training_curves_png_has_one_panel_per_quantity(tmp_path):
    history = {
        "loss": [0.3, 0.2, 0.15],
        "reconstruction_loss": [0.29, 0.19, 0.14],
        "val_loss": [0.31, 0.22, 0.18],
        "val_reconstruction_loss": [0.3, 0.21, 0.17],
    }
    path = tmp_path / "training_curves.png"
    figure = plots.plot_training_curves(history, path)
    assert [axes.get_title() for axes in figure.axes] == ["loss", "reconstruction_loss"]
    _check_png(path, figure, (800, 350))


def test_comparison_png_with_a_missing_variant(tmp_path):
    rows = [
        {
            "variant": "dense",
            "status": "ok",
            "mse": 0.01,
            "pca_mse": 0.02,
            "cluster_accuracy": 0.6,
        },
        {"variant": "vae", "status": "ok", "mse": 0.04, "pca_mse": 0.05, "probe_accuracy": 0.7},
        {"variant": "seq2seq", "status": "missing"},
    ]
    path = tmp_path / "comparison.png"
    figure = plots.plot_comparison(rows, path, kmeans_pixels_accuracy=0.5, cluster_bar=0.85)
    _check_png(path, figure, (800, 450))


def test_bad_plot_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no curves"):
        plots.plot_training_curves({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="codes but"):
        plots.plot_code_space(np.zeros((4, 2)), np.zeros(3), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_example_indices_show_every_class_before_repeating_one():
    labels = np.repeat(np.arange(4), 25)  # sorted by class, as some test splits are
    shown = plots.example_indices(len(labels), 6, labels, seed=0)
    assert labels[shown].tolist() == [0, 1, 2, 3, 0, 1]
    assert len(set(shown.tolist())) == 6
    assert np.array_equal(shown, plots.example_indices(len(labels), 6, labels, seed=0))
    assert len(plots.example_indices(100, 10)) == 10
