"""What a training run records: its MLflow tags and inputs, ``training.json`` (the facts that
are the same on every run) and ``run.json`` (timings and ids, which are not)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from autoencoders import fileio


def run_tags(
    variant: str, card: Mapping[str, Any], resolved: Any, best: Mapping[str, Any] | None
) -> dict[str, str]:
    """The final training run's tags: the standard ones, its kind and where tuning came from."""
    from autoencoders import tracking

    tags = {
        **tracking.standard_tags(variant, f"train@{variant}", card["checksum"]),
        "kind": "final",
        "tuning_source": resolved.tuning_source,
    }
    if best is not None and best.get("study_name"):
        tags["optuna.study_name"] = str(best["study_name"])
    return tags


def log_run_inputs(
    resolved: Any,
    hyperparameters: Mapping[str, Any],
    best: Mapping[str, Any] | None,
    card: Mapping[str, Any],
    x_train: np.ndarray,
    x_val: np.ndarray,
) -> None:
    """Log the hyperparameters, the resolved config and the two datasets to the active run."""
    import mlflow

    from autoencoders import tracking

    config_params = fileio.flatten(
        {"config": {k: v for k, v in resolved.config.to_params().items() if k != "search"}}
    )
    mlflow.log_params({**hyperparameters, **{k: str(v) for k, v in config_params.items()}})
    if best is not None:
        mlflow.log_params({f"tuned.{k}": v for k, v in resolved.tuned.items()})
    for split, images, context in (("train", x_train, "training"), ("val", x_val, "eval")):
        # A split of shards is described by its first image (MLflow profiles what it is given).
        images = images if isinstance(images, np.ndarray) else images.first(1)
        mlflow.log_input(tracking.dataset(images, split=split, card=card), context=context)


def training_record(
    variant: str,
    info: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    resolved: Any,
    best: Mapping[str, Any] | None,
    card: Mapping[str, Any],
    clustering: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The content of training.json: only what the same inputs reproduce (no run id, no
    seconds; those are run.json's), so a second machine's ``make repro`` leaves dvc.lock alone."""
    record = {
        "variant": variant,
        "epochs_run": info["epochs_run"],
        "best_epoch": info["best_epoch"],
        "best_val_loss": info["best_val_loss"],
        "stopped_early": info["stopped_early"],
        "parameter_count": info["parameter_count"],
        "params": hyperparameters,
        "tuning": {
            "source": resolved.tuning_source,
            "params": resolved.tuned,
            "study_name": (best or {}).get("study_name"),
            "value": (best or {}).get("value"),
        },
        "data_checksum": card["checksum"],
        "train_images": info["train_images"],
        "val_images": info["val_images"],
    }
    if clustering is not None:
        record["clustering"] = {k: v for k, v in clustering.items() if not _is_timing(k)}
    return record


def _is_timing(key: str) -> bool:
    """Whether a record's key holds this machine's timing (``*seconds``, images/s)."""
    return key.endswith("seconds") or key == "images_per_second"


def run_record(info: Mapping[str, Any], clustering: Mapping[str, Any] | None) -> dict[str, Any]:
    """What run.json adds to the MLflow run reference: this machine's timings."""
    timings = {key: value for key, value in info.items() if _is_timing(key)}
    for key, value in (clustering or {}).items():
        if _is_timing(key):
            timings[f"clustering_{key}"] = value
    return timings
