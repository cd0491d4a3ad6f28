"""Where the pipeline's files live, relative to the repository root: dvc.yaml's layout, once.

Every stage script in ``pipeline/`` passes the paths below to its library function by keyword,
so a script shows the inputs and outputs its ``dvc.yaml`` stage declares; no other module of
the library spells a repository-relative path (``tests/test_paths.py``). A stage's files:

    fetch           RAW                                  (from params.yaml's data source)
    preprocess      RAW -> PROCESSED
    tune@V          PROCESSED -> best(V)                 (studies in STUDIES)
    train@V         PROCESSED, best(V) -> model(V)
    evaluate@V      model(V) -> metrics(V), plots(V)
    export@V        model(V) -> export(V), export_metrics(V)
    anomaly@V       model(V), export(V) -> scorer(V), anomaly_metrics(V)
    cluster@V       export(V) -> cluster_metrics(V), cluster_plots(V), clusterer(V)
                    (PIXELS: raw pixels, no clusterer)
    report          every metrics file -> REPORTS
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

PARAMS = Path("params.yaml")
DVC_YAML = Path("dvc.yaml")
RAW = Path("data/raw")
PROCESSED = Path("data/processed")
STUDIES = "tuning/optuna.db"  # tune.storage's default: a path (SQLite) or an RDB URL
TUNING = Path("tuning")
MODELS = Path("models")
EXPORTS = Path("exports")
SCORERS = Path("scorers")
CLUSTERERS = Path("clusterers")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")
TIMINGS = Path("timings")  # each stage's wall seconds (git-ignored: they differ per machine)
MLFLOW_DB = Path("mlflow.db")  # the default tracking store, artifacts in MLARTIFACTS beside it
MLARTIFACTS = "mlartifacts"
SAMPLE_IMAGES = Path("data/sample-images")  # make sample-images
BENCH_IMAGES = Path("data/bench-images")  # make bench-data
TRITON = EXPORTS / "triton"  # make triton
PIXELS = "pixels"  # cluster_pixels: the head on raw pixels, named like a variant


def best(variant: str) -> Path:
    """A variant's best search parameters (tune@V's output, train@V's input)."""
    return TUNING / variant / "best.json"


def model(variant: str) -> Path:
    return MODELS / variant


def metrics(variant: str) -> Path:
    return METRICS / f"{variant}.json"


def plots(variant: str) -> Path:
    return PLOTS / variant


def export(variant: str) -> Path:
    """A variant's ONNX encoder, decoder (and IDEC's clusterer) with their model card."""
    return EXPORTS / variant


def export_metrics(variant: str) -> Path:
    return METRICS / "export" / f"{variant}.json"


def scorer(variant: str) -> Path:
    """A variant's anomaly scorer (scorer.onnx, score_model.json, its model card)."""
    return SCORERS / variant


def anomaly_metrics(variant: str) -> Path:
    return METRICS / "anomaly" / f"{variant}.json"


def cluster_metrics(variant: str) -> Path:
    """The clustering head's metrics of a variant's codes (or of ``PIXELS``)."""
    return METRICS / "cluster" / f"{variant}.json"


def cluster_plots(variant: str) -> Path:
    return PLOTS / "cluster" / variant


def clusterer(variant: str) -> Path:
    """A variant's deployable clusterer (clusters.onnx: images -> cluster posteriors, its card);
    cluster@V's, beside export@V's folder, which DVC gives to export@V whole."""
    return CLUSTERERS / variant


def report_metrics() -> Path:
    """The report's one row per variant (`dvc metrics show`)."""
    return REPORTS / "metrics"


@dataclasses.dataclass(frozen=True)
class VariantOutputs:
    """The files of one variant's stages that the report reads."""

    metrics: Path
    model: Path
    export_metrics: Path
    anomaly_metrics: Path
    cluster_metrics: Path


def outputs(variant: str) -> VariantOutputs:
    return VariantOutputs(
        metrics=metrics(variant),
        model=model(variant),
        export_metrics=export_metrics(variant),
        anomaly_metrics=anomaly_metrics(variant),
        cluster_metrics=cluster_metrics(variant),
    )
