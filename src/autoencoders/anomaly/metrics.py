"""The anomaly metrics of a thresholded scorer: its threshold, validation and test figures.

``anomaly_metrics(threshold, validation, test_scores, test_labels, normal_classes)`` is the
``anomaly`` block the ``anomaly@V`` stage writes to metrics/anomaly/<v>.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autoencoders.anomaly import thresholds


def score_statistics(scores: np.ndarray) -> dict[str, float]:
    """Mean, std, min, median, 99th percentile and max of a score vector."""
    low, median, high = np.percentile(scores, [0, 50, 99])
    return {
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "min": float(low),
        "median": float(median),
        "p99": float(high),
        "max": float(np.max(scores)),
    }


def anomaly_metrics(
    threshold: thresholds.Threshold,
    validation: Mapping[str, np.ndarray | None],
    test_scores: np.ndarray,
    test_labels: np.ndarray | None,
    normal_classes: Sequence[int] | None,
) -> dict[str, Any]:
    """metrics/anomaly/<v>.json's ``anomaly`` block: the threshold, its rule and validation FPR,
    score statistics, and on the test split either the share flagged (no normal classes or no
    labels: every image counts) or, with both, AUROC, AUPRC and FPR/TPR/precision/F1 at the
    threshold. ``validation``: ``normal`` scores and ``anomalies`` (labelled ones, or None),
    which add the validation AUROC and AUPRC."""
    normal, anomalous = validation["normal"], validation["anomalies"]
    block: dict[str, Any] = {
        "rule": threshold.rule,
        "threshold": threshold.value,
        "target_fpr": threshold.target_fpr,
        "validation": {"images": threshold.n_normal, "fpr": threshold.fpr},
    }
    if anomalous is not None:
        labels = np.r_[np.zeros(len(normal), np.int64), np.ones(len(anomalous), np.int64)]
        scores = np.r_[normal, anomalous]
        block["validation"].update(
            anomalies=len(anomalous),
            auroc=thresholds.auroc(labels, scores),
            auprc=thresholds.auprc(labels, scores),
            **({"f1": threshold.f1} if threshold.f1 is not None else {}),
        )
    flagged = threshold.flag(test_scores)
    test: dict[str, Any] = {"images": len(test_scores), "share_flagged": float(flagged.mean())}
    if normal_classes is not None and test_labels is not None:
        is_anomaly = (~np.isin(test_labels, list(normal_classes))).astype(np.int64)
        test["anomalies"] = int(is_anomaly.sum())
        if 0 < test["anomalies"] < len(is_anomaly):
            test.update(thresholds.evaluate(is_anomaly, test_scores, threshold.value))
    block["test"] = test
    block["scores"] = {
        "validation": score_statistics(normal),
        "test": score_statistics(test_scores),
    }
    return block


__all__ = ["anomaly_metrics", "score_statistics"]
