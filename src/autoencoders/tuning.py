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
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import signal
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import optuna

from autoencoders import config as config_module
from autoencoders import data, fileio, models, tracking, training
from autoencoders.config import ConfigError

FINISHED_STATES = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)
# What counts towards n_trials: a failed trial (an error, a NaN, a killed worker) does not.
COUNTED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# What holds a slot while a worker claims a trial (see _claim).
CLAIMED_STATES = (*COUNTED_STATES, optuna.trial.TrialState.RUNNING)
SQLITE_TIMEOUT_S = 60
# A trial whose process died on another machine is failed once its heartbeat is this old; on
# this machine its dead process is seen at once (worker_alive).
HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120
# A trial whose worker was killed is queued again, but not forever (it may be what kills it).
MAX_RETRIES = 2
INTERRUPTED_EXIT_CODE = 130
_RANGE_KEYS = {"low", "high", "log", "step"}


@dataclasses.dataclass(frozen=True)
class TuneSettings:
    """params.yaml ``tune``: the search's size, fidelity, pruner and storage."""

    n_trials: int = 3
    timeout_s: float = 0.0
    epochs: int = 2
    train_subset: int = 0
    val_subset: int = 0
    pruner_startup_trials: int = 2
    pruner_warmup_epochs: int = 0
    storage: str = "tuning/optuna.db"

    def __post_init__(self) -> None:
        fixes = {
            "n_trials": (self.n_trials >= 1, "at least 1 (the trials each study holds)"),
            "timeout_s": (self.timeout_s >= 0, ">= 0 seconds (0 for no time limit)"),
            "epochs": (self.epochs >= 1, "at least 1 (epochs per trial)"),
            "train_subset": (self.train_subset >= 0, ">= 0 images (0 for all)"),
            "val_subset": (self.val_subset >= 0, ">= 0 images (0 for all)"),
            "pruner_startup_trials": (self.pruner_startup_trials >= 0, ">= 0"),
            "pruner_warmup_epochs": (self.pruner_warmup_epochs >= 0, ">= 0"),
            "storage": (bool(self.storage.strip()), "a path (SQLite) or an RDB URL"),
        }
        for name, (ok, expected) in fixes.items():
            if not ok:
                raise ConfigError(
                    f"tune.{name} must be {expected}, got {getattr(self, name)!r}: "
                    f"fix tune.{name} in params.yaml (or the matching command-line option)."
                )


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a float/int range or a list of choices."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def describe(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        described = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            described["step"] = self.step
        return described


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """Everything a variant's search needs, validated; built by ``plan_search``."""

    variant: str
    config: Any  # models.VariantConfig
    space: tuple[Dimension, ...]
    base: training.TrainSettings  # train section + the variant's train: overrides
    settings: TuneSettings
    seed: int
    data_checksum: str
    study_name: str

    def fidelity(self) -> dict[str, int]:
        return {
            "epochs": self.settings.epochs,
            "train_subset": self.settings.train_subset,
            "val_subset": self.settings.val_subset,
        }

    def defaults(self) -> dict[str, Any]:
        """The configured (untuned) value of every searched hyperparameter, plus lr and batch."""
        values = {
            "learning_rate": self.base.learning_rate,
            "batch_size": self.base.batch_size,
        }
        block = self.config.to_params()
        for dimension in self.space:
            section, _, key = dimension.name.partition(".")
            if key:
                value = block[section][key]
                values[dimension.name] = list(value) if isinstance(value, tuple) else value
        return values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string.
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number, got {value!r}.") from None
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}.")
    return value


