"""The anomaly package's input checks and errors: bad scores, labels or settings end in one line
that names the fix (``errors.UserError``), before numpy or scikit-learn fail deep inside."""

from __future__ import annotations

from typing import Any

import numpy as np

from autoencoders import errors


class AnomalyInputError(errors.UserError, ValueError):
    """Scores, labels, codes or images handed to the anomaly library are unusable."""


class AnomalyConfigError(errors.UserError, ValueError):
    """An anomaly setting (a score name, target_fpr, a fitted model's dict) is invalid."""


def check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """``scores`` as a non-empty, finite float64 vector (N,)."""
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnomalyInputError(f"{name} must be numbers, one per image.") from None
    if array.ndim != 1:
        raise AnomalyInputError(
            f"{name} must be one score per image (N,), got shape {array.shape}: pass a vector."
        )
    if len(array) == 0:
        raise AnomalyInputError(f"{name} is empty: pass the scores of at least one image.")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise AnomalyInputError(
            f"{name} contain {bad} NaN or infinite value(s): the model diverged or an input was "
            "not finite; retrain it or drop those images before scoring."
        )
    return array


def check_labels(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels (1 anomaly, 0 normal) with both classes present, and scores of the same length."""
    scores = check_scores(scores)
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) != len(scores):
        raise AnomalyInputError(
            f"labels have shape {array.shape} but there are {len(scores)} scores: pass one "
            "label per score."
        )
    if not np.all(np.isin(array, (0, 1))):
        raise AnomalyInputError("labels must be 0 (normal) or 1 (anomaly): binarise them first.")
    array = array.astype(np.int64)
    if array.min() == array.max():
        raise AnomalyInputError(
            "labels hold one class only: pass normal (0) and anomalous (1) images together."
        )
    return array, scores
