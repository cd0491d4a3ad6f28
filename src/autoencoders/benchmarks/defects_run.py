"""Running the surface-defect benchmark and writing its report (``make bench-defects``).

Each surface is one task (``defects.run_surface``) in ``defects_bench.workers`` spawned
processes (0: one per usable core), one thread each. ``summarise`` gives
``reports/defects_bench.json`` (every record, the means over surfaces, the targets), ``render``
its markdown and ``plot`` ``reports/defects_bench.png`` (test images, their ground truth and
ONNX Runtime's ``local_map`` with the pixel threshold's outline).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import threads
from autoencoders.benchmarks import defects, defects_data

TARGETS = {"image_auroc": 0.95, "pixel_auroc": 0.95, "surface_floor": 0.90, "minutes": 30.0}


def _start_worker() -> None:
    threads.one_thread_everywhere()


def run_benchmark(
    settings: defects.DefectsConfig,
    export: Mapping[str, Any],
    baseline: Mapping[str, Any],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every surface, side by side: {"records", "figures", "wall_seconds", "workers"}."""
    started = time.perf_counter()
    workers = min(settings.workers or threads.usable_cores(), len(settings.surfaces))
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    records, figures = [], {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker) as pool:
        futures = [
            pool.submit(defects.run_surface, settings, name, dict(export), dict(baseline))
            for name in settings.surfaces
        ]
        for future in futures:
            record = future.result()
            figures[record["surface"]] = record.pop("figure")
            records.append(record)
            model = record["model"]["all"]
            log(
                f"[defects] {record['surface']}: image AUROC {model['image_auroc']:.4f}, pixel "
                f"AUROC {model['pixel_auroc']:.4f}, AUPRO {model['aupro']:.4f}; baseline "
                f"{record['baseline']['default']['all']['image_auroc']:.4f} "
                f"({record['seconds']})"
            )
    return {
        "records": records,
        "figures": figures,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "workers": workers,
    }


