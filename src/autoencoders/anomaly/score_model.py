"""The combined anomaly score: the chosen scores, each standardised on normal data, summed.

Scores (``SCORES``, names for ``ScoreConfig.scores``):

- ``reconstruction``: the per-image reconstruction loss sum (``scores.reconstruction_error``);
- ``ssim``: 1 - SSIM per image (``scores.ssim_error``);
- ``local_error``: the maximum of the smoothed squared-error map (``scores.local_error``,
  ``local_sigma`` pixels): local defects;
- ``elbo``: a VAE's negative ELBO (``scores.negative_elbo``; needs the log-variance);
- ``density``: -log p(code) under a Gaussian mixture of the training codes;
- ``mahalanobis``: the squared Mahalanobis distance of the code from the training codes.

Scales differ by orders of magnitude (a BCE sum over 784 pixels against 1 - SSIM), so each
score is standardised with constants taken from the normal validation images, mean and std or
median and interquartile range (``Standardisation``), before the sum: on normal data every
part then weighs about one. The densities are fitted on the training codes and the constants
taken on validation codes they have not seen: training codes score lower than any unseen image
under a density fitted on them, and constants taken there would shift every later score.
``ScoreModel`` holds all of it and serialises to a JSON-safe dict that travels with an export::

    model = fit_score_model(train_codes, scores.keras_outputs(autoencoder, x_val))
    combined = model.score(scores.onnx_outputs(Encoder(path), Decoder(path), x_test))  # (N,)
    fileio.write_json(path, model.to_dict()); ScoreModel.from_dict(fileio.read_json(path))
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from autoencoders.anomaly import densities, scores
from autoencoders.anomaly.checks import AnomalyConfigError, AnomalyInputError, check_scores

FORMAT_VERSION = 1
# params.yaml's anomaly.scores; AnomalyParams takes its default from here.
DEFAULT_SCORES = ("reconstruction", "density", "local_error")
# ScoreConfig's numeric fields: their type, whether 0 is valid, and how the error says so.
_NUMBERS: dict[str, tuple[type, bool, str]] = {
    "n_components": (numbers.Integral, False, "an integer >= 1"),
    "max_iter": (numbers.Integral, False, "an integer >= 1"),
    "n_init": (numbers.Integral, False, "an integer >= 1"),
    "seed": (numbers.Integral, True, "an integer >= 0"),
    "reg_covar": (numbers.Real, False, "a number > 0"),
    "beta": (numbers.Real, True, "a number >= 0"),
    "local_sigma": (numbers.Real, True, "a number >= 0 (pixels; 0: no smoothing)"),
}


class Standardisation(NamedTuple):
    """``(score - location) / scale``, the constants taken from normal validation scores."""

    location: float
    scale: float

    @classmethod
    def fit(cls, values: Any, method: str = "mean_std", name: str = "scores") -> Standardisation:
        """Mean and population std (ddof 0), or median and interquartile range (numpy's
        linear percentiles)."""
        if method not in STANDARDISATIONS:
            raise AnomalyConfigError(
                f"unknown standardisation {method!r}; valid: {sorted(STANDARDISATIONS)}."
            )
        location, scale = STANDARDISATIONS[method](check_scores(values, name))
        if not scale > 0:
            raise AnomalyInputError(
                f"{name} have {method} scale 0 on the normal images: drop this score from "
                "anomaly.scores, or use standardise: mean_std if only the IQR is 0."
            )
        return cls(float(location), float(scale))

    def apply(self, values: Any) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.location) / self.scale


def _median_iqr(values: np.ndarray) -> tuple[float, float]:
    low, median, high = np.percentile(values, [25, 50, 75])
    return median, high - low


STANDARDISATIONS: dict[str, Callable[[np.ndarray], tuple[float, float]]] = {
    "mean_std": lambda values: (np.mean(values), np.std(values)),
    "median_iqr": _median_iqr,
}


def combine(components: Mapping[str, Any], standardisation: Mapping[str, Any]) -> np.ndarray:
    """The sum over the standardised scores: (N,). Every standardised name must be given."""
    missing = sorted(set(standardisation) - set(components))
    if missing:
        raise AnomalyInputError(f"scores {missing} are missing: compute every fitted score.")
    parts = [
        standardisation[name].apply(check_scores(components[name], name))
        for name in standardisation
    ]
    if not parts:
        raise AnomalyConfigError("nothing to combine: list at least one score in anomaly.scores.")
    if len({len(part) for part in parts}) != 1:
        raise AnomalyInputError("the scores have different lengths: score the same images.")
    return np.sum(parts, axis=0)


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """Which scores to combine and how to fit them (an ``anomaly`` section of params)."""

    scores: tuple[str, ...] = DEFAULT_SCORES
    loss: str = "bce"  # the variant's objective.loss
    beta: float = 1.0  # the variant's objective.beta, for elbo
    n_components: int = 10
    # Dead relu units give a zero variance: the floor keeps a tiny deviation on one of them
    # from dominating a code's likelihood.
    reg_covar: float = 1e-4
    max_iter: int = 100
    n_init: int = 1
    covariance: str = "ledoit_wolf"  # for mahalanobis
    standardise: str = "mean_std"
    local_sigma: float = 2.0  # local_error's Gaussian, in pixels
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", tuple(self.scores))
        if (
            not self.scores
            or set(self.scores) - set(SCORES)
            or len(set(self.scores)) < len(self.scores)
        ):
            raise AnomalyConfigError(
                f"anomaly.scores {list(self.scores)} must be distinct names from {sorted(SCORES)}."
            )
        scores.check_loss(self.loss)
        for key, valid in (
            ("covariance", densities.COVARIANCES),
            ("standardise", STANDARDISATIONS),
        ):
            if getattr(self, key) not in valid:
                raise AnomalyConfigError(
                    f"anomaly.{key} {getattr(self, key)!r} is unknown; valid: {sorted(valid)}."
                )
        for key, (kind, zero_valid, wanted) in _NUMBERS.items():
            value = getattr(self, key)
            valid = isinstance(value, kind) and not isinstance(value, bool)
            if not valid or not (value >= 0 if zero_valid else value > 0):
                raise AnomalyConfigError(f"anomaly.{key} must be {wanted}, got {value!r}.")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ScoreConfig:
        """From a params mapping; an unknown key raises AnomalyConfigError naming the valid."""
        valid = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise AnomalyConfigError(f"anomaly: unknown key(s) {unknown}; valid keys are {valid}.")
        return cls(**params)

    def to_params(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "scores": list(self.scores)}


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreModel:
    """What was fitted: the config, the code densities it needs, each score's standardisation."""

    config: ScoreConfig
    standardisation: dict[str, Standardisation]
    mixture: densities.GaussianMixtureDensity | None = None
    gaussian: densities.GaussianDensity | None = None

    def components(self, inputs: scores.ScoreInputs) -> dict[str, np.ndarray]:
        """Each configured score of every image, unstandardised: {name: (N,)}."""
        return {name: SCORES[name](self, inputs) for name in self.config.scores}

    def score(self, inputs: scores.ScoreInputs) -> np.ndarray:
        """The combined anomaly score (N,): the sum of the standardised components."""
        return combine(self.components(inputs), self.standardisation)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (lists, floats, strings); ``from_dict`` gives back the same numbers."""
        return {
            "version": FORMAT_VERSION,
            "config": self.config.to_params(),
            "standardisation": {name: s._asdict() for name, s in self.standardisation.items()},
            "mixture": None if self.mixture is None else self.mixture.to_dict(),
            "gaussian": None if self.gaussian is None else self.gaussian.to_dict(),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> ScoreModel:
        """The ScoreModel of ``to_dict``; a damaged dict raises AnomalyConfigError."""
        try:
            if payload["version"] != FORMAT_VERSION:
                raise ValueError(f"version {payload['version']!r}, expected {FORMAT_VERSION}")
            mixture, gaussian = payload["mixture"], payload["gaussian"]
            model = cls(
                config=ScoreConfig.from_params(payload["config"]),
                standardisation={
                    str(name): Standardisation(float(s["location"]), float(s["scale"]))
                    for name, s in payload["standardisation"].items()
                },
                mixture=None
                if mixture is None
                else densities.GaussianMixtureDensity.from_dict(mixture),
                gaussian=None
                if gaussian is None
                else densities.GaussianDensity.from_dict(gaussian),
            )
            if set(model.standardisation) != set(model.config.scores):
                raise ValueError("standardised scores differ from config.scores")
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise AnomalyConfigError(
                f"the score model is unreadable ({reason}): re-run the anomaly stage."
            ) from None
        return model


def _fitted(part: Any, name: str) -> Any:
    if part is None:
        raise AnomalyConfigError(f"score {name!r} was not fitted: list it in anomaly.scores.")
    return part


def _elbo(model: ScoreModel, inputs: scores.ScoreInputs) -> np.ndarray:
    if inputs.log_var is None:
        raise AnomalyInputError(
            "the elbo score needs the VAE posterior's log_var (keras_outputs gives it); drop "
            "elbo from anomaly.scores for a model without one."
        )
    arrays = (inputs.images, inputs.reconstructions, inputs.codes, inputs.log_var)
    return scores.negative_elbo(*arrays, loss=model.config.loss, beta=model.config.beta)


SCORES: dict[str, Callable[[ScoreModel, scores.ScoreInputs], np.ndarray]] = {
    "reconstruction": lambda model, inputs: scores.reconstruction_error(
        inputs.images, inputs.reconstructions, model.config.loss
    ),
    "ssim": lambda model, inputs: scores.ssim_error(inputs.images, inputs.reconstructions),
    "local_error": lambda model, inputs: scores.local_error(
        inputs.images, inputs.reconstructions, model.config.local_sigma
    ),
    "elbo": _elbo,
    "density": lambda model, inputs: _fitted(model.mixture, "density").negative_log_likelihood(
        inputs.codes
    ),
    "mahalanobis": lambda model, inputs: _fitted(model.gaussian, "mahalanobis").mahalanobis(
        inputs.codes
    ),
}


def fit_score_model(
    train_codes: Any, validation: scores.ScoreInputs, config: ScoreConfig | None = None
) -> ScoreModel:
    """Fit the code densities on ``train_codes`` (N, *code_shape), then standardise each score
    with the normal ``validation`` outputs (see the module doc for why two sets)."""
    config = config or ScoreConfig()
    mixture = gaussian = None
    if "density" in config.scores:
        mixture = densities.GaussianMixtureDensity.fit(
            train_codes,
            n_components=config.n_components,
            reg_covar=config.reg_covar,
            max_iter=config.max_iter,
            n_init=config.n_init,
            seed=config.seed,
        )
    if "mahalanobis" in config.scores:
        gaussian = densities.GaussianDensity.fit(train_codes, covariance=config.covariance)
    unstandardised = ScoreModel(config, {}, mixture, gaussian)
    standardisation = {
        name: Standardisation.fit(values, config.standardise, name)
        for name, values in unstandardised.components(validation).items()
    }
    return dataclasses.replace(unstandardised, standardisation=standardisation)


__all__ = [
    "DEFAULT_SCORES",
    "FORMAT_VERSION",
    "SCORES",
    "STANDARDISATIONS",
    "ScoreConfig",
    "ScoreModel",
    "Standardisation",
    "combine",
    "fit_score_model",
]
