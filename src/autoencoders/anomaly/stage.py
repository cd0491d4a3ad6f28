"""The ``anomaly@V`` stage's work: models/<v> + exports/<v> -> scorers/<v>/, metrics, MLflow.

Fits the ``ScoreModel`` on the training codes and normal validation outputs (``fitting``) and
writes it with the trained model as one graph, images -> ``score`` and ``anomaly_map``
(``anomaly.scorer``, converted by ``export.convert``), gated against TensorFlow and the numpy
ScoreModel at the export's opset, tolerance and parity batch sizes (read from
exports/<v>/model_card.json, so the scorer is converted exactly as its export was). The
threshold is chosen (``anomaly.choose_threshold``) on ONNX Runtime's scores of the normal
validation images (and the labelled validation anomalies for ``f1_optimal``), so that
``inference.Scorer`` flags exactly what was recorded; the test split is scored last, for the
metrics only. Writes scorer.onnx, score_model.json and model_card.json (interface, checksums,
parity, the ``anomaly`` section: threshold and rule) into scorers/<v>/ atomically, the
``anomaly`` block to metrics/anomaly/<v>.json, and logs the scorer to the variant's training
run, registered as ``<v>-scorer`` (its new version the ``candidate``, tagged with the encoder
version of the same run, ``autoencoders.registry``). A variant the scores cannot apply to gets
a card and a metrics block that say why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import data, fileio, registry, served, tracking
from autoencoders.anomaly import fitting, metrics, scorer, thresholds
from autoencoders.anomaly.params import AnomalyParams
from autoencoders.anomaly.score_model import ScoreModel
from autoencoders.export import card, convert

FLAG_RULE = "score > threshold"


def run_anomaly(
    variant: str,
    *,
    model_dir: str | Path,
    export_dir: str | Path,
    processed_dir: str | Path,
    out_dir: str | Path,
    metrics_path: str | Path,
    settings: AnomalyParams,
    seed: int,
) -> dict[str, Any]:
    """Fit, convert, threshold and measure ``variant``'s scorer; returns the metrics."""
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    started = time.monotonic()
    # The run, the export and the data are looked up before scorers/<v>/ is replaced.
    run_id = tracking.finished_run(model_dir / "run.json")
    export_card = fileio.read_json(
        Path(export_dir) / convert.CARD_FILE,
        fix=f"run the export first (dvc repro export@{variant})",
    )
    x_test, y_test = data.load_split(processed_dir, "test")
    autoencoder, resolved_config = convert.load_variant(model_dir)
    x_train, x_val, val_anomalies, normal_classes = _fit_inputs(processed_dir)
    score_model, skipped = fitting.prepare(
        autoencoder, settings, seed=seed, x_train=x_train, x_val=x_val, val_anomalies=val_anomalies
    )
    if score_model is None:
        return _write_skipped(variant, skipped, out_dir, metrics_path)
    model_card, block = write_scorer(
        out_dir,
        autoencoder,
        score_model,
        settings,
        export_card=export_card,
        x_val=x_val,
        evaluation={
            "val_anomalies": val_anomalies,
            "x_test": x_test,
            "y_test": y_test,
            "normal_classes": normal_classes,
        },
        resolved_config=resolved_config,
    )
    result = {**scorer_metrics(model_card), "anomaly": block}
    fileio.write_json(metrics_path, result)
    print(
        f"[anomaly] {variant}: scorer.onnx: {_anomaly_line(block)} -> {out_dir}/ in "
        f"{time.monotonic() - started:.1f} s"
    )
    uri = log_scorer(
        out_dir, variant=variant, example_images=x_test[:2], run_id=run_id, metrics=result
    )
    print(
        f"[anomaly] {variant}: logged {uri}; registered {registry.model_name(variant, 'scorer')}"
    )
    return result


def _write_skipped(
    variant: str, reason: str | None, out_dir: Path, metrics_path: str | Path
) -> dict[str, Any]:
    """A variant the scores cannot apply to: a card and a metrics block that say why."""
    with fileio.atomic_directory(out_dir) as staging:
        fileio.write_json(
            staging / convert.CARD_FILE, {"variant": variant, "anomaly": {"skipped": reason}}
        )
    result = {"anomaly": {"skipped": reason}}
    fileio.write_json(metrics_path, result)
    print(f"[anomaly] {variant}: no scorer: {reason}")
    return result


def _fit_inputs(processed_dir: str | Path) -> tuple[Any, np.ndarray, np.ndarray | None, Any]:
    """(training images or their Split, normal validation images, labelled validation
    anomalies or None, the data card's normal classes or None)."""
    train = data.open_split(processed_dir, "train")  # shards: only the seeded sample is read
    x_train = train.array if train.in_memory else train
    x_val, _ = data.load_split(processed_dir, "val")
    val_anomalies = data.load_val_anomalies(processed_dir)
    normal_classes = data.load_card(processed_dir).get("normal_classes")
    return x_train, x_val, None if val_anomalies is None else val_anomalies[0], normal_classes


