"""Defaults that read the data: the variants' data-dependent settings, derived from the data.

The variants' params were chosen on MNIST (the ``REFERENCE`` statistics below). ``derive_block``
re-expresses them for other data, so that one setting means the same thing on any input:

- loss: ``bce`` is the loss for near-binary pixels; where fewer than ``NEAR_BINARY_SHARE`` of the
  training pixels lie within 0.1 of 0 or 1 (photographs), it becomes ``mse``;
- penalty weights (sparse ``weight``, contractive ``lambda``, variational ``beta``, clustering
  ``gamma``) scale with the reconstruction loss's size on the data (the loss of predicting each
  pixel's mean) relative to MNIST's; the contractive Jacobian sums over input pixels, so its
  ``lambda`` is also per pixel;
- denoising ``noise_std`` scales with the pixels' standard deviation;
- trunk widths scale with the input: convolutional filters with the channels, Dense and LSTM
  widths with the square root of the pixel count; strided/pooled depth follows height and width;
- epochs and early-stopping patience are counted in optimiser steps: the same number of images
  seen as on MNIST's 54,000 training images.

On MNIST's statistics every derived value equals the params value exactly (ratios are rounded
to two significant digits, so MNIST's ratio is 1). params.yaml's ``derive`` section turns each
part off, or keeps named keys (``keep: [dense.objective.loss]``). The record of what changed is
stored in the resolved config (``derived`` in training.json).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

NEAR_BINARY_SHARE = 0.8  # share of pixels within 0.1 of 0 or 1 above which bce is kept
_STATS_SAMPLE = 10000  # images the statistics are computed on (seeded)


@dataclasses.dataclass(frozen=True)
class DataStats:
    """What the derivation reads from a training split (pixels scaled to [0, 1])."""

    height: int
    width: int
    channels: int
    train_images: int
    near_binary_share: float  # pixels within 0.1 of 0 or 1
    pixel_std: float  # of every pixel value
    mse_baseline: float  # MSE of predicting each pixel's mean (mean per-pixel variance)
    bce_baseline: float  # BCE of the same prediction

    @property
    def pixels(self) -> int:
        return self.height * self.width * self.channels

    def baseline(self, loss: str) -> float:
        return self.mse_baseline if loss == "mse" else self.bce_baseline


# MNIST's training split (54,000 images; statistics of a seeded sample of 10,000), on which the
# variants' params were chosen.
REFERENCE = DataStats(
    height=28,
    width=28,
    channels=1,
    train_images=54000,
    near_binary_share=0.914,
    pixel_std=0.3076,
    mse_baseline=0.06701,
    bce_baseline=0.2619,
)


@dataclasses.dataclass(frozen=True)
class DeriveParams:
    """params.yaml ``derive``: which parts of the derivation apply."""

    loss: bool = True
    penalties: bool = True
    noise: bool = True
    widths: bool = True
    steps: bool = True
    keep: tuple[str, ...] = ()  # "<variant>.<section>.<key>" left as params.yaml sets them


def derive_params(section: Mapping[str, Any] | None) -> DeriveParams:
    """params.yaml ``derive`` (absent: every part on); unknown keys raise ConfigError."""
    from autoencoders.config import from_mapping

    return from_mapping(DeriveParams, dict(section or {}), "derive")


def statistics(x: Any, seed: int = 0) -> DataStats:
    """DataStats of ``x`` (N, H, W, C) floats in [0, 1], on a seeded sample of 10,000 images."""
    count = len(x)
    rows = np.sort(np.random.default_rng(seed).choice(count, min(count, _STATS_SAMPLE), False))
    sample = np.asarray(x[rows] if isinstance(x, np.ndarray) else x.images(rows), np.float64)
    mean = np.clip(sample.mean(axis=0), 1e-7, 1 - 1e-7)
    bce = -(sample * np.log(mean) + (1 - sample) * np.log(1 - mean)).mean()
    height, width, channels = (int(size) for size in sample.shape[1:])
    return DataStats(
        height=height,
        width=width,
        channels=channels,
        train_images=count,
        near_binary_share=float(np.mean((sample < 0.1) | (sample > 0.9))),
        pixel_std=float(sample.std()),
        mse_baseline=float(sample.var(axis=0).mean()),
        bce_baseline=float(bce),
    )


def _ratio(value: float) -> float:
    """Two significant digits: MNIST's own ratio (sampling noise aside) is exactly 1."""
    return float(f"{value:.2g}")


def _depth(size: int, smallest: int) -> int:
    """Halvings (rounding up) of ``size`` that keep the feature map at least ``smallest``."""
    depth = 0
    while math.ceil(size / 2) >= smallest:
        size, depth = math.ceil(size / 2), depth + 1
    return depth


def _resize(filters: list[int], depth: int) -> list[int]:
    """``filters`` cut or extended (doubling the last) to ``depth`` layers."""
    out = list(filters[:depth])
    while len(out) < depth:
        out.append(out[-1] * 2)
    return out


_PENALTIES = {"sparse": "weight", "contractive": "lambda", "variational": "beta"}
_PENALTIES["clustering"] = "gamma"
_ARCHITECTURE_DEFAULTS = {"conv": [16, 8, 8], "deep_conv": [16, 32, 64, 128]}
_STRIDE_DEFAULTS = {"deep_conv": [2, 1, 1, 1]}


