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
``workers`` (a process's share of the search, spawned workers, ``tune``).
"""

from autoencoders.tuning.best import best_payload, rerun_command
from autoencoders.tuning.recovery import recover, worker_alive, worker_identity
from autoencoders.tuning.space import Dimension, SearchPlan, TuneSettings, plan_search
from autoencoders.tuning.studies import open_storage, open_study, redact, storage_url
from autoencoders.tuning.trials import PruningCallback, make_objective
from autoencoders.tuning.workers import INTERRUPTED_EXIT_CODE, SearchInterrupted, run_search, tune

__all__ = [
    "INTERRUPTED_EXIT_CODE",
    "Dimension",
    "PruningCallback",
    "SearchInterrupted",
    "SearchPlan",
    "TuneSettings",
    "best_payload",
    "make_objective",
    "open_storage",
    "open_study",
    "plan_search",
    "recover",
    "redact",
    "rerun_command",
    "run_search",
    "storage_url",
    "tune",
    "worker_alive",
    "worker_identity",
]
