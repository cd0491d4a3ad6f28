"""Anomaly detection with a trained autoencoder: per-image scores, fitted on normal data only,
and thresholds calibrated on normal validation scores.

    from autoencoders import anomaly

    score_model = anomaly.fit_score_model(train_codes, anomaly.keras_outputs(model, x_val))
    normal = score_model.score(anomaly.keras_outputs(model, x_val))
    threshold = anomaly.target_fpr_threshold(normal, target_fpr=0.01)
    flagged = threshold.flag(score_model.score(anomaly.keras_outputs(model, x_test)))

``scores`` computes per-image scores from numpy outputs (Keras or ONNX Runtime), ``densities``
fits the latent densities, ``score_model`` standardises and sums them into one fitted,
JSON-serialisable ``ScoreModel``, ``thresholds`` holds the cuts and metrics, ``checks`` the
errors, ``params`` the pipeline's ``anomaly:`` section (``AnomalyParams``), ``metrics`` the
figures of a thresholded scorer. ``fitting`` fits the exported scorer's ScoreModel to a trained
autoencoder and ``stage`` is the ``anomaly@V`` stage (scorers/<v>/scorer.onnx, its card and
metrics/anomaly/<v>.json); both are imported as modules, not from here (they build on
``export``, which imports this package).
"""

from autoencoders.anomaly.checks import AnomalyConfigError, AnomalyInputError
from autoencoders.anomaly.densities import GaussianDensity, GaussianMixtureDensity
from autoencoders.anomaly.metrics import anomaly_metrics, score_statistics
from autoencoders.anomaly.params import AnomalyParams
from autoencoders.anomaly.score_model import (
    SCORES,
    ScoreConfig,
    ScoreModel,
    Standardisation,
    combine,
    fit_score_model,
)
from autoencoders.anomaly.scores import (
    ScoreInputs,
    keras_outputs,
    kl_divergence,
    negative_elbo,
    onnx_outputs,
    reconstruction_error,
    ssim_error,
)
from autoencoders.anomaly.thresholds import (
    DEFAULT_TARGET_FPR,
    RULES,
    Rates,
    Threshold,
    auprc,
    auroc,
    choose_threshold,
    evaluate,
    f1_optimal_threshold,
    fixed_threshold,
    flag,
    rates,
    target_fpr_threshold,
)

__all__ = [
    "DEFAULT_TARGET_FPR",
    "RULES",
    "SCORES",
    "AnomalyConfigError",
    "AnomalyParams",
    "AnomalyInputError",
    "GaussianDensity",
    "GaussianMixtureDensity",
    "Rates",
    "ScoreConfig",
    "ScoreInputs",
    "ScoreModel",
    "Standardisation",
    "Threshold",
    "auprc",
    "anomaly_metrics",
    "auroc",
    "choose_threshold",
    "combine",
    "evaluate",
    "f1_optimal_threshold",
    "fit_score_model",
    "fixed_threshold",
    "flag",
    "keras_outputs",
    "kl_divergence",
    "negative_elbo",
    "onnx_outputs",
    "rates",
    "reconstruction_error",
    "score_statistics",
    "ssim_error",
    "target_fpr_threshold",
]
