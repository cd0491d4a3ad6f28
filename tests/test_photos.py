"""The photographs benchmark's pieces: disjoint photographs, PCA against numpy's SVD, targets."""

from __future__ import annotations

import numpy as np
import pytest

from autoencoders.benchmarks import photos, photos_report


def test_a_photograph_in_both_splits_is_refused():
    with pytest.raises(ValueError, match="both"):
        photos.PhotosConfig(train_photos=("china", "flower"), test_photos=("china",))


def test_splits_come_from_different_photographs():
    settings = photos.PhotosConfig(
        train_photos=("china",),
        test_photos=("flower",),
        train_patches_per_photo=50,
        test_patches_per_photo=20,
        patch_size=16,
    )
    splits = photos.make_splits(settings)
    assert splits.train.shape == (45, 16, 16, 3) and splits.val.shape == (5, 16, 16, 3)
    assert splits.test.shape == (20, 16, 16, 3)
    assert 0.0 <= splits.train.min() and splits.train.max() <= 1.0
    # every training patch is a crop of china.jpg, every test patch one of flower.jpg
    from autoencoders.data import samples

    china = samples.photographs()["china"].astype(np.float32) / 255.0
    for patch in (splits.train[0], splits.val[0]):
        corners = zip(*np.nonzero(np.all(china[:-15, :-15] == patch[0, 0], axis=-1)), strict=True)
        assert any(np.array_equal(china[i : i + 16, j : j + 16], patch) for i, j in corners)
    assert not any(
        np.array_equal(china[i : i + 16, j : j + 16], splits.test[0])
        for i, j in zip(
            *np.nonzero(np.all(china[:-15, :-15] == splits.test[0][0, 0], -1)), strict=True
        )
    )


def test_pca_curve_matches_numpys_svd():
    rng = np.random.default_rng(0)
    base = rng.random((1, 4, 4, 3)).astype(np.float32) * 0.5
    x = np.clip(base + 0.1 * rng.standard_normal((300, 4, 4, 3)), 0, 1).astype(np.float32)
    splits = photos.Splits(train=x[:200], val=x[200:250], test=x[250:])
    curve = photos.pca_curve(splits, [3, 5])
    assert photos.pca_curve(splits, [3], photos.fit_pca(splits, 5))[3] == curve[3]
    flat = splits.train.reshape(200, -1).astype(np.float64)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    test = splits.test.reshape(50, -1)
    for k in (3, 5):
        rebuilt = np.clip((test - mean) @ vt[:k].T @ vt[:k] + mean, 0, 1)
        assert curve[k]["test_mse"] == pytest.approx(np.mean((rebuilt - test) ** 2), rel=1e-4)


def test_targets_compare_with_pca_and_the_plain_variant():
    def row(architecture, ratio, mse):
        return {"architecture": architecture, "ratio_to_pca": ratio, "test_mse": mse}

    rows = {
        "conv": row("conv", 1.2, 0.010),
        "denoising": row("conv", 1.4, 0.013),
        "dense": row("dense", 0.9, 0.008),
        photos.REFERENCE_NAME: row("deep_conv", 0.5, 0.001),
    }
    checks = {check["target"]: check for check in photos_report.targets(rows)}
    assert checks["best variant"]["variant"] == "dense" and checks["best variant"]["met"]
    assert checks["conv"]["met"] and not checks["denoising"]["met"]  # 1.4 > 1.3
    assert checks["denoising / conv"]["measured"] == pytest.approx(1.3)
    assert not checks["denoising / conv"]["met"]


def test_the_summary_says_what_to_try_where_a_variant_loses_to_pca():
    from autoencoders.reporting import summary

    pca = {16: {"mse": 0.004}, 32: {"mse": 0.002}}
    rows = [
        summary.summary_row("conv", {"mse": 0.0054, "latent_dim": 16}, pca=pca),  # 1.35x
        summary.summary_row("dense", {"mse": 0.0012, "latent_dim": 32}, pca=pca),  # 0.6x
    ]
    quality = summary.quality_check(rows)
    assert list(quality["advice"]) == ["conv"]
    assert quality["advice"]["conv"].startswith("1.35x PCA's MSE: PCA with the same 16 numbers")
    assert "architecture.latent_dim" in quality["advice"]["conv"]
    assert "objective.loss" in quality["advice"]["conv"]
    lines = summary._quality_lines(quality)
    assert any(line.startswith("- `conv`: 1.35x") for line in lines)
    # every variant under the bar: no advice key, so MNIST's summary is unchanged
    assert "advice" not in summary.quality_check(rows[1:])
