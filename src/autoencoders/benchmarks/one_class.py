"""The one-class MNIST anomaly benchmark (issue 23): ``make bench-anomaly``.

The standard protocol (Ruff et al. 2018 and the papers after it) on the processed full-MNIST
splits (``dvc repro preprocess``): for each digit d, an autoencoder of this zoo (any
architecture x objective of the registry, ``anomaly_bench`` in params.yaml) is trained on the
training split's images of d only; the whole 10,000-image test split is scored once and the
AUROC of "not d" reported, per digit and seed, then mean ± std over the seeds.

Nothing is fitted or chosen on the test split (``task_split``):

- early stopping watches the validation split's images of d (held out from MNIST's training set);
- the code densities are fitted on the training codes of d, each score standardised on the
  validation images of d (``anomaly.fit_score_model``);
- the score is chosen per task among ``candidates`` (sums of the library's scores) by its AUROC on
  the validation split: its images of d against its images of the other digits (labelled
  anomalies, which fit nothing);
- only then is the test split scored, once, with the chosen score.

For the first ``onnx_checks`` tasks of a run the chosen score model is also converted to
``scorer.onnx`` (``anomaly.scorer``, anomaly@V's own graph) and ONNX Runtime alone scores the
test split (``anomaly.scorer.onnx_scores``): its AUROC must equal Keras' to 4 digits.
``one_class_run`` runs every task in worker processes and adds the seed ensembles; the report
(``one_class_report``) holds the table beside the published anchors, the wall time and the
anomaly-map figure; ``leave_one_out`` adds the nine-digits-normal protocol.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import anomaly, errors
from autoencoders.benchmarks import one_class_scores

DEFAULT_CANDIDATES = (
    "reconstruction",
    "ssim",
    "density",
    "ssim+density",
    "reconstruction+density",
    "reconstruction+ssim+density",
)


class BenchConfigError(errors.UserError, ValueError):
    """An ``anomaly_bench`` setting is invalid."""


@dataclasses.dataclass(frozen=True)
class OneClassConfig:
    """params.yaml ``anomaly_bench``: the design, its training and the score candidates."""

    digits: tuple[int, ...] = tuple(range(10))
    seeds: tuple[int, ...] = (0, 1, 2)
    architecture: dict = dataclasses.field(
        default_factory=lambda: {
            "name": "deep_conv",
            "filters": [8, 16, 32, 64],
            "strides": [2, 2, 2, 2],
            "hidden_units": [500],
            "latent_dim": 32,
            "code_activation": "linear",
        }
    )
    objective: dict = dataclasses.field(default_factory=lambda: {"name": "plain", "loss": "bce"})
    epochs: int = 64  # at most: early stopping on the digit's validation images ends it
    batch_size: int = 64
    learning_rate: float = 0.002
    early_stopping_patience: int = 3
    steps_per_execution: int = 16
    # DEC-DA's augmentation (Guo et al. 2018): this many shifted and rotated copies of each
    # training image join it (seeded, made once per task); 0: none.
    augment_copies: int = 0
    augment_shift: float = 0.1  # of the width and the height
    augment_rotation: float = 10.0  # degrees
    # Each a "+"-joined sum of anomaly.SCORES names; the best on validation is used per task.
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    n_components: int = 5  # the Gaussian mixture of one digit's training codes
    reg_covar: float = 1.0e-4
    fit_subsample: int = 0  # training codes the densities are fitted on; 0: all
    onnx_checks: int = 1  # the first tasks of the run, re-scored by ONNX Runtime alone
    figure_digit: int = 8  # the task (its first seed) whose anomaly maps are drawn
    leave_one_out: bool = False  # also nine digits normal, one anomalous (first seed only)
    leave_one_out_images: int = 6000  # training images of the nine digits, seeded; 0: all
    workers: int = 0  # processes the tasks run in, one thread each (0: one per usable core)

    def __post_init__(self) -> None:
        if not self.digits or not self.seeds:
            raise BenchConfigError("anomaly_bench.digits and .seeds must each list one or more.")
        if any(d < 0 for d in self.digits) or len(set(self.digits)) < len(self.digits):
            raise BenchConfigError("anomaly_bench.digits must be distinct labels >= 0.")
        for key in ("epochs", "batch_size", "steps_per_execution", "n_components"):
            if getattr(self, key) < 1:
                raise BenchConfigError(f"anomaly_bench.{key} must be >= 1.")
        if self.augment_copies < 0:
            raise BenchConfigError("anomaly_bench.augment_copies must be >= 0 (0: none).")
        if self.workers < 0:
            raise BenchConfigError("anomaly_bench.workers must be >= 0 (0: one per core).")
        if not self.candidates:
            raise BenchConfigError("anomaly_bench.candidates must list at least one score.")
        for candidate in self.candidates:
            self.score_config(candidate, seed=0)  # unknown names fail here, in one line

    def score_config(self, candidate: str, seed: int) -> anomaly.ScoreConfig:
        names = tuple(candidate.split("+"))
        try:
            return anomaly.ScoreConfig(
                scores=names,
                loss=self.objective.get("loss", "bce"),
                beta=float(self.objective.get("beta", 1.0)),
                n_components=self.n_components,
                reg_covar=self.reg_covar,
                seed=seed,
            )
        except anomaly.AnomalyConfigError as error:
            raise BenchConfigError(f"anomaly_bench.candidates {candidate!r}: {error}") from None


@dataclasses.dataclass(frozen=True)
class Splits:
    """The processed MNIST splits: x float32 NHWC in [0, 1], y int labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @classmethod
    def load(cls, processed_dir: str | Path) -> Splits:
        from autoencoders import data

        arrays = []
        for split in ("train", "val", "test"):
            x, y = data.load_split(processed_dir, split)
            if y is None:
                raise BenchConfigError(
                    f"{processed_dir}/{split} has no labels: the one-class benchmark needs "
                    "labelled digits; run `dvc repro preprocess` with data.source mnist."
                )
            arrays += [x, np.asarray(y)]
        return cls(*arrays)


