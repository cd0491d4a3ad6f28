"""The side-by-side summary: one row per variant, the quality bar, the markdown table.

``summary_row`` flattens a variant's metrics file, ``quality_check`` holds the rows against
the bar (``PCA_RATIO_BAR``, the seed articles' ``ANCHORS``, ``QUALITY_CLUSTER_ACCURACY``),
``build_summary`` and ``render_summary_markdown`` write ``reports/summary.{json,md}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autoencoders import fileio

# A variant's test MSE must be at most this share of PCA's at the same code size.
PCA_RATIO_BAR = 0.7


# (variant, metric, bar, source): the seed articles' published figures, to be beaten.
ANCHORS = (
    ("deep_dense", "mse", 0.037, "the seed article's deep autoencoder: 0.0371 after 30 epochs"),
    ("dense", "bce", 0.088, "the Keras blog's simple autoencoder: about 0.09-0.10"),
)


QUALITY_CLUSTER_ACCURACY = 0.85


SUMMARY_COLUMNS = (
    # (key in a summary row, markdown header, format)
    ("parameter_count", "params", "{:,.0f}"),
    ("latent_dim", "code", "{:.0f}"),
    ("mse", "test MSE", "{:.5f}"),
    ("pca_mse", "PCA MSE", "{:.5f}"),
    ("pca_ratio", "/ PCA", "{:.2f}"),
    ("beats_pca", "<= 0.7 PCA", "{}"),
    ("bce", "BCE", "{:.4f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("cluster_accuracy", "cluster acc", "{:.3f}"),
    ("nmi", "NMI", "{:.3f}"),
    ("ari", "ARI", "{:.3f}"),
    ("silhouette", "silhouette", "{:.3f}"),
    ("probe_accuracy", "probe acc", "{:.3f}"),
    ("epochs_run", "epochs", "{:.0f}"),
    ("parity_max_abs_diff", "ONNX max diff", "{:.1e}"),
)


def summary_row(
    name: str,
    metrics: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None = None,
    parity: Mapping[str, Any] | None = None,
    pca: Mapping[int, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """One variant's row of the summary; ``status`` is "missing" when it has no metrics.

    ``pca`` (from ``pixel_baselines``) supplies the PCA mse at the variant's code size computed
    live, which takes precedence over the figure in its metrics file.
    """
    row: dict[str, Any] = {"variant": name}
    if metrics is None:
        row["status"] = "missing"
        return row
    row["status"] = "ok"
    for key, _, _ in SUMMARY_COLUMNS:
        if key in metrics:
            row[key] = metrics[key]
    for key in ("psnr_noisy", "psnr_denoised", "psnr_gain", "kl"):
        if key in metrics:
            row[key] = metrics[key]
    training = training or {}
    for key in ("parameter_count", "epochs_run"):
        if row.get(key) is None and training.get(key) is not None:
            row[key] = training[key]
    tuning = training.get("tuning") or {}
    if tuning.get("value") is not None:
        # The search's best validation loss at its cheap fidelity, beside the final test figures.
        row["search_best_value"] = tuning["value"]
        row["search_params"] = dict(tuning.get("params") or {})
    size = row.get("latent_dim")
    if pca is not None and size is not None and int(size) in pca:
        row["pca_mse"] = pca[int(size)]["mse"]
    if row.get("mse") is not None and row.get("pca_mse") is not None:
        row["pca_ratio"] = round(float(row["mse"]) / float(row["pca_mse"]), 4)
        row["beats_pca"] = bool(row["mse"] <= PCA_RATIO_BAR * row["pca_mse"])
    if parity:
        # The models' own outputs; the scorer's summed score has its own scale and gate.
        differences = [
            float(value)
            for key, value in fileio.flatten(parity).items()
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and key.endswith("max_abs_diff")
            and key.split(".")[0] in ("encoder", "decoder", "clusters")
        ]
        if differences:
            row["parity_max_abs_diff"] = max(differences)
    return row


# `dvc metrics show`: one row per variant (reports/metrics/<V>.json), the figures users compare,
# in about 120 columns; every other figure stays in the per-stage files and reports/summary.json.
METRIC_ROW_KEYS = ("mse", "pca_ratio", "ssim", "probe_accuracy", "cluster_accuracy")


def metric_row(row: Mapping[str, Any], head: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A variant's DVC metrics row from its summary row and its clustering head's figures."""
    figures = {key: row[key] for key in METRIC_ROW_KEYS if row.get(key) is not None}
    if head and head.get("head_accuracy") is not None:
        figures["head_accuracy"] = head["head_accuracy"]
    return figures


