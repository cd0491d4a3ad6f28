"""The ``export@V`` stage's work: models/<v> -> exports/<v>/ (ONNX, model card), metrics, MLflow.

Converts with tf2onnx, checks, compares ONNX Runtime with Keras on test images at each of
``export.parity_batch_sizes`` (fails above ``export.tolerance``, keeping the previous export),
writes metrics/export/<v>.json and logs both ONNX models to the variant's final MLflow run
(models/<v>/run.json: a run the store lacks stops the stage before it writes anything),
registering the encoder as ``<v>-encoder`` with the alias ``candidate`` on the new version
(``make promote`` moves ``champion``; ``make serve`` serves either, ``services.serving``). An
IDEC export also holds clusters.onnx; its assignments of the whole test split by ONNX Runtime
alone are scored into the same metrics file (``clusters_onnx``: accuracy, NMI, ARI with labels;
cluster sizes always). With the ``anomaly`` settings the export also holds scorer.onnx and
score_model.json (fitted on the training and validation splits, ``export.scoring``), registered
as ``<v>-scorer`` (its new version the ``candidate`` too); the metrics file gains an ``anomaly``
block (threshold, validation FPR, the test split's scores), or says why the variant has no
scorer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import anomaly, data, fileio, inference, tracking
from autoencoders.evaluation import latent
from autoencoders.export import convert, scorer, scoring


def run_export(
    variant: str,
    settings: convert.ExportConfig,
    processed_dir: str = "data/processed",
    anomaly_settings: anomaly.AnomalyParams | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Export ``variant``, write its parity metrics and log the models; returns the metrics.
    With ``anomaly_settings`` the export holds scorer.onnx too (``export.scoring``)."""
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    model_dir, export_dir = f"models/{variant}", f"exports/{variant}"
    started = time.monotonic()
    # The run, the data and the model are looked up before exports/<v>/ is replaced.
    run_id = tracking.finished_run(f"{model_dir}/run.json")
    x_test, y_test = data.load_split(processed_dir, "test")
    autoencoder, resolved_config = convert.load_variant(model_dir)
    extra, skipped = None, None
    if anomaly_settings is not None:
        extra, skipped = _prepare_scorer(
            autoencoder, anomaly_settings, seed, processed_dir, x_test, y_test
        )
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
        extra=extra,
    )
    metrics = parity_metrics(card)
    if "clusters" in card["files"]:
        metrics["clusters_onnx"] = score_clusters_onnx(export_dir, x_test, y_test)
        print(f"[export] {variant}: clusters.onnx on test: {metrics['clusters_onnx']}")
    if extra is not None or skipped:
        metrics["anomaly"] = extra.metrics if extra is not None else {"skipped": skipped}
        print(f"[export] {variant}: scorer.onnx: {_anomaly_line(metrics['anomaly'])}")
    fileio.write_json(f"metrics/export/{variant}.json", metrics)
    print(
        f"[export] {variant}: max |ONNX Runtime - Keras| encoder "
        f"{metrics['encoder']['max_abs_diff']:.2e}, decoder "
        f"{metrics['decoder']['max_abs_diff']:.2e} (tolerance {settings.tolerance:g}) "
        f"-> {export_dir}/ in {time.monotonic() - started:.1f} s"
    )
    uris = log_onnx_models(
        export_dir,
        variant=variant,
        example_images=x_test[:2],
        run_id=run_id,
        anomaly_metrics=metrics.get("anomaly"),
    )
    registered = [f"{variant}-{role}" for role in ("encoder", "scorer") if role in uris]
    print(f"[export] {variant}: logged {uris}; registered {', '.join(registered)}")
    return metrics


