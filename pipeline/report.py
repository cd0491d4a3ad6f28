"""DVC stage `report`: every variant side by side, with live baselines.

python pipeline/report.py       # what `dvc repro report` runs

Reads metrics/<V>.json for every variant in params.yaml (plus models/<V>/training.json and
config.json where the metrics file lacks size or training time, and metrics/export/<V>.json
for ONNX parity when present), computes the baselines in this run (k-means on the raw pixels
of the test split; PCA fitted on the training split at each variant's code size), and writes
reports/summary.md, reports/summary.json, reports/comparison.png and reports/metrics/<V>.json
(the DVC metrics: one compact row per variant for `dvc metrics show/diff`). A variant without
metrics is reported as missing. The clustering head's figures (metrics/cluster/<V>.json and
metrics/cluster/pixels.json, from cluster@V and cluster_pixels) get their own section.
reports/timings.json (git-ignored) gathers every stage's wall seconds from timings/
(autoencoders.timing) and their sum, pipeline_seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from autoencoders import clustering_report, config, data, errors, evaluation, fileio, plots, timing

PROCESSED_DIR = "data/processed"
REPORT_DIR = Path("reports")


def _read_optional(path: Path) -> dict[str, Any] | None:
    return fileio.read_json(path) if path.exists() else None


def collect_variant(name: str) -> tuple[dict[str, Any] | None, dict[str, Any], Any]:
    """(metrics or None, training facts, export parity or None) of one variant from disk."""
    metrics = _read_optional(Path("metrics") / f"{name}.json")
    model_dir = Path("models") / name
    training = dict(_read_optional(model_dir / "training.json") or {})
    saved = _read_optional(model_dir / "config.json") or {}
    for key in ("parameter_count", "latent_dim"):
        if training.get(key) is None and saved.get(key) is not None:
            training[key] = saved[key]
    parity = _read_optional(Path("metrics") / "export" / f"{name}.json")
    return metrics, training, parity


def _clustering_head(
    names: list[str], collected: dict[str, Any], baselines: dict[str, Any], summary: dict
) -> str:
    """Add the clustering head's rows to ``summary`` and return its markdown section."""

    heads = {name: _read_optional(Path("metrics") / "cluster" / f"{name}.json") for name in names}
    pixels = _read_optional(Path("metrics") / "cluster" / "pixels.json")
    rows = clustering_report.head_rows(
        names,
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    names = list(config.section(params, "variants"))
    settings = config.from_mapping(
        evaluation.EvaluateParams, config.section(params, "evaluate"), "evaluate"
    )
    seed = config.value(params, "seed", int)
    started = time.monotonic()

    collected = {name: collect_variant(name) for name in names}
    code_sizes = set()
    for metrics, training, _ in collected.values():
        size = (metrics or {}).get("latent_dim") or training.get("latent_dim")
        if size:
            code_sizes.add(int(size))
    x_train, _ = data.load_split(PROCESSED_DIR, "train")
    x_test, y_test = data.load_split(PROCESSED_DIR, "test")
    print(
        f"[report] baselines on {len(x_test)} test images: k-means on pixels, PCA at code sizes "
        f"{sorted(code_sizes)}"
    )
    baselines = evaluation.pixel_baselines(
        x_train=x_train,
        x_test=x_test,
        y_test=y_test,
        code_sizes=code_sizes or [2],
        seed=seed,
        kmeans_n_init=settings.kmeans_n_init,
    )
    rows = [
        evaluation.summary_row(name, metrics, training, parity, pca=baselines["pca"])
        for name, (metrics, training, parity) in collected.items()
    ]
    summary = evaluation.build_summary(rows, baselines, data.load_card(PROCESSED_DIR))
    head_section = _clustering_head(names, collected, baselines, summary)

    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_path(REPORT_DIR / "summary.md") as temporary:
        temporary.write_text(evaluation.render_summary_markdown(summary) + "\n" + head_section)
    fileio.write_json(REPORT_DIR / "summary.json", summary)
    heads = summary["clustering"]["variants"]
    with fileio.atomic_directory(REPORT_DIR / "metrics") as staging:
        for row in rows:
            if row.get("status") == "ok":
                fileio.write_json(
                    staging / f"{row['variant']}.json",
                    evaluation.metric_row(row, heads.get(row["variant"])),
                )
    kmeans = baselines.get("kmeans_pixels") or {}
    plots.plot_comparison(
        rows,
        REPORT_DIR / "comparison.png",
        kmeans_pixels_accuracy=kmeans.get("cluster_accuracy"),
        cluster_bar=summary["quality"]["cluster_accuracy_bar"],
    )

    stages = ["fetch", "preprocess", "cluster_pixels"] + [
        f"{kind}@{name}"
        for name in names
        for kind in ("tune", "train", "evaluate", "export", "cluster")
    ]
    timings = timing.collect(stages)
    timings["stages"]["report"] = round(time.time() - timing.process_started_at(), 2)
    timings["pipeline_seconds"] = round(sum(timings["stages"].values()), 1)
    fileio.write_json(REPORT_DIR / "timings.json", timings)

    quality = summary["quality"]
    missing = quality["missing"]
    print(
        f"[report] {len(rows) - len(missing)} of {len(rows)} variants"
        + (f" (missing: {', '.join(missing)})" if missing else "")
        + f"; quality bar {'PASS' if quality['passed'] else 'FAIL'}"
        f" (not beating PCA: {', '.join(quality['not_beating_pca']) or 'none'}; "
        f"best cluster acc {quality['best_cluster_accuracy']})"
    )
    print(
        f"[report] wrote {REPORT_DIR}/summary.md, summary.json, comparison.png in "
        f"{time.monotonic() - started:.1f} s; pipeline_seconds {timings['pipeline_seconds']:.0f}"
        f" over {len(timings['stages'])} stage(s) in {REPORT_DIR}/timings.json"
    )


if __name__ == "__main__":
    errors.cli(main)
