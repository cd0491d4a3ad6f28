"""DVC stage `report`: every variant side by side, with live baselines.

python pipeline/report.py       # what `dvc repro report` runs

Reads metrics/<V>.json for every variant in params.yaml (plus models/<V>/training.json and
config.json where the metrics file lacks size or training time, and metrics/export/<V>.json
for ONNX parity when present), computes the baselines in this run (k-means on the raw pixels
of the test split; PCA fitted on the training split at each variant's code size), and writes
reports/summary.md, reports/summary.json, reports/comparison.png and reports/metrics/<V>.json
(the DVC metrics: one compact row per variant for `dvc metrics show/diff`). A variant without
metrics is reported as missing. The clustering head's figures (metrics/cluster/<V>.json and
metrics/cluster/pixels.json, from cluster@V and cluster_pixels) get their own section.
reports/timings.json (git-ignored) gathers every stage's wall seconds from timings/
(autoencoders.timing) and their sum, pipeline_seconds. The work is
``autoencoders.evaluation.report_stage``.
"""

from __future__ import annotations

import argparse

from autoencoders import config, errors, evaluation
from autoencoders.evaluation import report_stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    names = list(config.section(params, "variants"))
    settings = config.from_mapping(
        evaluation.EvaluateParams, config.section(params, "evaluate"), "evaluate"
    )
    report_stage.write_report(
        names,
        seed=config.value(params, "seed", int),
        kmeans_n_init=settings.kmeans_n_init,
    )


if __name__ == "__main__":
    errors.cli(main)