def _prepare_scorer(
    autoencoder: Any,
    settings: anomaly.AnomalyParams,
    seed: int,
    processed_dir: str,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
) -> tuple[scoring.ScorerExport | None, str | None]:
    """The fitted scorer (training codes, normal validation outputs) or why there is none."""
    train = data.open_split(processed_dir, "train")  # shards: only the seeded sample is read
    x_train = train.array if train.in_memory else train
    x_val, _ = data.load_split(processed_dir, "val")
    val_anomalies = data.load_val_anomalies(processed_dir)
    normal_classes = data.load_card(processed_dir).get("normal_classes")
    return scoring.prepare(
        autoencoder,
        settings,
        seed=seed,
        x_train=x_train,
        x_val=x_val,
        evaluation={
            "val_anomalies": None if val_anomalies is None else val_anomalies[0],
            "x_test": x_test,
            "y_test": y_test,
            "normal_classes": normal_classes,
        },
    )


def _anomaly_line(block: Mapping[str, Any]) -> str:
    if "skipped" in block:
        return f"skipped: {block['skipped']}"
    test = block["test"]
    line = (
        f"threshold {block['threshold']:.4g} ({block['rule']}), validation FPR "
        f"{block['validation']['fpr']:.4f}, test share flagged {test['share_flagged']:.4f}"
    )
    if "auroc" in test:
        line += f", test AUROC {test['auroc']:.4f}, FPR {test['fpr']:.4f}, TPR {test['tpr']:.4f}"
    return line


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
    """The DVC metric (``metrics/export/<variant>.json``) of a model card's parity figures; the
    scorer's also holds its score against the numpy ScoreModel and its map, scaled."""
    figures = card["parity"]
    metrics: dict[str, Any] = {"tolerance": figures["tolerance"]}
    for role in ("encoder", "decoder", "clusters", "scorer"):
        if role in figures:
            metrics[role] = {
                "max_abs_diff": figures[role]["max_abs_diff"],
                "scaled_diff": figures[role]["scaled_diff"],
                **{f"batch_{b}": d for b, d in figures[role]["by_batch_size"].items()},
            }
    if "scorer" in figures:
        metrics["scorer"].update(
            {
                f"{key}_scaled_diff": figures["scorer"][key]["scaled_diff"]
                for key in ("score_model", "anomaly_map")
            }
        )
    return metrics


# The CUDA provider where the serving host has one, else the CPU: stated, as MLflow's default
# leaves it to the ONNX Runtime build.
SERVING_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
# The registry's aliases: every export's new versions become the ``candidate``; ``make promote``
# moves ``champion`` (services.serving). A scorer version names its encoder's in a tag.
CANDIDATE, CHAMPION = "candidate", "champion"
ENCODER_VERSION_TAG = "encoder_version"


