"""The photographs benchmark (make bench-photos): every variant, with the defaults derived from
the data (models/derived.py), on patches of natural photographs, beside PCA at each code size
and a plain reference convolutional autoencoder.

Patches of some photographs that ship in the installed scikit-learn and scikit-image wheels
train (a seeded share of their patches is the validation split every setting is chosen on);
patches of other photographs test: no photograph is in both. Each variant trains in its own
spawned process (one thread; its own Keras backend), ``workers`` of them side by side.
params.yaml ``photos_bench``; docs/photos.md.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from autoencoders.data import samples

# The plain reference: three strided convolutions (32 -> 4), a linear Dense code, MSE.
REFERENCE_BLOCK = {
    "architecture": {
        "name": "deep_conv",
        "filters": [32, 64, 128],
        "strides": [2, 2, 2],
        "hidden_units": [],
        "latent_dim": 16,
        "code_activation": "linear",
    },
    "objective": {"name": "plain", "loss": "mse"},
    "train": {"learning_rate": 0.002},
}
REFERENCE_NAME = "reference_conv"


@dataclasses.dataclass(frozen=True)
class PhotosConfig:
    """params.yaml ``photos_bench``."""

    train_photos: tuple[str, ...] = (
        "astronaut",
        "camera",
        "china",
        "flower",
        "immunohistochemistry",
        "rocket",
    )
    test_photos: tuple[str, ...] = ("chelsea", "coffee")
    patch_size: int = 32
    train_patches_per_photo: int = 500
    test_patches_per_photo: int = 500
    val_fraction: float = 0.1
    max_epochs: int = 5  # derived epochs are capped here (the benchmark's time budget)
    max_patience: int = 3
    max_cluster_iterations: int = 280  # idec's clustering phase, in batches
    batch_size: int = 32  # every variant's (0: each its own); chosen on the validation split
    variants: tuple[str, ...] = ()  # () : every params.yaml variant
    workers: int = 0  # processes side by side, one thread each; 0: one per usable core
    seed: int = 0
    figure_examples: int = 8

    def __post_init__(self) -> None:
        overlap = sorted(set(self.train_photos) & set(self.test_photos))
        if overlap:
            raise ValueError(f"photographs {overlap} are in both train_photos and test_photos.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}.")


@dataclasses.dataclass(frozen=True)
class Splits:
    """float32 patches in [0, 1], (N, size, size, 3)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def patches(photo: np.ndarray, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` seeded size x size crops of ``photo`` at its own resolution (uint8); crops
    flatter than ``samples.FLAT_STD`` (a black sky) are drawn again, up to 20 times."""
    height, width = photo.shape[:2]
    out = np.empty((count, size, size, 3), np.uint8)
    for index in range(count):
        for _ in range(20):
            top = int(rng.integers(0, height - size + 1))
            left = int(rng.integers(0, width - size + 1))
            crop = photo[top : top + size, left : left + size]
            if crop.std() >= samples.FLAT_STD:
                break
        out[index] = crop
    return out


def make_splits(settings: PhotosConfig) -> Splits:
    """Training photographs' patches (a seeded validation share carved out) and the test
    photographs' patches, from the wheels' photographs."""
    photos = samples.photographs()
    missing = sorted(set(settings.train_photos + settings.test_photos) - set(photos))
    if missing:
        raise ValueError(
            f"photographs {missing} are not installed (have {sorted(photos)}): install "
            "scikit-image or edit photos_bench.train_photos / test_photos."
        )
    rng = np.random.default_rng(settings.seed)

    def take(names: tuple[str, ...], per_photo: int) -> np.ndarray:
        parts = [patches(photos[name], per_photo, settings.patch_size, rng) for name in names]
        return np.concatenate(parts).astype(np.float32) / 255.0

    train = take(settings.train_photos, settings.train_patches_per_photo)
    test = take(settings.test_photos, settings.test_patches_per_photo)
    order = rng.permutation(len(train))
    n_val = max(1, round(len(train) * settings.val_fraction))
    return Splits(train=train[order[n_val:]], val=train[order[:n_val]], test=test)


def fit_pca(splits: Splits, components: int = 64) -> Any:
    """PCA fitted on the training patches (its first k components are PCA with k)."""
    from sklearn.decomposition import PCA

    train = splits.train.reshape(len(splits.train), -1)
    return PCA(n_components=min(components, *train.shape), svd_solver="full").fit(train)


def pca_curve(splits: Splits, code_sizes: list[int], pca: Any = None) -> dict[int, dict]:
    """PCA fitted on the training patches: validation and test MSE at each code size."""
    pca = pca if pca is not None else fit_pca(splits, max(code_sizes))
    curve = {}
    for size in sorted(set(code_sizes)):
        row = {}
        for split, x in (("val", splits.val), ("test", splits.test)):
            flat = x.reshape(len(x), -1) - pca.mean_
            components = pca.components_[:size]
            rebuilt = np.clip(flat @ components.T @ components + pca.mean_, 0.0, 1.0)
            row[f"{split}_mse"] = float(np.mean((rebuilt - x.reshape(len(x), -1)) ** 2))
        curve[size] = row
    return curve


def pca_reconstruction(pca: Any, size: int, x: np.ndarray) -> np.ndarray:
    """``x`` rebuilt from its first ``size`` principal components, clipped to [0, 1]."""
    flat = x.reshape(len(x), -1) - pca.mean_
    components = pca.components_[:size]
    rebuilt = flat @ components.T @ components + pca.mean_
    return np.clip(rebuilt, 0.0, 1.0).reshape(x.shape).astype(np.float32)


def derived_blocks(
    params: Mapping[str, Any], settings: PhotosConfig, splits: Splits
) -> dict[str, dict[str, Any]]:
    """name -> {block, derived, stats}: each variant's params block with its data-dependent
    values derived from the training patches (the reference's block as it is)."""
    from autoencoders.models import derived

    stats = derived.statistics(splits.train, seed=settings.seed)
    derive_settings = derived.derive_params(params.get("derive"))
    variants = dict(params["variants"])
    names = list(settings.variants) or list(variants)
    blocks = {}
    for name in names:
        block, changes = derived.derive_block(
            name, variants[name], stats, params.get("train"), derive_settings
        )
        blocks[name] = {"block": block, "derived": changes}
    blocks[REFERENCE_NAME] = {"block": REFERENCE_BLOCK, "derived": {}}
    return {**blocks, "_stats": dataclasses.asdict(stats)}


def _capped(block: Mapping[str, Any], train_section: Mapping, settings: PhotosConfig) -> dict:
    """The block with its epochs and patience capped by the benchmark's budget."""
    train = dict(block.get("train") or {})
    epochs = train.get("epochs", train_section.get("epochs", 10))
    patience = train.get("early_stopping_patience", train_section.get("early_stopping_patience"))
    train["epochs"] = min(int(epochs), settings.max_epochs)
    train["early_stopping_patience"] = min(int(patience), settings.max_patience)
    if settings.batch_size:
        train["batch_size"] = settings.batch_size
    objective = dict(block["objective"])
    if objective["name"] == "clustering":
        limit = objective.get("max_iterations", settings.max_cluster_iterations)
        objective["max_iterations"] = min(int(limit), settings.max_cluster_iterations)
    return {**block, "train": train, "objective": objective}


def train_one(
    name: str, block: Mapping[str, Any], train_section: Mapping, settings: PhotosConfig
) -> dict[str, Any]:
    """In a spawned worker: train ``name`` on the training patches, score val and test."""
    from autoencoders import threads
    from autoencoders.training import backend

    start = time.perf_counter()
    capped = _capped(block, train_section, settings)
    params = {"train": train_section, "variants": {name: capped}}
    backend.activate(backend.variant_backend(params, name))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads.one_thread_everywhere()
    from autoencoders import models
    from autoencoders.evaluation import image_quality
    from autoencoders.training import hyperparameters, loop

    splits = make_splits(settings)
    config = models.VariantConfig.from_params(name, capped)
    resolved = hyperparameters.resolve_hyperparameters(train_section, config, None)
    model, history, info, _ = loop.fit_resolved(
        resolved, splits.train, splits.val, settings.seed, verbose=False
    )
    examples = splits.test[: settings.figure_examples]
    record = {
        "name": name,
        "code_size": int(model.encode(examples[:1]).shape[-1]),
        "val": image_quality.reconstruction_metrics(splits.val, model.reconstruct(splits.val)),
        "test": image_quality.reconstruction_metrics(splits.test, model.reconstruct(splits.test)),
        "hyperparameters": resolved.as_params(),
        "config": resolved.config.to_params(),
        "epochs_run": info["epochs_run"],
        "best_epoch": info["best_epoch"],
        "train_seconds": info["train_seconds"],
        "parameter_count": info["parameter_count"],
        "examples": model.reconstruct(examples),
    }
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    return record


def _isolated(name: str, block: Mapping, train_section: Mapping, settings: PhotosConfig) -> dict:
    """train_one in a spawned process of its own (its own backend; a crash is this variant's
    failure, recorded, not the benchmark's)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            return pool.submit(train_one, name, block, train_section, settings).result()
    except Exception as error:  # noqa: BLE001 - a variant's failure is reported, others go on
        return {"name": name, "error": f"{type(error).__name__}: {error}"}


def _line(record: Mapping[str, Any]) -> str:
    return (
        f"[photos] {record['name']}: test mse {record['test']['mse']:.5f} "
        f"(code {record['code_size']}), {record['epochs_run']} epochs, "
        f"{record['wall_seconds']:.0f} s"
    )


def run_benchmark(
    params: Mapping[str, Any],
    settings: PhotosConfig,
    log: Callable[[str], None] = print,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every variant and the reference trained side by side; PCA; records and examples.
    ``on_progress`` gets the result so far after each variant (``complete`` False)."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from autoencoders import threads

    start = time.perf_counter()
    splits = make_splits(settings)
    blocks = derived_blocks(params, settings, splits)
    stats = blocks.pop("_stats")
    log(
        f"[photos] {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test "
        f"patches of {settings.patch_size}x{settings.patch_size}x3; training statistics {stats}"
    )
    train_section = dict(params.get("train") or {})
    workers = settings.workers or threads.usable_cores()
    records, failures = {}, {}
    pca = fit_pca(splits)
    examples = splits.test[: settings.figure_examples]

    def result(complete: bool) -> dict[str, Any]:
        sizes = [record["code_size"] for record in records.values()] or [16]
        return {
            "settings": dataclasses.asdict(settings),
            "stats": stats,
            "splits": {name: len(getattr(splits, name)) for name in ("train", "val", "test")},
            "pca": pca_curve(splits, sizes, pca),
            "records": records,
            "examples": examples,
            "pca_examples": pca_reconstruction(pca, 16, examples),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "workers": workers,
            "failures": failures,
            "complete": complete,
        }

    with ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(_isolated, name, entry["block"], train_section, settings)
            for name, entry in blocks.items()
        ]
        for future in as_completed(futures):
            record = future.result()
            if "error" in record:
                failures[record["name"]] = record["error"]
                log(f"[photos] {record['name']} failed: {record['error']}")
                continue
            record["derived"] = blocks[record["name"]]["derived"]
            records[record["name"]] = record
            log(_line(record))
            if on_progress is not None:
                on_progress(result(False))
    return result(True)
