"""DVC stage `export@<variant>`: models/<v> -> exports/<v>/{encoder,decoder}.onnx + model card.

python pipeline/export.py --variant conv      # what `dvc repro export@conv` runs

Converts, checks ONNX Runtime against Keras (``export.tolerance``), adds the anomaly scorer
(``anomaly``), writes metrics/export/<v>.json and registers the encoder and scorer in MLflow.
The work is ``autoencoders.export.stage``.
"""

from __future__ import annotations

import argparse

from autoencoders import anomaly, config, export, timing
from autoencoders.export import stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    config.variant_block(params, args.variant, stage="export")
    stage.run_export(
        args.variant,
        config.from_mapping(export.ExportConfig, config.section(params, "export"), "export"),
        anomaly_settings=config.from_mapping(
            anomaly.AnomalyParams, config.section(params, "anomaly"), "anomaly"
        ),
        seed=config.value(params, "seed", int),
    )


if __name__ == "__main__":
    timing.run_stage("export", main)