def model_requirements() -> list[str]:
    """The pinned pip requirements of every logged ONNX model, stated rather than inferred.

    MLflow's inference re-imports the model in a subprocess (about 4 s per model here) and
    lists ``onnxruntime`` beside ``onnxruntime-gpu``: two wheels of one package, of which pip
    keeps whichever it installed last. The GPU wheel carries the CPU provider too, so it alone
    is required where it exists (Linux, Windows; the CPU wheel elsewhere, as pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        runtime = f"onnxruntime-gpu=={version('onnxruntime-gpu')}"
    except PackageNotFoundError:
        runtime = f"onnxruntime=={version('onnxruntime')}"
    return [f"{name}=={version(name)}" for name in ("mlflow", "onnx", "numpy")] + [runtime]


def log_onnx_models(
    export_dir: str | Path,
    *,
    variant: str,
    example_images: np.ndarray,
    run_id: str,
    anomaly_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Log the exported encoder and decoder to MLflow run ``run_id``, with signatures, and
    register the encoder as ``<variant>-encoder`` (and a scorer.onnx as ``<variant>-scorer``),
    each new version under the alias ``candidate`` (the scorer's tagged with its encoder's
    version, ``encoder_version``); also log the model card, the parity metrics and the
    numbers of ``anomaly_metrics``.

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
        signature = infer_signature({in_name: example}, {out_name: result})
        info = mlflow.onnx.log_model(
            onnx.load(str(export_dir / filename)),
            name=f"{role}_onnx",
            signature=signature,
            registered_model_name=f"{variant}-encoder" if role == "encoder" else None,
            pip_requirements=model_requirements(),
            onnx_execution_providers=SERVING_PROVIDERS,
            save_as_external_data=False,
            metadata={"variant": variant, "sha256": card["files"][role]["sha256"]},
            run_id=run_id,
        )
        outputs[role] = info.model_uri
        if role == "encoder":
            encoder_version = _mark_candidate(f"{variant}-encoder", info)
        example = result
    if "scorer" in card["files"]:
        info = _log_scorer(export_dir, card, variant, images, run_id)
        _mark_candidate(f"{variant}-scorer", info, {ENCODER_VERSION_TAG: encoder_version})
        outputs["scorer"] = info.model_uri
    _log_metrics(card, anomaly_metrics, run_id)
    mlflow.log_artifact(str(export_dir / convert.CARD_FILE), artifact_path="export", run_id=run_id)
    return outputs


def _roles(card: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(role, file, input name, output name) of every ONNX model an export logs but the
    scorer; the decoder's input is the encoder's output, the assigner's the images."""
    roles = [
        ("encoder", convert.ENCODER_FILE, convert.ENCODER_INPUT, convert.ENCODER_OUTPUT),
        ("decoder", convert.DECODER_FILE, convert.DECODER_INPUT, convert.DECODER_OUTPUT),
    ]
    if "clusters" in card["files"]:
        roles.append(
            ("clusters", convert.CLUSTERS_FILE, convert.ENCODER_INPUT, convert.CLUSTERS_OUTPUT)
        )
    return roles


def _mark_candidate(name: str, info: Any, tags: Mapping[str, str] | None = None) -> str:
    """Point ``name``'s alias ``candidate`` at the version ``info`` (a ModelInfo) registered,
    with ``tags`` on that version; returns the version."""
    import mlflow

    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CANDIDATE, version)
    variant = name.rsplit("-", 1)[0]
    print(
        f"[export] {name} version {version} is the {CANDIDATE!r} (make promote VARIANT={variant})"
    )
    return version


def _log_metrics(
    card: Mapping[str, Any], anomaly_metrics: Mapping[str, Any] | None, run_id: str
) -> None:
    """The parity figures as ``export_*`` and the anomaly block's numbers as ``anomaly_*``."""
    import mlflow

    flat = {f"export_{key}": value for key, value in fileio.flatten(parity_metrics(card)).items()}
    for key, value in fileio.flatten(anomaly_metrics or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"anomaly_{key}"] = value
    mlflow.log_metrics(flat, run_id=run_id)


def _log_scorer(
    export_dir: Path, card: Mapping[str, Any], variant: str, images: np.ndarray, run_id: str
) -> Any:
    """Log scorer.onnx with its signature (images -> score, anomaly_map) as ``scorer_onnx``,
    registered as ``<variant>-scorer``, as ``log_onnx_models`` logs the encoder; returns
    its ModelInfo."""
    import mlflow
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature

    path = export_dir / scorer.SCORER_FILE
    session = ort.InferenceSession(str(path), providers=[convert.PARITY_PROVIDER])
    names = [scorer.SCORE_OUTPUT, scorer.MAP_OUTPUT]
    results = session.run(names, {convert.ENCODER_INPUT: images})
    threshold = card["anomaly"]["threshold"]
    info = mlflow.onnx.log_model(
        onnx.load(str(path)),
        name="scorer_onnx",
        signature=infer_signature(
            {convert.ENCODER_INPUT: images}, dict(zip(names, results, strict=True))
        ),
        registered_model_name=f"{variant}-scorer",
        pip_requirements=model_requirements(),
        onnx_execution_providers=SERVING_PROVIDERS,
        save_as_external_data=False,
        metadata={
            "variant": variant,
            "sha256": card["files"]["scorer"]["sha256"],
            "threshold": threshold["value"],
            "threshold_rule": threshold["rule"],
        },
        run_id=run_id,
    )
    return info
