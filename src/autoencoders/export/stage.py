"""The ``export@V`` stage's work: models/<v> -> exports/<v>/ (ONNX, model card), metrics, MLflow.

Converts with tf2onnx, checks, compares ONNX Runtime with Keras on test images at each of
``export.parity_batch_sizes`` (fails above ``export.tolerance``, keeping the previous export),
writes metrics/export/<v>.json and logs both ONNX models to the variant's final MLflow run
(models/<v>/run.json: a run the store lacks stops the stage before it writes anything),
registering the encoder as ``<v>-encoder`` with the alias ``candidate`` on the new version
(``make promote`` moves ``champion``; ``make serve`` serves either, ``services.serving``). An
IDEC export also holds clusters.onnx; its assignments of the whole test split by ONNX Runtime
alone are scored into the same metrics file (``clusters_onnx``: accuracy, NMI, ARI with labels;
cluster sizes always). The anomaly scorer is the next stage's (``anomaly.stage``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import data, fileio, inference, registry, served, tracking
from autoencoders.evaluation import latent
from autoencoders.export import convert


def run_export(
    variant: str,
    settings: convert.ExportConfig,
    *,
    model_dir: str | Path,
    processed_dir: str | Path,
    export_dir: str | Path,
    metrics_path: str | Path,
) -> dict[str, Any]:
    """Export ``variant``, write its parity metrics and log the models; returns the metrics."""
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    started = time.monotonic()
    # The run, the data and the model are looked up before exports/<v>/ is replaced.
    run_id = tracking.finished_run(Path(model_dir) / "run.json")
    x_test, y_test = data.load_split(processed_dir, "test")
    autoencoder, resolved_config = convert.load_variant(model_dir)
    card = convert.export_models(
        autoencoder.encoder,
        autoencoder.decoder,
        export_dir,
        variant=variant,
        opset=settings.opset,
        tolerance=settings.tolerance,
        parity_images=x_test[: max(settings.parity_batch_sizes)],
        parity_batch_sizes=settings.parity_batch_sizes,
        source_run_id=run_id,
        resolved_config=resolved_config,
        clusters=getattr(autoencoder, "assigner", None),
        input_contract=data.load_card(processed_dir).get("input_contract"),
    )
    metrics = parity_metrics(card)
    if "clusters" in card["files"]:
        metrics["clusters_onnx"] = score_clusters_onnx(export_dir, x_test, y_test)
        print(f"[export] {variant}: clusters.onnx on test: {metrics['clusters_onnx']}")
    fileio.write_json(metrics_path, metrics)
    print(
        f"[export] {variant}: max |ONNX Runtime - Keras| encoder "
        f"{metrics['encoder']['max_abs_diff']:.2e}, decoder "
        f"{metrics['decoder']['max_abs_diff']:.2e} (tolerance {settings.tolerance:g}) "
        f"-> {export_dir}/ in {time.monotonic() - started:.1f} s"
    )
    uris = log_onnx_models(export_dir, variant=variant, example_images=x_test[:2], run_id=run_id)
    print(f"[export] {variant}: logged {uris}; registered {registry.model_name(variant)}")
    return metrics


def score_clusters_onnx(
    export_dir: Any, images: np.ndarray, labels: np.ndarray | None
) -> dict[str, Any]:
    """An IDEC export's own assignments (argmax of clusters.onnx, ONNX Runtime alone) scored:
    ``cluster_accuracy``, ``nmi``, ``ari`` with labels; ``cluster_sizes`` always."""
    assignments, _ = inference.Clusterer(export_dir, batch_size=1024).cluster(images)
    result: dict[str, Any] = {
        "cluster_sizes": [int(size) for size in np.bincount(assignments)],
        "images": len(assignments),
    }
    if labels is not None:
        scores = latent.label_scores(np.asarray(labels), assignments, "")
        result.update({"cluster_accuracy": scores["accuracy"], **scores})
        del result["accuracy"]
    return result


def parity_metrics(card: Mapping[str, Any]) -> dict[str, Any]:
    """The DVC metric (``metrics/export/<variant>.json``) of a model card's parity figures."""
    figures = card["parity"]
    metrics: dict[str, Any] = {"tolerance": figures["tolerance"]}
    for role in ("encoder", "decoder", "clusters"):
        if role in figures:
            metrics[role] = {
                "max_abs_diff": figures[role]["max_abs_diff"],
                "scaled_diff": figures[role]["scaled_diff"],
                **{f"batch_{b}": d for b, d in figures[role]["by_batch_size"].items()},
            }
    return metrics


def log_onnx_models(
    export_dir: str | Path, *, variant: str, example_images: np.ndarray, run_id: str
) -> dict[str, Any]:
    """Log the exported encoder and decoder (and an IDEC's clusters.onnx) to MLflow run
    ``run_id``, with signatures, and register the encoder as ``<variant>-encoder``, its new
    version under the alias ``candidate`` (``autoencoders.registry``); also log the model card and
    the parity metrics (``export_*``). The encoder is logged as ``served``'s pyfunc (input
    checked and scaled as ``inference`` does), the decoder and assigner as ONNX models.

    ``run_id`` is the finished training run (``tracking.finished_run("models/<v>/run.json")``):
    everything is logged by its id, so the run is not re-opened and keeps its duration.
    """
    import mlflow
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature

    export_dir = Path(export_dir)
    card = fileio.read_json(export_dir / convert.CARD_FILE)
    example = convert.cycle(np.asarray(example_images, dtype=np.float32), 2)
    outputs = {}
    images = example
    for role, filename, in_name, out_name in _roles(card):
        if role == "clusters":
            example = images
        session = ort.InferenceSession(
            str(export_dir / filename), providers=[convert.PARITY_PROVIDER]
        )
        (result,) = session.run(None, {in_name: example})
        logged = {
            "name": f"{role}_onnx",
            "metadata": {"variant": variant, "sha256": card["files"][role]["sha256"]},
            "pip_requirements": registry.model_requirements(),
            "run_id": run_id,
        }
        name = registry.model_name(variant, "encoder")
        if role == "encoder":  # the served model: a pyfunc checking input as `inference` does
            info = served.log_model(
                "encoder",
                export_dir / filename,
                export_dir / convert.CARD_FILE,
                example_images=example,
                registered_model_name=name,
                **logged,
            )
            registry.mark_candidate(name, info)
        else:
            info = mlflow.onnx.log_model(
                onnx.load(str(export_dir / filename)),
                signature=infer_signature({in_name: example}, {out_name: result}),
                onnx_execution_providers=registry.SERVING_PROVIDERS,
                save_as_external_data=False,
                **logged,
            )
        outputs[role] = info.model_uri
        example = result
    flat = {f"export_{key}": value for key, value in fileio.flatten(parity_metrics(card)).items()}
    mlflow.log_metrics(flat, run_id=run_id)
    mlflow.log_artifact(str(export_dir / convert.CARD_FILE), artifact_path="export", run_id=run_id)
    return outputs


def _roles(card: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(role, file, input name, output name) of every ONNX model an export logs; the
    decoder's input is the encoder's output, the assigner's the images."""
    roles = [
        ("encoder", convert.ENCODER_FILE, convert.ENCODER_INPUT, convert.ENCODER_OUTPUT),
        ("decoder", convert.DECODER_FILE, convert.DECODER_INPUT, convert.DECODER_OUTPUT),
    ]
    if "clusters" in card["files"]:
        roles.append(
            ("clusters", convert.CLUSTERS_FILE, convert.ENCODER_INPUT, convert.CLUSTERS_OUTPUT)
        )
    return roles