def quality_check(
    rows: Sequence[Mapping[str, Any]], min_cluster_accuracy: float = QUALITY_CLUSTER_ACCURACY
) -> dict[str, Any]:
    """The quality bar: every variant's test MSE <= 0.7x PCA's at its code size, the seed anchors
    beaten (ANCHORS), and the best cluster accuracy >= ``min_cluster_accuracy``."""
    present = [row for row in rows if row.get("status") == "ok"]
    missing = [row["variant"] for row in rows if row.get("status") != "ok"]
    losing = [row["variant"] for row in present if row.get("beats_pca") is not True]
    anchors = []
    for variant, metric, bar, source in ANCHORS:
        row = next((row for row in present if row["variant"] == variant), None)
        value = None if row is None else row.get(metric)
        anchors.append(
            {
                "variant": variant,
                "metric": metric,
                "value": value,
                "bar": bar,
                "source": source,
                "met": value is not None and value <= bar,
            }
        )
    accuracies = [
        (row["cluster_accuracy"], row["variant"])
        for row in present
        if row.get("cluster_accuracy") is not None
    ]
    best_accuracy, best_variant = max(accuracies) if accuracies else (None, None)
    all_beat = bool(present) and not losing and not missing
    clusters = best_accuracy is not None and best_accuracy >= min_cluster_accuracy
    reconstruction = all_beat and all(anchor["met"] for anchor in anchors)
    advice = {row["variant"]: advise(row) for row in present if row["variant"] in losing}
    return {
        "pca_ratio_bar": PCA_RATIO_BAR,
        "all_beat_pca": all_beat,
        "not_beating_pca": losing,
        # what to try, per variant above the bar (absent when every variant beats it)
        **({"advice": advice} if advice else {}),
        "anchors": anchors,
        "reconstruction_passed": bool(reconstruction),
        "missing": missing,
        "best_cluster_accuracy": best_accuracy,
        "best_cluster_variant": best_variant,
        "cluster_accuracy_bar": min_cluster_accuracy,
        "cluster_bar_met": bool(clusters),
        "passed": bool(reconstruction and clusters),
    }


