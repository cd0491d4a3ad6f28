"""The report's section on the clustering head: one row per variant, the targets, markdown.

``head_rows`` gathers each variant's ``metrics/cluster/<variant>.json`` figures,
``head_quality`` checks them against ``HEAD_TARGETS``, and ``render_head_section`` writes the
markdown table (with raw pixels and N2D's published figures as anchors) that
``pipeline/report.py`` puts into ``reports/summary.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Published anchors (test split of MNIST, 10,000 images) shown beside the measured rows.
N2D_PUBLISHED = {"n2d_test": 0.948, "n2d_all_70k": 0.979}


HEAD_TARGETS = {
    "best_head_accuracy": 0.97,
    "best_head_nmi": 0.92,
    "best_head_inductive_accuracy": 0.95,
    "every_code_ge_10_head_accuracy": 0.90,
    "idec_onnx_cluster_accuracy": 0.90,
}


def head_rows(
    names: Sequence[str],
    heads: Mapping[str, Mapping[str, Any] | None],
    evaluations: Mapping[str, Mapping[str, Any] | None],
    exports: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per variant: plain k-means beside the head's figures (None where missing)."""
    rows = []
    for name in names:
        head = dict(heads.get(name) or {})
        evaluation = dict(evaluations.get(name) or {})
        onnx = dict(((exports or {}).get(name) or {}).get("clusters_onnx") or {})
        rows.append(
            {
                "variant": name,
                "status": "ok" if head else "missing",
                "code_size": head.get("code_size") or evaluation.get("latent_dim"),
                "kmeans_accuracy": evaluation.get("kmeans_cluster_accuracy")
                or evaluation.get("cluster_accuracy"),
                "own_accuracy": onnx.get("cluster_accuracy")
                if onnx
                else (
                    evaluation.get("cluster_accuracy")
                    if evaluation.get("cluster_source")
                    else None
                ),
                **{
                    key: head.get(key)
                    for key in (
                        "head_accuracy",
                        "head_accuracy_mean",
                        "head_accuracy_std",
                        "head_nmi",
                        "head_ari",
                        "head_inductive_accuracy",
                        "head_silhouette",
                        "head_smallest_cluster_share",
                        "labelled",
                    )
                },
            }
        )
    return rows