def _parse_dimension(name: str, spec: Any, where: str, current: Any) -> Dimension:
    """One ``search.<name>`` entry; ``current`` is the configured value (its type decides)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where} must be a range {{low: .., high: ..[, log: true]}} or {{choices: [..]}}, "
            f"got {spec!r}."
        )
    if "choices" in spec:
        extra = sorted(set(spec) - {"choices"})
        choices = spec["choices"]
        if extra:
            raise ConfigError(f"{where}: 'choices' cannot be combined with {extra}; use one form.")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"{where}.choices must be a non-empty list, got {choices!r}.")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ConfigError(
                    f"{where}.choices may hold numbers, strings, booleans or null, got "
                    f"{choice!r}: Optuna stores only such values."
                )
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}.choices lists a value twice: {list(choices)}.")
        return Dimension(name=name, kind="categorical", choices=tuple(choices))
    unknown = sorted(set(spec) - _RANGE_KEYS)
    missing = sorted({"low", "high"} - set(spec))
    if unknown or missing:
        raise ConfigError(
            f"{where}: a range needs low and high (optional log, step); "
            + (f"unknown key(s) {unknown}" if unknown else f"missing {missing}")
            + ". Or give {choices: [...]}."
        )
    low = _number(spec["low"], f"{where}.low")
    high = _number(spec["high"], f"{where}.high")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log must be true or false, got {log!r}.")
    if low == high:
        raise ConfigError(
            f"{where} is an empty range (low == high == {low}): widen it, or remove "
            f"{name} from the search to keep it fixed."
        )
    if low > high:
        raise ConfigError(f"{where} is inverted (low {low} > high {high}): swap low and high.")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}.")
    if step is not None and (not _is_number(step) or step <= 0 or log):
        raise ConfigError(f"{where}.step must be a positive number and cannot go with log.")
    if isinstance(current, bool):
        raise ConfigError(f"{where}: {name} is true/false; search it with {{choices: [..]}}.")
    wants_int = (
        isinstance(current, int)
        if current is not None
        else (isinstance(low, int) and isinstance(high, int))
    )
    if wants_int:
        if not all(float(v).is_integer() for v in (low, high, step or 1)):
            raise ConfigError(
                f"{where}: {name} is an integer; give integer low/high (got {low}, {high})."
            )
        return Dimension(
            name, "int", int(low), int(high), log, None if step is None else int(step)
        )
    if current is not None and not isinstance(current, float):
        raise ConfigError(
            f"{where}: {name} is not a number ({current!r}); search it with {{choices: [..]}}."
        )
    return Dimension(name, "float", float(low), float(high), log, step)


def parse_search_space(variant_config: Any) -> tuple[Dimension, ...]:
    """Validate ``variants.<name>.search``; return its dimensions sorted by name.

    Unknown hyperparameter names, empty or inverted ranges, bad choices and values the
    variant's typed config rejects raise ConfigError naming the key and the fix.
    """
    name = variant_config.name
    search = variant_config.search or {}
    valid = set(training.SEARCHABLE_HYPERPARAMETERS) | set(models.tunable_fields(variant_config))
    valid -= {"architecture.name", "objective.name"}
    block = variant_config.to_params()
    dimensions = []
    for key in sorted(search):
        where = f"variants.{name}.search.{key}"
        if key not in valid:
            raise ConfigError(
                f"{where}: unknown hyperparameter {key!r}; valid names for this variant are "
                f"{sorted(valid)}."
            )
        section, _, field = key.partition(".")
        if field:
            current = block[section].get(field)
        else:
            current = 1e-3 if key == "learning_rate" else 1
        dimension = _parse_dimension(key, search[key], where, current)
        if key in training.SEARCHABLE_HYPERPARAMETERS:
            values = dimension.choices or (dimension.low, dimension.high)
            if any(not _is_number(v) or v <= 0 for v in values) or (
                key == "batch_size" and any(not float(v).is_integer() for v in values)
            ):
                raise ConfigError(f"{where}: every {key} must be a positive number.")
        else:
            # Let the variant's typed config judge the extremes (types, allowed values).
            for value in dimension.choices or (dimension.low, dimension.high):
                try:
                    variant_config.with_overrides({key: value})
                except ConfigError as error:
                    raise ConfigError(f"{where}: {value!r} is not allowed: {error}") from None
        dimensions.append(dimension)
    return tuple(dimensions)


def _config_fingerprint(variant_config: Any) -> dict[str, Any]:
    block = variant_config.to_params()
    return {"architecture": block["architecture"], "objective": block["objective"]}


def make_study_name(
    variant: str,
    space: Sequence[Dimension],
    fidelity: Mapping[str, Any],
    data_checksum: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """``<variant>-<10 hex>``: a hash of what the trials' values depend on (not n_trials)."""
    payload = {
        "space": {dimension.name: dimension.describe() for dimension in space},
        "fidelity": dict(fidelity),
        "data_checksum": data_checksum,
        **(extra or {}),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return f"{variant}-{digest.hexdigest()[:10]}"


def plan_search(
    variant: str,
    variant_block: Mapping[str, Any],
    train_section: Mapping[str, Any] | None,
    tune_section: Mapping[str, Any] | None,
    seed: int,
    data_checksum: str,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    storage: str | None = None,
) -> SearchPlan:
    """Validate a variant's search (space, tune section, overrides) before any training."""
    variant_config = models.VariantConfig.from_params(variant, variant_block)
    space = parse_search_space(variant_config)
    base = training.resolve_hyperparameters(
        train_section, variant_config, where=f"train (with variants.{variant}.train)"
    ).settings
    overrides = {
        key: value
        for key, value in {
            "n_trials": n_trials,
            "timeout_s": timeout_s,
            "storage": storage,
        }.items()
        if value is not None
    }
    settings = config_module.from_mapping(
        TuneSettings, {**dict(tune_section or {}), **overrides}, "tune"
    )
    fidelity = {
        "epochs": settings.epochs,
        "train_subset": settings.train_subset,
        "val_subset": settings.val_subset,
    }
    # What a trial uses from the train section: not the final epochs, nor what it searches.
    base_values = {
        key: value
        for key, value in dataclasses.asdict(base).items()
        if key != "epochs" and key not in {dimension.name for dimension in space}
    }
    study_name = make_study_name(
        variant,
        space,
        fidelity,
        data_checksum,
        extra={"config": _config_fingerprint(variant_config), "base": base_values, "seed": seed},
    )
    return SearchPlan(
        variant=variant,
        config=variant_config,
        space=space,
        base=base,
        settings=settings,
        seed=int(seed),
        data_checksum=data_checksum,
        study_name=study_name,
    )


def storage_url(storage: str) -> str:
    """A path becomes ``sqlite:///<absolute path>``; a URL (``postgresql://...``) stays as is."""
    if "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def redact(url: str) -> str:
    """The storage URL without its password, for records and logs."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported as given, minus nothing secret in it
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; SQLite waits up to a minute for a concurrent writer.

    An unreachable server or a wrong password raises ``tracking.ServiceError`` (one line).
    """
    engine_kwargs = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        tracking.check_database(url, "Optuna storage", "STORAGE / --storage / tune.storage")
    import sqlalchemy.exc

    try:
        with warnings.catch_warnings():
            # Heartbeats are "experimental" in Optuna since 2.9; they are what lets a study resume.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=HEARTBEAT_GRACE_S,
                heartbeat_stale_trial_callback=_on_stale_trial,
            )
    except sqlalchemy.exc.SQLAlchemyError as error:  # e.g. an SQLite file in a missing folder
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
        raise ConfigError(
            f"Optuna storage {redact(url)} cannot be opened ({reason}): "
            "fix tune.storage (or --storage / STORAGE)."
        ) from None


