"""The one-class benchmark's scores: each candidate fitted on a task's training codes and
validation normals, ranked by validation AUROC, and averaged over the seeds of a digit.

``fit_candidates`` fits every score any candidate names once (one mixture, one SSIM pass) and
gives each candidate the ScoreModel ``anomaly.fit_score_model`` would give it alone, with its
validation scores; ``rank`` picks the one of highest validation AUROC. ``ensemble`` is the
seed ensemble: for one digit, each seed's candidate score (standardised on that seed's own
validation normals, so the seeds' scores are on one scale) averaged over the seeds, the
candidate of highest validation AUROC of the average chosen, and only then the test split's
average scored with it, once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autoencoders import anomaly


def fit_candidates(
    settings: Any,
    train_codes: np.ndarray,
    val_normal: anomaly.ScoreInputs,
    val_anomaly: anomaly.ScoreInputs,
    seed: int,
) -> tuple[anomaly.ScoreModel, dict[str, anomaly.ScoreModel], dict[str, np.ndarray]]:
    """(the model of every score named, each candidate's ScoreModel, each candidate's scores
    of the validation normals followed by the validation anomalies)."""
    names = "+".join(dict.fromkeys(n for c in settings.candidates for n in c.split("+")))
    every = anomaly.fit_score_model(train_codes, val_normal, settings.score_config(names, seed))
    parts = [every.components(val_normal), every.components(val_anomaly)]
    fitted, scores = {}, {}
    for candidate in settings.candidates:
        config = settings.score_config(candidate, seed)
        fitted[candidate] = dataclasses.replace(
            every,
            config=config,
            standardisation={name: every.standardisation[name] for name in config.scores},
            mixture=every.mixture if "density" in config.scores else None,
            gaussian=every.gaussian if "mahalanobis" in config.scores else None,
        )
        standardisation = fitted[candidate].standardisation
        scores[candidate] = np.concatenate(
            [anomaly.combine(part, standardisation) for part in parts]
        )
    return every, fitted, scores


def validation_labels(normal: int, anomalous: int) -> np.ndarray:
    """0 for the validation normals, then 1 for the validation anomalies."""
    return np.r_[np.zeros(normal, np.int64), np.ones(anomalous, np.int64)]


def rank(scores: Mapping[str, np.ndarray], labels: np.ndarray) -> tuple[str, dict[str, float]]:
    """(the candidate of highest AUROC, the first of equals; every candidate's AUROC)."""
    figures = {name: anomaly.auroc(labels, values) for name, values in scores.items()}
    return max(scores, key=lambda name: figures[name]), figures


def ensemble(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One digit's seed ensemble from each seed's ``parts`` (``val``: candidate -> validation
    scores, ``labels``: their labels; after the test split was read, ``test``: candidate ->
    test scores and ``test_labels``): the choice, every candidate's validation AUROC of the
    average and, with the test scores, the chosen average's test AUROC."""
    candidates = list(parts[0]["val"])
    mean = {c: np.mean([part["val"][c] for part in parts], axis=0) for c in candidates}
    best, figures = rank(mean, parts[0]["labels"])
    record = {"seeds": len(parts), "score": best, "validation_auroc": figures}
    if "test" in parts[0]:
        test = np.mean([part["test"][best] for part in parts], axis=0)
        record["test_auroc"] = anomaly.auroc(parts[0]["test_labels"], test)
    return record