def head_quality(
    rows: Sequence[Mapping[str, Any]], pixels: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The issue's targets, measured: best head accuracy/NMI/inductive, every code >= 10, IDEC."""
    present = [row for row in rows if row.get("head_accuracy") is not None]
    result: dict[str, Any] = {"targets": dict(HEAD_TARGETS)}
    if present:
        best = max(present, key=lambda row: row["head_accuracy"])
        result["best_head_variant"] = best["variant"]
        result["best_head_accuracy"] = best["head_accuracy"]
        result["best_head_nmi"] = best["head_nmi"]
    inductive = [row for row in rows if row.get("head_inductive_accuracy") is not None]
    if inductive:
        top = max(inductive, key=lambda row: row["head_inductive_accuracy"])
        result["best_head_inductive_variant"] = top["variant"]
        result["best_head_inductive_accuracy"] = top["head_inductive_accuracy"]
    wide = [row for row in present if (row.get("code_size") or 0) >= 10]
    result["below_0.90_with_code_ge_10"] = [
        row["variant"]
        for row in wide
        if row["head_accuracy"] < HEAD_TARGETS["every_code_ge_10_head_accuracy"]
    ]
    # Over seeds (cluster.seeds > 1): the same bar for the mean minus one standard deviation.
    spread = [row for row in wide if row.get("head_accuracy_mean") is not None]
    if spread:
        result["below_0.90_mean_minus_std_with_code_ge_10"] = [
            row["variant"]
            for row in spread
            if row["head_accuracy_mean"] - row["head_accuracy_std"]
            < HEAD_TARGETS["every_code_ge_10_head_accuracy"]
        ]
        top = max(spread, key=lambda row: row["head_accuracy_mean"])
        result["best_head_mean_variant"] = top["variant"]
        result["best_head_accuracy_mean"] = top["head_accuracy_mean"]
        result["best_head_accuracy_std"] = top["head_accuracy_std"]
    own = [row for row in rows if row.get("own_accuracy") is not None]
    if own:
        result["own_cluster_accuracy"] = {row["variant"]: row["own_accuracy"] for row in own}
    if pixels and pixels.get("head_accuracy") is not None:
        result["pixels_head_accuracy"] = pixels["head_accuracy"]
    return result


def _cell(value: Any, pattern: str = "{:.3f}") -> str:
    if value is None:
        return "–"
    return pattern.format(value) if isinstance(value, (int, float)) else str(value)


def render_head_section(
    rows: Sequence[Mapping[str, Any]],
    pixels: Mapping[str, Any] | None,
    kmeans_pixels: Mapping[str, Any] | None,
    quality: Mapping[str, Any],
) -> str:
    """The report's markdown section on the clustering head (and IDEC's own assignments)."""
    labelled = any(row.get("labelled") for row in rows) or bool(pixels and pixels.get("labelled"))
    lines = ["## Clustering head (N2D: UMAP + Gaussian mixture on the codes)", ""]
    recipe = next((row for row in rows if row.get("head_accuracy") is not None), None)
    lines.append(
        "Fitted on the test split's codes (N2D's protocol), the consensus of its seeds' "
        "partitions; inductive: the consensus on a seeded subsample of training codes, "
        "distilled into clusterers/<V>/clusters.onnx and applied by ONNX Runtime to the test "
        "images it never saw. Labels only score; "
        "`own` is a model's own assignments (IDEC: argmax Q from clusters.onnx, ONNX Runtime)."
        + ("" if recipe else " No head metrics yet: run `dvc repro`.")
    )
    lines.append("")
    if labelled:
        lines += _labelled_table(rows, pixels or {}, kmeans_pixels)
        lines += ["", "Targets: " + _targets_line(quality)]
    else:
        lines += _label_free_table(rows, pixels)
    best = quality.get("best_head_variant")
    if best:
        lines += [
            "",
            f"The best head's 2-d view: `plots/cluster/{best}/head.png` (coloured by cluster "
            "and by true class); every variant has one.",
        ]
    lines.append("")
    return "\n".join(lines)


def _labelled_table(
    rows: Sequence[Mapping[str, Any]],
    pixels: Mapping[str, Any],
    kmeans_pixels: Mapping[str, Any] | None,
) -> list[str]:
    cell = _cell
    lines = [
        "| variant | code | k-means acc | head acc | over seeds | head NMI | head ARI | "
        "inductive acc | own acc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        seeds = (
            f"{row['head_accuracy_mean']:.3f} ± {row['head_accuracy_std']:.3f}"
            if row.get("head_accuracy_mean") is not None
            else "–"
        )
        lines.append(
            f"| `{row['variant']}` | {cell(row.get('code_size'), '{:.0f}')} | "
            f"{cell(row.get('kmeans_accuracy'))} | {cell(row.get('head_accuracy'))} | "
            f"{seeds} | {cell(row.get('head_nmi'))} | {cell(row.get('head_ari'))} | "
            f"{cell(row.get('head_inductive_accuracy'))} | {cell(row.get('own_accuracy'))} |"
        )
    pixel_kmeans = (kmeans_pixels or {}).get("cluster_accuracy")
    pixel_seeds = (
        f"{pixels['head_accuracy_mean']:.3f} ± {pixels['head_accuracy_std']:.3f}"
        if pixels.get("head_accuracy_mean") is not None
        else "–"
    )
    lines.append(
        f"| raw pixels (anchor) | {cell(pixels.get('code_size'), '{:.0f}')} | "
        f"{cell(pixel_kmeans)} | {cell(pixels.get('head_accuracy'))} | {pixel_seeds} | "
        f"{cell(pixels.get('head_nmi'))} | {cell(pixels.get('head_ari'))} | – | – |"
    )
    lines.append(
        f"| N2D, published (test split) | 10 | – | {N2D_PUBLISHED['n2d_test']:.3f} | – | – | – "
        "| – | – |"
    )
    lines.append(
        f"| N2D, published (all 70,000) | 10 | – | {N2D_PUBLISHED['n2d_all_70k']:.3f} | – | – "
        "| – | – | – |"
    )
    return lines


def _label_free_table(
    rows: Sequence[Mapping[str, Any]], pixels: Mapping[str, Any] | None
) -> list[str]:
    cell = _cell
    lines = [
        "No labels in this dataset: accuracy cannot be scored; label-free figures instead.",
        "",
        "| variant | code | silhouette (manifold) | smallest cluster |",
        "|---|---:|---:|---:|",
    ]
    for row in [*rows, {"variant": "raw pixels", **(pixels or {})}]:
        lines.append(
            f"| `{row['variant']}` | {cell(row.get('code_size'), '{:.0f}')} | "
            f"{cell(row.get('head_silhouette'))} | "
            f"{cell(row.get('head_smallest_cluster_share'))} |"
        )
    return lines


def _targets_line(quality: Mapping[str, Any]) -> str:
    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    parts = []
    best = quality.get("best_head_accuracy")
    if best is not None:
        nmi = quality.get("best_head_nmi") or 0.0
        parts.append(
            f"best head accuracy {best:.3f} / NMI {nmi:.3f} (`{quality['best_head_variant']}`, "
            f"target 0.97 / 0.92: {mark(best >= 0.97 and nmi >= 0.92)})"
        )
    inductive = quality.get("best_head_inductive_accuracy")
    if inductive is not None:
        parts.append(
            f"best inductive accuracy {inductive:.3f} (target 0.95: {mark(inductive >= 0.95)})"
        )
    below = quality.get("below_0.90_with_code_ge_10") or []
    parts.append(
        "every code >= 10 at head accuracy >= 0.90: "
        + (mark(True) if not below else f"{mark(False)} ({', '.join(below)})")
    )
    if "below_0.90_mean_minus_std_with_code_ge_10" in quality:
        below = quality["below_0.90_mean_minus_std_with_code_ge_10"]
        parts.append(
            f"best head accuracy over seeds {quality['best_head_accuracy_mean']:.3f} ± "
            f"{quality['best_head_accuracy_std']:.3f} (`{quality['best_head_mean_variant']}`); "
            "every code >= 10 at head accuracy mean - std >= 0.90: "
            + (mark(True) if not below else f"{mark(False)} ({', '.join(below)})")
        )
    for variant, value in (quality.get("own_cluster_accuracy") or {}).items():
        parts.append(f"`{variant}` own accuracy {value:.3f} (target 0.90: {mark(value >= 0.90)})")
    return "; ".join(parts) + "."
