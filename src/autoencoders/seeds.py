"""How much a variant's figures owe to its seed: the final training repeated over seeds.

``make train-seeds VARIANT=idec SEEDS=0,1,2`` (``pipeline/train_seeds.py``) trains the variant
exactly as ``train@V`` does (params.yaml, then tuning/<V>/best.json) once per seed, in memory,
and scores each model on the test split: MSE and, for a clustering model (IDEC), the accuracy,
NMI and ARI of its own assignments (argmax Q). Nothing is written; labels only score.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import clustering, data, training

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
    """Train ``variant`` once per seed as train@V would; yield each model's test figures."""
    resolved, _ = training.resolve_variant(variant, variant_block, train_section, best_path)
    x_train, _ = data.load_split(processed_dir, "train")
    x_val, _ = data.load_split(processed_dir, "val")
    x_test, y_test = data.load_split(processed_dir, "test")
    for seed in seeds:
        started = time.perf_counter()
        model, _, _, _ = training.fit_resolved(resolved, x_train, x_val, seed, verbose=verbose)
        reconstruction = model.reconstruct(x_test, batch_size=1024)
        result: dict[str, Any] = {
            "seed": seed,
            "mse": float(np.mean((reconstruction - x_test) ** 2)),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if hasattr(model, "assign") and y_test is not None:
            own = model.assign(x_test).argmax(axis=1)
            result.update(clustering.label_scores(y_test, own, prefix="own_"))
        yield result


def spread(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± sample standard deviation of every figure in ``KEYS`` over the seeds."""
    return clustering.summarise_seeds(results, KEYS)
