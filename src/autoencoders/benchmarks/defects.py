"""The surface-defect benchmark, one surface: data, the model, its scorer.onnx, the figures.

``run_surface`` (one worker's task; ``defects_run`` runs every surface side by side):

1. crops of the surface's three bands (``defects_data``): training images, normal validation
   images plus the same number with each validation defect kind, normal test images plus the
   same number with each test defect kind (kinds never seen in training or selection);
2. the model (params.yaml ``defects_bench``: by default a ``spatial_conv`` autoencoder) trained
   to give back the clean crop from a copy of which ``defect_share`` carry a ``perlin_patch``
   (DRAEM's reconstructive half: it learns to paint over what does not belong);
3. the ``local_error`` smoothing (``local_sigma``) chosen among ``sigmas`` on the validation
   defects only (mean of image and pixel AUROC over the validation kinds);
4. the ScoreModel fitted (``anomaly.fitting.prepare``, normal validation images) and converted
   to scorer.onnx by ``anomaly@V``'s own graph under the export's parity gate; its pixel
   threshold taken on the normal validation images' ``local_map`` as the stage takes it;
5. the test figures (``defects_metrics``) from ONNX Runtime's outputs alone, per defect kind
   and pooled, and the same figures from Keras and the numpy ScoreModel (their largest
   difference is recorded: ONNX Runtime must reproduce them to 3 digits);
6. the baseline: the main pipeline's ``baseline_variant`` (as params.yaml ships it) trained on
   the clean crops and scored by the shipped default ``anomaly.scores`` and by the global
   reconstruction sum, image AUROC per kind.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import anomaly, models
from autoencoders.anomaly import fitting, scorer
from autoencoders.benchmarks import defects_data, defects_metrics
from autoencoders.export import card, convert


@dataclasses.dataclass(frozen=True)
class DefectsConfig:
    """params.yaml ``defects_bench``."""

    surfaces: tuple[str, ...] = defects_data.SURFACES
    size: int = 64  # crop side, pixels of the full-resolution photograph
    train_images: int = 600
    validation_images: int = 40  # normal ones; as many again per validation defect kind
    test_images: int = 60  # normal ones; as many again per test defect kind
    architecture: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "name": "spatial_conv",
            "filters": [16, 32, 64],
            "code_channels": 8,
        }
    )
    objective: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "plain", "loss": "mse"}
    )
    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 0.001
    defect_share: float = 0.5  # training images given a perlin_patch each epoch
    sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)  # local_sigma candidates (validation)
    baseline_variant: str = "conv"
    baseline_epochs: int = 4
    figure_images: int = 2  # test images per defect kind in the figure
    workers: int = 3  # processes, one thread each (one per surface); 0: one per usable core
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "surfaces", tuple(self.surfaces))
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        unknown = sorted(set(self.surfaces) - set(defects_data.SURFACES))
        if unknown or not self.surfaces:
            raise ValueError(
                f"defects_bench.surfaces {list(self.surfaces)}: pick from "
                f"{list(defects_data.SURFACES)}."
            )
        if not 0.0 <= self.defect_share <= 1.0:
            raise ValueError(
                f"defects_bench.defect_share must be in [0, 1], got {self.defect_share}."
            )


def surface_splits(settings: DefectsConfig, name: str) -> dict[str, Any]:
    """The surface's images: ``train``, ``validation`` and ``test`` (each ``x`` (N, S, S, 1),
    ``labels`` (N,), ``masks`` (N, S, S) and ``kinds`` (N,) str), seeded by surface."""
    rng = np.random.default_rng([settings.seed, defects_data.SURFACES.index(name)])
    photo, size = defects_data.surface(name), settings.size
    splits: dict[str, Any] = {
        "train": defects_data.crops(photo, "train", settings.train_images, size, rng)
    }
    for split, count, kinds in (
        ("validation", settings.validation_images, defects_data.VALIDATION_KINDS),
        ("test", settings.test_images, defects_data.TEST_KINDS),
    ):
        normal = defects_data.crops(photo, split, count * (1 + len(kinds)), size, rng)
        parts = [(normal[:count], np.zeros((count, size, size), bool), "normal")]
        for index, kind in enumerate(kinds, start=1):
            clean = normal[index * count : (index + 1) * count]
            images, masks = defects_data.with_defects(clean, kind, rng, sources=normal[:count])
            parts.append((images, masks, kind))
        splits[split] = {
            "x": np.concatenate([part[0] for part in parts]).astype(np.float32),
            "masks": np.concatenate([part[1] for part in parts]),
            "kinds": np.concatenate([[part[2]] * len(part[0]) for part in parts]),
        }
        splits[split]["labels"] = (splits[split]["kinds"] != "normal").astype(int)
    return splits


def train_model(
    settings: DefectsConfig, x_train: np.ndarray, block: Mapping[str, Any], epochs: int,
    corrupt: bool, seed: int,
) -> Any:  # fmt: skip
    """A fresh autoencoder of ``block`` trained ``epochs`` epochs on ``x_train``; with
    ``corrupt``, from copies carrying perlin_patch defects (new ones each epoch)."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    config = models.VariantConfig.from_params("defects", dict(block))
    model = models.build_autoencoder(config, x_train.shape[1:], seed=seed)
    model.compile(keras.optimizers.Adam(settings.learning_rate))
    fillers = defects_data.foreign_photos() if corrupt else []
    for _ in range(epochs):
        inputs = (
            defects_data.corrupt_for_training(x_train, rng, fillers, settings.defect_share)
            if corrupt
            else x_train
        )
        model.fit(inputs, x_train, batch_size=settings.batch_size, epochs=1, verbose=0)
    return model


