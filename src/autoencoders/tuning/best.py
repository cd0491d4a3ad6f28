"""``tuning/<variant>/best.json``: the study's best parameters, or the defaults and why."""

from __future__ import annotations

import shlex
from typing import Any

import optuna

from autoencoders.tuning import space, studies


def best_payload(plan: space.SearchPlan, url: str, rerun_command: str = "") -> dict[str, Any]:
    """The content of ``tuning/<variant>/best.json`` from the study as it stands.

    With no completed trial the configured defaults are returned, with ``"source": "defaults"``
    and the reason.
    """
    study = None
    counts = {"complete": 0, "pruned": 0, "failed": 0}
    if plan.space:
        study = optuna.load_study(study_name=plan.study_name, storage=studies.open_storage(url))
        counts = studies.finished_counts(study)
    payload: dict[str, Any] = {
        "variant": plan.variant,
        "params": plan.defaults(),
        "value": None,
        "source": "defaults",
        "n_trials": sum(counts.values()),
        "counts": counts,
        "best_trial": None,
        "study_name": plan.study_name,
        # As configured (a relative path stays relative): the same study read from another
        # clone gives the same file, and git stays clean.
        "storage": studies.redact(plan.settings.storage),
        "search_space": {d.name: d.describe() for d in plan.space},
        "fidelity": plan.fidelity(),
        "data_checksum": plan.data_checksum,
        "rerun_command": rerun_command,
    }
    if not plan.space:
        payload["note"] = f"variants.{plan.variant}.search is empty: the defaults are used."
    elif counts["complete"] == 0:
        failures = {
            str(t.number): t.user_attrs.get("failure", t.state.name)
            for t in study.get_trials(deepcopy=False, states=studies.FINISHED_STATES)
        }
        payload["note"] = "no trial completed: training uses the configured defaults."
        payload["failures"] = failures
    else:
        best = study.best_trial
        payload.update(
            params={**plan.defaults(), **best.params},
            value=best.value,
            source="study",
            best_trial=best.number,
        )
    return payload


def rerun_command(variant: str, n_trials: int, storage: str) -> str:
    """The command that resumes or extends this study."""
    return shlex.join(
        [
            "python",
            "pipeline/tune.py",
            "--variants",
            variant,
            "--trials",
            str(n_trials),
            "--storage",
            studies.redact(storage),
        ]
    )
