"""How much a variant's figures owe to its seed: its training, or its clustering head, repeated.

``make train-seeds VARIANT=idec SEEDS=0,1,2`` trains the variant exactly as ``train@V`` does
(params.yaml, then tuning/<V>/best.json) once per seed, in memory, and scores each model on the
test split: MSE and, for a clustering model (IDEC), the accuracy, NMI and ARI of its own
assignments (argmax Q). ``make cluster-seeds`` refits the clustering head on the same codes per
seed (one fit each, no consensus; ``make cluster-shift``: the stage's consensus under a seed
shift). Nothing is written; labels only score.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import clustering, data, fileio, paths
from autoencoders.clustering import stage
from autoencoders.evaluation import latent

KEYS = ("mse", "own_accuracy", "own_nmi", "own_ari")


def score_seeds(
    variant: str,
    variant_block: Mapping[str, Any],
    train_section: Mapping[str, Any] | None,
    seeds: Sequence[int],
    processed_dir: str | Path,
    best_path: str | Path,
    verbose: bool = False,
) -> Iterator[dict[str, Any]]:
    """Train ``variant`` once per seed as train@V would; yield each model's test figures.

    Imports Keras: the caller chooses its backend first."""
    from autoencoders.training import loop

    resolved, _ = loop.resolve_variant(variant, variant_block, train_section, best_path)
    x_train, _ = data.load_split(processed_dir, "train")
    x_val, _ = data.load_split(processed_dir, "val")
    x_test, y_test = data.load_split(processed_dir, "test")
    for seed in seeds:
        started = time.perf_counter()
        model, _, _, _ = loop.fit_resolved(resolved, x_train, x_val, seed, verbose=verbose)
        reconstruction = model.reconstruct(x_test, batch_size=1024)
        result: dict[str, Any] = {
            "seed": seed,
            "mse": float(np.mean((reconstruction - x_test) ** 2)),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if model.owns_clusters and y_test is not None:
            own = model.assign(x_test).argmax(axis=1)
            result.update(latent.label_scores(y_test, own, prefix="own_"))
        yield result


def spread(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± sample standard deviation of every figure in ``KEYS`` over the seeds."""
    return clustering.summarise_seeds(results, KEYS)


def best_variant() -> str:
    """The variant whose metrics/cluster/<V>.json holds the highest head_accuracy."""
    scored = []
    for path in paths.cluster_metrics(stage.PIXELS).parent.glob("*.json"):
        metrics = fileio.read_json(path)
        if path.stem != stage.PIXELS and metrics.get("head_accuracy") is not None:
            scored.append((metrics["head_accuracy"], path.stem))
    if not scored:
        raise SystemExit("no metrics/cluster/<variant>.json with head_accuracy: run dvc repro.")
    return max(scored)[1]


def cluster_seeds(variant: str, params: clustering.HeadParams, seeds: list[int]) -> dict[str, Any]:
    """The head over several seeds on the same codes: mean ± std printed; nothing written."""
    # The test codes only: the inductive figure is the stage's exported clusterer's.
    export_dir = None if variant == stage.PIXELS else paths.export(variant)
    test_codes, y_test, train_codes = stage.inputs(export_dir, paths.PROCESSED, 0, seed=0)
    if y_test is None:
        raise SystemExit("--seeds scores accuracy and needs labels; this dataset has none.")
    # One fit per seed, not the stage's consensus of cluster.seeds fits.
    one = dataclasses.replace(params, seeds=1, inductive_subsample=0)
    results = []
    for seed in seeds:
        metrics, _ = clustering.score_head(
            test_codes, y_test, params=one, seed=seed, train_codes=train_codes
        )
        results.append(metrics)
        print(
            f"[cluster] {variant} seed {seed}: "
            + ", ".join(f"{key} {metrics[key]:.4f}" for key in stage.HEAD_KEYS if key in metrics)
            + f" ({metrics['head_seconds']:.1f} s)",
            flush=True,
        )
    summary = clustering.summarise_seeds(results, stage.HEAD_KEYS)
    for key in stage.HEAD_KEYS:
        if key in summary:
            print(
                f"[cluster] {variant} over seeds {seeds}: {key} "
                f"{summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}"
            )
    return summary
