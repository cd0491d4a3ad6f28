"""The report stage's work: every variant side by side, with live baselines.

``write_report(["dense", "conv"], seed=42, kmeans_n_init=10, ...)`` reads metrics/<V>.json for each
variant (plus models/<V>/training.json and config.json where the metrics file lacks size or
training time, and metrics/export/<V>.json for ONNX parity when present), computes the baselines
in this run (k-means on the raw pixels of the test split; PCA fitted on the training split at
each variant's code size), and writes reports/summary.md, summary.json, comparison.png,
reports/metrics/<V>.json (one compact row per variant for ``dvc metrics show/diff``) and
reports/timings.json (every stage's wall seconds from timings/, their sum and the run's wall
seconds). The clustering head's figures (metrics/cluster/<V>.json, metrics/cluster/pixels.json)
get their own section.
``pipeline/report.py`` parses the arguments and passes every path (``autoencoders.paths``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from autoencoders import data, fileio, paths, plots, timing
from autoencoders.clustering import report as clustering_report
from autoencoders.evaluation.baselines import pixel_baselines
from autoencoders.reporting import timings as run_timings
from autoencoders.reporting.summary import (
    build_summary,
    metric_row,
    mismatch_line,
    render_summary_markdown,
    summary_row,
)

# Every stage whose wall seconds reports/timings.json gathers, besides the report itself.
VARIANT_STAGE_KINDS = ("tune", "train", "evaluate", "export", "anomaly", "cluster")


def _read_optional(path: Path) -> dict[str, Any] | None:
    return fileio.read_json(path) if path.exists() else None


def collect_variant(
    files: paths.VariantOutputs,
) -> tuple[dict[str, Any] | None, dict[str, Any], Any]:
    """(metrics or None, training facts, export parity or None) of one variant from disk."""
    metrics = _read_optional(files.metrics)
    model_dir = files.model
    training = dict(_read_optional(model_dir / "training.json") or {})
    saved = _read_optional(model_dir / "config.json") or {}
    for key in ("parameter_count", "latent_dim"):
        if training.get(key) is None and saved.get(key) is not None:
            training[key] = saved[key]
    parity = _read_optional(files.export_metrics)
    return metrics, training, parity


def write_report(
    variants: dict[str, paths.VariantOutputs],
    *,
    seed: int,
    kmeans_n_init: int,
    processed_dir: Path,
    pixels_metrics: Path,
    report_dir: Path,
    timings_dir: Path,
) -> dict[str, Any]:
    """Write every report file for ``variants`` (name -> its stages' files) into
    ``report_dir``; return the summary."""
    started = time.monotonic()
    names = list(variants)
    report_dir = Path(report_dir)
    collected = {name: collect_variant(files) for name, files in variants.items()}
    code_sizes = _code_sizes(collected)
    train = data.open_split(processed_dir, "train")  # shards: incremental PCA, in batches
    x_train = train.array if train.in_memory else train
    x_test, y_test = data.load_split(processed_dir, "test")
    print(
        f"[report] baselines on {len(x_test)} test images: k-means on pixels, PCA at code sizes "
        f"{sorted(code_sizes)}"
    )
    baselines = pixel_baselines(
        x_train=x_train,
        x_test=x_test,
        y_test=y_test,
        code_sizes=code_sizes or [2],
        seed=seed,
        kmeans_n_init=kmeans_n_init,
    )
    rows = [
        summary_row(name, metrics, training, parity, pca=baselines["pca"])
        for name, (metrics, training, parity) in collected.items()
    ]
    card = data.load_card(processed_dir)
    summary = build_summary(rows, baselines, card)
    mismatched = data_mismatches(collected, card["checksum"])
    if mismatched:  # figures of other data beside this data's: say so, loudly
        summary["data"]["mismatched"] = mismatched
        print(f"[report] WARNING: {mismatch_line(mismatched, card['checksum'])}")
    heads = {name: _read_optional(files.cluster_metrics) for name, files in variants.items()}
    pixels = _read_optional(pixels_metrics)
    head_section = _clustering_head(heads, pixels, collected, baselines, summary)
    _write_summary(summary, rows, baselines, head_section, report_dir)
    timings = _write_timings(names, timings_dir, report_dir)
    _print_verdict(summary["quality"], len(rows))
    print(
        f"[report] wrote {report_dir}/summary.md, summary.json, comparison.png in "
        f"{time.monotonic() - started:.1f} s; wall {timings['wall_seconds']:.0f} s, sum of "
        f"{len(timings['stages'])} stage(s) {timings['pipeline_seconds']:.0f} s in "
        f"{report_dir}/timings.json"
    )
    return summary


def data_mismatches(collected: dict[str, Any], checksum: str) -> dict[str, str]:
    """variant -> the data checksum its model was trained on (training.json, which train@V
    writes beside the MLflow run's ``data_checksum`` tag), for those not trained on
    ``checksum``: their metrics (evaluate, export, cluster all follow from that model) were
    computed on other data. Variants without a training record are not judged."""
    return {
        name: str(training["data_checksum"])
        for name, (_, training, _) in collected.items()
        if training.get("data_checksum") not in (None, checksum)
    }


def _code_sizes(collected: dict[str, Any]) -> set[int]:
    """Every variant's code size, from its metrics or its training facts."""
    code_sizes = set()
    for metrics, training, _ in collected.values():
        size = (metrics or {}).get("latent_dim") or training.get("latent_dim")
        if size:
            code_sizes.add(int(size))
    return code_sizes


def _clustering_head(
    heads: dict[str, Any],
    pixels: dict[str, Any] | None,
    collected: dict[str, Any],
    baselines: dict[str, Any],
    summary: dict,
) -> str:
    """Add the clustering head's rows (``heads``: name -> its metrics or None; ``pixels``: the
    raw pixels' head) to ``summary`` and return its markdown section."""
    rows = clustering_report.head_rows(
        list(heads),
        heads,
        {name: value[0] for name, value in collected.items()},
        {name: value[2] for name, value in collected.items()},
    )
    quality = clustering_report.head_quality(rows, pixels)
    summary["clustering"] = {
        "variants": {row["variant"]: row for row in rows},
        "pixels": {key: value for key, value in (pixels or {}).items() if "sizes" not in key},
        "published": dict(clustering_report.N2D_PUBLISHED),
        "quality": quality,
    }
    return clustering_report.render_head_section(
        rows, pixels, baselines.get("kmeans_pixels"), quality
    )


def _write_summary(
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    baselines: dict[str, Any],
    head: str,
    report_dir: Path,
) -> None:
    """summary.md, summary.json, metrics/<V>.json and comparison.png under ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_path(report_dir / "summary.md") as temporary:
        temporary.write_text(render_summary_markdown(summary) + "\n" + head)
    fileio.write_json(report_dir / "summary.json", summary)
    heads = summary["clustering"]["variants"]
    with fileio.atomic_directory(report_dir / "metrics") as staging:
        for row in rows:
            if row.get("status") == "ok":
                fileio.write_json(
                    staging / f"{row['variant']}.json",
                    metric_row(row, heads.get(row["variant"])),
                )
    kmeans = baselines.get("kmeans_pixels") or {}
    plots.plot_comparison(
        rows,
        report_dir / "comparison.png",
        kmeans_pixels_accuracy=kmeans.get("cluster_accuracy"),
        cluster_bar=summary["quality"]["cluster_accuracy_bar"],
    )


def _write_timings(names: list[str], timings_dir: Path, report_dir: Path) -> dict[str, Any]:
    """timings.json in ``report_dir``: every stage's wall seconds from ``timings_dir`` (this
    one so far), their sum and the run's wall seconds so far (``timings.wall_seconds``)."""
    stages = ["fetch", "preprocess", "cluster_pixels"] + [
        f"{kind}@{name}" for name in names for kind in VARIANT_STAGE_KINDS
    ]
    timings = timing.collect(stages, timings_dir)
    timings["stages"]["report"] = round(time.time() - timing.process_started_at(), 2)
    timings["pipeline_seconds"] = round(sum(timings["stages"].values()), 1)
    wall = run_timings.wall_seconds(stages, timings_dir)
    timings["wall_seconds"] = max(wall, timings["stages"]["report"])
    fileio.write_json(report_dir / "timings.json", timings)
    return timings


def _print_verdict(quality: dict[str, Any], n_rows: int) -> None:
    missing = quality["missing"]
    print(
        f"[report] {n_rows - len(missing)} of {n_rows} variants"
        + (f" (missing: {', '.join(missing)})" if missing else "")
        + f"; quality bar {'PASS' if quality['passed'] else 'FAIL'}"
        f" (not beating PCA: {', '.join(quality['not_beating_pca']) or 'none'}; "
        f"best cluster acc {quality['best_cluster_accuracy']})"
    )