def _format(value: Any, pattern: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "nan"
    try:
        return pattern.format(value)
    except (TypeError, ValueError):
        return str(value)


def build_summary(
    rows: Sequence[Mapping[str, Any]],
    baselines: Mapping[str, Any],
    data_card: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON summary: ``{"data", "variants": {name: row}, "baselines", "quality"}``.

    PCA sizes become string keys (JSON objects), so ``dvc metrics show`` can flatten it.
    """
    card = dict(data_card or {})
    return {
        "data": {
            "source": card.get("source"),
            "input_shape": card.get("input_shape"),
            "checksum": card.get("checksum"),
            "n_test": (card.get("counts") or {}).get("test"),
        },
        "variants": {row["variant"]: dict(row) for row in rows},
        "baselines": {
            "kmeans_pixels": baselines.get("kmeans_pixels"),
            "pca": {str(size): dict(value) for size, value in baselines.get("pca", {}).items()},
        },
        "quality": quality_check(rows),
    }


def mismatch_line(mismatched: Mapping[str, str], checksum: str | None) -> str:
    """One line naming the variants whose figures come from other data than ``checksum``."""
    named = ", ".join(f"{name} (`{value[:12]}`)" for name, value in sorted(mismatched.items()))
    return (
        f"{len(mismatched)} variant(s) were trained on other data than this report's "
        f"(`{(checksum or '?')[:12]}`): {named}; their figures are not comparable with the "
        "rest: re-run their train, evaluate, export and cluster stages on this data."
    )


def render_summary_markdown(summary: Mapping[str, Any]) -> str:
    """The markdown report from ``build_summary``'s result."""
    rows = list(summary["variants"].values())
    lines = ["# Autoencoder variants side by side", ""]
    source = summary.get("data", {})
    if source:
        lines.append(
            f"Data: `{source.get('source')}`, test split of {source.get('n_test')} images "
            f"{source.get('input_shape')}, checksum `{(source.get('checksum') or '?')[:12]}`. "
            "Every figure is on the test split; PCA baselines are fitted on the training split."
        )
        lines.append("")
        if source.get("mismatched"):
            lines += [
                f"**Warning**: {mismatch_line(source['mismatched'], source['checksum'])}",
                "",
            ]
    lines += _variants_table(rows)
    lines += _extras_lines(rows)
    lines += _baselines_table(summary["baselines"])
    lines += _tuning_table(rows)
    lines += _quality_lines(summary["quality"])
    return "\n".join(lines)


def _variants_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    headers = ["variant"] + [header for _, header, _ in SUMMARY_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * len(SUMMARY_COLUMNS)) + "|")
    for row in rows:
        if row.get("status") != "ok":
            note = f"**missing**: run `dvc repro evaluate@{row['variant']}`"
            cells = [f"`{row['variant']}`", note] + [""] * (len(SUMMARY_COLUMNS) - 1)
        else:
            cells = [f"`{row['variant']}`"] + [
                _format(row.get(key), pattern) for key, _, pattern in SUMMARY_COLUMNS
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _extras_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The denoising and VAE figures, for the variants that have them."""
    extras = [row for row in rows if row.get("psnr_gain") is not None or row.get("kl") is not None]
    if not extras:
        return []
    lines = ["", "Variant extras:", ""]
    for row in extras:
        if row.get("psnr_gain") is not None:
            lines.append(
                f"- `{row['variant']}` denoising: PSNR of the noisy input "
                f"{_format(row.get('psnr_noisy'), '{:.2f}')} dB, of its output "
                f"{_format(row.get('psnr_denoised'), '{:.2f}')} dB "
                f"(gain {_format(row.get('psnr_gain'), '{:+.2f}')} dB)."
            )
        if row.get("kl") is not None:
            lines.append(
                f"- `{row['variant']}` VAE: mean KL(q(z|x) || N(0, I)) on test "
                f"{_format(row.get('kl'), '{:.3f}')} nats."
            )
    return lines


def _baselines_table(baselines: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Baselines (computed live in this run)", ""]
    kmeans = baselines.get("kmeans_pixels")
    lines.append("| baseline | code | test MSE | cluster acc | NMI | ARI |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    if kmeans:
        lines.append(
            "| k-means on raw pixels | – | – | "
            + " | ".join(
                _format(kmeans[key], "{:.3f}") for key in ("cluster_accuracy", "nmi", "ari")
            )
            + " |"
        )
    for size, result in sorted(baselines.get("pca", {}).items(), key=lambda item: int(item[0])):
        capped = (
            ""
            if int(result["n_components"]) == int(size)
            else (f" (capped at {result['n_components']} components)")
        )
        lines.append(
            f"| PCA, {size} components{capped} | {size} | {result['mse']:.5f} | – | – | – |"
        )
    return lines


def _tuning_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The search's best value next to the final run's figures, for tuned variants."""
    tuned = [row for row in rows if row.get("search_best_value") is not None]
    if not tuned:
        return []
    lines = [
        "",
        "## Tuning: the search's fidelity against the final run",
        "",
        "| variant | best val loss in the search | chosen | final test MSE | final test BCE |",
        "|---|---:|---|---:|---:|",
    ]
    for row in tuned:
        chosen = ", ".join(f"{k}={_format(v, '{:.3g}')}" for k, v in row["search_params"].items())
        lines.append(
            f"| `{row['variant']}` | {_format(row['search_best_value'], '{:.4f}')} | "
            f"{chosen or '–'} | {_format(row.get('mse'), '{:.5f}')} | "
            f"{_format(row.get('bce'), '{:.4f}')} |"
        )
    return lines


def advise(row: Mapping[str, Any]) -> str:
    """What to try where a variant's test MSE is above the bar of PCA's at its code size."""
    ratio, size = row.get("pca_ratio"), row.get("latent_dim")
    if ratio is None:
        return "no PCA figure at its code size: check its metrics file."
    if ratio > 1.0:
        where = f"{ratio:.2f}x PCA's MSE: PCA with the same {size} numbers reconstructs better"
    else:
        where = f"{ratio:.2f}x PCA's MSE: beats PCA, but not by the {PCA_RATIO_BAR}x bar"
    tries = [
        "a larger code (architecture.latent_dim)",
        "a search of the width and learning rate (make tune; the variant's search block)"
        if row.get("search_best_value") is None or ratio > 1.0
        else "more trials (make tune TRIALS=...)",
        "more steps (train.epochs; params.yaml derive.steps counts them as on MNIST)",
        "the loss (objective.loss: mse for photographs; derive.loss picks it from the data)",
    ]
    return f"{where}; try {', '.join(tries)}."


def _quality_lines(quality: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Quality bar", ""]
    verdict = "PASS" if quality["passed"] else "FAIL"
    bar = quality.get("pca_ratio_bar", PCA_RATIO_BAR)
    beat = (
        f"every variant's test MSE <= {bar} x PCA's at its code size"
        if quality["all_beat_pca"]
        else f"above {bar} x PCA: "
        + (", ".join(quality["not_beating_pca"]) or "none")
        + ("; missing: " + ", ".join(quality["missing"]) if quality["missing"] else "")
    )
    for anchor in quality.get("anchors", []):
        lines.append(
            f"- `{anchor['variant']}` test {anchor['metric'].upper()} "
            f"{_format(anchor['value'], '{:.4f}')} "
            f"{'<=' if anchor['met'] else '>'} {anchor['bar']} ({anchor['source']})"
        )
    reconstruction = "PASS" if quality.get("reconstruction_passed") else "FAIL"
    lines += ["", f"Reconstruction: **{reconstruction}**.", ""]
    best = quality["best_cluster_accuracy"]
    cluster = (
        f"best clustering accuracy {_format(best, '{:.3f}')} "
        f"(`{quality['best_cluster_variant']}`) "
        f"{'>=' if quality['cluster_bar_met'] else '<'} {quality['cluster_accuracy_bar']}"
    )
    lines.append(f"**{verdict}**: {beat}; {cluster}.")
    lines.append("")
    advice = quality.get("advice") or {}
    if advice:
        lines += ["Where a variant is above the bar (docs/photos.md):", ""]
        lines += [f"- `{variant}`: {text}" for variant, text in advice.items()]
        lines.append("")
    return lines
