"""Fit one autoencoder variant: input pipelines, callbacks, the best checkpoint, throughput.

``train_variant(config, x_train, x_val, ...)`` builds the model from its variant config, trains it
on ``data.fit_arguments``' batches (on TensorFlow, ``tf.data`` pipelines: seeded shuffle, gathered,
prefetched, Gaussian input noise for the denoising objective; on JAX, Keras' own batches of the
arrays) with early stopping on the validation loss, and returns the model holding
the weights of its best epoch, its history and a few facts about the run (seconds, images per
second, best epoch). ``resolve_hyperparameters`` (from ``training.hyperparameters``) layers
params.yaml's ``train`` section, the variant's own ``train:`` overrides and
``tuning/<variant>/best.json``. Used by
``pipeline/train.py`` and by every Optuna trial (``autoencoders.tuning``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from autoencoders import data, errors, fileio, models
from autoencoders.training import backend, records
from autoencoders.training.callbacks import EpochProgress, MlflowEpochLogger

# Re-exported: callers name them training.TrainSettings, training.resolve_hyperparameters, ...
from autoencoders.training.hyperparameters import (
    SEARCHABLE_HYPERPARAMETERS as SEARCHABLE_HYPERPARAMETERS,
)
from autoencoders.training.hyperparameters import Resolved as Resolved
from autoencoders.training.hyperparameters import TrainSettings as TrainSettings
from autoencoders.training.hyperparameters import compiles_with_xla as compiles_with_xla
from autoencoders.training.hyperparameters import read_best as read_best
from autoencoders.training.hyperparameters import (
    resolve_hyperparameters as resolve_hyperparameters,
)


class TrainingDivergedError(errors.UserError, RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and the fix."""


def _check_arrays(x_train: np.ndarray | data.Split, x_val: np.ndarray | data.Split) -> None:
    for name, array in (("x_train", x_train), ("x_val", x_val)):
        images = isinstance(array, (np.ndarray, data.Split))
        if not images or len(array.shape) != 4 or len(array) == 0:
            raise ValueError(
                f"{name} must be a non-empty float array (N, H, W, C) or a data.Split, got "
                f"{getattr(array, 'shape', type(array))}: load it with data.open_split."
            )
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(
            f"x_train images are {x_train.shape[1:]} but x_val images are {x_val.shape[1:]}: "
            "both must come from the same preprocessed data."
        )


def build_and_compile(
    config: Any,
    input_shape: tuple[int, ...],
    learning_rate: float,
    seed: int,
    steps_per_execution: int = 1,
    jit_compile: bool = False,
) -> Any:
    """A fresh autoencoder for ``config``, compiled as the trainer trains it (Adam)."""
    model = models.build_autoencoder(config, input_shape=input_shape, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        steps_per_execution=steps_per_execution,
        jit_compile=compiles_with_xla(jit_compile, keras.backend.backend()),
    )
    return model


def _check_finite(
    history: Mapping[str, list[float]], name: str, learning_rate: float, batch_size: int
) -> None:
    """Raise TrainingDivergedError naming the first epoch whose loss is NaN or infinite."""
    losses = history.get("loss", []) + history.get("val_loss", [])
    if losses and all(math.isfinite(value) for value in losses):
        return
    bad_epoch = next(
        (
            i + 1
            for i in range(len(history.get("loss", [])))
            if not math.isfinite(history["loss"][i])
            or not math.isfinite(history.get("val_loss", [0.0] * (i + 1))[i])
        ),
        len(history.get("loss", [])),
    )
    raise TrainingDivergedError(
        f"variant {name!r}: the loss became NaN or infinite in epoch {bad_epoch} "
        f"(learning_rate={learning_rate:g}, batch_size={batch_size}); lower the learning "
        "rate (train.learning_rate or the variant's search range) or check the data scaling."
    )


