"""Optuna search: DVC stage `tune@<variant>`, and `make tune` (a larger, parallel search).

python pipeline/tune.py --variant conv          # what `dvc repro tune@conv` runs
python pipeline/tune.py --variants conv,vae --trials 50 --workers 2 [--timeout S] [--storage URL]
python pipeline/tune.py --variants all ...      # every variant in params.yaml

Each variant's study (storage: params.yaml `tune.storage`, a path or an RDB URL) is topped up to
n_trials complete or pruned trials (resumes, never repeats; trials of killed workers are failed and
re-run first) and tuning/<variant>/best.json is rewritten. Ctrl-C exits with status 130.
With --variants the stage's record is then updated (`dvc commit -f tune@<variant>`), so the next
`dvc repro` trains with the new best parameters without searching again.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoencoders import backend, config, timing


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


def _variant_names(
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


def _run_group(names: list[str], args: argparse.Namespace) -> None:
    """This script on ``names`` (variants of one backend) in a child process."""
    command = [sys.executable, __file__, "--variants", ",".join(names), "--params", args.params]
    command += ["--workers", str(args.workers)] + (["--no-commit"] if args.no_commit else [])
    for flag, value in (("--trials", args.trials), ("--timeout", args.timeout)):
        if value is not None:
            command += [flag, str(value)]
    if args.storage is not None:
        command += ["--storage", args.storage]
    result = subprocess.run(command)
    if result.returncode != 0:
        sys.exit(result.returncode)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--variant", help="one variant, as the DVC stage tune@<variant> runs it")
    target.add_argument("--variants", help="comma-separated variants or `all` (make tune)")
    parser.add_argument("--trials", type=int, help="finished trials each study should hold")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing each study")
    parser.add_argument("--timeout", type=float, help="seconds per variant (0 for none)")
    parser.add_argument("--storage", help="a path (SQLite) or an RDB URL; default tune.storage")
    parser.add_argument("--no-commit", action="store_true", help="skip `dvc commit` (--variants)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    params = config.load_params(args.params)
    variants = config.section(params, "variants")
    names = _variant_names(args.variant, args.variants, variants)
    if args.workers < 1:
        raise config.ConfigError(f"--workers must be at least 1, got {args.workers}.")
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(backend.variant_backend(params, name), []).append(name)
    if len(groups) == 1:
        backend.activate(next(iter(groups)))
    from autoencoders import tuning  # imports Keras: after its backend is chosen

    shared = {
        "train_section": config.section(params, "train"),
        "tune_section": config.section(params, "tune"),
        "seed": config.value(params, "seed", int),
        "n_trials": args.trials,
        "timeout_s": args.timeout,
        "storage": args.storage,
    }
    try:
        # Validate every variant's search (and the tune section) before the first trial of any.
        for name in names:
            tuning.plan_search(
                variant=name, variant_block=variants[name], data_checksum="not-read-yet", **shared
            )
        if len(groups) > 1:  # Keras' backend is fixed per process: one child per backend
            for group in groups.values():
                _run_group(group, args)
            return
        for name in names:
            tuning.tune(
                variant=name,
                variant_block=variants[name],
                processed_dir="data/processed",
                best_path=f"tuning/{name}/best.json",
                workers=args.workers,
                **shared,
            )
            if args.variants is not None and not args.no_commit:
                dvc_commit(name)
    except KeyboardInterrupt as interrupted:
        # Ctrl-C: running trials were failed, queued again and their MLflow runs closed.
        print(
            str(interrupted) or "tune interrupted: re-run the same command to resume.",
            file=sys.stderr,
        )
        sys.exit(tuning.INTERRUPTED_EXIT_CODE)


if __name__ == "__main__":
    timing.run_stage("tune", main)