# --- crash safety: who owns a trial, what to do when its worker is gone ------------------------


def _process_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None where there is no /proc entry."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def worker_identity(pid: int | None = None) -> dict[str, Any]:
    """Host, pid and start time (clock ticks since boot, so a reused pid is told apart)."""
    pid = os.getpid() if pid is None else pid
    stat = _process_stat(pid)
    return {"host": socket.gethostname(), "pid": pid, "started": stat[19] if stat else ""}


def worker_alive(host: Any, pid: Any, started: Any = "") -> bool | None:
    """False when the process is certainly gone (this host); None when it cannot be known."""
    if not host or host != socket.gethostname():
        return None
    try:
        pid = int(pid)
        os.kill(pid, 0)
    except (TypeError, ValueError):
        return None
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's live process
    stat = _process_stat(pid)
    if stat is None:
        return True  # no /proc: the signal said it exists
    if stat[0] in ("Z", "X"):  # a zombie nobody reaped is dead all the same
        return False
    return not started or stat[19] == str(started)


class _Heartbeat:
    """Record a trial's heartbeat now and every ``HEARTBEAT_INTERVAL_S`` in a thread."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        self._stop = threading.Event()
        storage.record_heartbeat(trial_id)
        self._thread = threading.Thread(
            target=self._beat, args=(storage, trial_id), daemon=True, name="heartbeat"
        )
        self._thread.start()

    def _beat(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL_S):
            storage.record_heartbeat(trial_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int | None:
    """Queue a killed trial's parameters again; return the retry count, None when given up."""
    retries = int(trial.user_attrs.get("retries", 0))
    if retries >= MAX_RETRIES:
        return None
    attributes = {"retry_of": trial.number, "retries": retries + 1}
    if "source" in trial.user_attrs:
        attributes["source"] = trial.user_attrs["source"]
    study.enqueue_trial(dict(trial.params), user_attrs=attributes)
    return retries + 1


def _mlflow_client() -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking.tracking_uri())


def _close_run(client: Any, run_id: str, note: str) -> bool:
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
    closed = sum(_close_run(client, child.info.run_id, note) for child in children)
    return closed + _close_run(client, parent_run_id, note)


def _close_trial_runs(trial: optuna.trial.FrozenTrial, note: str) -> int:
    """Close a killed trial's MLflow run and its worker's parent run (that worker is dead)."""
    attributes = trial.user_attrs
    closed = 0
    try:
        client = _mlflow_client()
        if attributes.get("mlflow_run_id"):
            closed += _close_run(client, attributes["mlflow_run_id"], note)
        if attributes.get("mlflow_parent_run_id"):
            closed += close_worker_runs(client, attributes["mlflow_parent_run_id"], note)
    except Exception as error:  # MLflow bookkeeping must not stop the search from resuming
        print(f"[tune] could not close the MLflow runs of trial {trial.number}: {error}")
    return closed


def _on_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's heartbeat callback: a trial of a dead worker (another host) was just failed."""
    retries = _requeue(study, trial)
    _close_trial_runs(trial, f"worker stopped beating (heartbeat > {HEARTBEAT_GRACE_S} s old)")
    print(
        f"[tune] trial {trial.number} lost its worker (no heartbeat for {HEARTBEAT_GRACE_S} s): "
        + (f"failed and queued again (retry {retries})" if retries else "failed, not retried"),
        flush=True,
    )


