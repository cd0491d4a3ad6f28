"""MLflow set-up and the few logging helpers every stage shares.

The backend is a SQLite file ``mlflow.db`` at the repository root unless ``MLFLOW_TRACKING_URI``
says otherwise. One experiment (``autoencoders``) holds every run. Each run carries the tags
``variant``, ``git_commit``, ``data_checksum`` and ``dvc_stage``. The final training run of a
variant is recorded in ``models/<variant>/run.json`` so that evaluate and export log into it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from autoencoders import fileio

EXPERIMENT = "autoencoders"
DEFAULT_DB = "mlflow.db"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else SQLite ``mlflow.db`` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_DB).resolve()}"


def setup(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the tracking URI and the pipeline's experiment; return its id."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    artifact_root = None
    if uri.startswith("sqlite:///"):
        # Keep artifacts beside the database, not in the current directory's ./mlruns.
        artifact_root = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        experiment_id = mlflow.create_experiment(
            experiment, artifact_location=artifact_root.as_uri() if artifact_root else None
        )
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    """The current commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def standard_tags(variant: str, stage: str, data_checksum: str) -> dict[str, str]:
    """The tags every run carries."""
    return {
        "variant": variant,
        "git_commit": git_commit(),
        "data_checksum": data_checksum,
        "dvc_stage": stage,
    }


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for ``mlflow.log_params``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def write_run_ref(path: str | Path, run_id: str, experiment_id: str) -> None:
    """Record which MLflow run a model belongs to (``models/<variant>/run.json``)."""
    fileio.write_json(
        path, {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": tracking_uri()}
    )


@contextlib.contextmanager
def resume_run(run_ref_path: str | Path) -> Iterator[Any]:
    """Re-open the run named in ``run.json`` so a later stage logs into it.

    If the run is missing from this tracking store (the store was deleted or
    ``MLFLOW_TRACKING_URI`` changed), a clear error says to re-run training.
    """
    import mlflow

    reference = fileio.read_json(run_ref_path)
    setup()
    try:
        mlflow.get_run(reference["run_id"])
    except mlflow.exceptions.MlflowException as error:
        raise RuntimeError(
            f"MLflow run {reference['run_id']} from {run_ref_path} is not in {tracking_uri()}: "
            "re-run training (dvc repro --force train@<variant>) or point "
            "MLFLOW_TRACKING_URI at the store it was logged to."
        ) from error
    with mlflow.start_run(run_id=reference["run_id"]) as run:
        yield run