def choose_sigma(model: Any, validation: Mapping[str, Any], sigmas: tuple[float, ...]) -> dict:
    """The ``local_sigma`` of highest mean (image AUROC + pixel AUROC) / 2 over the validation
    defect kinds, from Keras' reconstructions: {"sigma", "by_sigma"}."""
    x = validation["x"]
    reconstructions = model.reconstruct(x)
    by_sigma = {}
    for sigma in sigmas:
        maps = anomaly.scores.local_map(x, reconstructions, sigma)[..., 0]
        values = []
        for kind in defects_data.VALIDATION_KINDS:
            keep = np.isin(validation["kinds"], ["normal", kind])
            image = maps[keep].reshape(int(keep.sum()), -1).max(axis=1)
            values.append(anomaly.auroc(validation["labels"][keep], image))
            values.append(anomaly.auroc(validation["masks"][keep].ravel(), maps[keep].ravel()))
        by_sigma[str(sigma)] = float(np.mean(values))
    best = max(sigmas, key=lambda sigma: by_sigma[str(sigma)])
    return {"sigma": best, "by_sigma": by_sigma}


def convert_scorer(
    model: Any, score_model: anomaly.ScoreModel, export: Mapping[str, Any], directory: Path,
    images: np.ndarray,
) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """scorer.onnx of ``model`` and ``score_model`` in ``directory``, gated as anomaly@V gates
    it (the export's opset, tolerance and parity batch sizes); (its path, the figures)."""
    config = convert.ExportConfig(
        opset=int(export["opset"]),
        tolerance=float(export["tolerance"]),
        parity_batch_sizes=tuple(export["parity_batch_sizes"]),
    )
    common = card.interface("defects", config.opset, model.image_shape, model.code_shape)
    path = directory / scorer.SCORER_FILE
    graph = scorer.ScorerGraph(model, score_model)
    _, parity = scorer.convert_scorer(graph, path, common, config, images)
    return path, parity


def per_kind(
    scores: np.ndarray, maps: np.ndarray, split: Mapping[str, Any], pixel: bool = True
) -> dict[str, dict[str, float]]:
    """Figures of each defect kind against the normal images, and of every kind pooled."""
    out = {}
    kinds = [kind for kind in dict.fromkeys(split["kinds"].tolist()) if kind != "normal"]
    for kind in [*kinds, "all"]:
        keep = split["kinds"] != "normal" if kind == "all" else split["kinds"] == kind
        keep = keep | (split["kinds"] == "normal")
        if pixel:
            out[kind] = defects_metrics.figures(
                scores[keep], split["labels"][keep], maps[keep], split["masks"][keep]
            )
        else:
            out[kind] = {"image_auroc": anomaly.auroc(split["labels"][keep], scores[keep])}
    return out


