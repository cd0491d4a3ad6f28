"""The anomaly library: scores against the variant's own Keras loss and closed forms, thresholds
against the normal distribution's quantiles, metrics against scipy and hand counts, densities
against scipy and scikit-learn, the standardised combination on a known sample, bad input
ending in one-line UserErrors, and params.yaml's ``anomaly`` section."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy import spatial, stats
from sklearn import metrics
from sklearn.mixture import GaussianMixture

from autoencoders import anomaly, config, errors, models

REPO = Path(__file__).resolve().parents[1]
FEW = 8  # images scored one by one against the model's own loss


def tiny_model(objective: dict, images: np.ndarray) -> models.Autoencoder:
    """A dense autoencoder with a 4-number code, trained for two steps on ``images``."""
    config = models.VariantConfig.from_params(
        "tiny", {"architecture": {"name": "dense", "latent_dim": 4}, "objective": objective}
    )
    keras.utils.set_random_seed(0)
    model = models.build_autoencoder(config, images.shape[1:], seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(images[:32], images[:32], batch_size=16, epochs=1, shuffle=False, verbose=0)
    return model


def one_line_user_error(excinfo: pytest.ExceptionInfo) -> str:
    assert isinstance(excinfo.value, errors.UserError)
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------ reconstruction and ELBO


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_reconstruction_score_is_the_variants_loss_summed_per_image(loss, digits_small):
    images = digits_small["x_val"][:FEW]
    model = tiny_model({"name": "plain", "loss": loss}, digits_small["x_train"])
    inputs = anomaly.keras_outputs(model, images)
    scores = anomaly.reconstruction_error(inputs.images, inputs.reconstructions, loss)
    pixels = math.prod(images.shape[1:])
    # Keras's own training loss of each image alone (a per-pixel mean), times the pixel count.
    expected = [
        pixels * float(model.compute_losses(image[None], image[None])["reconstruction_loss"])
        for image in images
    ]
    assert scores.shape == (FEW,)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert len(set(np.round(scores, 6))) == FEW  # one score per image, not a batch mean


@pytest.mark.parametrize(
    ("loss", "expected"),
    [("mse", 0.5**2 + 0.25**2), ("bce", -math.log(0.5) - math.log(0.75))],
)
def test_reconstruction_error_on_a_two_pixel_image(loss, expected):
    image = np.array([1.0, 0.0]).reshape(1, 1, 2, 1)
    reconstruction = np.array([0.5, 0.25]).reshape(1, 1, 2, 1)
    score = anomaly.reconstruction_error(image, reconstruction, loss)
    assert score == pytest.approx([expected], rel=1e-12)


def test_negative_elbo_is_the_vae_loss_per_image(digits_small):
    images = digits_small["x_val"][:FEW]
    objective = {"name": "variational", "loss": "bce", "beta": 0.5}
    model = tiny_model(objective, digits_small["x_train"])
    inputs = anomaly.keras_outputs(model, images)
    mean, log_var = (np.asarray(part) for part in model.posterior(images, training=False))
    np.testing.assert_allclose(inputs.codes, mean, rtol=1e-6)
    np.testing.assert_allclose(inputs.log_var, log_var, rtol=1e-6)
    scores = anomaly.negative_elbo(
        inputs.images, inputs.reconstructions, inputs.codes, inputs.log_var, "bce", beta=0.5
    )
    pixels = math.prod(images.shape[1:])
    # The VAE's deterministic (test-step) loss is reconstruction + beta * KL / pixels.
    expected = [
        pixels * float(model.compute_losses(image[None], image[None], training=False)["loss"])
        for image in images
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_kl_divergence_closed_form():
    mean = np.array([[1.0, 0.0]])
    log_var = np.array([[0.0, math.log(2.0)]])
    # 0.5 * sum(exp(log_var) + mean^2 - 1 - log_var) = 0.5 * (1 + (1 - ln 2))
    assert anomaly.kl_divergence(mean, log_var) == pytest.approx([1.0 - math.log(2.0) / 2])
    assert anomaly.kl_divergence(np.zeros((3, 4)), np.zeros((3, 4))) == pytest.approx([0, 0, 0])


def test_ssim_error_is_zero_for_a_copy_and_positive_otherwise(digits_small):
    images = digits_small["x_val"][:4]
    assert anomaly.ssim_error(images, images) == pytest.approx(np.zeros(4), abs=1e-12)
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 0.3, images.shape), 0, 1)
    errors_ = anomaly.ssim_error(images, noisy)
    assert np.all(errors_ > 0.05) and np.all(errors_ <= 2.0)


def test_onnx_outputs_scales_uint8_images_like_inference():
    seen = {}

    def encode(images):
        seen["images"] = images
        return images.reshape(len(images), -1)[:, :2]

    encoder = types.SimpleNamespace(encode=encode)
    decoder = types.SimpleNamespace(decode=lambda codes: np.full((len(codes), 2, 2, 1), 0.5))
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)  # (1, 2, 2), C omitted
    inputs = anomaly.onnx_outputs(encoder, decoder, images)
    assert seen["images"].dtype == np.float32
    np.testing.assert_allclose(inputs.images.ravel(), [0.0, 1.0, 0.2, 0.4], rtol=1e-6)
    assert inputs.images.shape == (1, 2, 2, 1) and inputs.log_var is None


# ------------------------------------------------------------------------------ thresholds


def test_target_fpr_threshold_reaches_the_requested_rate_on_fresh_normals():
    rng = np.random.default_rng(0)
    threshold = anomaly.target_fpr_threshold(rng.normal(size=100_000), target_fpr=0.01)
    # Continuous scores do not tie: exactly floor(n * 0.01) of them lie above the cut.
    assert threshold.fpr == 0.01 and threshold.rule == "target_fpr"
    # The sample quantile's standard error is sqrt(p (1 - p) / n) / pdf(q), about 0.012.
    assert threshold.value == pytest.approx(stats.norm.ppf(0.99), abs=0.05)
    # A fresh sample's FPR: the closed form 0.01 within about five binomial standard errors.
    fresh = rng.normal(size=100_000)
    assert np.mean(threshold.flag(fresh)) == pytest.approx(0.01, abs=0.0025)
    assert stats.norm.sf(threshold.value) == pytest.approx(0.01, abs=0.0025)


@pytest.mark.parametrize(("target", "expected"), [(0.05, 95.0), (0.049, 96.0), (0.29, 71.0)])
def test_target_fpr_quantile_convention(target, expected):
    scores = np.arange(1.0, 101.0)
    threshold = anomaly.target_fpr_threshold(np.random.default_rng(1).permutation(scores), target)
    allowed = math.floor(round(100 * target, 9))
    assert threshold.value == expected
    assert threshold.value == np.quantile(scores, 1 - allowed / 100, method="inverted_cdf")
    assert threshold.fpr == allowed / 100 <= target


def test_target_fpr_with_ties_stays_below_the_target():
    normal = np.array([0.0] * 50 + [1.0] * 50)
    threshold = anomaly.target_fpr_threshold(normal, target_fpr=0.3)
    assert threshold.value == 1.0 and threshold.fpr == 0.0


def test_f1_optimal_threshold_on_a_hand_case():
    threshold = anomaly.f1_optimal_threshold([0.1, 0.2, 0.3, 0.8], [0.7, 0.9, 0.95])
    # Flagging above 0.3: 3 true positives, 1 false: F1 = 6 / 7 (above 0.8: 4 / 5).
    assert threshold.value == 0.3
    assert threshold.f1 == pytest.approx(6 / 7)
    assert (threshold.tpr, threshold.fpr) == (1.0, 0.25)


def test_f1_optimal_threshold_matches_a_brute_force_with_sklearn():
    rng = np.random.default_rng(2)
    normal, anomalous = rng.integers(0, 30, 200) / 10.0, rng.integers(15, 40, 40) / 10.0
    threshold = anomaly.f1_optimal_threshold(normal, anomalous)
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    scores = np.r_[normal, anomalous]
    candidates = np.r_[np.unique(scores), scores.min() - 1]
    best = max(metrics.f1_score(labels, scores > cut) for cut in candidates)
    assert threshold.f1 == pytest.approx(best, rel=1e-12)
    assert metrics.f1_score(labels, scores > threshold.value) == pytest.approx(best, rel=1e-12)


def test_fixed_threshold_and_choose_threshold_registry():
    fixed = anomaly.choose_threshold("fixed", [1.0, 2.0, 3.0, 4.0], value=2.5)
    assert (fixed.value, fixed.fpr, fixed.n_normal) == (2.5, 0.5, 4)
    chosen = anomaly.choose_threshold("target_fpr", np.arange(100.0), target_fpr=0.1)
    assert chosen == anomaly.target_fpr_threshold(np.arange(100.0), 0.1)


def test_threshold_record_round_trips_through_json():
    threshold = anomaly.f1_optimal_threshold([0.1, 0.2, 0.3, 0.8], [0.7, 0.9, 0.95])
    payload = json.loads(json.dumps(threshold.to_dict()))
    assert anomaly.Threshold.from_dict(payload) == threshold


# -------------------------------------------------------------------------------- metrics


def test_auroc_is_the_mann_whitney_u_statistic():
    rng = np.random.default_rng(3)
    normal, anomalous = rng.integers(0, 20, 300), rng.integers(5, 25, 70)  # with ties
    labels = np.r_[np.zeros(300), np.ones(70)]
    u_statistic = stats.mannwhitneyu(anomalous, normal).statistic
    auroc = anomaly.auroc(labels, np.r_[normal, anomalous])
    assert auroc == pytest.approx(u_statistic / (300 * 70), rel=1e-12)


def test_auroc_auprc_and_rates_on_hand_cases():
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert anomaly.auroc(labels, scores) == pytest.approx(0.75)  # 3 of 4 pairs ordered
    # Descending: 0.8 (recall 1/2, precision 1), 0.35 (recall 1, precision 2/3).
    assert anomaly.auprc(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    rates = anomaly.rates([0, 0, 0, 1, 1], [0.1, 0.6, 0.2, 0.7, 0.3], threshold=0.5)
    assert rates == pytest.approx(anomaly.Rates(fpr=1 / 3, tpr=0.5, precision=0.5, f1=0.5))
    # A score equal to the threshold is not flagged.
    none_flagged = anomaly.rates([0, 1], [0.2, 0.7], threshold=0.7)
    assert none_flagged == (0.0, 0.0, 0.0, 0.0)
    summary = anomaly.evaluate(labels, scores, threshold=0.5)
    assert set(summary) == {"auroc", "auprc", "fpr", "tpr", "precision", "f1"}


# ---------------------------------------------------------------------------- densities


def two_clusters(n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(4)
    return np.r_[rng.normal((-5, 0), 1.0, (n, 2)), rng.normal((5, 0), 1.0, (n, 2))]


def test_mixture_density_ranks_a_far_point_above_the_cluster_centres():
    codes = two_clusters()
    density = anomaly.GaussianMixtureDensity.fit(codes, n_components=2, seed=0)
    probes = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 0.0], [0.0, 20.0]])
    nll = density.negative_log_likelihood(probes)
    assert nll[3] > nll[2] > max(nll[0], nll[1])
    reference = GaussianMixture(2, covariance_type="full", reg_covar=1e-4, random_state=0)
    np.testing.assert_allclose(-nll, reference.fit(codes).score_samples(probes), rtol=1e-10)


def test_one_component_mixture_is_the_gaussian_log_density():
    codes = two_clusters(50)
    density = anomaly.GaussianMixtureDensity.fit(codes, n_components=1, reg_covar=1e-3)
    covariance = np.cov(codes.T, bias=True) + 1e-3 * np.eye(2)
    expected = stats.multivariate_normal(codes.mean(axis=0), covariance).logpdf(codes[:5])
    np.testing.assert_allclose(density.log_likelihood(codes[:5]), expected, rtol=1e-9)


def test_mahalanobis_matches_scipy_and_survives_a_dead_unit():
    codes = two_clusters(100)
    gaussian = anomaly.GaussianDensity.fit(codes, covariance="empirical")
    precision = np.linalg.inv(np.cov(codes.T, bias=True))
    expected = [spatial.distance.mahalanobis(c, codes.mean(0), precision) ** 2 for c in codes[:5]]
    np.testing.assert_allclose(gaussian.mahalanobis(codes[:5]), expected, rtol=1e-9)
    dead = np.c_[codes, np.zeros(len(codes))]  # a relu unit that never fires
    shrunk = anomaly.GaussianDensity.fit(dead, covariance="ledoit_wolf")
    distances = shrunk.mahalanobis(np.array([[0.0, 0.0, 0.0], [0.0, 30.0, 0.0]]))
    assert np.all(np.isfinite(distances)) and distances[1] > distances[0]


# ----------------------------------------------------------------------------- combination


def test_combination_standardises_each_score_on_a_known_sample():
    components = {"a": np.arange(1.0, 6.0), "b": 10 * np.arange(1.0, 6.0)}
    by_mean = {name: anomaly.Standardisation.fit(v, "mean_std") for name, v in components.items()}
    assert by_mean["a"] == pytest.approx((3.0, math.sqrt(2.0)))  # population std
    assert by_mean["b"] == pytest.approx((30.0, 10 * math.sqrt(2.0)))
    expected = math.sqrt(2.0) * (np.arange(1.0, 6.0) - 3.0)  # 2 (x - 3) / sqrt(2)
    np.testing.assert_allclose(anomaly.combine(components, by_mean), expected)
    by_median = {k: anomaly.Standardisation.fit(v, "median_iqr") for k, v in components.items()}
    assert by_median["a"] == (3.0, 2.0) and by_median["b"] == (30.0, 20.0)
    np.testing.assert_allclose(anomaly.combine(components, by_median), np.arange(-2.0, 3.0))


def test_score_model_fits_on_normal_data_and_round_trips_through_json(digits_small):
    model = tiny_model({"name": "plain", "loss": "bce"}, digits_small["x_train"])
    config = anomaly.ScoreConfig(scores=("reconstruction", "ssim", "density", "mahalanobis"))
    train_codes = model.encode(digits_small["x_train"])
    validation = anomaly.keras_outputs(model, digits_small["x_val"])
    score_model = anomaly.fit_score_model(train_codes, validation, config)
    for name, values in score_model.components(validation).items():
        standardised = score_model.standardisation[name].apply(values)
        assert standardised.mean() == pytest.approx(0.0, abs=1e-9)
        assert standardised.std() == pytest.approx(1.0, rel=1e-9)
    combined = score_model.score(validation)
    assert combined.shape == (len(validation),) and combined.mean() == pytest.approx(0, abs=1e-9)
    restored = anomaly.ScoreModel.from_dict(json.loads(json.dumps(score_model.to_dict())))
    test = anomaly.keras_outputs(model, digits_small["x_test"][:50])
    assert np.array_equal(restored.score(test), score_model.score(test))


# ----------------------------------------------------------------------------- bad input


def bad_calls():
    normal = np.arange(10.0)
    inputs = anomaly.ScoreInputs(np.zeros((2, 2, 2, 1)), np.zeros((2, 2, 2, 1)), np.zeros((2, 3)))
    model = anomaly.ScoreModel(anomaly.ScoreConfig(scores=("elbo",)), {})
    return {
        "nan scores": lambda: anomaly.target_fpr_threshold([0.1, float("nan"), 0.3]),
        "nan auroc": lambda: anomaly.auroc([0, 1], [0.1, float("nan")]),
        "empty normal set": lambda: anomaly.target_fpr_threshold([]),
        "empty f1 normals": lambda: anomaly.f1_optimal_threshold([], [1.0]),
        "target_fpr 0": lambda: anomaly.target_fpr_threshold(normal, 0.0),
        "target_fpr 1": lambda: anomaly.target_fpr_threshold(normal, 1.0),
        "target_fpr above 1": lambda: anomaly.target_fpr_threshold(normal, 1.5),
        "target_fpr nan": lambda: anomaly.target_fpr_threshold(normal, float("nan")),
        "labels and scores": lambda: anomaly.auroc([0, 1, 1], [0.1, 0.2]),
        "one class": lambda: anomaly.auprc([1, 1], [0.1, 0.2]),
        "images and codes": lambda: anomaly.ScoreInputs(
            np.zeros((3, 2, 2, 1)), np.zeros((3, 2, 2, 1)), np.zeros((2, 4))
        ),
        "nan reconstructions": lambda: anomaly.ssim_error(
            np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), np.nan)
        ),
        "images and reconstructions": lambda: anomaly.reconstruction_error(
            np.zeros((3, 2, 2, 1)), np.zeros((2, 2, 2, 1))
        ),
        "unknown score": lambda: anomaly.ScoreConfig(scores=("reconstruction", "entropy")),
        "unknown config key": lambda: anomaly.ScoreConfig.from_params({"components": 3}),
        "unknown rule": lambda: anomaly.choose_threshold("youden", normal),
        "f1 without anomalies": lambda: anomaly.choose_threshold("f1_optimal", normal),
        "elbo without log_var": lambda: model.components(inputs),
        "too few codes": lambda: anomaly.GaussianMixtureDensity.fit(np.zeros((3, 2))),
        "constant score": lambda: anomaly.Standardisation.fit(np.ones(5)),
        "damaged score model": lambda: anomaly.ScoreModel.from_dict({"version": 1}),
    }


@pytest.mark.parametrize("case", sorted(bad_calls()))
def test_bad_input_is_a_one_line_user_error(case):
    with pytest.raises(errors.UserError) as excinfo:
        bad_calls()[case]()
    one_line_user_error(excinfo)


# ------------------------------------------------------------- params.yaml's anomaly section


def test_params_anomaly_section_builds_the_score_config():
    params = config.load_params(REPO / "params.yaml")
    settings = config.from_mapping(anomaly.AnomalyParams, params["anomaly"], "anomaly")
    expected = ("reconstruction", "density", "local_error")
    assert settings.scores == expected == anomaly.params.DEFAULT_SCORES
    assert (settings.local_sigma, settings.pixel_target_fpr) == (2.0, 0.001)
    assert (settings.threshold, settings.target_fpr, settings.value) == ("target_fpr", 0.01, None)
    score_config = settings.score_config("mse", 0.5, seed=7)
    assert (score_config.loss, score_config.beta, score_config.seed) == ("mse", 0.5, 7)
    assert score_config.n_components == settings.n_components
    assert score_config.scores == settings.scores
    fixed = config.from_mapping(
        anomaly.AnomalyParams, {"threshold": "fixed", "value": 2}, "anomaly"
    )
    assert fixed.value == 2.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"components": 3}, r"anomaly: unknown key\(s\) \['components'\]"),
        ({"threshold": "youden"}, "anomaly.threshold 'youden' is unknown"),
        ({"threshold": "fixed"}, "anomaly.threshold fixed needs anomaly.value"),
        ({"target_fpr": 1.5}, "anomaly.target_fpr must lie strictly between 0 and 1"),
        ({"fit_subsample": -1}, "anomaly.fit_subsample must be >= 0"),
        ({"scores": ["reconstruction", "entropy"]}, "anomaly.scores"),
        ({"scores": "density"}, "anomaly.scores must be a list"),
        ({"n_components": 0}, "anomaly.n_components must be an integer >= 1"),
    ],
)
def test_bad_anomaly_params_fail_with_one_line_naming_the_key(settings, message):
    with pytest.raises(config.ConfigError, match=message) as excinfo:
        config.from_mapping(anomaly.AnomalyParams, settings, "anomaly")
    one_line_user_error(excinfo)
