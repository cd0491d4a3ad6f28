"""models/derived.py: defaults derived from the training split, identity on MNIST's statistics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autoencoders import config, models
from autoencoders.config import ConfigError
from autoencoders.models import derived

ROOT = Path(__file__).resolve().parents[1]
PARAMS = config.load_params(ROOT / "params.yaml")
VARIANTS = sorted(PARAMS["variants"])

# 32x32 RGB photograph patches: statistics of the kind the photographs benchmark measures.
PHOTOS = derived.DataStats(
    height=32,
    width=32,
    channels=3,
    train_images=5400,
    near_binary_share=0.19,
    pixel_std=0.29,
    mse_baseline=0.084,
    bce_baseline=0.68,
)


@pytest.mark.parametrize("variant", VARIANTS)
def test_mnist_statistics_leave_every_variant_as_params_yaml_sets_it(variant):
    block = PARAMS["variants"][variant]
    block_after, changes = derived.derive_block(
        variant, block, derived.REFERENCE, PARAMS["train"], derived.derive_params(None)
    )
    assert changes == {}
    assert block_after == block
    before = models.VariantConfig.from_params(variant, block).to_params()
    assert models.VariantConfig.from_params(variant, block_after).to_params() == before


def test_statistics_match_closed_forms_on_a_binary_array():
    rng = np.random.default_rng(0)
    probability = np.full((4, 4, 1), 0.3)
    x = (rng.random((20000, 4, 4, 1)) < probability).astype(np.float32)
    stats = derived.statistics(x)
    assert stats.train_images == 20000 and (stats.height, stats.width, stats.channels) == (4, 4, 1)
    assert stats.near_binary_share == 1.0
    # Bernoulli(0.3): variance p(1 - p), entropy -p ln p - (1 - p) ln(1 - p) (10,000 sampled)
    assert stats.mse_baseline == pytest.approx(0.3 * 0.7, rel=0.02)
    entropy = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    assert stats.bce_baseline == pytest.approx(entropy, rel=0.02)
    assert stats.pixel_std == pytest.approx(np.std(x[:10000]), rel=0.02)


def test_real_mnist_digits_keep_bce_and_mnists_penalties(mnist_small):
    stats = derived.statistics(mnist_small["x_train"])
    assert stats.near_binary_share > derived.NEAR_BINARY_SHARE
    block, changes = derived.derive_block(
        "sparse", PARAMS["variants"]["sparse"], stats, PARAMS["train"]
    )
    assert block["objective"]["loss"] == "bce"
    # other MNIST digits: the loss's scale (so the weight) within a few percent of MNIST's
    weight = PARAMS["variants"]["sparse"]["objective"]["weight"]
    assert block["objective"]["weight"] == pytest.approx(weight, rel=0.05)
    # 300 training images: the same optimiser steps as MNIST's 54,000 take 180x the epochs
    assert block["train"]["epochs"] == 180 * PARAMS["train"]["epochs"]


def test_photographs_get_mse_scaled_penalties_and_wider_trunks():
    variants = PARAMS["variants"]
    dense, changes = derived.derive_block("dense", variants["dense"], PHOTOS, PARAMS["train"])
    assert dense["objective"]["loss"] == "mse" and changes["objective.loss"] == ["bce", "mse"]
    # sqrt(3072 / 784) = 1.98 -> 2.0 (two significant digits)
    assert dense["architecture"]["hidden_units"] == [512]
    sparse, _ = derived.derive_block("sparse", variants["sparse"], PHOTOS, PARAMS["train"])
    ratio = float(f"{PHOTOS.mse_baseline / derived.REFERENCE.bce_baseline:.2g}")
    assert sparse["objective"]["weight"] == pytest.approx(1e-5 * ratio)
    contractive, _ = derived.derive_block(
        "contractive", variants["contractive"], PHOTOS, PARAMS["train"]
    )
    per_pixel = float(f"{ratio * 784 / 3072:.2g}")
    assert contractive["objective"]["lambda"] == pytest.approx(1e-4 * per_pixel, rel=0.05)
    denoising, _ = derived.derive_block("denoising", variants["denoising"], PHOTOS)
    assert denoising["objective"]["noise_std"] == 0.19  # 0.2 x 0.29 / 0.3076, two digits
    assert denoising["architecture"]["filters"] == [48, 24, 24]  # (16, 8, 8) x 3 channels
    deep_conv, _ = derived.derive_block("deep_conv", variants["deep_conv"], PHOTOS)
    assert deep_conv["architecture"]["filters"] == [24, 48, 96, 192]
    assert deep_conv["architecture"]["strides"] == [2, 2, 2, 2]  # 32 -> 2, as 28 -> 2
    models.VariantConfig.from_params("deep_conv", deep_conv)


def test_depth_follows_the_resolution():
    large = derived.DataStats(64, 64, 1, 54000, 0.9, 0.3, 0.067, 0.26)
    block, _ = derived.derive_block("deep_conv", PARAMS["variants"]["deep_conv"], large)
    assert block["architecture"]["strides"] == [2] * 5  # 64 -> 2
    assert block["architecture"]["filters"] == [8, 16, 32, 64, 128]


def test_keep_and_switches_leave_the_params_values():
    settings = derived.derive_params({"keep": ["dense.objective.loss"], "widths": False})
    block, changes = derived.derive_block(
        "dense", PARAMS["variants"]["dense"], PHOTOS, PARAMS["train"], settings
    )
    assert block["objective"]["loss"] == "bce" and "objective.loss" not in changes
    assert block["architecture"] == PARAMS["variants"]["dense"]["architecture"]
    with pytest.raises(ConfigError, match="derive"):
        derived.derive_params({"losses": True})
