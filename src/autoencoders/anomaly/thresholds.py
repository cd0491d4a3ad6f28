"""Decision thresholds on anomaly scores, and the metrics that judge a score and a threshold.

An image is flagged anomalous when its score is strictly greater than the threshold
(``flag``). Labels, where there are any, are 1 for an anomaly and 0 for a normal image.

Rules (``RULES``; ``choose_threshold`` picks one by name):

- ``target_fpr`` (default 0.01), from normal validation scores alone. Of n normal scores at most
  m = floor(n * target_fpr) may be flagged, so the threshold is the (n - m)-th smallest of them
  (1-based): numpy's ``quantile(scores, 1 - m / n, method="inverted_cdf")``. At most m normal
  scores lie above it, so the FPR on the calibration set is at most target_fpr (exactly m / n
  when no scores tie at the cut); m = 0 gives the largest normal score, FPR 0.
- ``f1_optimal``: with labelled anomalies, the cut of highest F1 on the labelled set; the
  candidates are the observed scores (each flags what lies above it) and one just below the
  smallest (flags everything). Ties in F1 go to the highest cut, the one with the fewest alarms.
- ``fixed``: a given value; its FPR on the normal scores is recorded.

Metrics: ``auroc`` and ``auprc`` are scikit-learn's ``roc_auc_score`` and
``average_precision_score`` (AUPRC is average precision, the step-wise sum over recall, not a
trapezoid); the rates at a threshold (``rates``) are counted here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from autoencoders.anomaly.checks import AnomalyConfigError, check_labels, check_scores

DEFAULT_TARGET_FPR = 0.01
# Guards floor(n * target_fpr) against the last-bit error of a decimal target (0.29 * 100 is
# 28.999999999999996 in binary floating point).
_RELATIVE_SLACK = 1e-12


@dataclasses.dataclass(frozen=True)
class Threshold:
    """A calibrated threshold: its ``value``, the ``rule`` that chose it, the FPR it reaches on
    the ``n_normal`` normal calibration scores, and what the rule aimed at or reached."""

    value: float
    rule: str
    fpr: float
    n_normal: int
    target_fpr: float | None = None
    tpr: float | None = None  # f1_optimal: on the labelled anomalies
    f1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; ``from_dict`` reverses it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Threshold:
        """The Threshold of ``to_dict``; a damaged dict raises AnomalyConfigError."""
        try:
            threshold = cls(**payload)
            numbers = (threshold.value, threshold.fpr, threshold.n_normal)
            if threshold.rule not in RULES or not all(math.isfinite(x) for x in numbers):
                raise ValueError(f"rule {threshold.rule!r}, value {threshold.value!r}")
        except (TypeError, ValueError) as error:
            raise AnomalyConfigError(
                f"the threshold record is unreadable ({error}): re-run the anomaly stage."
            ) from None
        return threshold

    def flag(self, scores: Any) -> np.ndarray:
        """True where a score is above this threshold: (N,) bool."""
        return flag(scores, self.value)


def flag(scores: Any, threshold: float) -> np.ndarray:
    """``scores > threshold``: (N,) bool, the convention every rule here follows."""
    return check_scores(scores) > threshold


def _false_positive_rate(normal_scores: np.ndarray, value: float) -> float:
    return float(np.count_nonzero(normal_scores > value) / len(normal_scores))


def check_target_fpr(target_fpr: Any) -> float:
    """``target_fpr`` as a float strictly between 0 and 1."""
    if isinstance(target_fpr, bool) or not isinstance(target_fpr, numbers.Real):
        raise AnomalyConfigError(f"target_fpr must be a number in (0, 1), got {target_fpr!r}.")
    if not 0.0 < target_fpr < 1.0:
        raise AnomalyConfigError(
            f"target_fpr must lie strictly between 0 and 1, got {target_fpr!r}: use e.g. 0.01 "
            "for one false alarm in a hundred normal images."
        )
    return float(target_fpr)


def target_fpr_threshold(normal_scores: Any, target_fpr: float = DEFAULT_TARGET_FPR) -> Threshold:
    """The lowest observed normal score that leaves at most floor(n * target_fpr) above it."""
    target = check_target_fpr(target_fpr)
    normal = np.sort(check_scores(normal_scores, "normal_scores"))
    allowed = math.floor(len(normal) * target * (1.0 + _RELATIVE_SLACK))
    value = float(normal[len(normal) - 1 - allowed])
    return Threshold(
        value=value,
        rule="target_fpr",
        fpr=_false_positive_rate(normal, value),
        n_normal=len(normal),
        target_fpr=target,
    )


def f1_optimal_threshold(normal_scores: Any, anomaly_scores: Any) -> Threshold:
    """The cut of highest F1 between labelled normal and anomalous scores (see module doc)."""
    normal = np.sort(check_scores(normal_scores, "normal_scores"))
    anomalous = np.sort(check_scores(anomaly_scores, "anomaly_scores"))
    observed = np.unique(np.concatenate([normal, anomalous]))[::-1]  # highest first
    lowest = np.nextafter(observed[-1], -np.inf)
    candidates = np.append(observed, lowest)
    true_positives = len(anomalous) - np.searchsorted(anomalous, candidates, side="right")
    false_positives = len(normal) - np.searchsorted(normal, candidates, side="right")
    # F1 = 2 TP / (2 TP + FP + FN), with FN = anomalies - TP.
    f1 = 2.0 * true_positives / (true_positives + false_positives + len(anomalous))
    best = int(np.argmax(f1))  # first maximum: the highest cut
    value = float(candidates[best])
    return Threshold(
        value=value,
        rule="f1_optimal",
        fpr=_false_positive_rate(normal, value),
        n_normal=len(normal),
        tpr=float(true_positives[best] / len(anomalous)),
        f1=float(f1[best]),
    )


def fixed_threshold(value: float, normal_scores: Any) -> Threshold:
    """A given threshold, with the FPR it reaches on ``normal_scores``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise AnomalyConfigError(f"a fixed threshold must be a finite number, got {value!r}.")
    normal = check_scores(normal_scores, "normal_scores")
    return Threshold(float(value), "fixed", _false_positive_rate(normal, value), len(normal))


