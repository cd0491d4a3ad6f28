"""Claiming and running trials: the claim rule, heartbeats, Ctrl-C, pruning, the objective.

A worker claims a trial only while the study holds fewer than ``n_trials`` complete, pruned or
running trials numbered before it, so several machines topping up one study end with exactly
``n_trials``. Each trial trains at the plan's cheap fidelity and reports its validation loss
every epoch to the median pruner. Ctrl-C fails and re-queues the running trial.
"""

from __future__ import annotations

import contextlib
import gc
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import optuna

from autoencoders.training import backend, loop
from autoencoders.training import callbacks as training_callbacks
from autoencoders.tuning import recovery, runs, space, studies

# What holds a slot while a worker claims a trial (see _claim).
CLAIMED_STATES = (*studies.COUNTED_STATES, optuna.trial.TrialState.RUNNING)


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
        while not self._stop.wait(recovery.HEARTBEAT_INTERVAL_S):
            storage.record_heartbeat(trial_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _claim(study: optuna.Study, target: int) -> optuna.Trial | None:
    with recovery.claim_lock(study):
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
    recovery.record_worker(trial)
    ahead = sum(
        other.number < trial.number
        for other in study.get_trials(deepcopy=False, states=CLAIMED_STATES)
    )
    if ahead >= target:
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.WAITING)
        return None
    return trial


def _interrupted(
    study: optuna.Study, trial: optuna.Trial, logger: runs.TrialLogger | None
) -> None:
    """Ctrl-C during a trial: fail it, queue it again, close its MLflow run as KILLED."""
    if not recovery.fail_killed(study, trial._trial_id, "interrupted (SIGINT)"):
        return
    frozen = study._storage.get_trial(trial._trial_id)
    recovery.requeue(study, frozen)
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


def interrupt_once(signum: int, frame: Any) -> None:
    """A worker process's SIGINT handler outside ``stop_on_sigint``: the first Ctrl-C raises
    KeyboardInterrupt, later ones are ignored. A terminal's Ctrl-C reaches every worker and the
    parent passes it on as well; a second KeyboardInterrupt landing in the worker's clean-up
    (or in multiprocessing's exit code) would print a traceback and skip the rest of it."""
    if _STOP_REQUESTED.is_set():
        return
    _STOP_REQUESTED.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[None]:
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
    logger: runs.TrialLogger | None = None,
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


def make_objective(
    plan: space.SearchPlan,
    x_train: np.ndarray,
    x_val: np.ndarray,
    logger: runs.TrialLogger | None = None,
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
        callbacks: list[keras.callbacks.Callback] = [StopOnInterrupt(), PruningCallback(trial)]
        run_id = None
        if logger is not None:
            logged = {**params, "learning_rate": learning_rate, "batch_size": batch_size}
            run_id = _start_trial_run(trial, plan, logger, logged)
            callbacks.append(training_callbacks.MlflowEpochLogger(logger.client, run_id))
        label = f"{prefix}[{plan.variant} trial {trial.number}] "
        if verbose:
            print(f"{label}start {params}", flush=True)
        keras.backend.clear_session()
        started = time.perf_counter()
        finish = logger.finish if logger is not None else (lambda *args: None)
        try:
            info = _train_trial(
                plan, trial_config, x_train, x_val, learning_rate, batch_size, callbacks, verbose
            )
        except optuna.TrialPruned as pruned:
            if verbose:
                print(f"{label}pruned: {pruned}", flush=True)
            finish(run_id, "pruned", {"seconds": time.perf_counter() - started}, str(pruned))
            raise
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            trial.set_user_attr("failure", reason[:2000])
            if verbose:
                print(f"{label}failed: {reason}", flush=True)
            finish(run_id, "failed", {"seconds": time.perf_counter() - started}, reason)
            raise
        value = _trial_value(trial, info, finish, run_id, time.perf_counter() - started)
        if verbose and math.isfinite(value):
            print(f"{label}complete: best val_loss {value:.5f}", flush=True)
        return value

    return objective


def _train_trial(
    plan: space.SearchPlan,
    trial_config: Any,
    x_train: np.ndarray,
    x_val: np.ndarray,
    learning_rate: float,
    batch_size: int,
    callbacks: list[keras.callbacks.Callback],
    verbose: bool,
) -> dict[str, Any]:
    """train_variant at the plan's fidelity (its epochs, no XLA); returns its info."""
    backend.require(plan.base.backend, plan.variant)
    _, _, info = loop.train_variant(
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
    return info


def _start_trial_run(
    trial: optuna.Trial,
    plan: space.SearchPlan,
    logger: runs.TrialLogger,
    params: dict[str, Any],
) -> str:
    """Open the trial's nested MLflow run, record it on the trial, log its params."""
    run_id = logger.start(trial, plan.study_name)
    trial.set_user_attr("mlflow_run_id", run_id)
    trial.set_user_attr("mlflow_parent_run_id", logger.parent_run_id)
    fidelity = {f"fidelity.{k}": v for k, v in plan.fidelity().items()}
    logger.params(run_id, {**params, **fidelity})
    return run_id


def _trial_value(
    trial: optuna.Trial, info: dict[str, Any], finish: Any, run_id: str | None, seconds: float
) -> float:
    """The trial's best val_loss (NaN, recorded as the failure, when not finite)."""
    value = float(info["best_val_loss"])
    if not math.isfinite(value):
        # Optuna fails a trial that returns NaN; record why first.
        trial.set_user_attr("failure", "non-finite validation loss")
        finish(run_id, "failed", {}, "non-finite validation loss")
        return math.nan
    trial.set_user_attr("images_per_second", info["images_per_second"])
    metrics = {
        "best_val_loss": value,
        "seconds": seconds,
        "images_per_second": info["images_per_second"],
        "epochs_run": info["epochs_run"],
    }
    finish(run_id, "complete", metrics)
    return value