def _fail_killed(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Fail a RUNNING trial, recording why; False when another process finished it first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial_id, "failure", reason)
        return storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def recover(study: optuna.Study, verbose: bool = True) -> dict[str, int]:
    """Fail and re-queue the trials of dead workers; close their MLflow runs as KILLED.

    A RUNNING trial whose worker process on this host is gone is failed at once; trials of
    other hosts go through Optuna's heartbeat check (failed past the grace period). Running
    parent runs of this study whose worker on this host is gone are closed too.
    Returns {"killed", "requeued", "runs_closed"}.
    """
    killed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attributes = trial.user_attrs
        host, pid = attributes.get("worker_host"), attributes.get("worker_pid")
        if worker_alive(host, pid, attributes.get("worker_started", "")) is not False:
            continue
        reason = f"killed: its worker (pid {pid} on {host}) is gone"
        if _fail_killed(study, trial._trial_id, reason):
            killed.append(study._storage.get_trial(trial._trial_id))
    counts = {"killed": len(killed), "requeued": 0, "runs_closed": 0}
    for trial in killed:
        counts["requeued"] += _requeue(study, trial) is not None
        counts["runs_closed"] += _close_trial_runs(trial, trial.user_attrs["failure"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other hosts: _on_stale_trial
    counts["runs_closed"] += _close_dead_parents(study.study_name)
    if verbose and any(counts.values()):
        print(
            f"[tune] {study.study_name}: {counts['killed']} trial(s) of dead workers failed, "
            f"{counts['requeued']} queued again, {counts['runs_closed']} MLflow run(s) closed "
            "as KILLED",
            flush=True,
        )
    return counts


def _close_dead_parents(study_name: str) -> int:
    """Close RUNNING search runs of this study whose worker process on this host is gone."""
    closed = 0
    try:
        client = _mlflow_client()
        experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
        if experiment is None:
            return 0
        parents = client.search_runs(
            [experiment.experiment_id],
            filter_string=(
                f"tags.kind = 'search' and tags.`optuna.study_name` = '{study_name}' "
                "and attributes.status = 'RUNNING'"
            ),
            max_results=1000,
        )
        for parent in parents:
            tags = parent.data.tags
            host, pid = tags.get("worker.host"), tags.get("worker.pid")
            if worker_alive(host, pid, tags.get("worker.started", "")) is False:
                note = f"killed: its worker (pid {pid} on {host}) is gone"
                closed += close_worker_runs(client, parent.info.run_id, note)
    except Exception as error:
        print(f"[tune] could not close the MLflow runs of dead workers: {error}")
    return closed


@contextlib.contextmanager
def _claim_lock(study: optuna.Study) -> Iterator[None]:
    """Serialise claims of the workers sharing one SQLite file: SQLite gives no atomic pop of a
    WAITING trial across processes (seen: two workers of one resume both ran a re-queued
    trial). Other storages lock the row themselves; there this does nothing."""
    storage = getattr(study._storage, "_backend", study._storage)
    url = str(getattr(storage, "url", ""))
    if not url.startswith("sqlite:///"):
        yield
        return
    import fcntl

    with open(url[len("sqlite:///") :] + ".claim.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _claim(study: optuna.Study, target: int) -> optuna.Trial | None:
    with _claim_lock(study):
        return _claim_unlocked(study, target)


def _claim_unlocked(study: optuna.Study, target: int) -> optuna.Trial | None:
    """Start a trial if the study still has room for one; None when it is full.

    Trial numbers are handed out atomically by the storage, so "fewer than ``target`` complete,
    pruned or running trials numbered before mine" is a rule every worker on every machine
    applies alike: of two workers claiming the last slot at once, the later number gives it
    back (its trial returns to WAITING and is reused by the next claim).
    """
    if len(study.get_trials(deepcopy=False, states=CLAIMED_STATES)) >= target:
        return None
    with warnings.catch_warnings():
        # "Heartbeat ... supposed to be used with Study.optimize": run_trials beats itself.
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    for key, value in worker_identity().items():
        trial.set_user_attr(f"worker_{key}", value)
    ahead = sum(
        other.number < trial.number
        for other in study.get_trials(deepcopy=False, states=CLAIMED_STATES)
    )
    if ahead >= target:
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.WAITING)
        return None
    return trial


def _interrupted(study: optuna.Study, trial: optuna.Trial, logger: _TrialLogger | None) -> None:
    """Ctrl-C during a trial: fail it, queue it again, close its MLflow run as KILLED."""
    if not _fail_killed(study, trial._trial_id, "interrupted (SIGINT)"):
        return
    frozen = study._storage.get_trial(trial._trial_id)
    _requeue(study, frozen)
    run_id = frozen.user_attrs.get("mlflow_run_id")
    if logger is not None and run_id:
        logger.finish(run_id, "killed", {}, "interrupted (SIGINT)")


# Ctrl-C during a search is a request, not an exception raised wherever the signal lands: a
# KeyboardInterrupt raised inside a garbage-collector callback is printed and dropped by the
# interpreter, and the worker went on to finish (and re-claim) trials. The handler only sets
# this flag; the trainer's batch callback and run_trials raise from known places.
_STOP_REQUESTED = threading.Event()


def _request_stop(signum: int, frame: Any) -> None:
    _STOP_REQUESTED.set()


@contextlib.contextmanager
def _stop_on_sigint() -> Iterator[None]:
    """Turn SIGINT into ``_STOP_REQUESTED`` for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOP_REQUESTED.clear()
    previous = signal.signal(signal.SIGINT, _request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _raise_if_stop_requested() -> None:
    if _STOP_REQUESTED.is_set():
        raise KeyboardInterrupt


class StopOnInterrupt(keras.callbacks.Callback):
    """Stop a trial's training at the next batch after Ctrl-C."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        _raise_if_stop_requested()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        _raise_if_stop_requested()


def run_trials(
    study: optuna.Study,
    objective: Any,
    target: int,
    max_trials: int,
    timeout_s: float = 0.0,
    logger: _TrialLogger | None = None,
) -> int:
    """Run trials until the study holds ``target`` counted or running ones, ``max_trials``
    were started here or ``timeout_s`` passed; return how many were started.

    What ``study.optimize`` does (heartbeat, stale trials, failing a trial alone), plus the
    claim rule of ``_claim`` and a clean stop on Ctrl-C.
    """
    started = time.monotonic()
    ran = 0
    while ran < max_trials and not (timeout_s and time.monotonic() - started >= timeout_s):
        _raise_if_stop_requested()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trial = _claim(study, target)
        if trial is None:
            break
        ran += 1
        heartbeat = _Heartbeat(study._storage, trial._trial_id)
        value, state = None, None
        try:
            value = objective(trial)
            _raise_if_stop_requested()  # stopped after training: the trial runs again
        except optuna.TrialPruned:
            state = optuna.trial.TrialState.PRUNED
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this
            heartbeat.stop()
            _interrupted(study, trial, logger)
            raise
        except Exception:  # the objective recorded why; a failing trial fails alone
            state = optuna.trial.TrialState.FAIL
        finally:
            heartbeat.stop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a NaN value fails the trial
            if state is None:
                study.tell(trial, value)
            else:
                study.tell(trial, state=state)
        gc.collect()
    return ran


def _sampler_seed(seed: int, study_name: str, worker: int, n_existing: int) -> int:
    # A resumed study or a second worker must not replay the first trials' random draws, and
    # two variants' studies should not draw the same values either.
    name_key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:4], "little")
    entropy = [seed, name_key, worker, n_existing]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def open_study(
    plan: SearchPlan, url: str, worker: int = 0, rerun_command: str = ""
) -> optuna.Study:
    """Create or load the plan's study (seeded TPE, median pruner); record what it is."""
    storage = open_storage(url)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=plan.settings.pruner_startup_trials,
        n_warmup_steps=plan.settings.pruner_warmup_epochs,
    )
    probe = optuna.create_study(
        study_name=plan.study_name,
        storage=storage,
        direction="minimize",
        pruner=pruner,
        load_if_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(probe)  # _on_stale_trial re-queues them
    n_existing = len(probe.get_trials(deepcopy=False))
    study = optuna.load_study(
        study_name=plan.study_name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(
            seed=_sampler_seed(plan.seed, plan.study_name, worker, n_existing)
        ),
        pruner=pruner,
    )
    if worker == 0:
        attributes = {
            "variant": plan.variant,
            "data_checksum": plan.data_checksum,
            "rerun_command": rerun_command,
            "search_space": {d.name: d.describe() for d in plan.space},
            "fidelity": plan.fidelity(),
            "seed": plan.seed,
        }
        for key, value in attributes.items():
            if study.user_attrs.get(key) != value:
                study.set_user_attr(key, value)
        if n_existing == 0:
            # The configured values go first: at this fidelity the best trial is then never
            # worse than training with params.yaml as it stands.
            defaults = {
                d.name: plan.defaults()[d.name]
                for d in plan.space
                if d.contains(plan.defaults()[d.name])
            }
            if len(defaults) == len(plan.space) and defaults:
                study.enqueue_trial(defaults, user_attrs={"source": "defaults"})
    return study


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards n_trials: complete and pruned ones (failed and killed do not)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def finished_counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False, states=FINISHED_STATES)
    return {
        "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
    }


