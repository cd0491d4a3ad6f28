"""Running the one-class benchmark: every task in worker processes, then the seed ensembles.

A task (``one_class.run_task``: one digit and seed, or one leave-one-out case) trains a small
model whose steps keep TensorFlow's second thread mostly idle, so the tasks run side by side in
``anomaly_bench.workers`` spawned processes (0: one per usable core), each on one thread
(TensorFlow's op pools and BLAS alike). Every task runs in a worker, whatever their number: a
task's record depends on its settings only, not on how many workers ran or which one took it
(tests/test_one_class.py checks one worker against two). Each worker gets the splits once, when
it starts; what needs the trained model (the ONNX check, the anomaly-map figure) is done in the
worker that trained it, and only records and score arrays come back.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import numpy as np

from autoencoders import threads
from autoencoders.benchmarks import one_class, one_class_scores

_SPLITS: list[one_class.Splits] = []  # a worker's splits, set once by _start_worker


def run_benchmark(
    settings: one_class.OneClassConfig,
    splits: one_class.Splits,
    log: Callable[[str], None] = print,
    on_figure_task: Callable[[dict[str, Any]], None] | None = None,
    validation_only: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every digit x seed (then leave-one-out when set); the records and the wall time.
    ``validation_only``: train and rank the candidates on validation, never read the test
    split (no test AUROC, ONNX check, figure or leave-one-out). ``on_progress`` gets the
    result so far (``complete`` False) after every task, so a long run leaves its report.
    ``on_figure_task`` runs in the worker that trained the figure's task: a module-level
    function (or a ``functools.partial`` of one), which pickles."""
    started = time.perf_counter()
    present = set(np.unique(splits.y_train).tolist())
    missing = sorted(set(settings.digits) - present)
    if missing:
        raise one_class.BenchConfigError(
            f"anomaly_bench.digits {missing} are not in the training labels {sorted(present)}."
        )
    jobs = _jobs(settings, present, validation_only, on_figure_task)
    done: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}

    def finished(index: int, outcome: tuple[dict[str, Any], dict[str, Any]]) -> None:
        done[index] = outcome
        _log_task(outcome[0], validation_only, log)
        if on_progress and not validation_only:
            elapsed = round(time.perf_counter() - started, 1)
            on_progress({**_collect(done), "wall_seconds": elapsed, "complete": False})

    workers = _run_jobs(settings, splits, jobs, finished)
    result: dict[str, Any] = {**_collect(done), "complete": True, "workers": workers}
    outcomes = [done[index] for index in range(len(jobs))]
    if len(settings.seeds) > 1:
        parts: dict[int, list] = {digit: [] for digit in settings.digits}
        for record, hidden in outcomes:
            if "anomalous" not in record:
                parts[record["normal"][0]].append(hidden["ensemble"])
        result["ensemble"] = _ensembles(parts, log)
    leave_one_out = [record for record, _ in outcomes if "anomalous" in record]
    if leave_one_out:
        result["leave_one_out"] = leave_one_out
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def _collect(done: Mapping[int, tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """The one-class tasks' records and the ONNX checks among the ended jobs, in job order."""
    outcomes = [done[index] for index in sorted(done)]
    return {
        "tasks": [record for record, _ in outcomes if "anomalous" not in record],
        "onnx_checks": [kept["onnx_check"] for _, kept in outcomes if "onnx_check" in kept],
    }


def _jobs(settings, present: set, validation_only: bool, on_figure_task) -> list[dict[str, Any]]:
    """Each task's arguments, in the report's order: seed by seed, digit by digit, then the
    leave-one-out cases (first seed); the first ``onnx_checks`` are re-scored by ONNX Runtime."""
    jobs = [
        {"normal": (digit,), "seed": seed, "validation_only": validation_only}
        for seed in settings.seeds
        for digit in settings.digits
    ]
    for job in jobs[: 0 if validation_only else settings.onnx_checks]:
        job["onnx_check"] = True
    for job in jobs:
        if on_figure_task and not validation_only:
            if job["normal"] == (settings.figure_digit,) and job["seed"] == settings.seeds[0]:
                job["on_figure_task"] = on_figure_task
    if settings.leave_one_out and not validation_only:
        for anomalous in settings.digits:
            normal = tuple(sorted(present - {anomalous}))
            jobs.append(
                {"normal": normal, "seed": settings.seeds[0], "anomalous": anomalous,
                 "validation_only": False}
            )  # fmt: skip
    return jobs


def _run_jobs(settings, splits, jobs: list[dict[str, Any]], finished: Callable) -> int:
    """Every job in ``settings.workers`` spawned processes (0: one per usable core), at most
    one per job; ``finished(index, outcome)`` as each one ends; returns the processes' count.
    A job that raises raises here, after the running ones end (the others are cancelled)."""
    workers = min(settings.workers or threads.usable_cores(), len(jobs))
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(splits,)
    ) as pool:
        running: dict[Future, int] = {
            pool.submit(_task, settings, job): index for index, job in enumerate(jobs)
        }
        try:
            while running:
                ended, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(ended, key=running.get):
                    finished(running.pop(future), future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return workers


def _start_worker(splits: one_class.Splits) -> None:
    """A worker's start: one thread for TensorFlow's op pools and for BLAS, then the splits."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads.one_thread_everywhere()
    _SPLITS.append(splits)


def _task(settings, job: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One job in a worker: the task's record, and what the parent reads of the rest (the
    ensemble's score arrays, the ONNX check)."""
    splits, normal, seed = _SPLITS[0], tuple(job["normal"]), job["seed"]
    x_train = None
    if "anomalous" in job:  # nine digits normal: a seeded subsample of their training images
        index = one_class.task_split(splits.y_train, splits.y_val, splits.y_test, normal)
        x_train = one_class.subsample(
            splits.x_train[index["train"]], settings.leave_one_out_images, seed
        )
    record = one_class.run_task(
        settings, splits, normal, seed, x_train=x_train, validation_only=job["validation_only"]
    )
    hidden = record.pop("_")
    if "anomalous" in job:
        record["anomalous"] = job["anomalous"]
    kept: dict[str, Any] = {"ensemble": hidden["ensemble"]}
    if job.get("onnx_check"):
        kept["onnx_check"] = _onnx_check(record, hidden, splits.x_test)
    if job.get("on_figure_task"):
        job["on_figure_task"]({**record, **hidden, "x_test": splits.x_test})
    return record, kept


def _log_task(record: Mapping[str, Any], validation_only: bool, log: Callable) -> None:
    if "anomalous" in record:
        log(f"[one-class] leave-one-out, {record['anomalous']} anomalous: "
            f"{record['test_auroc']:.4f}, {record['seconds']} s")  # fmt: skip
        return
    digit, seed = record["normal"][0], record["seed"]
    if validation_only:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in record["validation_auroc"].items())
        log(f"[one-class] digit {digit} seed {seed}: validation AUROC {shown} "
            f"({record['epochs_run']} epochs, {record['seconds']} s)")  # fmt: skip
        return
    log(f"[one-class] digit {digit} seed {seed}: test AUROC {record['test_auroc']:.4f} "
        f"({record['score']}, validation {record['validation_auroc'][record['score']]:.4f}), "
        f"{record['seconds']} s")  # fmt: skip


def _ensembles(parts: dict[int, list], log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Each digit's seed ensemble (``one_class_scores.ensemble``)."""
    records = []
    for digit, digit_parts in parts.items():
        record = {"normal": [digit], **one_class_scores.ensemble(digit_parts)}
        shown = record["validation_auroc"][record["score"]]
        test = f"test AUROC {record['test_auroc']:.4f}, " if "test_auroc" in record else ""
        log(f"[one-class] digit {digit}, ensemble of {record['seeds']} seeds: {test}"
            f"{record['score']}, validation {shown:.4f}")  # fmt: skip
        records.append(record)
    return records


def _onnx_check(record: Mapping[str, Any], hidden: Mapping[str, Any], x_test) -> dict[str, Any]:
    value = one_class.onnx_auroc(
        hidden["model"], hidden["score_model"], x_test, hidden["test_labels"]
    )
    return {
        "normal": record["normal"],
        "seed": record["seed"],
        "score": record["score"],
        "keras_auroc": record["test_auroc"],
        "onnx_auroc": value,
        "equal_to_4_digits": round(value, 4) == round(record["test_auroc"], 4),
    }


__all__ = ["run_benchmark"]
