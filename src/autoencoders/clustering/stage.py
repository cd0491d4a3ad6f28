"""The ``cluster@V`` (and ``cluster_pixels``) stage's work: the head on a variant's codes.

Encodes the test split (and the training split, for the inductive figure) with the exported
encoder exports/<V>/encoder.onnx (ONNX Runtime, no TensorFlow: the export is parity-checked
against Keras), fits UMAP + a Gaussian mixture per seed and takes their consensus (params.yaml
``cluster``), distils the training codes' consensus into clusterers/<V>/clusters.onnx (images
-> cluster posteriors, under export's parity tolerance; its assignments of the test images by
ONNX Runtime alone are the inductive figures), and writes metrics/cluster/<V>.json and
plots/cluster/<V>/head.png; logs them into the variant's MLflow run
when models/<V>/run.json exists (looked up first: a run the store lacks stops the stage before it
writes anything). Labels only score.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import data, fileio, paths, tracking
from autoencoders.clustering import deploy, figures, head

PIXELS = paths.PIXELS
HEAD_KEYS = ("head_accuracy", "head_nmi", "head_ari", "head_inductive_accuracy")
SECONDS_KEYS = ("head_seconds", "head_inductive_seconds", "stage_seconds")
PARITY_IMAGES = 256  # test images the clusterer's ONNX graph is checked on


def _codes(export_dir: Path, images: np.ndarray | data.Split, processed_dir: Path) -> np.ndarray:
    """The exported encoder's codes (N, D); a Split of shards is encoded batch by batch."""
    from autoencoders import inference

    # Shards: batches sized by their pixels (64x64x3 at 1,024 a batch is gigabytes of
    # activations); the npz data as before.
    sharded = data.shards.holds_shards(processed_dir, "test")
    batch = data.splits.stream_batch(images.shape[1:]) if sharded else 1024
    encoder = inference.Encoder(export_dir, batch_size=batch)
    if isinstance(images, data.Split):
        return images.codes(encoder.encode, batch_size=batch)
    return encoder.encode(images).reshape(len(images), -1)


def inputs(
    export_dir: Path | None, processed_dir: Path, inductive: int, seed: int
) -> tuple[np.ndarray, Any, np.ndarray | None]:
    """(test codes, test labels or None, training codes or None) of a variant's exported
    encoder in ``export_dir``, or of the raw pixels (``export_dir`` None).

    ``inductive``: how many training images the inductive head sees (0: none); its seeded
    subsample is drawn here, before encoding, so only those images are encoded: the rows
    ``head.score_head`` would draw from an npz split's codes, a ``Split.sample`` of shards
    (read and encoded in batches). The test split is held whole."""
    x_test, y_test = data.load_split(processed_dir, "test")
    train = data.open_split(processed_dir, "train") if inductive else None
    if train is None:
        x_train = None
    elif train.in_memory:
        x_train = head.inductive_sample(train.array, inductive, seed)
    else:
        x_train = train.sample(inductive, seed)
    if export_dir is None:
        flat = x_test.reshape(len(x_test), -1)
        train = None if x_train is None else data.as_array(x_train).reshape(len(x_train), -1)
        return flat, y_test, train
    train_codes = None if x_train is None else _codes(export_dir, x_train, processed_dir)
    return _codes(export_dir, x_test, processed_dir), y_test, train_codes


def run_head(
    variant: str,
    params: head.HeadParams,
    seed: int,
    *,
    processed_dir: Path,
    export_dir: Path | None,
    run_ref: Path,
    metrics_path: Path,
    plot_dir: Path,
    timings_dir: Path,
    clusterer_dir: Path | None = None,
    tolerance: float = 1e-5,
) -> dict[str, Any]:
    """Score the head on one variant's codes (its encoder in ``export_dir``; None: the raw
    pixels), write its metrics and figure, and its clusterer to ``clusterer_dir`` (None: none;
    ``tolerance``: the parity gate); ``run_ref``: the MLflow run it logs into."""
    started = time.monotonic()
    # Looked up before any output is written: a run the store lacks stops here.
    run_id = tracking.logged_run(run_ref)
    inductive = params.inductive_subsample if export_dir is not None else 0
    test_codes, y_test, train_codes = inputs(export_dir, Path(processed_dir), inductive, seed)
    print(
        f"[cluster] {variant}: {len(test_codes)} test codes of {test_codes.shape[1]} numbers"
        + (f", {len(train_codes)} training codes" if train_codes is not None else "")
        + ("" if y_test is not None else " (no labels: label-free figures only)"),
        flush=True,
    )
    metrics, arrays = head.score_head(
        test_codes, y_test, params=params, seed=seed, train_codes=train_codes
    )
    metrics["variant"] = variant
    metrics["code_size"] = int(test_codes.shape[1])
    if clusterer_dir is not None and export_dir is not None:
        metrics.update(
            deploy_clusterer(
                variant, arrays, params, seed, export_dir, processed_dir, clusterer_dir, tolerance
            )
        )
    points, how = figures.view_2d(arrays["embedding"], seed=seed, how=params.view)
    with fileio.atomic_directory(plot_dir) as staging:
        figures.plot_head_view(
            points,
            arrays["assignments"],
            y_test,
            staging / "head.png",
            how=how,
            title=f"{variant}: clustering head",
            seed=seed,
        )
    metrics["stage_seconds"] = round(time.monotonic() - started, 3)
    # Seconds differ per machine: git-ignored timings/ and MLflow hold them, not metrics/.
    seconds = {key: metrics.pop(key) for key in SECONDS_KEYS if key in metrics}
    fileio.write_json(Path(timings_dir) / f"cluster@{variant}.head.json", seconds)
    fileio.write_json(metrics_path, metrics)
    _log(run_id, metrics_path, plot_dir, seconds)
    _print_result(variant, metrics, seconds, metrics_path, plot_dir)
    return metrics