class PruningCallback(keras.callbacks.Callback):
    """Report ``val_loss`` to the trial after every epoch; raise TrialPruned when it should stop.

    A non-finite value is not reported: the trial then fails on its NaN (training raises)
    rather than being pruned, so a diverging configuration shows as failed in the study.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = "val_loss") -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"{self.monitor} {float(value):.5f} at epoch {epoch + 1} is worse than the "
                "median of earlier trials"
            )


def subset(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded random subset of ``size`` images (all when size is 0 or >= len(x)), in order."""
    if size <= 0 or size >= len(x):
        return x
    indices = np.sort(np.random.default_rng(seed).choice(len(x), size=size, replace=False))
    return x[indices]


@dataclasses.dataclass
class _TrialLogger:
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


def make_objective(
    plan: SearchPlan,
    x_train: np.ndarray,
    x_val: np.ndarray,
    logger: _TrialLogger | None = None,
    verbose: bool = True,
    prefix: str = "",
):
    """The Optuna objective: train one trial at the plan's fidelity; value = best val_loss."""

    def objective(trial: optuna.Trial) -> float:
        params = {dimension.name: dimension.suggest(trial) for dimension in plan.space}
        learning_rate = float(params.get("learning_rate", plan.base.learning_rate))
        batch_size = int(params.get("batch_size", plan.base.batch_size))
        field_overrides = {key: value for key, value in params.items() if "." in key}
        trial_config = (
            plan.config.with_overrides(field_overrides) if field_overrides else plan.config
        )
        run_id = None
        callbacks: list[keras.callbacks.Callback] = [StopOnInterrupt(), PruningCallback(trial)]
        if logger is not None:
            run_id = logger.start(trial, plan.study_name)
            trial.set_user_attr("mlflow_run_id", run_id)
            trial.set_user_attr("mlflow_parent_run_id", logger.parent_run_id)
            logger.params(
                run_id,
                {
                    **params,
                    "learning_rate": learning_rate,
                    "batch_size": batch_size,
                    **{f"fidelity.{k}": v for k, v in plan.fidelity().items()},
                },
            )
            callbacks.append(training.MlflowEpochLogger(logger.client, run_id))
        label = f"{prefix}[{plan.variant} trial {trial.number}] "
        if verbose:
            print(f"{label}start {params}", flush=True)
        keras.backend.clear_session()
        started = time.perf_counter()
        try:
            _, _, info = training.train_variant(
                trial_config,
                x_train,
                x_val,
                epochs=plan.settings.epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                seed=plan.seed,
                patience=plan.base.early_stopping_patience,
                shuffle_buffer=plan.base.shuffle_buffer,
                callbacks=callbacks,
                verbose=verbose,
                steps_per_execution=plan.base.steps_per_execution,
                # No XLA in trials: its compile (seconds) costs more than it saves on a trial's
                # few thousand images; the final training uses the variant's setting.
                jit_compile=False,
            )
        except optuna.TrialPruned as pruned:
            if verbose:
                print(f"{label}pruned: {pruned}", flush=True)
            if logger is not None:
                logger.finish(
                    run_id, "pruned", {"seconds": time.perf_counter() - started}, str(pruned)
                )
            raise
        except Exception as error:
            trial.set_user_attr("failure", f"{type(error).__name__}: {error}"[:2000])
            if verbose:
                print(f"{label}failed: {type(error).__name__}: {error}", flush=True)
            if logger is not None:
                logger.finish(
                    run_id,
                    "failed",
                    {"seconds": time.perf_counter() - started},
                    f"{type(error).__name__}: {error}",
                )
            raise
        value = float(info["best_val_loss"])
        if not math.isfinite(value):
            # Optuna fails a trial that returns NaN; record why first.
            trial.set_user_attr("failure", "non-finite validation loss")
            if logger is not None:
                logger.finish(run_id, "failed", {}, "non-finite validation loss")
            return math.nan
        trial.set_user_attr("images_per_second", info["images_per_second"])
        if logger is not None:
            logger.finish(
                run_id,
                "complete",
                {
                    "best_val_loss": value,
                    "seconds": time.perf_counter() - started,
                    "images_per_second": info["images_per_second"],
                    "epochs_run": info["epochs_run"],
                },
            )
        if verbose:
            print(f"{label}complete: best val_loss {value:.5f}", flush=True)
        return value

    return objective


