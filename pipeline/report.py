"""DVC stage `report`: every variant side by side, with live baselines.

python pipeline/report.py       # what `dvc repro report` runs

Reads every metrics/ file of the variants in params.yaml, computes the baselines in this run
(k-means on raw pixels, PCA at each code size), and writes reports/summary.{md,json},
reports/comparison.png, reports/metrics/<V>.json (`dvc metrics show`) and reports/timings.json
(every stage's seconds and pipeline_seconds). The work is ``autoencoders.reporting.stage``.
"""

from __future__ import annotations

import argparse

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import config, errors, paths
from autoencoders.evaluation.outputs import EvaluateParams
from autoencoders.reporting import stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=paths.PARAMS)
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    names = list(config.section(params, "variants"))
    settings = config.from_mapping(EvaluateParams, config.section(params, "evaluate"), "evaluate")
    stage.write_report(
        {name: paths.outputs(name) for name in names},
        seed=config.value(params, "seed", int),
        kmeans_n_init=settings.kmeans_n_init,
        processed_dir=paths.PROCESSED,
        pixels_metrics=paths.cluster_metrics(paths.PIXELS),
        report_dir=paths.REPORTS,
        timings_dir=paths.TIMINGS,
    )


if __name__ == "__main__":
    errors.cli(main)
