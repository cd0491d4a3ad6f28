"""A DVC experiment's own figures (``make quickstart``): its metrics files, read from the
experiment's git commit, so the workspace keeps its own outputs; each figure named, the
reconstruction judged against the report's bar, and the command that compares experiments.

    python -m autoencoders.reporting.experiment quickstart-20261202-001718 --variant dense
"""

from __future__ import annotations

import argparse
import json
import subprocess
from typing import Any

from autoencoders import errors, paths
from autoencoders.reporting.summary import PCA_RATIO_BAR

# What each metrics key means to a reader, in the order printed.
NAMED = {
    "cluster_accuracy": "k-means on the codes",
    "probe_accuracy": "linear probe on the codes",
    "head_accuracy": "clustering head (UMAP + mixture) on the test codes",
    "head_inductive_accuracy": "the head fitted on training codes, applied to test codes",
}
COMPARE = "dvc exp show --only-changed --md"


def experiment_commit(name: str) -> str:
    """The git commit of DVC experiment ``name`` (its ref under refs/exps/)."""
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    found = [line.split()[0] for line in refs if line.endswith(f"/{name}")]
    if not found:
        raise errors.UserError(f"no DVC experiment named {name!r}: see `dvc exp list`.")
    return found[-1]


def _read(commit: str, path: str) -> dict[str, Any]:
    """A JSON file of the commit ({} when the experiment did not write it)."""
    shown = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else {}


def reconstruction_line(metrics: dict[str, Any]) -> str:
    """Test MSE beside PCA's at the same code size, the ratio and the report's verdict."""
    mse, pca, size = metrics.get("mse"), metrics.get("pca_mse"), metrics.get("pca_n_components")
    if not isinstance(mse, float) or not isinstance(pca, float) or pca <= 0:
        return "reconstruction: no test MSE or PCA baseline in the metrics"
    ratio = mse / pca
    verdict = "PASS" if ratio <= PCA_RATIO_BAR else "FAIL"
    line = (
        f"reconstruction: test MSE {mse:.4g}, PCA with the same {size} components {pca:.4g}: "
        f"{ratio:.2f}x PCA's ({verdict}: the report's bar is <= {PCA_RATIO_BAR}x)"
    )
    if verdict == "FAIL":
        line += (
            "\n    a quickstart trains for minutes on a small sample with a two-trial search; "
            "the full pipeline's figures: reports/summary.md (make repro). To beat PCA here, "
            "try more epochs (-S train.epochs=...), more trials (-S tune.n_trials=...) or a "
            "smaller code (the variant's architecture.latent_dim)."
        )
    return line


def report_lines(name: str, variant: str, commit: str) -> list[str]:
    """What ``make quickstart`` prints: each figure named, sizes and verdicts spelled out."""
    metrics = _read(commit, paths.metrics(variant).as_posix())
    head = _read(commit, paths.cluster_metrics(variant).as_posix())
    parity = _read(commit, paths.export_metrics(variant).as_posix())
    lines = [
        f"experiment {name} ({commit[:7]}), variant {variant}, scored on its "
        f"{metrics.get('n_test', '?')} test images (code of {metrics.get('latent_dim', '?')}):",
        "  " + reconstruction_line(metrics),
    ]
    for key, meaning in NAMED.items():
        value = metrics.get(key, head.get(key))
        if isinstance(value, float):
            lines.append(f"  accuracy, {meaning}: {value:.3f}")
    for model in ("encoder", "decoder"):
        diff = (parity.get(model) or {}).get("max_abs_diff")
        if isinstance(diff, float):
            lines.append(f"  ONNX Runtime against Keras, {model}: max |difference| {diff:.2g}")
    lines.append(f"  compare it with other experiments: {COMPARE}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the experiment's name (dvc exp list)")
    parser.add_argument("--variant", default="dense")
    args = parser.parse_args(argv)
    print("\n".join(report_lines(args.name, args.variant, experiment_commit(args.name))))


if __name__ == "__main__":
    errors.cli(main, program="python -m autoencoders.reporting.experiment")
