"""DVC stage `evaluate@V`: test-split metrics and figures of one trained variant.

python pipeline/evaluate.py --variant conv     # what `dvc repro evaluate@conv` runs

Reads models/<V> and data/processed (the test split is used here and nowhere before), writes
metrics/<V>.json and plots/<V>/*.png and logs both into the variant's final MLflow run. The work
is ``autoencoders.evaluation.stage``.
"""

from __future__ import annotations

import argparse

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import config, paths, timing
from autoencoders.evaluation import stage
from autoencoders.evaluation.outputs import EvaluateParams


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a key of params.yaml `variants`")
    parser.add_argument("--params", default=paths.PARAMS)
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    config.variant_block(params, args.variant, stage="evaluate")
    settings = config.from_mapping(EvaluateParams, config.section(params, "evaluate"), "evaluate")
    stage.evaluate_variant(
        args.variant,
        model_dir=paths.model(args.variant),
        processed_dir=paths.PROCESSED,
        metrics_path=paths.metrics(args.variant),
        plots_dir=paths.plots(args.variant),
        seed=config.value(params, "seed", int),
        settings=settings,
    )


if __name__ == "__main__":
    timing.run_stage("evaluate", main)
