"""``tune@V`` and ``make tune``: validate every variant's search, group the variants by Keras
backend (fixed per process: one child process per backend), top each study up, and, for
``make tune``, record the new best.json in dvc.lock (``dvc commit -f tune@V``) so that the next
``dvc repro`` trains with it without searching again. Imports Keras only after choosing its
backend."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autoencoders import config
from autoencoders.training import backend


def variant_names(
    variant: str | None, variants_arg: str | None, variants: Mapping[str, Any]
) -> list[str]:
    """The variants ``--variant`` or ``--variants`` (comma-separated or ``all``) name."""
    if variant is not None:
        names = [variant]
    elif variants_arg.strip() == "all":
        names = list(variants)
    else:
        names = [name.strip() for name in variants_arg.split(",") if name.strip()]
    unknown = [name for name in names if name not in variants]
    if unknown or not names:
        raise config.ConfigError(
            f"tune: unknown variant(s) {unknown}; params.yaml has {sorted(variants)}."
        )
    return names


def dvc_commit(variant: str) -> None:
    """Record the new best.json as tune@<variant>'s output in dvc.lock."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    result = subprocess.run([dvc, "commit", "-f", f"tune@{variant}"], text=True)
    if result.returncode != 0:
        print(
            f"[tune {variant}] `dvc commit -f tune@{variant}` failed: the next `dvc repro` "
            f"will re-run tune@{variant}, which only re-reads the study (no new trials).",
            file=sys.stderr,
        )


def run(
    params: Mapping[str, Any],
    names: Sequence[str],
    *,
    workers: int,
    trials: int | None,
    timeout_s: float | None,
    storage: str | None,
    commit: bool,
    script: str,
    params_path: str,
    processed_dir: Path,
    best_path: Callable[[str], Path],
) -> None:
    """Search ``names`` on the splits in ``processed_dir``, writing each variant's
    ``best_path(name)``; with several backends, re-run ``script`` (pipeline/tune.py) on each
    backend's group in a child process (a failing child's exit status is this process's)."""
    if workers < 1:
        raise config.ConfigError(f"--workers must be at least 1, got {workers}.")
    groups = _by_backend(params, names)
    if len(groups) == 1:
        backend.activate(next(iter(groups)))
    from autoencoders.models import derived
    from autoencoders.tuning import space  # Keras: after its backend
    from autoencoders.tuning import workers as search

    # Values derived from the training split (models/derived.py); without one, checks speak first.
    variants = config.section(params, "variants")
    if (Path(processed_dir) / "card.json").is_file():
        variants = derived.derive_from_split(params, list(names), processed_dir)
    shared = _shared_settings(params, trials, timeout_s, storage)
    try:
        # Validate every variant's search (and the tune section) before the first trial of any.
        for name in names:
            space.plan_search(
                variant=name, variant_block=variants[name], data_checksum="not-read-yet", **shared
            )
        if len(groups) > 1:
            options = _child_options(params_path, workers, trials, timeout_s, storage, commit)
            for group in groups.values():
                _run_child(script, group, options)
            return
        for name in names:
            search.tune(
                variant=name,
                variant_block=variants[name],
                processed_dir=processed_dir,
                best_path=best_path(name),
                workers=workers,
                **shared,
            )
            if commit:
                dvc_commit(name)
    except KeyboardInterrupt as interrupted:
        # Ctrl-C: running trials were failed, queued again and their MLflow runs closed.
        print(
            str(interrupted) or "tune interrupted: re-run the same command to resume.",
            file=sys.stderr,
        )
        sys.exit(search.INTERRUPTED_EXIT_CODE)


def _shared_settings(
    params: Mapping[str, Any], trials: int | None, timeout_s: float | None, storage: str | None
) -> dict[str, Any]:
    """The search settings every variant's search takes from params.yaml and the options."""
    return {
        "train_section": config.section(params, "train"),
        "tune_section": config.section(params, "tune"),
        "seed": config.value(params, "seed", int),
        "n_trials": trials,
        "timeout_s": timeout_s,
        "storage": storage,
    }


def _by_backend(params: Mapping[str, Any], names: Sequence[str]) -> dict[str, list[str]]:
    """Keras backend -> the variants of ``names`` that train on it, in their order: a process
    can search only one backend's variants (Keras fixes its backend on first import)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(backend.variant_backend(params, name), []).append(name)
    return groups


def _child_options(
    params_path: str,
    workers: int,
    trials: int | None,
    timeout_s: float | None,
    storage: str | None,
    commit: bool,
) -> list[str]:
    """This process's own options, as the command line of each child (one per backend)."""
    options = ["--params", params_path, "--workers", str(workers)]
    options += [] if commit else ["--no-commit"]
    for flag, value in (("--trials", trials), ("--timeout", timeout_s)):
        options += [] if value is None else [flag, str(value)]
    options += [] if storage is None else ["--storage", storage]
    return options


def _run_child(script: str, names: Sequence[str], options: list[str]) -> None:
    """``script`` (pipeline/tune.py) on ``names``, one backend's variants, in a child process
    (Keras fixes its backend per process); a failing child's exit status becomes this
    process's."""
    command = [sys.executable, script, "--variants", ",".join(names), *options]
    result = subprocess.run(command)
    if result.returncode != 0:
        sys.exit(result.returncode)
