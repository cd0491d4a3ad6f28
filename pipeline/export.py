"""DVC stage `export@<variant>`: models/<v> -> exports/<v>/{encoder,decoder}.onnx + model card.

python pipeline/export.py --variant conv      # what `dvc repro export@conv` runs

Converts, checks ONNX Runtime against Keras (``export.tolerance``), writes
metrics/export/<v>.json and registers the encoder in MLflow. The anomaly scorer is the next
stage's (pipeline/anomaly.py). The work is ``autoencoders.export.stage``.
"""

from __future__ import annotations

import argparse

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import config, export, paths, timing
from autoencoders.export import stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a key of params.yaml `variants`")
    parser.add_argument("--params", default=paths.PARAMS)
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    config.variant_block(params, args.variant, stage="export")
    stage.run_export(
        args.variant,
        config.from_mapping(export.ExportConfig, config.section(params, "export"), "export"),
        model_dir=paths.model(args.variant),
        processed_dir=paths.PROCESSED,
        export_dir=paths.export(args.variant),
        metrics_path=paths.export_metrics(args.variant),
    )


if __name__ == "__main__":
    timing.run_stage("export", main)