def run_surface(
    settings: DefectsConfig, name: str, export: Mapping[str, Any], baseline: Mapping[str, Any]
) -> dict[str, Any]:
    """The benchmark on surface ``name`` (the module doc's steps): a JSON-safe record, with
    ``figure`` (a few test images, masks and ONNX maps; arrays) for the report's figure.
    ``export``: params.yaml ``export``; ``baseline``: the baseline variant's block."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    splits = surface_splits(settings, name)
    seconds["data"] = time.perf_counter() - started
    block = {"architecture": dict(settings.architecture), "objective": dict(settings.objective)}
    model = train_model(settings, splits["train"], block, settings.epochs, True, settings.seed)
    seconds["train"] = time.perf_counter() - started - sum(seconds.values())
    choice = choose_sigma(model, splits["validation"], settings.sigmas)
    params = anomaly.AnomalyParams(scores=("local_error",), local_sigma=choice["sigma"])
    normal_validation = splits["validation"]["x"][splits["validation"]["labels"] == 0]
    score_model, _ = fitting.prepare(
        model, params, seed=settings.seed, x_train=splits["train"], x_val=normal_validation,
        val_anomalies=None,
    )  # fmt: skip
    test = splits["test"]
    with tempfile.TemporaryDirectory() as directory:
        path, parity = convert_scorer(model, score_model, export, Path(directory), test["x"])
        seconds["select_and_convert"] = time.perf_counter() - started - sum(seconds.values())
        scores, local = scorer.onnx_run(
            path, test["x"], (scorer.SCORE_OUTPUT, scorer.LOCAL_MAP_OUTPUT)
        )
        normal_maps = scorer.onnx_run(path, normal_validation, (scorer.LOCAL_MAP_OUTPUT,))[0]
    pixel_threshold = anomaly.target_fpr_threshold(normal_maps.ravel(), params.pixel_target_fpr)
    figures = per_kind(scores, local[..., 0], test)
    reference = _reference_figures(model, score_model, test, choice["sigma"])
    seconds["score"] = time.perf_counter() - started - sum(seconds.values())
    record = {
        "surface": name,
        "local_sigma": choice,
        "model": figures,
        "keras_reference_max_difference": max(
            abs(figures[kind][key] - reference[kind][key])
            for kind in figures
            for key in figures[kind]
        ),
        "parity": {key: parity[key] for key in ("scaled_diff", "score_tolerance")},
        "pixel_threshold": pixel_threshold.value,
        "baseline": run_baseline(settings, splits, baseline),
        "parameters": models.parameter_count(model),
    }
    seconds["baseline"] = time.perf_counter() - started - sum(seconds.values())
    record["seconds"] = {key: round(value, 1) for key, value in seconds.items()}
    record["figure"] = _figure_arrays(settings, test, local[..., 0], pixel_threshold.value)
    return record


def _reference_figures(
    model: Any, score_model: anomaly.ScoreModel, test: Mapping[str, Any], sigma: float
) -> dict[str, dict[str, float]]:
    """The figures from Keras' outputs and the numpy ScoreModel (no ONNX)."""
    outputs = anomaly.keras_outputs(model, test["x"])
    maps = anomaly.scores.local_map(outputs.images, outputs.reconstructions, sigma)[..., 0]
    return per_kind(score_model.score(outputs), maps, test)


def run_baseline(
    settings: DefectsConfig, splits: Mapping[str, Any], block: Mapping[str, Any]
) -> dict[str, Any]:
    """The main pipeline's variant trained on clean crops; image AUROC per test kind of the
    shipped default ``anomaly.scores`` (ONNX Runtime) and of the summed pixel loss alone
    (the reconstruction score, from the same scorer's ``anomaly_map``)."""
    block = {"architecture": dict(block["architecture"]), "objective": dict(block["objective"])}
    model = train_model(
        settings, splits["train"], block, settings.baseline_epochs, False, settings.seed
    )
    params = anomaly.AnomalyParams()
    validation = splits["validation"]
    score_model, _ = fitting.prepare(
        model, params, seed=settings.seed, x_train=splits["train"],
        x_val=validation["x"][validation["labels"] == 0], val_anomalies=None,
    )  # fmt: skip
    export = {"opset": 17, "tolerance": 1e-5, "parity_batch_sizes": [1, 8]}
    test = splits["test"]
    with tempfile.TemporaryDirectory() as directory:
        path, _ = convert_scorer(model, score_model, export, Path(directory), test["x"])
        scores, maps = scorer.onnx_run(path, test["x"], (scorer.SCORE_OUTPUT, scorer.MAP_OUTPUT))
    sums = maps.reshape(len(maps), -1).sum(axis=1)
    return {
        "variant": settings.baseline_variant,
        "scores": list(params.scores),
        "default": per_kind(scores, maps, test, pixel=False),
        "reconstruction": per_kind(sums, maps, test, pixel=False),
    }


def _figure_arrays(
    settings: DefectsConfig, test: Mapping[str, Any], maps: np.ndarray, threshold: float
) -> dict[str, Any]:
    """A few test images of each kind (normal first) with their masks and ONNX maps."""
    rows = []
    for kind in ["normal", *defects_data.TEST_KINDS]:
        rows.extend(np.flatnonzero(test["kinds"] == kind)[: settings.figure_images].tolist())
    return {
        "images": test["x"][rows, ..., 0],
        "masks": test["masks"][rows],
        "maps": maps[rows],
        "kinds": test["kinds"][rows].tolist(),
        "pixel_threshold": threshold,
    }


__all__ = [
    "DefectsConfig",
    "run_baseline",
    "run_surface",
    "choose_sigma",
    "convert_scorer",
    "per_kind",
    "surface_splits",
    "train_model",
]
