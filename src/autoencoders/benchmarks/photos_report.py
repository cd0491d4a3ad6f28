"""The photographs benchmark's report: reports/photos_bench.{json,md} and photos_bench.png.

Each variant's test MSE beside PCA's at its code size (both fitted on the training photographs
only), SSIM, PSNR, the values derived from the data, and its training's wall time; the targets
checked row by row. ``summarise`` makes the JSON; ``render_markdown`` the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CONVOLUTIONAL = ("conv", "deep_conv")
# The plain variant each penalised one is compared with (same architecture).
PLAIN_OF = {"sparse": "dense", "contractive": "dense", "denoising": "conv"}
BEST_BAR, CONV_BAR, ANY_BAR, PENALTY_BAR = 1.0, 1.3, 1.5, 1.2


def summarise(result: Mapping[str, Any], machine: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON report: one row per variant (ratios to PCA at its code size) and the targets."""
    rows = {}
    for name, record in sorted(result["records"].items()):
        pca = result["pca"][record["code_size"]]
        rows[name] = {
            "architecture": record["config"]["architecture"]["name"],
            "objective": record["config"]["objective"]["name"],
            "code_size": record["code_size"],
            "test_mse": round(record["test"]["mse"], 6),
            "pca_test_mse": round(pca["test_mse"], 6),
            "ratio_to_pca": round(record["test"]["mse"] / pca["test_mse"], 3),
            "val_ratio_to_pca": round(record["val"]["mse"] / pca["val_mse"], 3),
            "test_ssim": round(record["test"]["ssim"], 4),
            "test_psnr": round(record["test"]["psnr"], 2),
            "epochs_run": record["epochs_run"],
            "best_epoch": record["best_epoch"],
            "train_seconds": record["train_seconds"],
            "wall_seconds": record["wall_seconds"],
            "parameter_count": record["parameter_count"],
            "derived": record["derived"],
            "hyperparameters": {
                key: record["hyperparameters"][key]
                for key in ("epochs", "batch_size", "learning_rate", "early_stopping_patience")
            },
        }
    return {
        "settings": result["settings"],
        "training_statistics": result["stats"],
        "splits": result["splits"],
        "pca": {str(size): values for size, values in result["pca"].items()},
        "variants": rows,
        "targets": targets(rows),
        "wall_seconds": result["wall_seconds"],
        "workers": result["workers"],
        "failures": result["failures"],
        "complete": result["complete"],
        "machine": dict(machine),
    }


def targets(rows: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The targets (best <= 1.0x PCA, conv <= 1.3x, any <= 1.5x, penalised <= 1.2x plain)."""
    from autoencoders.benchmarks.photos import REFERENCE_NAME

    variants = {name: row for name, row in rows.items() if name != REFERENCE_NAME}
    if not variants:
        return []
    best = min(variants, key=lambda name: variants[name]["ratio_to_pca"])
    checks = [("best variant", best, variants[best]["ratio_to_pca"], BEST_BAR)]
    for name, row in variants.items():
        bar = CONV_BAR if row["architecture"] in CONVOLUTIONAL else ANY_BAR
        checks.append((name, name, row["ratio_to_pca"], bar))
    for name, plain in PLAIN_OF.items():
        if name in variants and plain in variants:
            ratio = variants[name]["test_mse"] / variants[plain]["test_mse"]
            checks.append((f"{name} / {plain}", name, round(ratio, 3), PENALTY_BAR))
    return [
        {"target": label, "variant": variant, "measured": value, "bar": bar, "met": value <= bar}
        for label, variant, value, bar in checks
    ]


def render_markdown(report: Mapping[str, Any]) -> str:
    """reports/photos_bench.md."""
    settings, stats = report["settings"], report["training_statistics"]
    lines = [
        "# Photographs benchmark (make bench-photos)",
        "",
        *([] if report["complete"] else ["**Partial: written while the benchmark ran.**", ""]),
        f"Train: {', '.join(settings['train_photos'])} ({report['splits']['train']} patches, "
        f"{report['splits']['val']} more held out for validation); test: "
        f"{', '.join(settings['test_photos'])} ({report['splits']['test']} patches), "
        f"{settings['patch_size']}x{settings['patch_size']} RGB. No photograph is in both.",
        f"Training statistics the defaults were derived from: near-binary share "
        f"{stats['near_binary_share']:.3f}, pixel std {stats['pixel_std']:.4f}, per-pixel "
        f"variance {stats['mse_baseline']:.4f}. Epochs capped at {settings['max_epochs']}, "
        f"patience at {settings['max_patience']}.",
        f"Wall time {report['wall_seconds']:.0f} s with {report['workers']} workers on "
        f"{report['machine'].get('cores')} cores ({report['machine'].get('cpu')}); load average "
        f"before {report['machine'].get('load_average_before')}, after "
        f"{report['machine'].get('load_average_after')} (other processes shared the cores).",
        "",
        "| variant | code | test MSE | PCA MSE | ratio | val ratio | SSIM | PSNR | epochs "
        "| train s | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in sorted(report["variants"].items(), key=lambda kv: kv[1]["ratio_to_pca"]):
        lines.append(
            f"| {name} | {row['code_size']} | {row['test_mse']:.5f} | {row['pca_test_mse']:.5f} "
            f"| {row['ratio_to_pca']:.2f} | {row['val_ratio_to_pca']:.2f} | "
            f"{row['test_ssim']:.3f} | {row['test_psnr']:.2f} | {row['best_epoch']}/"
            f"{row['epochs_run']} | {row['train_seconds']:.0f} | {row['wall_seconds']:.0f} |"
        )
    for name, error in sorted(report["failures"].items()):
        lines.append(f"| {name} | failed: {error} | | | | | | | | | |")
    lines += ["", "## Targets", "", "| target | measured | bar | met |"]
    lines.append("| --- | ---: | ---: | --- |")
    for check in report["targets"]:
        lines.append(
            f"| {check['target']} | {check['measured']:.2f} | {check['bar']} | "
            f"{'yes' if check['met'] else 'no'} |"
        )
    lines += ["", "## Derived from the data (params value -> derived)", ""]
    for name, row in sorted(report["variants"].items()):
        changes = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in row["derived"].items())
        lines.append(f"- {name}: {changes or 'nothing'}")
    lines += ["", "Figure: reports/photos_bench.png (test patches, PCA at 16, each variant)."]
    return "\n".join(lines) + "\n"


def plot_examples(result: Mapping[str, Any], path: str | Path) -> None:
    """Test patches (top), PCA at 16 numbers, then each variant's reconstructions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("test patches", result["examples"]), ("PCA (16)", result["pca_examples"])]
    rows += [
        (f"{name} ({record['code_size']})", record["examples"])
        for name, record in sorted(result["records"].items())
    ]
    columns = len(result["examples"])
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(columns * 1.1, len(rows) * 1.15), squeeze=False
    )
    for row, (label, images) in enumerate(rows):
        for column in range(columns):
            axis = axes[row][column]
            axis.imshow(np.clip(images[column], 0.0, 1.0))
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