def task_split(
    y_train: np.ndarray, y_val: np.ndarray, y_test: np.ndarray, normal: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Indices and labels of one task whose ``normal`` classes are normal: ``train`` (training
    images of those classes: the only images fitted on), ``val_normal`` / ``val_anomaly``
    (validation images in / outside them: early stopping and standardisation read the first,
    the score choice both) and ``test_labels`` (1 where the test image is not of a normal
    class), read only after the design is fixed."""
    normal_list = list(normal)
    return {
        "train": np.flatnonzero(np.isin(y_train, normal_list)),
        "val_normal": np.flatnonzero(np.isin(y_val, normal_list)),
        "val_anomaly": np.flatnonzero(~np.isin(y_val, normal_list)),
        "test_labels": (~np.isin(y_test, normal_list)).astype(np.int64),
    }


def augmented(settings: OneClassConfig, x_train: np.ndarray, seed: int) -> np.ndarray:
    """``x_train`` and ``augment_copies`` seeded shifted/rotated copies of it (DEC-DA)."""
    if settings.augment_copies == 0:
        return x_train
    import tensorflow as tf

    from autoencoders.data import datasets

    generator = tf.random.Generator.from_seed(seed)
    copies = [
        np.asarray(
            datasets.random_affine(
                x_train, generator, settings.augment_shift, settings.augment_rotation
            )
        )
        for _ in range(settings.augment_copies)
    ]
    return np.concatenate([x_train, *copies])


def train_model(settings: OneClassConfig, x_train: np.ndarray, x_val: np.ndarray, seed: int):
    """The configured autoencoder trained on ``x_train`` (with its augmented copies),
    early-stopped on ``x_val``."""
    from autoencoders import models
    from autoencoders.training import loop

    block = {"architecture": settings.architecture, "objective": settings.objective}
    config = models.VariantConfig.from_params("anomaly_bench", block)
    model, _, info = loop.train_variant(
        config,
        augmented(settings, x_train, seed),
        x_val,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        seed=seed,
        patience=settings.early_stopping_patience,
        verbose=False,
        steps_per_execution=settings.steps_per_execution,
    )
    return model, info


def onnx_auroc(model: Any, score_model: anomaly.ScoreModel, x_test: np.ndarray, labels) -> float:
    """The test AUROC of ONNX Runtime's scores from anomaly@V's own scorer.onnx graph."""
    import onnx

    from autoencoders.anomaly import scorer
    from autoencoders.export import convert

    graph = scorer.ScorerGraph(model, score_model)
    proto = convert.convert_function(
        graph,
        input_name=convert.ENCODER_INPUT,
        input_dims=list(x_test.shape[1:]),
        opset=17,
        name="the one-class benchmark's scorer",
    )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / scorer.SCORER_FILE
        onnx.save_model(proto, str(path))
        return anomaly.auroc(labels, scorer.onnx_scores(path, x_test))


def run_task(
    settings: OneClassConfig,
    splits: Splits,
    normal: tuple[int, ...],
    seed: int,
    x_train: np.ndarray | None = None,
    validation_only: bool = False,
) -> dict[str, Any]:
    """One task: train, choose the score on validation, then score the test split once (not
    at all with ``validation_only``: for trying levers). Returns the record (AUROCs, choice,
    seconds) and, under ``_`` (not written), the model, score model and test scores the
    report's figure and the ONNX check read."""
    started = time.perf_counter()
    index = task_split(splits.y_train, splits.y_val, splits.y_test, normal)
    x_train = splits.x_train[index["train"]] if x_train is None else x_train
    x_normal = splits.x_val[index["val_normal"]]
    model, info = train_model(settings, x_train, x_normal, seed)
    train_codes = model.encode(subsample(x_train, settings.fit_subsample, seed))
    val_normal = anomaly.keras_outputs(model, x_normal)
    val_anomaly = anomaly.keras_outputs(model, splits.x_val[index["val_anomaly"]])
    every, fitted, scores = one_class_scores.fit_candidates(
        settings, train_codes, val_normal, val_anomaly, seed
    )
    labels = one_class_scores.validation_labels(len(val_normal), len(val_anomaly))
    chosen, figures = one_class_scores.rank(scores, labels)
    score_model, parts = fitted[chosen], {"val": scores, "labels": labels}
    record = {
        "normal": list(normal),
        "seed": seed,
        "train_images": len(x_train),
        "val_normal": len(x_normal),
        "val_anomalies": len(index["val_anomaly"]),
        "epochs_run": info["epochs_run"],
        "score": chosen,
        "validation_auroc": figures,
    }
    if validation_only:
        seconds = round(time.perf_counter() - started, 1)
        return {**record, "seconds": seconds, "_": {"ensemble": parts}}
    test_outputs = anomaly.keras_outputs(model, splits.x_test)  # the test split, once
    # Every candidate's test scores from one pass of every score (the seed ensemble reads them);
    # the chosen one's are score_model.score's, the same per-score functions and sum.
    components = every.components(test_outputs)
    parts["test"] = {c: anomaly.combine(components, m.standardisation) for c, m in fitted.items()}
    parts["test_labels"] = index["test_labels"]
    test_scores = parts["test"][chosen]
    record["test_auroc"] = anomaly.auroc(index["test_labels"], test_scores)
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["_"] = {
        "model": model,
        "score_model": score_model,
        "test_scores": test_scores,
        "test_outputs": test_outputs,
        "test_labels": index["test_labels"],
        "ensemble": parts,
    }
    return record


def subsample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded subset of ``size`` rows of ``x``, in their order (all when 0 or >= len)."""
    if size <= 0 or size >= len(x):
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size, replace=False))]


__all__ = [
    "DEFAULT_CANDIDATES",
    "BenchConfigError",
    "OneClassConfig",
    "Splits",
    "onnx_auroc",
    "run_task",
    "subsample",
    "task_split",
    "train_model",
]