def summarise(
    result: Mapping[str, Any], settings: defects.DefectsConfig, machine: Mapping[str, Any]
) -> dict[str, Any]:
    """The report's JSON: settings, records, means and minima over surfaces, targets."""
    records = result["records"]
    keys = ("image_auroc", "pixel_auroc", "aupro")
    mean = {key: float(np.mean([r["model"]["all"][key] for r in records])) for key in keys}
    low = {key: float(np.min([r["model"]["all"][key] for r in records])) for key in keys}
    default = [r["baseline"]["default"][k]["image_auroc"] for r in records for k in r["model"]]
    minutes = result["wall_seconds"] / 60.0
    return {
        "settings": _json_safe(settings.__dict__),
        "kinds": {
            "train": defects_data.TRAIN_KIND,
            "validation": list(defects_data.VALIDATION_KINDS),
            "test": list(defects_data.TEST_KINDS),
        },
        "records": records,
        "mean": mean,
        "min": low,
        "baseline_default_min_image_auroc": float(np.min(default)),
        "onnx_reproduces_to_3_digits": all(
            r["keras_reference_max_difference"] < 5e-4 for r in records
        ),
        "targets": TARGETS,
        "met": {
            "image_auroc": mean["image_auroc"] >= TARGETS["image_auroc"]
            and low["image_auroc"] >= TARGETS["surface_floor"],
            "pixel_auroc": mean["pixel_auroc"] >= TARGETS["pixel_auroc"]
            and low["pixel_auroc"] >= TARGETS["surface_floor"],
            "default_not_below_clean": float(np.min(default)) >= 0.5,
            "minutes": minutes <= TARGETS["minutes"],
        },
        "wall_minutes": round(minutes, 2),
        "workers": result["workers"],
        "machine": dict(machine),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def render(report: Mapping[str, Any]) -> str:
    """The markdown of ``reports/defects_bench.md``."""
    lines = [
        "# Surface-defect benchmark",
        "",
        "Written by `make bench-defects` (`python -m autoencoders.benchmarks defects`; "
        "docs/defects.md). Test defects (" + ", ".join(report["kinds"]["test"]) + ") are of "
        "kinds never used in training ("
        + report["kinds"]["train"]
        + ") or selection ("
        + ", ".join(report["kinds"]["validation"])
        + "). Every figure is computed from ONNX "
        "Runtime's outputs of scorer.onnx.",
        "",
        "| surface | kind | image AUROC | pixel AUROC | AUPRO (FPR 0.3) | baseline: shipped "
        "default score | baseline: reconstruction sum |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for record in report["records"]:
        for kind, figures in record["model"].items():
            base = record["baseline"]
            lines.append(
                f"| {record['surface']} | {kind} | {figures['image_auroc']:.4f} | "
                f"{figures['pixel_auroc']:.4f} | {figures['aupro']:.4f} | "
                f"{base['default'][kind]['image_auroc']:.4f} | "
                f"{base['reconstruction'][kind]['image_auroc']:.4f} |"
            )
    mean, low, met = report["mean"], report["min"], report["met"]
    lines += [
        "",
        f"Mean over surfaces (all kinds pooled): image AUROC {mean['image_auroc']:.4f}, pixel "
        f"AUROC {mean['pixel_auroc']:.4f}, AUPRO {mean['aupro']:.4f}; lowest surface: "
        f"{low['image_auroc']:.4f}, {low['pixel_auroc']:.4f}, {low['aupro']:.4f}.",
        f"Targets (image and pixel AUROC >= 0.95 mean, no surface below 0.90): image "
        f"{'met' if met['image_auroc'] else 'missed'}, pixel "
        f"{'met' if met['pixel_auroc'] else 'missed'}.",
        f"Shipped default score of the baseline variant, lowest image AUROC over surfaces and "
        f"kinds: {report['baseline_default_min_image_auroc']:.4f} "
        f"({'not below' if met['default_not_below_clean'] else 'below'} clean images).",
        f"ONNX Runtime reproduces Keras + numpy to 3 digits: "
        f"{report['onnx_reproduces_to_3_digits']}.",
        "",
        "## Time and machine",
        "",
        f"Wall time {report['wall_minutes']:.2f} min with {report['workers']} worker(s) "
        f"(target {TARGETS['minutes']:.0f} min); per surface (s):",
        "",
    ]
    for record in report["records"]:
        lines.append(
            f"- {record['surface']}: {record['seconds']}, local_sigma "
            f"{record['local_sigma']['sigma']} (validation {record['local_sigma']['by_sigma']})"
        )
    lines += ["", f"Machine: {report['machine']}", "", "Figure: reports/defects_bench.png", ""]
    return "\n".join(lines)


def plot(figures: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Per surface a row pair: test images with the ground truth outlined, and their
    ``local_map`` over the image with the pixel threshold outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    surfaces = list(figures)
    columns = max(len(figures[s]["kinds"]) for s in surfaces)
    fig, axes = plt.subplots(
        2 * len(surfaces), columns, figsize=(1.6 * columns, 3.3 * len(surfaces)), squeeze=False
    )
    for row, name in enumerate(surfaces):
        part = figures[name]
        for column, kind in enumerate(part["kinds"]):
            top, bottom = axes[2 * row, column], axes[2 * row + 1, column]
            top.imshow(part["images"][column], cmap="gray", vmin=0, vmax=1)
            if part["masks"][column].any():
                top.contour(part["masks"][column], levels=[0.5], colors="lime", linewidths=0.6)
            top.set_title(f"{name}: {kind}", fontsize=7)
            bottom.imshow(part["images"][column], cmap="gray", vmin=0, vmax=1)
            bottom.imshow(part["maps"][column], cmap="inferno", alpha=0.6,
                          vmin=0, vmax=2 * part["pixel_threshold"])  # fmt: skip
            if (part["maps"][column] > part["pixel_threshold"]).any():
                bottom.contour(part["maps"][column] > part["pixel_threshold"], levels=[0.5],
                               colors="cyan", linewidths=0.6)  # fmt: skip
        for axis in axes[2 * row : 2 * row + 2].ravel():
            axis.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["TARGETS", "plot", "render", "run_benchmark", "summarise"]
