"""params.yaml ``anomaly:``: which scores the exported scorer combines, how its densities are
fitted and how its threshold is chosen, as one frozen config (``config.from_mapping`` builds it,
rejecting unknown keys and wrong types with the key named).

Every score here is computed by ``scorers/<v>/scorer.onnx`` itself (``anomaly.scorer``):
``reconstruction``, ``density``, ``mahalanobis``, ``ssim`` and ``local_error`` for every
variant, ``elbo`` for a variational one (its scorer runs the posterior; other variants skip
the scorer).
``score_config(loss, beta, seed)`` gives the library's ``ScoreConfig`` for one variant.
"""

from __future__ import annotations

import dataclasses
import math

from autoencoders.anomaly import score_model, thresholds
from autoencoders.anomaly.checks import AnomalyConfigError

DEFAULT_SCORES = score_model.DEFAULT_SCORES


@dataclasses.dataclass(frozen=True)
class AnomalyParams:
    """params.yaml ``anomaly``: the scores, the threshold rule and the mixture's settings."""

    scores: tuple[str, ...] = DEFAULT_SCORES
    target_fpr: float = thresholds.DEFAULT_TARGET_FPR
    threshold: str = "target_fpr"  # a name from anomaly.RULES
    value: float | None = None  # threshold: fixed
    fit_subsample: int = 10000  # seeded training codes the densities are fitted on; 0: all
    n_components: int = 10
    reg_covar: float = 1.0e-4
    max_iter: int = 100
    n_init: int = 1
    covariance: str = "ledoit_wolf"  # mahalanobis
    standardise: str = "mean_std"
    local_sigma: float = 2.0  # local_error and local_map: the Gaussian's sigma in pixels
    # The map's pixel threshold: at most this share of the normal validation images' pixels
    # of local_map above it.
    pixel_target_fpr: float = 0.001

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", tuple(self.scores))
        if self.threshold not in thresholds.RULES:
            raise AnomalyConfigError(
                f"anomaly.threshold {self.threshold!r} is unknown; valid rules: "
                f"{sorted(thresholds.RULES)}."
            )
        thresholds.check_target_fpr(self.target_fpr)
        thresholds.check_target_fpr(self.pixel_target_fpr)
        if self.fit_subsample < 0:
            raise AnomalyConfigError(
                f"anomaly.fit_subsample must be >= 0 (0: every training code), got "
                f"{self.fit_subsample}."
            )
        if self.threshold == "fixed" and (self.value is None or not math.isfinite(self.value)):
            raise AnomalyConfigError(
                f"anomaly.threshold fixed needs anomaly.value, a finite number, got "
                f"{self.value!r}."
            )
        self.score_config("bce", 1.0, 0)  # the score names and the mixture's settings

    def score_config(self, loss: str, beta: float, seed: int) -> score_model.ScoreConfig:
        """The library's ScoreConfig for a variant with objective ``loss`` and ``beta``."""
        return score_model.ScoreConfig(
            scores=self.scores,
            loss=loss,
            beta=beta,
            n_components=self.n_components,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            covariance=self.covariance,
            standardise=self.standardise,
            local_sigma=self.local_sigma,
            seed=seed,
        )


__all__ = ["DEFAULT_SCORES", "AnomalyParams"]