def train_variant(
    config: Any,
    x_train: np.ndarray | data.Split,
    x_val: np.ndarray | data.Split,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    patience: int,
    shuffle_buffer: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: bool = True,
    steps_per_execution: int = 1,
    jit_compile: bool = False,
) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Train ``config``'s autoencoder; return (model at its best epoch, history, info).

    The model keeps the weights of the epoch with the lowest validation loss, whether training
    stopped early (``patience`` epochs without improvement) or ran all ``epochs``. ``x_train``
    and ``x_val`` are float32 arrays or ``data.Split``s (shards are read in batches). A NaN or
    infinite loss stops training and raises TrainingDivergedError. ``steps_per_execution`` and
    ``jit_compile`` change speed, not the sequence of updates. ``callbacks`` run after the
    built-in ones (an Optuna pruning callback, an MLflow logger). ``info`` holds
    ``train_seconds``, ``epochs_run``, ``best_epoch`` (1-based), ``best_val_loss``,
    ``images_per_second``, ``epoch_seconds`` and ``parameter_count``.
    """
    _check_arrays(x_train, x_val)
    keras.utils.set_random_seed(seed)
    fit_data = data.fit_arguments(
        x_train, batch_size, seed, config.noise_std, shuffle_buffer, x_val
    )

    input_shape = tuple(int(size) for size in x_train.shape[1:])
    model = build_and_compile(
        config, input_shape, learning_rate, seed, steps_per_execution, jit_compile
    )

    progress = EpochProgress(n_train=len(x_train), epochs=epochs, verbose=verbose)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True, mode="min"
    )
    start = time.perf_counter()
    fitted = model.fit(
        **fit_data,
        epochs=epochs,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN(), progress, early_stopping, *callbacks],
    )
    train_seconds = time.perf_counter() - start
    history = {name: [float(value) for value in values] for name, values in fitted.history.items()}
    _check_finite(history, config.name, learning_rate, batch_size)

    info = _training_info(history, progress, model, epochs, train_seconds, x_train, x_val)
    return model, history, info


def _training_info(
    history: Mapping[str, list[float]],
    progress: EpochProgress,
    model: Any,
    epochs: int,
    train_seconds: float,
    x_train: np.ndarray,
    x_val: np.ndarray,
) -> dict[str, Any]:
    """train_variant's ``info``: timing, the best epoch and the model's size."""
    val_losses = history["val_loss"]
    best_index = int(np.argmin(val_losses))
    info = {
        "train_seconds": round(train_seconds, 3),
        "epochs_run": len(val_losses),
        "best_epoch": best_index + 1,
        "best_val_loss": val_losses[best_index],
        "stopped_early": len(val_losses) < epochs,
        "images_per_second": round(progress.images_per_second(), 1),
        "epoch_seconds": [round(seconds, 3) for seconds in progress.epoch_seconds],
        "parameter_count": models.parameter_count(model),
        "train_images": len(x_train),
        "val_images": len(x_val),
    }
    return info


def resolve_variant(
    variant: str,
    variant_block: Mapping[str, Any],
    train_section: Mapping[str, Any] | None,
    best_path: str | Path | None,
) -> tuple[Resolved, dict[str, Any] | None]:
    """What ``train@variant`` trains with: params.yaml's ``train``, the variant's ``train:``,
    then ``best_path``'s search result (None: no search applies). Returns (resolved, best)."""
    variant_config = models.VariantConfig.from_params(variant, variant_block)
    best = read_best(best_path) if best_path is not None else None
    resolved = resolve_hyperparameters(
        train_section, variant_config, best, where=f"train (with variants.{variant}.train)"
    )
    return resolved, best