def _widths(architecture: dict, stats: DataStats, reference: DataStats) -> None:
    name = architecture["name"]
    channels = stats.channels / reference.channels
    dense_scale = _ratio(math.sqrt(stats.pixels / reference.pixels))
    if name in ("conv", "deep_conv"):
        filters = architecture.get("filters", _ARCHITECTURE_DEFAULTS[name])
        if name == "deep_conv":
            strides = architecture.get("strides", _STRIDE_DEFAULTS[name])
            if all(stride == 2 for stride in strides):  # a fully strided trunk ends near 2x2
                depth = _depth(min(stats.height, stats.width), 2)
                filters = _resize(filters, depth)
                architecture["strides"] = [2] * depth
        architecture["filters"] = [max(1, round(f * channels)) for f in filters]
    if name in ("dense", "deep_dense", "conv", "deep_conv", "seq2seq"):
        if architecture.get("hidden_units"):
            units = [max(1, round(u * dense_scale)) for u in architecture["hidden_units"]]
            architecture["hidden_units"] = units
    if name == "seq2seq":
        for key in ("encoder_units", "decoder_units"):
            if architecture.get(key):
                architecture[key] = max(1, round(architecture[key] * dense_scale))


def _objective(
    objective: dict, stats: DataStats, reference: DataStats, settings: DeriveParams
) -> None:
    before = objective.get("loss", "bce")
    if settings.loss and before == "bce" and stats.near_binary_share < NEAR_BINARY_SHARE:
        objective["loss"] = "mse"
    key = _PENALTIES.get(objective["name"])
    if settings.penalties and key is not None and key in objective:
        scale = stats.baseline(objective["loss"]) / reference.baseline(before)
        if key == "lambda":
            scale *= reference.pixels / stats.pixels
        objective[key] = float(f"{objective[key] * _ratio(scale):.2g}")
    if settings.noise and objective["name"] == "denoising" and "noise_std" in objective:
        scale = _ratio(stats.pixel_std / reference.pixel_std)
        objective["noise_std"] = float(f"{objective['noise_std'] * scale:.2g}")


def _steps(train: dict, defaults: Mapping[str, Any], stats: DataStats, reference) -> None:
    scale = _ratio(reference.train_images / stats.train_images)
    for key in ("epochs", "early_stopping_patience"):
        value = train.get(key, defaults.get(key))
        if value is not None:
            train[key] = max(1 if key == "epochs" else 0, round(value * scale))


def _defaults(section: str, block: Mapping, train_section: Mapping | None) -> dict[str, Any]:
    """The values a section's unset keys take: its config class's defaults, or ``train``'s."""
    if section == "train":
        return dict(train_section or {})
    from autoencoders.models import architectures, objectives

    registry = architectures if section == "architecture" else objectives
    config_class = registry.lookup(block["name"]).config_class
    values = {}
    for field in dataclasses.fields(config_class):
        value = field.default
        values[field.metadata.get("key", field.name)] = (
            list(value) if isinstance(value, tuple) else value
        )
    return values


def _epochs_valid(*sections: Mapping[str, Any]) -> None:
    """ValueError unless every given epochs is a positive and every patience a >= 0 integer."""
    for section in sections:
        for key, least in (("epochs", 1), ("early_stopping_patience", 0)):
            value = section.get(key)
            if value is not None and (not isinstance(value, int) or value < least):
                raise ValueError(key)


def derive_block(
    name: str,
    block: Mapping[str, Any],
    stats: DataStats,
    train_section: Mapping[str, Any] | None = None,
    settings: DeriveParams = DeriveParams(),
    reference: DataStats = REFERENCE,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``block`` (params.yaml ``variants.<name>``, unresolved) with its data-dependent values
    derived from ``stats``; returns (new block, {"<section>.<key>": [params, derived]})."""
    derived = copy.deepcopy(dict(block))
    architecture = derived.setdefault("architecture", {})
    objective = derived.setdefault("objective", {})
    train = derived.setdefault("train", {}) or {}
    derived["train"] = train
    try:
        _epochs_valid(block.get("train") or {}, train_section or {})
        if settings.widths:
            _widths(architecture, stats, reference)
        _objective(objective, stats, reference, settings)
        if settings.steps:
            _steps(train, train_section or {}, stats, reference)
    except (TypeError, ValueError):
        # A value nothing can be derived from: the block as written, so that the config's own
        # checks name the key and the fix before any work.
        return copy.deepcopy(dict(block)), {}
    changes = {}
    for section in ("architecture", "objective", "train"):
        given = dict(block.get(section) or {})
        effective = {**_defaults(section, derived[section], train_section), **given}
        for key, value in list(derived[section].items()):
            if effective.get(key) == value:
                if key not in given:
                    del derived[section][key]
                continue
            if f"{name}.{section}.{key}" in settings.keep:
                if key in given:
                    derived[section][key] = given[key]
                else:
                    del derived[section][key]
                continue
            changes[f"{section}.{key}"] = [given.get(key), value]
    if not derived["train"]:
        derived["train"] = block.get("train")
        if derived["train"] is None:
            derived.pop("train")
    return derived, changes


def derive_from_split(
    params: Mapping[str, Any], names: list[str], processed_dir: Any
) -> dict[str, dict[str, Any]]:
    """name -> params.yaml ``variants.<name>`` derived from the statistics of the processed
    training split (what train@V and tune@V use); each change printed. Identity on MNIST."""
    from autoencoders import data

    stats = statistics(data.open_split(processed_dir, "train"))
    settings = derive_params(params.get("derive"))
    variants = params["variants"]
    blocks = {}
    for name in names:
        blocks[name], changes = derive_block(
            name, variants[name], stats, params.get("train"), settings
        )
        if changes:
            shown = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changes.items())
            print(f"[derive {name}] from the training split's statistics: {shown}", flush=True)
    return blocks


__all__ = [
    "REFERENCE",
    "DataStats",
    "DeriveParams",
    "derive_block",
    "derive_from_split",
    "derive_params",
    "statistics",
]
