"""DVC stage `export@<variant>`: models/<v> -> exports/<v>/{encoder,decoder}.onnx + model card.

python pipeline/export.py --variant conv      # what `dvc repro export@conv` runs

Converts, checks ONNX Runtime against Keras (``export.tolerance``), writes
metrics/export/<v>.json and registers the encoder in MLflow. The anomaly scorer is the next
stage's (pipeline/anomaly.py). The work is ``autoencoders.export.stage``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoencoders import config, export, timing
from autoencoders.export import stage

PROCESSED_DIR = "data/processed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a key of params.yaml `variants`")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    config.variant_block(params, args.variant, stage="export")
    stage.run_export(
        args.variant,
        config.from_mapping(export.ExportConfig, config.section(params, "export"), "export"),
        model_dir=Path("models") / args.variant,
        processed_dir=PROCESSED_DIR,
        export_dir=Path("exports") / args.variant,
        metrics_path=Path("metrics") / "export" / f"{args.variant}.json",
    )


if __name__ == "__main__":
    timing.run_stage("export", main)