def train_and_save(
    variant: str,
    variant_block: Mapping[str, Any],
    train_section: Mapping[str, Any] | None,
    seed: int,
    processed_dir: str | Path,
    best_path: str | Path,
    output_dir: str | Path,
    verbose: bool = True,
) -> dict[str, Any]:
    """The train@<variant> stage: resolve hyperparameters, train, save ``output_dir`` atomically.

    ``output_dir`` receives the model files (``models.save_autoencoder``), history.json,
    training.json and run.json (the MLflow run this training logged to: params, per-epoch
    metrics, final metrics, history.json and config.json as artifacts; and this machine's
    timings; ``.dvcignore`` keeps it out of the output's hash). Returns training.json.
    """
    import mlflow

    from autoencoders import tracking

    resolved, best = resolve_variant(variant, variant_block, train_section, best_path)
    card = data.load_card(processed_dir)
    x_train = data.as_input(data.open_split(processed_dir, "train"))
    x_val = data.as_input(data.open_split(processed_dir, "val"))
    hyperparameters = {**resolved.as_params(), "seed": int(seed)}
    if verbose:
        print(
            f"[train {variant}] {len(x_train):,} train / {len(x_val):,} val images "
            f"{list(x_train.shape[1:])}; {hyperparameters} (tuning: {resolved.tuning_source})",
            flush=True,
        )

    experiment_id = tracking.setup()
    tags = records.run_tags(variant, card, resolved, best)
    with mlflow.start_run(run_name=f"{variant}-train", tags=tags) as run:
        run_id = run.info.run_id
        records.log_run_inputs(resolved, hyperparameters, best, card, x_train, x_val)
        model, history, info, clustering = fit_resolved(
            resolved,
            x_train,
            x_val,
            int(seed),
            [MlflowEpochLogger(mlflow.MlflowClient(), run_id)],
            verbose,
        )
        record = records.training_record(
            variant, info, hyperparameters, resolved, best, card, clustering
        )
        timings = records.run_record(info, clustering)
        _save_outputs(output_dir, model, history, record, info, timings, run_id, experiment_id)
    if verbose:
        print(
            f"[train {variant}] best val_loss {info['best_val_loss']:.5f} at epoch "
            f"{info['best_epoch']}/{info['epochs_run']}, {info['train_seconds']:.1f} s, "
            f"{info['images_per_second']:,.0f} img/s -> {output_dir}/ (MLflow run {run_id})",
            flush=True,
        )
    return record


def fit_resolved(
    resolved: Resolved,
    x_train: np.ndarray | data.Split,
    x_val: np.ndarray | data.Split,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: bool = True,
) -> tuple[Any, dict[str, list[float]], dict[str, Any], dict[str, Any] | None]:
    """train_variant with the resolved settings (``callbacks`` added, e.g. an MLflow logger);
    then IDEC's clustering phase when the model has one. Returns (model, history, info,
    clustering)."""
    settings = resolved.settings
    backend.require(settings.backend, resolved.config.name)
    model, history, info = train_variant(
        resolved.config,
        x_train,
        x_val,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        seed=seed,
        patience=settings.early_stopping_patience,
        shuffle_buffer=settings.shuffle_buffer,
        callbacks=callbacks,
        verbose=verbose,
        steps_per_execution=settings.steps_per_execution,
        jit_compile=settings.jit_compile,
    )
    clustering = None
    if model.owns_clusters:  # the clustering objective's second phase (IDEC)
        # IDEC's phase recomputes every image's assignment: it holds the split whole.
        whole = x_train if isinstance(x_train, np.ndarray) else x_train.first(len(x_train))
        clustering = model.fit_clusters(
            whole, batch_size=settings.batch_size, seed=seed, verbose=verbose
        )
        info["pretrain_seconds"] = info["train_seconds"]
        info["train_seconds"] = round(info["train_seconds"] + clustering["seconds"], 3)
    return model, history, info, clustering


def _save_outputs(
    output_dir: str | Path,
    model: Any,
    history: Mapping[str, list[float]],
    record: Mapping[str, Any],
    info: Mapping[str, Any],
    timings: Mapping[str, Any],
    run_id: str,
    experiment_id: str,
) -> None:
    """Write the model directory atomically and log its final metrics and files to MLflow."""
    import mlflow

    from autoencoders import tracking

    with fileio.atomic_directory(output_dir) as staging:
        models.save_autoencoder(model, staging)
        fileio.write_json(staging / "history.json", history)
        fileio.write_json(staging / "training.json", record)
        tracking.write_run_ref(staging / "run.json", run_id, experiment_id, **timings)
        mlflow.log_metrics(
            {
                "best_val_loss": info["best_val_loss"],
                "final_loss": history["loss"][-1],
                "epochs_run": info["epochs_run"],
                "best_epoch": info["best_epoch"],
                "train_seconds": info["train_seconds"],
                "images_per_second": info["images_per_second"],
                "parameter_count": info["parameter_count"],
            }
        )
        mlflow.log_artifact(str(staging / "history.json"))
        mlflow.log_artifact(str(staging / "config.json"))
        mlflow.log_artifact(str(staging / "training.json"))