def load_subsets(plan: SearchPlan, processed_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The plan's seeded training and validation subsets of the processed data."""
    x_train, _ = data.load_split(processed_dir, "train")
    x_val, _ = data.load_split(processed_dir, "val")
    return (
        subset(x_train, plan.settings.train_subset, plan.seed),
        subset(x_val, plan.settings.val_subset, plan.seed + 1),
    )


def run_search(
    plan: SearchPlan,
    x_train: np.ndarray,
    x_val: np.ndarray,
    url: str,
    worker: int = 0,
    quota: int | None = None,
    rerun_command: str = "",
    verbose: bool = True,
) -> dict[str, Any]:
    """Run this process's share of the study: until it holds ``n_trials`` complete or pruned
    trials (counting those running elsewhere), ``quota`` trials were started here, or
    ``timeout_s`` passed. Logs a parent MLflow run with one nested run per trial. Returns what
    this call did ({"ran", "parent_run_id", "counts"}); Ctrl-C closes the parent run as KILLED
    and raises KeyboardInterrupt."""
    import mlflow

    study = open_study(plan, url, worker=worker, rerun_command=rerun_command)
    target = plan.settings.n_trials
    remaining = target - counted_trials(study)
    to_run = remaining if quota is None else min(quota, remaining)
    prefix = f"[worker {worker}] " if quota is not None else ""
    if to_run <= 0:
        if verbose:
            print(
                f"{prefix}[{plan.variant}] study {plan.study_name} already holds "
                f"{counted_trials(study)} >= {target} trials: nothing to run.",
                flush=True,
            )
        return {"ran": 0, "parent_run_id": None, "counts": finished_counts(study)}

    experiment_id = tracking.setup()
    client = mlflow.MlflowClient()
    tags = tracking.standard_tags(plan.variant, f"tune@{plan.variant}", plan.data_checksum)
    parent = client.create_run(
        experiment_id,
        run_name=f"{plan.variant}-search",
        tags={
            **tags,
            "kind": "search",
            "optuna.study_name": plan.study_name,
            "optuna.storage": redact(url),
            "worker": str(worker),
            **{f"worker.{key}": str(value) for key, value in worker_identity().items()},
        },
    )
    parent_id = parent.info.run_id
    logger = _TrialLogger(client, experiment_id, parent_id, tags)
    logger.params(
        parent_id,
        {
            "study_name": plan.study_name,
            "n_trials_target": target,
            "trials_this_call": to_run,
            "timeout_s": plan.settings.timeout_s,
            "seed": plan.seed,
            "pruner": f"MedianPruner(n_startup_trials={plan.settings.pruner_startup_trials}, "
            f"n_warmup_steps={plan.settings.pruner_warmup_epochs})",
            **{f"fidelity.{k}": v for k, v in plan.fidelity().items()},
            **{f"search.{d.name}": json.dumps(d.describe()) for d in plan.space},
            **{f"base.{k}": v for k, v in dataclasses.asdict(plan.base).items()},
        },
    )
    with _stop_on_sigint():  # Ctrl-C: the trial in flight stops at its next batch
        status = "failed"
        try:
            run_trials(
                study,
                make_objective(plan, x_train, x_val, logger=logger, verbose=verbose, prefix=prefix),
                target=target,
                max_trials=to_run,
                timeout_s=plan.settings.timeout_s,
                logger=logger,
            )
            status = "complete"
        except KeyboardInterrupt:
            status = "killed"
            raise
        finally:
            mine = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("mlflow_parent_run_id") == parent_id
            ]
            ran = {
                "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in mine),
                "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in mine),
                "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in mine),
            }
            counts = finished_counts(study)
            metrics = {f"trials_{k}": v for k, v in ran.items()}
            metrics.update({f"study_trials_{k}": v for k, v in counts.items()})
            if counts["complete"]:
                metrics["best_value"] = study.best_value
            logger.finish(parent_id, status, metrics, "interrupted (SIGINT)" * (status == "killed"))
    return {"ran": len(mine), "parent_run_id": parent_id, "counts": counts}