RULES: dict[str, Callable[..., Threshold]] = {
    "target_fpr": lambda normal, anomalous, target_fpr, value: target_fpr_threshold(
        normal, target_fpr
    ),
    "f1_optimal": lambda normal, anomalous, target_fpr, value: f1_optimal_threshold(
        normal, _required(anomalous, "anomaly_scores", "f1_optimal")
    ),
    "fixed": lambda normal, anomalous, target_fpr, value: fixed_threshold(
        _required(value, "value", "fixed"), normal
    ),
}


def _required(argument: Any, name: str, rule: str) -> Any:
    if argument is None:
        raise AnomalyConfigError(f"the {rule} rule needs {name}: pass it or choose another rule.")
    return argument


def choose_threshold(
    rule: str,
    normal_scores: Any,
    anomaly_scores: Any = None,
    *,
    target_fpr: float = DEFAULT_TARGET_FPR,
    value: float | None = None,
) -> Threshold:
    """The threshold of ``rule`` (a name from ``RULES``) on the calibration scores."""
    if rule not in RULES:
        raise AnomalyConfigError(f"unknown threshold rule {rule!r}; valid rules: {sorted(RULES)}.")
    return RULES[rule](normal_scores, anomaly_scores, target_fpr, value)


class Rates(NamedTuple):
    """Counts-based rates of ``scores > threshold`` against labels."""

    fpr: float
    tpr: float
    precision: float  # 0 when nothing is flagged
    f1: float  # 0 when no anomaly is flagged


def rates(labels: Any, scores: Any, threshold: float) -> Rates:
    """FPR, TPR (recall), precision and F1 of flagging ``scores > threshold``."""
    labels, scores = check_labels(labels, scores)
    flagged = scores > threshold
    true_positives = int(np.count_nonzero(flagged & (labels == 1)))
    false_positives = int(np.count_nonzero(flagged & (labels == 0)))
    anomalies = int(np.count_nonzero(labels == 1))
    normals = len(labels) - anomalies
    positives = true_positives + false_positives
    return Rates(
        fpr=false_positives / normals,
        tpr=true_positives / anomalies,
        precision=true_positives / positives if positives else 0.0,
        f1=2.0 * true_positives / (positives + anomalies),
    )


def auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve: the chance an anomaly outscores a normal image (ties 1/2)."""
    from sklearn import metrics

    labels, scores = check_labels(labels, scores)
    return float(metrics.roc_auc_score(labels, scores))


def auprc(labels: Any, scores: Any) -> float:
    """Area under the precision-recall curve as average precision (anomalies positive)."""
    from sklearn import metrics

    labels, scores = check_labels(labels, scores)
    return float(metrics.average_precision_score(labels, scores))


def evaluate(labels: Any, scores: Any, threshold: float) -> dict[str, float]:
    """``{"auroc", "auprc", "fpr", "tpr", "precision", "f1"}``, the last four at ``threshold``."""
    return {
        "auroc": auroc(labels, scores),
        "auprc": auprc(labels, scores),
        **rates(labels, scores, threshold)._asdict(),
    }


__all__ = [
    "DEFAULT_TARGET_FPR",
    "RULES",
    "Rates",
    "Threshold",
    "auprc",
    "auroc",
    "check_target_fpr",
    "choose_threshold",
    "evaluate",
    "f1_optimal_threshold",
    "fixed_threshold",
    "flag",
    "rates",
    "target_fpr_threshold",
]
