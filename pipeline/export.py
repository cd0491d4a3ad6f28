"""DVC stage `export@<variant>`: models/<v> -> exports/<v>/{encoder,decoder}.onnx + model card.

python pipeline/export.py --variant conv      # what `dvc repro export@conv` runs

Converts with tf2onnx, checks, compares ONNX Runtime with Keras on test images at each of
``export.parity_batch_sizes`` (fails above ``export.tolerance``, keeping the previous export),
writes metrics/export/<v>.json and logs both ONNX models to the variant's final MLflow run
(models/<v>/run.json: a run the store lacks stops the stage before it writes anything),
registering the encoder as ``<v>-encoder``. An IDEC export also holds clusters.onnx; its
assignments of the whole test split by ONNX Runtime alone are scored into the same metrics file
(``clusters_onnx``: accuracy, NMI, ARI with labels; cluster sizes always).
"""

from __future__ import annotations

import argparse
import logging
import time

from autoencoders import config, data, export, fileio, timing, tracking

PROCESSED_DIR = "data/processed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    config.variant_block(params, args.variant, stage="export")
    settings = config.from_mapping(
        export.ExportConfig, config.section(params, "export"), where="export"
    )
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    model_dir, export_dir = f"models/{args.variant}", f"exports/{args.variant}"
    started = time.monotonic()
    # The run, the data and the model are looked up before exports/<v>/ is replaced.
    run_id = tracking.finished_run(f"{model_dir}/run.json")
    x_test, y_test = data.load_split(PROCESSED_DIR, "test")
    card = export.export_variant(
        model_dir,
        export_dir,
        variant=args.variant,
        opset=settings.opset,
        tolerance=settings.tolerance,
        parity_images=x_test[: max(settings.parity_batch_sizes)],
        parity_batch_sizes=settings.parity_batch_sizes,
        source_run_id=run_id,
    )
    metrics = export.parity_metrics(card)
    if "clusters" in card["files"]:
        from autoencoders import clustering

        metrics["clusters_onnx"] = clustering.score_clusters_onnx(export_dir, x_test, y_test)
        print(f"[export] {args.variant}: clusters.onnx on test: {metrics['clusters_onnx']}")
    fileio.write_json(f"metrics/export/{args.variant}.json", metrics)
    print(
        f"[export] {args.variant}: max |ONNX Runtime - Keras| encoder "
        f"{metrics['encoder']['max_abs_diff']:.2e}, decoder "
        f"{metrics['decoder']['max_abs_diff']:.2e} (tolerance {settings.tolerance:g}) "
        f"-> {export_dir}/ in {time.monotonic() - started:.1f} s"
    )
    uris = export.log_onnx_models(
        export_dir,
        variant=args.variant,
        example_images=x_test[:2],
        run_id=run_id,
    )
    print(f"[export] {args.variant}: logged {uris}; registered {args.variant}-encoder")


if __name__ == "__main__":
    timing.run_stage("export", main)