def best_payload(plan: SearchPlan, url: str, rerun_command: str = "") -> dict[str, Any]:
    """The content of ``tuning/<variant>/best.json`` from the study as it stands.

    With no completed trial the configured defaults are returned, with ``"source": "defaults"``
    and the reason.
    """
    study = None
    counts = {"complete": 0, "pruned": 0, "failed": 0}
    if plan.space:
        study = optuna.load_study(study_name=plan.study_name, storage=open_storage(url))
        counts = finished_counts(study)
    payload: dict[str, Any] = {
        "variant": plan.variant,
        "params": plan.defaults(),
        "value": None,
        "source": "defaults",
        "n_trials": sum(counts.values()),
        "counts": counts,
        "best_trial": None,
        "study_name": plan.study_name,
        "storage": redact(url),
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
            for t in study.get_trials(deepcopy=False, states=FINISHED_STATES)
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


def _worker_main(job: dict[str, Any]) -> None:
    """Entry point of a spawned worker process: plan again, load data, run its quota."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = job.pop("threads", 0)
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    try:
        plan = plan_search(**job["plan"])
        x_train, x_val = load_subsets(plan, job["processed_dir"])
        run_search(
            plan,
            x_train,
            x_val,
            job["url"],
            worker=job["worker"],
            quota=job["quota"],
            rerun_command=job["rerun_command"],
            verbose=job["verbose"],
        )
    except KeyboardInterrupt:
        # The trial in flight was failed and re-queued; the parent process says what to do.
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a search cleanly: running trials failed and re-queued, runs closed."""


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
            redact(storage),
        ]
    )


