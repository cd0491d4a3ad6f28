"""Crash safety: who owns a trial, and what to do when its worker is gone.

Each trial records its worker (host, pid, process start time) and a heartbeat. Before a search
resumes, a RUNNING trial whose worker process on this host is gone (kill -9, OOM) is failed at
once; one of another host is failed once its heartbeat is older than the grace period. Either
way its parameters are queued again (at most ``MAX_RETRIES`` times) and its MLflow run, and the
parent run of its dead worker, are closed as KILLED.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from autoencoders import tracking
from autoencoders.tuning import runs

# A trial whose process died on another machine is failed once its heartbeat is this old; on
# this machine its dead process is seen at once (worker_alive).
HEARTBEAT_INTERVAL_S = 30


HEARTBEAT_GRACE_S = 120


# The trial's user attribute holding its worker's identity (worker_identity).
WORKER_ATTR = "worker"

# A trial whose worker was killed is queued again, but not forever (it may be what kills it).
MAX_RETRIES = 2


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


def record_worker(trial: optuna.Trial) -> None:
    """Record this process as the trial's worker, in one write: written key by key, a kill
    between two writes left a trial with a host and no pid, which no check could ever fail
    (its worker could not be looked up, and under the claim lock it did not look half claimed).
    """
    trial.set_user_attr(WORKER_ATTR, worker_identity())


def trial_worker(attributes: dict[str, Any]) -> dict[str, Any] | None:
    """The worker a trial recorded ({host, pid, started}), or None when it recorded none or only
    part of one (its claimer died claiming). Reads the one-key-per-field form of earlier
    releases too, so trials of a shared study written by them are still told apart."""
    worker = attributes.get(WORKER_ATTR)
    if not isinstance(worker, dict):
        worker = {key: attributes.get(f"worker_{key}") for key in ("host", "pid", "started")}
    if worker.get("host") is None or worker.get("pid") is None:
        return None
    return worker


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


@contextlib.contextmanager
def claim_lock(study: optuna.Study) -> Iterator[bool]:
    """Serialise claims of the processes sharing one study; yields True when it did.

    SQLite gives no atomic pop of a WAITING trial across processes (seen: two workers of one
    resume both ran a re-queued trial); on any storage a claim is several writes (study.ask,
    then the worker's identity). Holding the lock, no claim is half done: a RUNNING trial that
    has not recorded its worker yet was claimed by a process that died claiming it. SQLite: a
    file lock beside the database; PostgreSQL: an advisory lock on the study's name, held by a
    connection of its own (the server drops it with the connection of a killed process). On
    other storages this does nothing and yields False.
    """
    storage = getattr(study._storage, "_backend", study._storage)
    url = str(getattr(storage, "url", ""))
    if url.startswith("sqlite:///"):
        import fcntl

        with open(url[len("sqlite:///") :] + ".claim.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif url.startswith("postgresql"):
        import sqlalchemy

        key = {"key": claim_key(study.study_name)}
        with storage.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), key)
            try:
                yield True
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), key)
    else:
        yield False


def claim_key(study_name: str) -> int:
    """The PostgreSQL advisory-lock key of a study's claims: a signed 64-bit digest of its name."""
    return int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)


def _dead_reason(trial: optuna.trial.FrozenTrial, claims_locked: bool) -> str | None:
    """Why a RUNNING trial's worker is certainly gone; None when it may be alive."""
    worker = trial_worker(trial.user_attrs)
    if worker is None:
        # Claimed, then killed before it recorded its worker (a few writes after study.ask):
        # no heartbeat either, so Optuna's check would never fail it. Under the claim lock
        # (SQLite, PostgreSQL) no live claim is half done; elsewhere, a claim takes
        # milliseconds, not a grace.
        started = trial.datetime_start
        age = (datetime.datetime.now() - started).total_seconds() if started else 0.0
        if claims_locked or age > HEARTBEAT_GRACE_S:
            return "killed: its worker is gone (it died claiming the trial)"
        return None
    host, pid = worker["host"], worker["pid"]
    if worker_alive(host, pid, worker.get("started") or "") is not False:
        return None
    return f"killed: its worker (pid {pid} on {host}) is gone"


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int | None:
    """Queue a killed trial's parameters again; return the retry count, None when given up."""
    retries = int(trial.user_attrs.get("retries", 0))
    if retries >= MAX_RETRIES:
        return None
    attributes = {"retry_of": trial.number, "retries": retries + 1}
    if "source" in trial.user_attrs:
        attributes["source"] = trial.user_attrs["source"]
    # A trial killed before its objective suggested anything keeps its queued values, if any.
    params = dict(trial.params) or dict(trial.system_attrs.get("fixed_params", {}))
    study.enqueue_trial(params, user_attrs=attributes)
    return retries + 1


def on_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's heartbeat callback: a trial of a dead worker (another host) was just failed."""
    retries = requeue(study, trial)
    runs.close_trial_runs(trial, f"worker stopped beating (heartbeat > {HEARTBEAT_GRACE_S} s old)")
    print(
        f"[tune] trial {trial.number} lost its worker (no heartbeat for {HEARTBEAT_GRACE_S} s): "
        + (f"failed and queued again (retry {retries})" if retries else "failed, not retried"),
        flush=True,
    )


def fail_killed(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Fail a RUNNING trial, recording why; False when another process finished it first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial_id, "failure", reason)
        return storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def recover(study: optuna.Study, verbose: bool = True) -> dict[str, int]:
    """Fail and re-queue the trials of dead workers; close their MLflow runs as KILLED.

    A RUNNING trial whose worker process on this host is gone, or that died before recording
    its worker, is failed at once; trials of other hosts go through Optuna's heartbeat check
    (failed past the grace period). Running parent runs of this study whose worker on this
    host is gone are closed too.
    Returns {"killed", "requeued", "runs_closed"}.
    """
    killed = []
    with claim_lock(study) as claims_locked:
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            reason = _dead_reason(trial, claims_locked)
            if reason and fail_killed(study, trial._trial_id, reason):
                killed.append(study._storage.get_trial(trial._trial_id))
    counts = {"killed": len(killed), "requeued": 0, "runs_closed": 0}
    for trial in killed:
        counts["requeued"] += requeue(study, trial) is not None
        counts["runs_closed"] += runs.close_trial_runs(trial, trial.user_attrs["failure"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other hosts: on_stale_trial
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
        client = runs.mlflow_client()
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
                closed += runs.close_worker_runs(client, parent.info.run_id, note)
    except Exception as error:
        print(f"[tune] could not close the MLflow runs of dead workers: {error}")
    return closed
