"""The surface-defect benchmark's parts and the local scores (issue 44): AUPRO on cases worked
by hand, the smoothed error map against scipy's normalised convolution, scorer.onnx's local
score and map against the numpy ScoreModel, and the benchmark's data splits."""

from __future__ import annotations

import numpy as np
import pytest

from autoencoders import anomaly
from autoencoders.benchmarks import defects, defects_data, defects_metrics


def test_aupro_of_one_region_worked_by_hand():
    # Pixels in descending score: defect (PRO 1/2), clean (FPR 1/2), defect (PRO 1), clean.
    # PRO(FPR): 0.5 on [0, 0.5), 1 on [0.5, 1]; area to 0.3 = 0.15 -> 0.5; to 1 = 0.75.
    maps = np.array([[[0.9, 0.3, 0.5, 0.1]]])
    masks = np.array([[[True, True, False, False]]])
    assert defects_metrics.aupro(maps, masks) == pytest.approx(0.5)
    assert defects_metrics.aupro(maps, masks, limit=1.0) == pytest.approx(0.75)


def test_aupro_averages_over_regions_not_pixels():
    # Regions of 1 and 3 pixels. At FPR 0 the small one is found (1/2) and a third of the
    # large one (1/6): PRO 2/3, where the pixel recall would be 2/4. The tie at 0.2 counts as
    # one threshold. Area to FPR 1: 0.5 x 2/3 + 0.5 x 1 = 5/6.
    maps = np.array([[[0.9, 0.5, 0.8, 0.2, 0.2, 0.1]]])
    masks = np.array([[[True, False, True, True, True, False]]])
    assert defects_metrics.aupro(maps, masks, limit=1.0) == pytest.approx(5.0 / 6.0)
    assert defects_metrics.aupro(maps, masks, limit=0.3) == pytest.approx(2.0 / 3.0)
    # Regions are counted per image and with 8-connectivity: a diagonal pair is one region.
    labels, count = defects_metrics.regions(np.array([np.eye(3, dtype=bool)] * 2))
    assert count == 2 and set(np.unique(labels)) == {0, 1, 2}


def test_local_map_is_scipys_normalised_gaussian_of_the_squared_error():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    images, reconstructions = rng.random((2, 3, 12, 9, 2))
    sigma = 1.5
    squared = np.mean((images - reconstructions) ** 2, axis=3)
    # Truncated at ceil(3 sigma) = 5 pixels, renormalised at the borders: the filter of the
    # zero-padded image divided by the filter of ones.
    truncate = 5 / sigma
    expected = np.stack([
        ndimage.gaussian_filter(plane, sigma, mode="constant", truncate=truncate)
        / ndimage.gaussian_filter(np.ones_like(plane), sigma, mode="constant", truncate=truncate)
        for plane in squared
    ])  # fmt: skip
    actual = anomaly.scores.local_map(images, reconstructions, sigma)
    assert actual.shape == (3, 12, 9, 1)
    np.testing.assert_allclose(actual[..., 0], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        anomaly.scores.local_error(images, reconstructions, sigma), expected.max(axis=(1, 2))
    )


def test_scorer_onnx_local_score_and_map_match_numpy():
    import keras

    from autoencoders import models
    from autoencoders.anomaly import fitting, scorer

    keras.utils.set_random_seed(0)
    block = {
        "architecture": {"name": "spatial_conv", "filters": [4, 8], "code_channels": 2},
        "objective": {"name": "plain", "loss": "mse"},
    }
    model = models.build_autoencoder(models.VariantConfig.from_params("t", block), (12, 12, 1))
    assert model.code_shape == (3, 3, 2)
    rng = np.random.default_rng(1)
    images = rng.random((20, 12, 12, 1)).astype(np.float32)
    settings = anomaly.AnomalyParams(scores=("reconstruction", "local_error"), local_sigma=1.0)
    score_model, _ = fitting.prepare(
        model, settings, seed=0, x_train=images, x_val=images, val_anomalies=None
    )
    export = {"opset": 17, "tolerance": 1e-5, "parity_batch_sizes": [1, 7]}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        path, parity = defects.convert_scorer(model, score_model, export, Path(directory), images)
        scores, local = scorer.onnx_run(
            path, images, (scorer.SCORE_OUTPUT, scorer.LOCAL_MAP_OUTPUT)
        )
    assert parity["local_map"]["scaled_diff"] <= parity["score_tolerance"]
    outputs = anomaly.keras_outputs(model, images)
    np.testing.assert_allclose(scores, score_model.score(outputs), atol=1e-4)
    np.testing.assert_allclose(
        local, anomaly.scores.local_map(outputs.images, outputs.reconstructions, 1.0), atol=1e-6
    )


def test_benchmark_splits_are_disjoint_bands_with_masks_of_each_kind():
    settings = defects.DefectsConfig(train_images=8, validation_images=3, test_images=4, size=32)
    splits = defects.surface_splits(settings, "grass")
    assert splits["train"].shape == (8, 32, 32, 1)
    test = splits["test"]
    assert test["x"].shape == (16, 32, 32, 1) and test["masks"].shape == (16, 32, 32)
    assert list(dict.fromkeys(test["kinds"])) == ["normal", *defects_data.TEST_KINDS]
    assert not test["masks"][test["labels"] == 0].any()
    assert all(mask.any() for mask in test["masks"][test["labels"] == 1])
    assert set(splits["validation"]["kinds"]) == {"normal", *defects_data.VALIDATION_KINDS}
    bands = sorted(defects_data.BANDS.values())
    assert all(a[1] <= b[0] for a, b in zip(bands, bands[1:], strict=False))
    assert 0.0 <= test["x"].min() and test["x"].max() <= 1.0
