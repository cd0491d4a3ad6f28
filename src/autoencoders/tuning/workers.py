"""Running a search: this process's share of a study, or several spawned worker processes.

``tune(...)`` validates everything, recovers trials of dead workers, tops the study up to
``n_trials`` complete or pruned trials here or in ``workers`` processes sharing the storage,
and writes ``tuning/<variant>/best.json``. Each process logs a parent MLflow run (``V-search``)
with one nested run per trial.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from autoencoders import data, fileio, tracking
from autoencoders.config import ConfigError
from autoencoders.threads import tensorflow_threads
from autoencoders.tuning import best, recovery, runs, space, studies, trials

INTERRUPTED_EXIT_CODE = 130


def run_search(
    plan: space.SearchPlan,
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
    study = studies.open_study(plan, url, worker=worker, rerun_command=rerun_command)
    target = plan.settings.n_trials
    remaining = target - studies.counted_trials(study)
    to_run = remaining if quota is None else min(quota, remaining)
    prefix = f"[worker {worker}] " if quota is not None else ""
    if to_run <= 0:
        if verbose:
            print(
                f"{prefix}[{plan.variant}] study {plan.study_name} already holds "
                f"{studies.counted_trials(study)} >= {target} trials: nothing to run.",
                flush=True,
            )
        return {"ran": 0, "parent_run_id": None, "counts": studies.finished_counts(study)}

    logger = _start_parent_run(plan, url, worker, to_run)
    with trials.stop_on_sigint():  # Ctrl-C: the trial in flight stops at its next batch
        status = "failed"
        try:
            trials.run_trials(
                study,
                trials.make_objective(
                    plan, x_train, x_val, logger=logger, verbose=verbose, prefix=prefix
                ),
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
            ran, counts = _finish_parent_run(study, logger, status)
    return {"ran": ran, "parent_run_id": logger.parent_run_id, "counts": counts}


def _start_parent_run(
    plan: space.SearchPlan, url: str, worker: int, to_run: int
) -> runs.TrialLogger:
    """Open this process's ``V-search`` MLflow run; return the logger of its trials' runs."""
    import mlflow

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
            "optuna.storage": studies.redact(url),
            "worker": str(worker),
            **{f"worker.{key}": str(value) for key, value in recovery.worker_identity().items()},
        },
    )
    parent_id = parent.info.run_id
    logger = runs.TrialLogger(client, experiment_id, parent_id, tags)
    logger.params(
        parent_id,
        {
            "study_name": plan.study_name,
            "n_trials_target": plan.settings.n_trials,
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
    return logger


def _finish_parent_run(
    study: optuna.Study, logger: runs.TrialLogger, status: str
) -> tuple[int, dict[str, int]]:
    """Log this process's and the study's trial counts and close the parent run.

    Returns (trials this process ran, the study's finished counts)."""
    parent_id = logger.parent_run_id
    mine = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("mlflow_parent_run_id") == parent_id
    ]
    counts = studies.finished_counts(study)
    metrics = {f"trials_{k}": v for k, v in studies.count_states(mine).items()}
    metrics.update({f"study_trials_{k}": v for k, v in counts.items()})
    if counts["complete"]:
        metrics["best_value"] = study.best_value
    logger.finish(parent_id, status, metrics, "interrupted (SIGINT)" * (status == "killed"))
    return len(mine), counts


