"""Optuna search: DVC stage `tune@<variant>`, and `make tune` (a larger, parallel search).

python pipeline/tune.py --variant conv          # what `dvc repro tune@conv` runs
python pipeline/tune.py --variants conv,vae --trials 50 --workers 2 [--timeout S] [--storage URL]

Tops each study up to n_trials, writes best.json (--variants: and `dvc commit`): tuning.command"""

from __future__ import annotations

import argparse

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import config, paths, timing
from autoencoders.tuning import command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--variant", help="one variant, as the DVC stage tune@<variant> runs it")
    target.add_argument("--variants", help="comma-separated variants or `all` (make tune)")
    parser.add_argument("--trials", type=int, help="finished trials per study")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing each study")
    parser.add_argument("--timeout", type=float, help="seconds per variant (0 for none)")
    parser.add_argument("--storage", help="a path (SQLite) or an RDB URL; default tune.storage")
    parser.add_argument("--no-commit", action="store_true", help="skip `dvc commit` (--variants)")
    parser.add_argument("--params", default=paths.PARAMS)
    args = parser.parse_args(argv)
    command.run(
        params := config.load_params(args.params),
        command.variant_names(args.variant, args.variants, config.section(params, "variants")),
        workers=args.workers,
        trials=args.trials,
        timeout_s=args.timeout,
        storage=args.storage,
        commit=args.variants is not None and not args.no_commit,
        script=__file__,
        params_path=args.params,
        processed_dir=paths.PROCESSED,
        best_path=paths.best,
    )


if __name__ == "__main__":
    timing.run_stage("tune", main)
