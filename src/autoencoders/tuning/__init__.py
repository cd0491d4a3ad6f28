"""Optuna search per variant: search spaces from params.yaml, the objective, pruning, storage.

A variant's ``search`` block declares its space: ``learning_rate``, ``batch_size`` or any
``architecture.<field>``/``objective.<field>``, each a range ``{low, high[, log]}`` or
``{choices: [...]}``. ``plan_search`` validates all of it (and the ``tune`` section) before any
training and names the study after the variant and a short hash of everything its trials'
values depend on (search space, fidelity, base config, data checksum, seed), so that a study
only ever holds comparable trials. ``tune(...)`` tops that study up to ``n_trials`` complete or
pruned trials (studies resume and never repeat a trial; a failed trial does not count), in this
process or in several worker processes sharing the storage (on one machine or several), and
writes ``tuning/<variant>/best.json``.

Crash safety: each trial records its worker (host, pid, process start time) and a heartbeat.
Before a search resumes, a RUNNING trial whose worker process on this host is gone (kill -9, OOM)
is failed at once; one of another host is failed once its heartbeat is older than the grace
period. Either way its parameters are queued again (at most ``MAX_RETRIES`` times) and its MLflow
run, and the parent run of its dead worker, are closed as KILLED. A worker claims a trial only
while the study holds fewer than ``n_trials`` complete, pruned or running trials numbered before
it, so several machines topping up one study end with exactly ``n_trials``. Ctrl-C fails and
re-queues the running trials, closes their runs as KILLED and exits with status 130.

Each trial trains at a cheap fidelity (``tune.train_subset``/``val_subset`` images,
``tune.epochs``), reports its validation loss every epoch to a seeded TPE sampler's study with a
median pruner, and logs into its own nested MLflow run under its process's parent run, by explicit
run id (``MlflowClient``), so concurrent workers never write into each other's runs.

Modules: ``space`` (search space, settings, plan), ``studies`` (storage URL, opening studies,
counts), ``trials`` (claiming and running trials, pruning, the objective), ``runs`` (MLflow runs
of trials), ``recovery`` (dead workers, heartbeats, re-queueing), ``best`` (best.json),
``workers`` (a process's share of the search, spawned workers, ``tune``), ``command`` (``make
tune`` and ``tune@V``: variants grouped by Keras backend, ``dvc commit``).

The public names below load their module on first use: ``trials`` and ``workers`` import Keras,
whose backend ``command`` must choose first (``training.backend``).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "best_payload": "best",
    "rerun_command": "best",
    "recover": "recovery",
    "worker_alive": "recovery",
    "worker_identity": "recovery",
    "Dimension": "space",
    "SearchPlan": "space",
    "TuneSettings": "space",
    "plan_search": "space",
    "open_storage": "studies",
    "open_study": "studies",
    "redact": "studies",
    "storage_url": "studies",
    "PruningCallback": "trials",
    "make_objective": "trials",
    "INTERRUPTED_EXIT_CODE": "workers",
    "SearchInterrupted": "workers",
    "run_search": "workers",
    "tune": "workers",
}

__all__ = sorted(_HOMES)


_MODULES = ("best", "command", "recovery", "runs", "space", "studies", "trials", "workers")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"autoencoders.tuning.{name}")
    if name not in _HOMES:
        raise AttributeError(f"module 'autoencoders.tuning' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autoencoders.tuning.{_HOMES[name]}"), name)
