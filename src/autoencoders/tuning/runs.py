"""MLflow bookkeeping of trials: one nested run per trial, by explicit run id; closing runs.

Runs are written through ``MlflowClient`` with explicit run ids, so concurrent workers never
write into each other's runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import optuna

from autoencoders import tracking


@dataclasses.dataclass
class TrialLogger:
    """MLflow bookkeeping of one process's trials, by explicit run ids."""

    client: Any
    experiment_id: str
    parent_run_id: str
    tags: dict[str, str]

    def start(self, trial: optuna.Trial, study_name: str) -> str:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.tags['variant']}-trial-{trial.number}",
            tags={
                **self.tags,
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                "kind": "trial",
                "state": "running",
                "optuna.study_name": study_name,
                "optuna.trial_number": str(trial.number),
            },
        )
        return run.info.run_id

    def params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        entries = [Param(key, str(value)) for key, value in params.items()]
        self.client.log_batch(run_id, params=entries, synchronous=True)

    def finish(
        self, run_id: str, state: str, metrics: Mapping[str, float], note: str = ""
    ) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        entries = [Metric(k, float(v), stamp, 0) for k, v in metrics.items() if v is not None]
        if entries:
            self.client.log_batch(run_id, metrics=entries, synchronous=True)
        self.client.set_tag(run_id, "state", state)
        if note:
            self.client.set_tag(run_id, "note", note[:5000])
        status = {"failed": "FAILED", "killed": "KILLED"}.get(state, "FINISHED")
        self.client.set_terminated(run_id, status=status)


def mlflow_client() -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking.tracking_uri())


def close_run(client: Any, run_id: str, note: str) -> bool:
    """Mark a RUNNING MLflow run KILLED (tag ``state`` killed); False when it was not running."""
    if client.get_run(run_id).info.status != "RUNNING":
        return False
    client.set_tag(run_id, "state", "killed")
    client.set_tag(run_id, "note", note[:5000])
    client.set_terminated(run_id, status="KILLED")
    return True


def close_worker_runs(client: Any, parent_run_id: str, note: str) -> int:
    """Close a dead worker's parent run and its RUNNING nested trial runs as KILLED."""
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'"
        ),
        max_results=1000,
    )
    closed = sum(close_run(client, child.info.run_id, note) for child in children)
    return closed + close_run(client, parent_run_id, note)


def close_trial_runs(trial: optuna.trial.FrozenTrial, note: str) -> int:
    """Close a killed trial's MLflow run and its worker's parent run (that worker is dead)."""
    attributes = trial.user_attrs
    closed = 0
    try:
        client = mlflow_client()
        if attributes.get("mlflow_run_id"):
            closed += close_run(client, attributes["mlflow_run_id"], note)
        if attributes.get("mlflow_parent_run_id"):
            closed += close_worker_runs(client, attributes["mlflow_parent_run_id"], note)
    except Exception as error:  # MLflow bookkeeping must not stop the search from resuming
        print(f"[tune] could not close the MLflow runs of trial {trial.number}: {error}")
    return closed