def deploy_clusterer(
    variant: str,
    arrays: dict[str, Any],
    params: head.HeadParams,
    seed: int,
    export_dir: Path,
    processed_dir: Path,
    clusterer_dir: Path,
    tolerance: float,
) -> dict[str, Any]:
    """Distil the training codes' consensus into ``clusterer_dir``/clusters.onnx (beside its
    model_card.json; the folder swapped in whole) and score it on the test images by ONNX
    Runtime alone: the ``head_inductive_*`` figures. Without training codes
    (``cluster.inductive_subsample`` 0) the folder holds only a card saying so."""
    from autoencoders import inference
    from autoencoders.evaluation.latent import label_scores

    started = time.perf_counter()
    card: dict[str, Any] = {"variant": variant, "file": None, "recipe": None}
    if arrays["train_codes"] is None:
        with fileio.atomic_directory(clusterer_dir) as staging:
            card["why_none"] = "cluster.inductive_subsample is 0: no training codes to fit on"
            fileio.write_json(staging / "model_card.json", card)
        return {}
    net = deploy.fit_clusterer(
        arrays["train_codes"],
        arrays["train_partition"],
        n_clusters=params.n_clusters,
        seed=seed,
        hidden_units=params.clusterer_hidden_units,
        epochs=params.clusterer_epochs,
    )
    x_test, y_test = data.load_split(processed_dir, "test")
    card |= {
        "recipe": "the cluster@V head's consensus on training codes, distilled: codes -> "
        f"standardised -> ReLU {params.clusterer_hidden_units} -> softmax",
        "training_codes": len(arrays["train_codes"]),
    }
    parity = deploy.write_clusterer(
        clusterer_dir,
        Path(export_dir) / "encoder.onnx",
        net,
        parity_images=np.ascontiguousarray(x_test[:PARITY_IMAGES], np.float32),
        tolerance=tolerance,
        card=card,
    )
    assignments, _ = inference.Clusterer(clusterer_dir).cluster(x_test)
    result: dict[str, Any] = {"head_inductive_parity": parity}
    if y_test is not None:
        result.update(label_scores(np.asarray(y_test), assignments, "head_inductive_"))
    sizes = np.bincount(assignments, minlength=params.n_clusters)
    result["head_inductive_cluster_sizes"] = sorted((int(size) for size in sizes), reverse=True)
    result["head_inductive_seconds"] = round(time.perf_counter() - started, 3)
    return result


def _print_result(
    variant: str, metrics: dict[str, Any], seconds: dict[str, float], metrics_path, plot_dir
) -> None:
    shown = ", ".join(
        f"{key} {metrics[key]:.4f}"
        + (
            f" (seeds {metrics[key + '_mean']:.4f} ± {metrics[key + '_std']:.4f})"
            if key + "_mean" in metrics
            else ""
        )
        for key in (*HEAD_KEYS, "head_silhouette")
        if metrics.get(key) is not None
    )
    print(
        f"[cluster] {variant}: {shown}; head {seconds['head_seconds']:.1f} s, inductive "
        f"{seconds.get('head_inductive_seconds', 0):.1f} s, stage "
        f"{seconds['stage_seconds']:.1f} s -> {metrics_path}, {plot_dir}/head.png"
    )


def _log(
    run_id: str | None, metrics_path: Path, plot_dir: Path, seconds: dict[str, float]
) -> None:
    if run_id is None:  # no models/<V>/run.json (the pixels): nothing to log into
        return
    import mlflow

    metrics = fileio.read_json(metrics_path)
    mlflow.log_metrics(
        {
            f"test_{key}": float(value)
            for key, value in metrics.items()
            if key.startswith("head_") and isinstance(value, (int, float))
        }
        | {f"cluster_{key}": float(value) for key, value in seconds.items()},
        run_id=run_id,
    )
    mlflow.log_artifacts(str(plot_dir), artifact_path="clustering/plots", run_id=run_id)
    tracking.log_file_as(
        metrics_path, "head_metrics.json", artifact_path="clustering", run_id=run_id
    )
