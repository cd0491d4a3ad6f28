"""The scorer's fit: a ``ScoreModel`` fitted to one trained autoencoder on normal data.

``prepare(autoencoder, settings, seed=..., x_train=..., x_val=..., val_anomalies=...)`` fits the
densities on the codes of a seeded ``settings.fit_subsample`` of the training images and the
standardisation on the validation outputs (Keras; never the test split). It gives
``(score_model, None)``, or ``(None, why)`` when the scores cannot apply to the variant
(``unsupported``: elbo without a variational encoder). The ``anomaly@V`` stage
(``anomaly.stage``) converts the fitted model into scorer.onnx and thresholds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autoencoders import data
from autoencoders.anomaly import score_model, scores
from autoencoders.anomaly.checks import AnomalyConfigError
from autoencoders.anomaly.params import AnomalyParams


def unsupported(autoencoder: Any, score_names: Sequence[str]) -> str | None:
    """Why no scorer can be built for ``autoencoder`` with these scores, or None."""
    if "elbo" in score_names and getattr(autoencoder, "posterior", None) is None:
        return (
            "anomaly.scores lists elbo, which needs a variational encoder's log-variance; "
            f"this variant's objective is {autoencoder.config.objective_name}"
        )
    return None


def prepare(
    autoencoder: Any,
    settings: AnomalyParams,
    *,
    seed: int,
    x_train: Any,
    x_val: np.ndarray,
    val_anomalies: np.ndarray | None,
) -> tuple[score_model.ScoreModel | None, str | None]:
    """(the fitted ScoreModel, None), or (None, why the variant gets no scorer).

    ``x_train`` is an array or a Split of shards (only the seeded sample is read);
    ``val_anomalies`` the labelled validation anomalies (or None), which ``f1_optimal`` needs."""
    reason = unsupported(autoencoder, settings.scores)
    if reason is not None:
        return None, reason
    if settings.threshold == "f1_optimal" and val_anomalies is None:
        raise AnomalyConfigError(
            "anomaly.threshold f1_optimal needs labelled validation anomalies: set "
            "data.normal_classes (preprocess keeps the other classes aside) or use target_fpr."
        )
    objective = autoencoder.config.objective
    config = settings.score_config(objective.loss, getattr(objective, "beta", 1.0), seed)
    train_codes = _train_codes(autoencoder, x_train, settings.fit_subsample, seed)
    fitted = score_model.fit_score_model(
        train_codes, scores.keras_outputs(autoencoder, x_val), config
    )
    return fitted, None


def _train_codes(autoencoder: Any, x_train: Any, size: int, seed: int) -> np.ndarray:
    """Codes of the seeded ``size`` training images; a Split of shards is read in batches."""
    if isinstance(x_train, np.ndarray):
        return autoencoder.encode(data.subset(x_train, size, seed))
    sample = x_train.sample(size, seed)
    batches = sample.batches(sample.codes_batch)
    return np.concatenate([autoencoder.encode(batch) for batch in batches])


__all__ = ["prepare", "unsupported"]
