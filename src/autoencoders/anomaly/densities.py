"""Densities of the latent codes, fitted on training codes, evaluated in plain numpy.

scikit-learn fits them; what is kept is only their parameters, as arrays that serialise to
JSON, so an exported scorer (or ONNX Runtime's outputs) is scored with numpy alone and the
formulas are two matrix products that an ONNX graph can repeat.

- ``GaussianMixtureDensity``: a seeded ``GaussianMixture`` with full covariances (``reg_covar``
  added to their diagonals). Kept: weights (K,), means (K, D) and the Cholesky factors of the
  precisions (K, D, D), scikit-learn's own parameterisation, so the log-likelihood is
  log sum_k w_k N(x; mu_k, Sigma_k) with ||(x - mu_k) L_k||^2 and log det L_k.
- ``GaussianDensity``: one Gaussian, covariance by Ledoit-Wolf shrinkage (well conditioned when
  codes have dead units or few samples) or the empirical estimate; its score is the squared
  Mahalanobis distance (x - mu)^T P (x - mu), as ``EmpiricalCovariance.mahalanobis`` gives.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from autoencoders.anomaly.checks import AnomalyConfigError, AnomalyInputError
from autoencoders.threads import small_blas

COVARIANCES = ("ledoit_wolf", "empirical")


def check_codes(codes: Any, dimension: int | None = None, name: str = "codes") -> np.ndarray:
    """Codes (N, *code_shape) as a finite float64 matrix (N, D); D checked when given."""
    array = np.asarray(codes, dtype=np.float64)
    if array.ndim < 2 or len(array) == 0:
        raise AnomalyInputError(
            f"{name} must be a non-empty batch of codes (N, latent_dim), got shape {array.shape}."
        )
    array = array.reshape(len(array), -1)
    if not np.all(np.isfinite(array)):
        raise AnomalyInputError(
            f"{name} contain NaN or infinite values: the encoder diverged; retrain it."
        )
    if dimension is not None and array.shape[1] != dimension:
        raise AnomalyInputError(
            f"{name} have {array.shape[1]} numbers each but the density was fitted on "
            f"{dimension}: score with the encoder whose training codes it was fitted on."
        )
    return array


def _matrix(values: Any, ndim: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim or not np.all(np.isfinite(array)):
        raise ValueError(f"expected a finite {ndim}-d array, got shape {array.shape}")
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixtureDensity:
    """A Gaussian mixture over codes: weights (K,), means (K, D), precisions_cholesky (K, D, D)."""

    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray

    @classmethod
    def fit(
        cls,
        codes: Any,
        n_components: int = 10,
        reg_covar: float = 1e-4,
        max_iter: int = 100,
        n_init: int = 1,
        seed: int = 0,
    ) -> GaussianMixtureDensity:
        """Fit on training codes; the same codes and seed give the same mixture."""
        from sklearn.mixture import GaussianMixture

        codes = check_codes(codes, name="training codes")
        if len(codes) < max(n_components, 2):
            raise AnomalyInputError(
                f"{len(codes)} training codes cannot fit {n_components} mixture components: "
                "lower anomaly.n_components or pass more training images."
            )
        with small_blas():
            mixture = GaussianMixture(
                n_components=n_components,
                covariance_type="full",
                reg_covar=reg_covar,
                max_iter=max_iter,
                n_init=n_init,
                random_state=seed,
            ).fit(codes)
        return cls(mixture.weights_, mixture.means_, mixture.precisions_cholesky_)

    @property
    def dimension(self) -> int:
        return int(self.means.shape[1])

    def log_likelihood(self, codes: Any) -> np.ndarray:
        """log p(code) under the mixture, per code: (N,)."""
        codes = check_codes(codes, self.dimension)
        constant = self.dimension * math.log(2.0 * math.pi)
        per_component = []
        for weight, mean, cholesky in zip(
            self.weights, self.means, self.precisions_cholesky, strict=True
        ):
            whitened = (codes - mean) @ cholesky  # (N, D)
            log_det = np.sum(np.log(np.diag(cholesky)))
            squared = np.sum(np.square(whitened), axis=1)
            per_component.append(math.log(weight) + log_det - 0.5 * (constant + squared))
        stacked = np.stack(per_component, axis=1)  # (N, K)
        top = stacked.max(axis=1, keepdims=True)  # log-sum-exp without overflow
        return (top + np.log(np.sum(np.exp(stacked - top), axis=1, keepdims=True)))[:, 0]

    def negative_log_likelihood(self, codes: Any) -> np.ndarray:
        """The density score: -log p(code), higher for codes far from every component."""
        return -self.log_likelihood(codes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "precisions_cholesky": self.precisions_cholesky.tolist(),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> GaussianMixtureDensity:
        weights = _matrix(payload["weights"], 1)
        means = _matrix(payload["means"], 2)
        cholesky = _matrix(payload["precisions_cholesky"], 3)
        if not (len(weights) == len(means) == len(cholesky)) or cholesky.shape[1:] != (
            means.shape[1],
            means.shape[1],
        ):
            raise ValueError(
                f"mixture shapes disagree: {weights.shape}, {means.shape}, {cholesky.shape}"
            )
        return cls(weights, means, cholesky)


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianDensity:
    """One Gaussian over codes: location (D,) and precision (D, D), the inverse covariance."""

    location: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, codes: Any, covariance: str = "ledoit_wolf") -> GaussianDensity:
        """Mean and (Ledoit-Wolf or empirical) precision of the training codes."""
        from sklearn.covariance import EmpiricalCovariance, LedoitWolf

        estimators = {"ledoit_wolf": LedoitWolf, "empirical": EmpiricalCovariance}
        if covariance not in estimators:
            raise AnomalyConfigError(
                f"unknown covariance {covariance!r}; valid: {sorted(estimators)}."
            )
        codes = check_codes(codes, name="training codes")
        if len(codes) < 2:
            raise AnomalyInputError("one training code has no covariance: pass more images.")
        estimator = estimators[covariance]().fit(codes)
        return cls(estimator.location_, estimator.get_precision())

    def mahalanobis(self, codes: Any) -> np.ndarray:
        """Squared Mahalanobis distance of each code from the training mean: (N,)."""
        centred = check_codes(codes, len(self.location)) - self.location
        return np.einsum("nd,de,ne->n", centred, self.precision, centred)

    def to_dict(self) -> dict[str, Any]:
        return {"location": self.location.tolist(), "precision": self.precision.tolist()}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> GaussianDensity:
        location = _matrix(payload["location"], 1)
        precision = _matrix(payload["precision"], 2)
        if precision.shape != (len(location), len(location)):
            raise ValueError(f"precision {precision.shape} does not fit location {location.shape}")
        return cls(location, precision)
