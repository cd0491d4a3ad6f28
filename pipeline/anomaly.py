"""DVC stage `anomaly@<variant>`: models/<v> + exports/<v> -> scorers/<v>/scorer.onnx + card.

python pipeline/anomaly.py --variant conv     # what `dvc repro anomaly@conv` runs

Fits the anomaly score model on normal training and validation images (``anomaly``), converts
it into scorer.onnx at the export's opset and gate, chooses its threshold, writes
scorers/<v>/{scorer.onnx,score_model.json,model_card.json} and metrics/anomaly/<v>.json, and
registers ``<v>-scorer`` in MLflow. The work is ``autoencoders.anomaly.stage``.
"""

from __future__ import annotations

import argparse

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import anomaly, config, paths, timing
from autoencoders.anomaly import stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a key of params.yaml `variants`")
    parser.add_argument("--params", default=paths.PARAMS)
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    config.variant_block(params, args.variant, stage="anomaly")
    stage.run_anomaly(
        args.variant,
        model_dir=paths.model(args.variant),
        export_dir=paths.export(args.variant),
        processed_dir=paths.PROCESSED,
        out_dir=paths.scorer(args.variant),
        metrics_path=paths.anomaly_metrics(args.variant),
        settings=config.from_mapping(
            anomaly.AnomalyParams, config.section(params, "anomaly"), "anomaly"
        ),
        seed=config.value(params, "seed", int),
    )


if __name__ == "__main__":
    timing.run_stage("anomaly", main)