def tune(
    variant: str,
    variant_block: Mapping[str, Any],
    train_section: Mapping[str, Any] | None,
    tune_section: Mapping[str, Any] | None,
    seed: int,
    processed_dir: str | Path,
    best_path: str | Path,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    storage: str | None = None,
    workers: int = 1,
    verbose: bool = True,
) -> dict[str, Any]:
    """Top a variant's study up to ``n_trials`` finished trials and write its best.json.

    Everything is validated first (ConfigError before any trial or MLflow run). With
    ``workers > 1`` that many spawned processes share the study through its storage; their
    quotas add up to exactly the trials missing. Returns the best.json payload.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}.")
    card = data.load_card(processed_dir)
    plan_arguments = {
        "variant": variant,
        "variant_block": dict(variant_block),
        "train_section": dict(train_section or {}),
        "tune_section": dict(tune_section or {}),
        "seed": int(seed),
        "data_checksum": card["checksum"],
        "n_trials": n_trials,
        "timeout_s": timeout_s,
        "storage": storage,
    }
    plan = plan_search(**plan_arguments)
    if plan.space:
        tracking.check_tracking()  # an unreachable server stops here, before any file is made
    url = storage_url(plan.settings.storage)
    command = rerun_command(variant, plan.settings.n_trials, plan.settings.storage)
    if verbose:
        print(
            f"[tune {variant}] study {plan.study_name} on {redact(url)}: "
            f"{plan.settings.n_trials} trials x {plan.settings.epochs} epochs on "
            f"{plan.settings.train_subset or 'all'} images; space "
            f"{ {d.name: d.describe() for d in plan.space} }",
            flush=True,
        )
    started = time.perf_counter()
    if plan.space:
        # Create the study and the tracking store here, before any worker races to do so;
        # trials of dead workers are failed and queued again first.
        study = open_study(plan, url, rerun_command=command)
        tracking.setup()
        recover(study, verbose=verbose)
        remaining = plan.settings.n_trials - counted_trials(study)
        try:
            _search(plan, plan_arguments, processed_dir, url, command, workers, remaining, verbose)
        except KeyboardInterrupt:
            # Workers that died mid-trial left RUNNING trials: fail, re-queue, close their runs.
            recovered = recover(open_study(plan, url), verbose=False)
            counts = finished_counts(study)
            raise SearchInterrupted(
                f"[tune {variant}] interrupted: {counts} finished, "
                f"{recovered['killed']} trial(s) of stopped workers queued again; "
                f"re-run `{command}` to resume."
            ) from None
    # best.json holds only what the study determines (no timings): when tune@V re-runs without
    # adding trials, the file is byte-identical and DVC does not retrain the variant.
    payload = best_payload(plan, url, rerun_command=command)
    fileio.write_json(best_path, payload)
    if verbose:
        print(
            f"[tune {variant}] {payload['counts']} -> best {payload['value']} "
            f"({payload['source']}) {payload['params']} -> {best_path} "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    return payload


def _search(
    plan: SearchPlan,
    plan_arguments: dict[str, Any],
    processed_dir: str | Path,
    url: str,
    command: str,
    workers: int,
    remaining: int,
    verbose: bool,
) -> None:
    """Run the missing trials here or in ``workers`` spawned processes."""
    variant = plan.variant
    if remaining <= 0:
        if verbose:
            print(f"[tune {variant}] the study is full: nothing to run.", flush=True)
        return
    if workers == 1 or remaining == 1:
        x_train, x_val = load_subsets(plan, processed_dir)
        run_search(plan, x_train, x_val, url, rerun_command=command, verbose=verbose)
        return
    workers = min(workers, remaining)
    quotas = [remaining // workers + (i < remaining % workers) for i in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    processes = []
    for worker, quota in enumerate(quotas):
        job = {
            "plan": plan_arguments,
            "processed_dir": str(processed_dir),
            "url": url,
            "worker": worker,
            "quota": quota,
            "rerun_command": command,
            "verbose": verbose,
            "threads": threads,
        }
        process = context.Process(target=_worker_main, args=(job,), name=f"tune-{worker}")
        process.start()
        processes.append(process)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; `kill -INT <pid>` only this one.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join(60)
            if process.is_alive():
                process.terminate()
                process.join()
        raise
    crashed = [p.name for p in processes if p.exitcode != 0]
    if crashed:
        raise RuntimeError(
            f"tuning worker(s) {crashed} of {variant} exited with an error (see above); "
            f"the study keeps their finished trials: re-run `{command}` to top it up."
        )
