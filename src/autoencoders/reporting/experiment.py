"""A DVC experiment's own figures (``make quickstart``): its metrics files, read from the
experiment's git commit, so the workspace keeps its own outputs.

    python -m autoencoders.reporting.experiment quickstart-20261202-001718 --variant dense
"""

from __future__ import annotations

import argparse
import json
import subprocess

from autoencoders import errors, paths

SHOWN = {
    paths.metrics: ("mse", "pca_mse", "ssim", "cluster_accuracy", "probe_accuracy"),
    paths.cluster_metrics: ("head_accuracy", "head_nmi", "head_inductive_accuracy"),
    paths.export_metrics: ("encoder.max_abs_diff", "decoder.max_abs_diff"),
}


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


def _value(record: dict, dotted: str) -> object:
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the experiment's name (dvc exp list)")
    parser.add_argument("--variant", default="dense")
    args = parser.parse_args(argv)
    commit = experiment_commit(args.name)
    print(f"experiment {args.name} ({commit[:7]}), variant {args.variant}:")
    for path_of, keys in SHOWN.items():
        path = path_of(args.variant).as_posix()
        shown = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, text=True)
        if shown.returncode != 0:
            continue
        record = json.loads(shown.stdout)
        figures = ", ".join(
            f"{key} {value:.4g}" for key in keys if isinstance(value := _value(record, key), float)
        )
        print(f"  {path}: {figures}")


if __name__ == "__main__":
    errors.cli(main, program="python -m autoencoders.reporting.experiment")