def write_scorer(
    out_dir: str | Path,
    autoencoder: Any,
    score_model: ScoreModel,
    settings: AnomalyParams,
    *,
    export_card: Mapping[str, Any],
    x_val: np.ndarray,
    evaluation: Mapping[str, Any],
    resolved_config: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write scorer.onnx, score_model.json and model_card.json into ``out_dir`` atomically
    (nothing changes there when the gate fails); (the card, the metrics' ``anomaly`` block).
    ``export_card``: the card of the same model's export (opset, tolerance, batch sizes);
    ``evaluation``: ``val_anomalies`` (or None), ``x_test``, ``y_test``, ``normal_classes``."""
    import tensorflow as tf

    config, common = _as_exported(export_card, autoencoder)
    # TF32 matmuls on recent NVIDIA GPUs would make Keras itself miss the parity gate.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    graph = scorer.ScorerGraph(autoencoder, score_model)
    with fileio.atomic_directory(out_dir) as staging:
        path = staging / scorer.SCORER_FILE
        proto, figures = scorer.convert_scorer(
            graph, path, common, config, np.asarray(evaluation["x_test"])
        )
        normal, anomalous, pixel_threshold = _validation_scores(path, x_val, evaluation, settings)
        threshold = thresholds.choose_threshold(
            settings.threshold,
            normal,
            anomalous,
            target_fpr=settings.target_fpr,
            value=settings.value,
        )
        section = card_section(score_model, threshold, evaluation["normal_classes"])
        section["pixel_threshold"] = pixel_threshold.to_dict()
        card_file = scorer.save_scorer(proto, path, scorer.scorer_metadata(common, section))
        fileio.write_json(staging / scorer.SCORE_MODEL_FILE, score_model.to_dict())
        section["score_model"] = {
            "path": scorer.SCORE_MODEL_FILE,
            "sha256": fileio.sha256_file(staging / scorer.SCORE_MODEL_FILE),
        }
        block = metrics.anomaly_metrics(
            threshold,
            {"normal": normal, "anomalies": anomalous},
            scorer.onnx_scores(path, evaluation["x_test"]),
            evaluation["y_test"],
            evaluation["normal_classes"],
        )
        model_card = card.model_card(
            common,
            {"scorer": card_file},
            _parity_record(config, figures),
            resolved_config,
            input_name=convert.ENCODER_INPUT,
        )
        model_card.update(encoder_sha256=export_card["files"]["encoder"]["sha256"])
        model_card["anomaly"] = section
        fileio.write_json(staging / convert.CARD_FILE, model_card)
    return model_card, block


def _parity_record(config: convert.ExportConfig, figures: Mapping[str, Any]) -> dict[str, Any]:
    """The card's ``parity`` block: how the gate ran, then the scorer's figures."""
    return {
        "provider": convert.PARITY_PROVIDER,
        "tolerance": config.tolerance,
        "batch_sizes": list(config.parity_batch_sizes),
        "scorer": dict(figures),
    }


def _validation_scores(
    path: Path, x_val: np.ndarray, evaluation: Mapping[str, Any], settings: AnomalyParams
) -> tuple[np.ndarray, np.ndarray | None, thresholds.Threshold]:
    """ONNX Runtime's scores of the normal validation images and of the labelled validation
    anomalies (None without them), and the pixel threshold of the normal images' local maps
    (at most ``settings.pixel_target_fpr`` of their pixels above it)."""
    anomalies = evaluation["val_anomalies"]
    normal, local_maps = scorer.onnx_run(
        path, x_val, (scorer.SCORE_OUTPUT, scorer.LOCAL_MAP_OUTPUT)
    )
    pixel_threshold = thresholds.target_fpr_threshold(
        local_maps.ravel(), settings.pixel_target_fpr
    )
    if anomalies is not None and len(anomalies) > 0:
        return normal, scorer.onnx_scores(path, anomalies), pixel_threshold
    return normal, None, pixel_threshold


def _as_exported(
    export_card: Mapping[str, Any], autoencoder: Any
) -> tuple[convert.ExportConfig, dict[str, Any]]:
    """The export's settings (opset, tolerance, parity batch sizes) and interface, checked
    against the model: a card of another model stops the stage."""
    variant, parity = export_card["variant"], export_card["parity"]
    config = convert.ExportConfig(
        opset=export_card["opset"],
        tolerance=float(parity["tolerance"]),
        parity_batch_sizes=tuple(parity["batch_sizes"]),
    )
    input_dims = [int(size) for size in autoencoder.encoder.inputs[0].shape[1:]]
    code_dims = [int(size) for size in autoencoder.encoder.outputs[0].shape[1:]]
    if input_dims != list(export_card["input"]["shape"][1:]) or code_dims != list(
        export_card["code_shape"]
    ):
        raise convert.ExportError(
            f"{variant}: the export's card describes other shapes than the model; re-run "
            f"its export (dvc repro export@{variant})."
        )
    contract = export_card["input"].get("contract")
    return config, card.interface(variant, config.opset, input_dims, code_dims, contract)


def card_section(
    score_model: ScoreModel, threshold: thresholds.Threshold, normal_classes: Any
) -> dict[str, Any]:
    """The card's ``anomaly`` section: scores, pixel loss, standardisation, threshold, rule
    (``write_scorer`` adds the ``local_map``'s ``pixel_threshold``)."""
    config = score_model.config
    return {
        "scores": list(config.scores),
        "pixel_loss": config.loss,
        "standardisation": {name: s._asdict() for name, s in score_model.standardisation.items()},
        "score": "sum over scores of (score - location) / scale; higher is more anomalous",
        "anomaly_map": f"per-pixel {config.loss} of the reconstruction (sums to the "
        "reconstruction score)",
        "local_map": f"channel-mean squared error smoothed by a Gaussian of sigma "
        f"{config.local_sigma} pixels (its maximum is the local_error score)",
        "local_sigma": config.local_sigma,
        "threshold": threshold.to_dict(),
        "flag": FLAG_RULE,
        "pixel_flag": "local_map > pixel_threshold",
        "normal_classes": normal_classes,
    }


def scorer_metrics(model_card: Mapping[str, Any]) -> dict[str, Any]:
    """The scorer's parity figures for metrics/anomaly/<v>.json: against TensorFlow, and its
    score against the numpy ScoreModel and its map, scaled."""
    figures = model_card["parity"]["scorer"]
    return {
        "tolerance": model_card["parity"]["tolerance"],
        "scorer": {
            "max_abs_diff": figures["max_abs_diff"],
            "scaled_diff": figures["scaled_diff"],
            **{f"batch_{b}": d for b, d in figures["by_batch_size"].items()},
            **{
                f"{key}_scaled_diff": figures[key]["scaled_diff"]
                for key in ("score_model", "anomaly_map", "local_map")
            },
        },
    }


def _anomaly_line(block: Mapping[str, Any]) -> str:
    test = block["test"]
    line = (
        f"threshold {block['threshold']:.4g} ({block['rule']}), validation FPR "
        f"{block['validation']['fpr']:.4f}, test share flagged {test['share_flagged']:.4f}"
    )
    if "auroc" in test:
        line += f", test AUROC {test['auroc']:.4f}, FPR {test['fpr']:.4f}, TPR {test['tpr']:.4f}"
    return line


def log_scorer(
    out_dir: str | Path,
    *,
    variant: str,
    example_images: np.ndarray,
    run_id: str,
    metrics: Mapping[str, Any],
) -> str:
    """Log the served scorer (``served``: a pyfunc over scorer.onnx and its card, input checked
    and scaled as ``inference`` does; outputs score and anomaly_map) to run ``run_id`` as
    ``scorer_onnx``, registered as ``<variant>-scorer`` with the alias ``candidate`` and the
    tag ``encoder_version`` (the encoder the export of the same run registered); log its card
    and the metrics (``export_scorer.*`` for the parity figures, ``anomaly_*`` for the rest).
    Returns the model URI."""
    import mlflow

    out_dir = Path(out_dir)
    model_card = fileio.read_json(out_dir / convert.CARD_FILE)
    images = convert.cycle(np.asarray(example_images, dtype=np.float32), 2)
    threshold = model_card["anomaly"]["threshold"]
    name = registry.model_name(variant, "scorer")
    info = served.log_model(
        "scorer",
        out_dir / scorer.SCORER_FILE,
        out_dir / convert.CARD_FILE,
        example_images=images,
        metadata={
            "variant": variant,
            "sha256": model_card["files"]["scorer"]["sha256"],
            "threshold": threshold["value"],
            "threshold_rule": threshold["rule"],
        },
        name="scorer_onnx",
        registered_model_name=name,
        pip_requirements=registry.model_requirements(),
        run_id=run_id,
    )
    encoder = registry.encoder_version(variant, run_id)
    registry.mark_candidate(name, info, {registry.ENCODER_VERSION_TAG: encoder}, stage="anomaly")
    flat = {
        f"export_{key}": value
        for key, value in fileio.flatten({"scorer": metrics["scorer"]}).items()
    }
    for key, value in fileio.flatten(metrics["anomaly"]).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"anomaly_{key}"] = value
    mlflow.log_metrics(flat, run_id=run_id)
    mlflow.log_artifact(str(out_dir / convert.CARD_FILE), artifact_path="anomaly", run_id=run_id)
    return info.model_uri


__all__ = [
    "FLAG_RULE",
    "card_section",
    "log_scorer",
    "run_anomaly",
    "scorer_metrics",
    "write_scorer",
]