def _worker_main(job: dict[str, Any]) -> None:
    """Entry point of a spawned worker process: plan again, load data, run its quota."""
    signal.signal(signal.SIGINT, trials.interrupt_once)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        threads = job.pop("threads", 0)
        if threads:
            tensorflow_threads(threads)
        plan = space.plan_search(**job["plan"])
        x_train, x_val = data.load_subsets(
            job["processed_dir"], plan.settings.train_subset, plan.settings.val_subset, plan.seed
        )
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
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # exiting: nothing left to stop


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a search cleanly: running trials failed and re-queued, runs closed."""


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
    plan = space.plan_search(**plan_arguments)
    if plan.space:
        tracking.check_tracking()  # an unreachable server stops here, before any file is made
    url = studies.storage_url(plan.settings.storage)
    command = best.rerun_command(variant, plan.settings.n_trials, plan.settings.storage)
    if verbose:
        _print_plan(plan, url, card["counts"])
    started = time.perf_counter()
    if plan.space:
        _top_up(plan, plan_arguments, processed_dir, url, command, workers, verbose)
    # best.json holds only what the study determines (no timings): when tune@V re-runs without
    # adding trials, the file is byte-identical and DVC does not retrain the variant.
    payload = best.best_payload(plan, url, rerun_command=command)
    fileio.write_json(best_path, payload)
    if verbose:
        print(
            f"[tune {variant}] {payload['counts']} -> best {payload['value']} "
            f"({payload['source']}) {payload['params']} -> {best_path} "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    return payload


def _print_plan(plan: space.SearchPlan, url: str, counts: dict[str, int]) -> None:
    """The line ``tune`` opens with: what the search will run (on how many of the training
    and validation images: a subset never exceeds its split), on which storage (its URL
    without a password), before any trial."""
    sizes = {
        split: min(subset, counts[split]) if subset > 0 else counts[split]
        for split, subset in (
            ("train", plan.settings.train_subset),
            ("val", plan.settings.val_subset),
        )
    }
    print(
        f"[tune {plan.variant}] study {plan.study_name} on {studies.redact(url)}: "
        f"{plan.settings.n_trials} trials x {plan.settings.epochs} epochs on "
        f"{sizes['train']} training and {sizes['val']} validation images; space "
        f"{ {d.name: d.describe() for d in plan.space} }",
        flush=True,
    )


def _top_up(
    plan: space.SearchPlan,
    plan_arguments: dict[str, Any],
    processed_dir: str | Path,
    url: str,
    command: str,
    workers: int,
    verbose: bool,
) -> None:
    """Open the study, recover dead workers' trials and run the missing ones."""
    # Create the study and the tracking store here, before any worker races to do so;
    # trials of dead workers are failed and queued again first.
    study = studies.open_study(plan, url, rerun_command=command)
    tracking.setup()
    recovery.recover(study, verbose=verbose)
    remaining = plan.settings.n_trials - studies.counted_trials(study)
    try:
        _search(plan, plan_arguments, processed_dir, url, command, workers, remaining, verbose)
    except KeyboardInterrupt:
        # Workers that died mid-trial left RUNNING trials: fail, re-queue, close their runs.
        recovered = recovery.recover(studies.open_study(plan, url), verbose=False)
        counts = studies.finished_counts(study)
        raise SearchInterrupted(
            f"[tune {plan.variant}] interrupted: {counts} finished, "
            f"{recovered['killed']} trial(s) of stopped workers queued again; "
            f"re-run `{command}` to resume."
        ) from None


def _search(
    plan: space.SearchPlan,
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
        x_train, x_val = data.load_subsets(
            processed_dir, plan.settings.train_subset, plan.settings.val_subset, plan.seed
        )
        run_search(plan, x_train, x_val, url, rerun_command=command, verbose=verbose)
        return
    workers = min(workers, remaining)
    quotas = [remaining // workers + (i < remaining % workers) for i in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    processes = []
    job = {
        "plan": plan_arguments,
        "processed_dir": str(processed_dir),
        "url": url,
        "rerun_command": command,
        "verbose": verbose,
        "threads": threads,
    }
    try:
        for worker, quota in enumerate(quotas):
            processes.append(_start_worker(context, {**job, "worker": worker, "quota": quota}))
        for process in processes:
            process.join()
        if any(p.exitcode == INTERRUPTED_EXIT_CODE for p in processes):
            # A worker stopped on a Ctrl-C this process did not see (seen on a loaded
            # machine): the search was interrupted all the same.
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        _stop(processes)
        raise
    crashed = [p.name for p in processes if p.exitcode != 0]
    if crashed:
        raise RuntimeError(
            f"tuning worker(s) {crashed} of {variant} exited with an error (see above); "
            f"the study keeps their finished trials: re-run `{command}` to top it up."
        )


def _start_worker(context: Any, job: dict[str, Any]) -> Any:
    """Spawn one worker with SIGINT ignored until _worker_main installs its handler: a Ctrl-C
    during its imports would be a traceback from the middle of an import (blocking the signal
    instead does not hold: with TensorFlow loaded in the parent, the child takes it during its
    own imports). _stop repeats the signal until the worker has heard it. The price: a Ctrl-C
    in the millisecond this process spends in start() is lost, and a second one is needed."""
    process = context.Process(target=_worker_main, args=(job,), name=f"tune-{job['worker']}")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    return process


def _stop(processes: list[Any]) -> None:
    """Pass Ctrl-C on to the workers; terminate any still alive a minute later."""
    # Ctrl-C in a terminal reaches the workers too, `kill -INT <pid>` only this one; a worker
    # acts on the first SIGINT it hears and ignores the rest (trials.interrupt_once).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    deadline = time.monotonic() + 60
    for process in processes:
        while process.is_alive() and time.monotonic() < deadline:
            os.kill(process.pid, signal.SIGINT)
            process.join(1)
        if process.is_alive():
            process.terminate()
            process.join()
