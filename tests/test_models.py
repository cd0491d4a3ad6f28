"""The autoencoder zoo: every variant of params.yaml (plus a params-only conv VAE) on real
MNIST (28x28x1) and scikit-learn digits (8x8x1); penalties against known answers; registries
and configs failing loudly."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from autoencoders import config as config_module
from autoencoders import data, models
from autoencoders.models import autoencoder, objectives

PARAMS = config_module.load_params(Path(__file__).resolve().parents[1] / "params.yaml")
# The ten variants of params.yaml (nine autoencoders and idec), plus one made by params alone
# (a convolutional VAE).
VARIANT_BLOCKS = {
    **PARAMS["variants"],
    "conv_vae": {"architecture": {"name": "conv"}, "objective": {"name": "variational"}},
}
EXTRA_METRIC = {"sparse": "penalty", "contractive": "penalty", "variational": "kl_loss"}
BATCH = 16


def variant(name: str) -> models.VariantConfig:
    return models.VariantConfig.from_params(name, VARIANT_BLOCKS[name])


@pytest.fixture(params=["mnist", "digits"])
def images(request, mnist_small, digits_small) -> np.ndarray:
    """32 real training images: MNIST (32, 28, 28, 1) or digits (32, 8, 8, 1)."""
    return (mnist_small if request.param == "mnist" else digits_small)["x_train"][:32]


def trainable_values(model: keras.Model) -> list[np.ndarray]:
    return [np.array(weight) for weight in model.trainable_weights]


# ----------------------------------------------------------------------------- every variant


def test_every_params_yaml_variant_builds_its_config():
    for name in VARIANT_BLOCKS:
        assert variant(name).name == name


@pytest.mark.parametrize("name", sorted(VARIANT_BLOCKS))
def test_variant_trains_one_step_and_evaluates_without_changing(name, images):
    config = variant(name)
    keras.utils.set_random_seed(0)
    model = models.build_autoencoder(config, images.shape[1:], seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))

    outputs = model.reconstruct(images)
    assert outputs.shape == images.shape
    assert outputs.min() >= 0.0 and outputs.max() <= 1.0
    codes = model.encode(images)
    assert codes.shape == (len(images), *model.code_shape)
    assert model.latent_dim == math.prod(model.code_shape)
    assert model.encoder.name == "encoder" and model.decoder.name == "decoder"
    assert tuple(model.encoder.input.shape) == (None, *images.shape[1:])
    assert tuple(model.decoder.output.shape) == (None, *images.shape[1:])

    train = data.make_dataset(images[:BATCH], batch_size=BATCH, noise_std=config.noise_std)
    before = trainable_values(model)
    history = model.fit(train, validation_data=train, epochs=1, shuffle=False, verbose=0).history
    after = trainable_values(model)
    assert all(np.any(b != a) for b, a in zip(before, after, strict=True)), "a weight is frozen"

    expected = {"loss", "reconstruction_loss"}
    if config.objective_name in EXTRA_METRIC:
        expected.add(EXTRA_METRIC[config.objective_name])
    assert set(history) == expected | {f"val_{key}" for key in expected}
    assert all(np.isfinite(values[0]) for values in history.values())
    assert history["loss"][0] >= history["reconstruction_loss"][0]

    results = model.evaluate(train, verbose=0, return_dict=True)
    assert all(np.isfinite(value) for value in results.values())
    for b, a in zip(after, trainable_values(model), strict=True):
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("name", sorted(VARIANT_BLOCKS))
def test_variant_save_load_round_trip(name, mnist_small, tmp_path):
    images = mnist_small["x_test"][:8]
    model = models.build_autoencoder(variant(name), images.shape[1:])
    models.save_autoencoder(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(models.SAVED_FILES)

    loaded = models.load_autoencoder(tmp_path)
    assert loaded.config == model.config
    assert loaded.code_shape == model.code_shape
    np.testing.assert_array_equal(loaded.reconstruct(images), model.reconstruct(images))
    np.testing.assert_array_equal(loaded.encode(images), model.encode(images))
    # The encoder/decoder files stand alone (what export converts), with no custom objects.
    encoder = keras.models.load_model(tmp_path / "encoder.keras")
    np.testing.assert_array_equal(np.asarray(encoder(images)), model.encode(images))
    saved = models.load_config(tmp_path)
    assert saved == (model.config, (28, 28, 1))


def test_saving_the_same_model_twice_gives_the_same_bytes(tmp_path):
    """What DVC hashes in dvc.lock: the same weights saved later, from other Python objects,
    give byte-identical files (Keras stamps the save time and numbers shared objects by their
    memory address; both are taken out)."""
    first = models.build_autoencoder(variant("conv"), (28, 28, 1))
    second = models.build_autoencoder(variant("conv"), (28, 28, 1))
    second.set_weights(first.get_weights())
    models.save_autoencoder(first, tmp_path / "a")
    time.sleep(1.1)  # the stamp counts seconds
    models.save_autoencoder(second, tmp_path / "b")
    for name in models.SAVED_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # Within one process the shared objects have the same addresses; across processes (a second
    # machine's `make repro`, tests/test_team.py) they do not: the renumbering keeps the links.
    address = 140559776905616
    keras_config = {
        "a": {"shared_object_id": address},
        "b": [{"shared_object_id": 7}, {"c": {"shared_object_id": address}}],
    }
    assert autoencoder._renumber_shared_objects(keras_config, {}) == {
        "a": {"shared_object_id": 0},
        "b": [{"shared_object_id": 1}, {"c": {"shared_object_id": 0}}],
    }


# ---------------------------------------------------------------------- architectures, shapes


def reference(architecture: dict) -> models.VariantConfig:
    """A seed article's design, reachable from params.yaml by naming its architecture alone."""
    return models.VariantConfig.from_params(
        "reference", {"architecture": architecture, "objective": {"name": "plain"}}
    )


@pytest.mark.parametrize(
    ("architecture", "count"),
    [
        ({"name": "dense", "latent_dim": 32}, 50_992),
        ({"name": "deep_dense"}, 170_536),
        ({"name": "conv"}, 4_385),
        ({"name": "deep_conv"}, 13_207_681),
    ],
)
def test_reference_parameter_counts_on_mnist(architecture, count):
    model = models.build_autoencoder(reference(architecture), (28, 28, 1))
    assert models.parameter_count(model) == count
    assert model.count_params() == count


# Hand-computed: Dense(a -> b) has a*b + b weights, Conv2D(3x3, a -> b) 9*a*b + b,
# LSTM(a -> u) 4*(a*u + u*u + u).
CONV_DENSE = (
    (128 * 500 + 500)
    + (500 * 500 + 500)
    + (500 * 16 + 16)
    + (16 * 500 + 500)
    + (500 * 500 + 500)
    + (500 * 128 + 128)
)
BOTTLENECK_COUNTS = {
    # conv trunk 16-8-8 and decoder (4,385) + Dense 128 -> 500 -> 500 -> 16 and back
    "conv": ((16,), 4_385 + CONV_DENSE),
    "denoising": ((16,), 4_385 + CONV_DENSE),
    # LSTM(28 -> 64), Dense(64 -> 16), LSTM(16 -> 64), Dense(64 -> 28)
    "seq2seq": (
        (16,),
        4 * (28 * 64 + 64 * 64 + 64) + (64 * 16 + 16)
        + 4 * (16 * 64 + 64 * 64 + 64) + (64 * 28 + 28),
    ),
    # 784 -> 256 -> 32 -> 256 -> 784
    "dense": ((32,), (784 * 256 + 256) + (256 * 32 + 32) + (32 * 256 + 256) + (256 * 784 + 784)),
    # convs 1-8-16-32-64 (stride 2: 28 -> 14 -> 7 -> 4 -> 2), Dense 256 -> 500 -> 500 -> 32
    # and back, transposed convs 64 -> 64 -> 32 -> 16 -> 1
    "deep_conv": (
        (32,),
        (9 * 1 * 8 + 8) + (9 * 8 * 16 + 16) + (9 * 16 * 32 + 32) + (9 * 32 * 64 + 64)
        + (256 * 500 + 500) + (500 * 500 + 500) + (500 * 32 + 32)
        + (32 * 500 + 500) + (500 * 500 + 500) + (500 * 256 + 256)
        + (9 * 64 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 * 16 + 16) + (9 * 16 * 1 + 1),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BOTTLENECK_COUNTS))
def test_default_bottlenecks_have_the_stated_code_and_weights(name):
    code_shape, count = BOTTLENECK_COUNTS[name]
    model = models.build_autoencoder(variant(name), (28, 28, 1))
    assert model.code_shape == code_shape
    assert models.parameter_count(model) == count
    assert model.decoder.output.shape[1:] == (28, 28, 1)


def test_hidden_units_need_a_dense_code_and_sit_between_trunk_and_code():
    with pytest.raises(models.ConfigError, match="set architecture.latent_dim"):
        reference({"name": "conv", "hidden_units": [64]})  # the 4x4x8 map is the code
    with pytest.raises(models.ConfigError, match="set architecture.encoder_units"):
        reference({"name": "seq2seq", "hidden_units": [64]})  # the LSTM state is the code
    with pytest.raises(models.ConfigError, match="hidden_units must be positive"):
        reference({"name": "deep_conv", "hidden_units": [64, 0]})
    model = models.build_autoencoder(
        reference({"name": "seq2seq", "encoder_units": 64, "latent_dim": 8, "hidden_units": [32]}),
        (28, 28, 1),
    )
    dense = [
        (layer.name, layer.units) for layer in model.encoder.layers if hasattr(layer, "units")
    ]
    assert dense == [("lstm", 64), ("hidden_0", 32), ("code", 8)]
    assert [layer.name for layer in model.decoder.layers][1:3] == ["unhidden_0", "repeat"]


def test_conv_reproduces_the_reference_design_on_28x28():
    model = models.build_autoencoder(reference({"name": "conv"}), (28, 28, 1))
    assert model.code_shape == (4, 4, 8)  # 28 -> 14 -> 7 -> 4
    assert not any(isinstance(layer, keras.layers.Cropping2D) for layer in model.decoder.layers)
    paddings = [layer.padding for layer in model.decoder.layers if "conv" in layer.name]
    assert paddings == ["same", "same", "valid"]  # 16 -> 14, then upsampled to 28


@pytest.mark.parametrize("shape", [(8, 8, 1), (30, 22, 3), (7, 5, 2)])
@pytest.mark.parametrize("architecture", sorted(models.ARCHITECTURES))
def test_every_architecture_keeps_odd_input_shapes(architecture, shape):
    config = models.VariantConfig.from_params(
        "odd", {"architecture": {"name": architecture}, "objective": {"name": "plain"}}
    )
    model = models.build_autoencoder(config, shape)
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    assert model.reconstruct(x).shape == (2, *shape)


def test_vae_encoder_is_the_deterministic_mean(mnist_small):
    images = mnist_small["x_test"][:8]
    model = models.build_autoencoder(variant("vae"), (28, 28, 1))
    mean, log_var = model.posterior(images)
    np.testing.assert_allclose(model.encode(images), np.asarray(mean), rtol=1e-6)
    latent_dim = variant("vae").architecture.latent_dim
    assert log_var.shape == (8, latent_dim) and model.code_shape == (latent_dim,)
    np.testing.assert_array_equal(model.reconstruct(images), model.reconstruct(images))
    assert [layer.name for layer in model.encoder.layers][-1] == "mean"


def test_bad_input_shapes_and_images_are_clear_errors():
    with pytest.raises(ValueError, match="height, width, channels"):
        models.build_autoencoder(variant("conv"), (28, 28))
    model = models.build_autoencoder(variant("dense"), (8, 8, 1))
    with pytest.raises(ValueError, match=r"\(N, 8, 8, 1\)"):
        model.reconstruct(np.zeros((2, 28, 28, 1), dtype=np.float32))


# -------------------------------------------------------------------- objectives: known answers


def test_reconstruction_losses_known_values():
    targets = np.array([[1.0, 0.0]], dtype=np.float32)
    outputs = np.array([[0.5, 0.5]], dtype=np.float32)
    assert float(objectives.reconstruction_loss(targets, outputs, "mse")) == pytest.approx(0.25)
    assert float(objectives.reconstruction_loss(targets, outputs, "bce")) == pytest.approx(
        math.log(2.0), rel=1e-6
    )


def test_denoising_input_is_noisy_and_target_is_clean(mnist_small):
    clean = mnist_small["x_train"][:BATCH]
    noisy, target = next(iter(data.make_dataset(clean, batch_size=BATCH, noise_std=0.2)))
    np.testing.assert_array_equal(target.numpy(), clean)
    assert 0.0 <= noisy.numpy().min() and noisy.numpy().max() <= 1.0
    assert 0.05 < float(np.std(noisy.numpy() - clean)) < 0.25
    # The model scores its output on the noisy input against the clean target.
    model = models.build_autoencoder(variant("denoising"), clean.shape[1:])
    losses = model.compute_losses(noisy, target)
    expected = objectives.reconstruction_loss(clean, model(noisy), "bce")
    assert float(losses["reconstruction_loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert variant("denoising").noise_std == 0.2 and variant("conv").noise_std == 0.0


def test_sparse_l1_penalty_is_zero_for_a_zero_code_and_grows_with_activity():
    zero = np.zeros((4, 32), dtype=np.float32)
    assert float(objectives.sparse_penalty(zero, kind="l1", weight=1e-3)) == 0.0
    code = np.random.default_rng(0).random((4, 32), dtype=np.float32)
    small = float(objectives.sparse_penalty(code, kind="l1", weight=1e-3))
    large = float(objectives.sparse_penalty(3 * code, kind="l1", weight=1e-3))
    assert small == pytest.approx(1e-3 * code.sum(axis=1).mean(), rel=1e-5)
    assert large == pytest.approx(3 * small, rel=1e-5)


def test_sparse_kl_penalty_is_zero_at_the_target_activation():
    at_target = np.full((4, 8), 0.05, dtype=np.float32)
    assert float(objectives.sparse_penalty(at_target, kind="kl", weight=1.0, target=0.05)) == (
        pytest.approx(0.0, abs=1e-6)
    )
    busy = np.full((4, 8), 0.5, dtype=np.float32)
    expected = 8 * (0.05 * math.log(0.05 / 0.5) + 0.95 * math.log(0.95 / 0.5))
    assert float(objectives.sparse_penalty(busy, kind="kl", weight=1.0, target=0.05)) == (
        pytest.approx(expected, rel=1e-5)
    )


def test_contractive_penalty_of_a_linear_encoder_is_its_weights_frobenius_norm():
    inputs = keras.Input((4, 4, 1))
    code = keras.layers.Dense(3)(keras.layers.Flatten()(inputs))
    encoder = keras.Model(inputs, code)
    kernel = np.asarray(encoder.layers[-1].kernel)
    x = np.random.default_rng(0).random((5, 4, 4, 1), dtype=np.float32)
    penalty = float(objectives.contractive_penalty(encoder, x, weight=0.5))
    assert penalty == pytest.approx(0.5 * float(np.sum(kernel**2)), rel=1e-5)


def test_contractive_penalty_of_a_sigmoid_encoder_matches_the_closed_form():
    # ||J||_F^2 = sum_j (h_j (1 - h_j))^2 ||W_j||^2 for h = sigmoid(W x + b).
    inputs = keras.Input((4, 4, 1))
    code = keras.layers.Dense(3, activation="sigmoid")(keras.layers.Flatten()(inputs))
    encoder = keras.Model(inputs, code)
    kernel = np.asarray(encoder.layers[-1].kernel)  # (16, 3)
    x = np.random.default_rng(1).random((5, 4, 4, 1), dtype=np.float32)
    h = np.asarray(encoder(x))
    expected = np.mean(np.sum((h * (1 - h)) ** 2 * np.sum(kernel**2, axis=0), axis=1))
    assert float(objectives.contractive_penalty(encoder, x, weight=1.0)) == pytest.approx(
        float(expected), rel=1e-4
    )


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_contractive_closed_form_matches_the_autodiff_jacobian_and_its_gradients(activation):
    # Reference: TensorFlow's batch_jacobian of the whole encoder, and the weight gradients of
    # its squared norm, against the Flatten -> Dense closed form the objective uses.
    inputs = keras.Input((4, 4, 1))
    code = keras.layers.Dense(6, activation=activation)(keras.layers.Flatten()(inputs))
    encoder = keras.Model(inputs, code)
    x = tf.constant(np.random.default_rng(2).random((7, 4, 4, 1), dtype=np.float32))
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            reference_code = encoder(x)
        jacobian = inner.batch_jacobian(reference_code, x)
        reference = tf.reduce_mean(tf.reduce_sum(tf.square(jacobian), axis=[1, 2, 3, 4]))
    reference_grads = outer.gradient(reference, encoder.trainable_weights)
    with tf.GradientTape() as tape:
        fast_code, squared_norm = objectives.code_and_jacobian_norm(encoder, x)
        fast = tf.reduce_mean(squared_norm)
    fast_grads = tape.gradient(fast, encoder.trainable_weights)
    np.testing.assert_allclose(np.asarray(fast_code), np.asarray(reference_code), rtol=1e-6)
    assert float(fast) == pytest.approx(float(reference), rel=1e-5)
    for got, want in zip(fast_grads, reference_grads, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_contractive_model_penalty_is_lambda_times_the_jacobian_norm(mnist_small):
    images = mnist_small["x_train"][:8]
    config = variant("contractive")
    model = models.build_autoencoder(config, images.shape[1:])
    penalty = float(model.compute_losses(images, images)["penalty"])
    _, squared_norm = objectives.code_and_jacobian_norm(model.encoder, images)
    assert penalty == pytest.approx(config.objective.lambda_ * float(np.mean(squared_norm)))
    assert penalty > 0


def test_kl_divergence_known_values():
    zeros = np.zeros((3, 2), dtype=np.float32)
    np.testing.assert_allclose(objectives.kl_divergence(zeros, zeros), 0.0, atol=1e-7)
    ones = np.ones((3, 2), dtype=np.float32)
    np.testing.assert_allclose(objectives.kl_divergence(ones, zeros), 1.0, rtol=1e-6)  # 2 * 1/2


def test_vae_loss_combines_reconstruction_and_scaled_kl(mnist_small):
    images = mnist_small["x_train"][:8]
    model = models.build_autoencoder(variant("vae"), images.shape[1:])
    losses = {key: float(value) for key, value in model.compute_losses(images, images).items()}
    beta = variant("vae").objective.beta
    assert losses["loss"] == pytest.approx(
        losses["reconstruction_loss"] + beta * losses["kl_loss"] / 784, rel=1e-6
    )
    mean, log_var = model.posterior(images)
    expected_kl = float(tf.reduce_mean(objectives.kl_divergence(mean, log_var)))
    assert losses["kl_loss"] == pytest.approx(expected_kl, rel=1e-6)


# ------------------------------------------------------------------------- registries, configs


# The layer that carries each architecture's name: what its encoder must contain.
FAMILY = {"dense": "Dense", "conv": "Conv2D", "seq2seq": "LSTM", "spatial_conv": "Conv2D"}


def test_registries_hold_what_params_yaml_uses_each_built_as_named():
    """Every registered architecture and objective is used by a params.yaml variant (none dead,
    none missing); each config class is registered under one name only; and each architecture
    builds the layers its name says (no Conv2D in a dense encoder, an LSTM in seq2seq)."""
    # The surface-defect benchmark's design (make bench-defects) is a use as well.
    blocks = [*PARAMS["variants"].values(), PARAMS["defects_bench"]]
    assert {block["architecture"]["name"] for block in blocks} == set(models.ARCHITECTURES)
    assert {block["objective"]["name"] for block in blocks} == set(models.OBJECTIVES)
    registries = {"architecture": models.ARCHITECTURES, "objective": models.OBJECTIVES}
    for kind, registry in registries.items():
        for name, entry in registry.items():
            assert config_module.registered_name(registry, entry.config_class(), kind) == name
    for name in models.ARCHITECTURES:
        model = models.build_autoencoder(reference({"name": name}), (28, 28, 1))
        kinds = {type(layer).__name__ for layer in model.encoder.layers}
        family = FAMILY[name.removeprefix("deep_")]
        assert family in kinds, (name, kinds)
        assert not {"Conv2D", "LSTM"} - {family} & kinds, (name, kinds)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"architecture": {"name": "resnet"}, "objective": {"name": "plain"}}, "deep_conv"),
        ({"architecture": {"name": "conv"}, "objective": {"name": "gan"}}, "variational"),
        (
            {"architecture": {"name": "conv", "units": 3}, "objective": {"name": "plain"}},
            "kernel_size",
        ),
        (
            {"architecture": {"name": "dense"}, "objective": {"name": "contractive", "beta": 1}},
            "lambda",
        ),
        (
            {"architecture": {"name": "dense"}, "objective": {"name": "plain"}, "extra": 1},
            "search",
        ),
        (
            {
                "architecture": {"name": "dense", "latent_dim": "big"},
                "objective": {"name": "plain"},
            },
            "latent_dim",
        ),
        (
            {"architecture": {"name": "dense", "latent_dim": 0}, "objective": {"name": "plain"}},
            "positive",
        ),
        ({"architecture": {"name": "dense"}, "objective": {"name": "plain", "loss": "l2"}}, "bce"),
        ({"architecture": {"latent_dim": 2}, "objective": {"name": "plain"}}, "name"),
    ],
)
def test_bad_variant_blocks_fail_naming_the_valid_choices(block, message):
    with pytest.raises(ValueError, match=message):
        models.VariantConfig.from_params("bad", block)
    with pytest.raises(models.ConfigError):
        models.VariantConfig.from_params("bad", block)


def test_contractive_lambda_key_maps_to_the_lambda_field():
    config = variant("contractive")
    assert config.objective.lambda_ == pytest.approx(1e-4)
    assert config.to_params()["objective"]["lambda"] == pytest.approx(1e-4)
    for key in ("objective.lambda", "objective.lambda_"):
        assert config.with_overrides({key: 1e-3}).objective.lambda_ == pytest.approx(1e-3)
    assert "objective.lambda" in models.tunable_fields(config)


def test_with_overrides_returns_a_new_checked_config():
    config = variant("vae")
    original = config.architecture.latent_dim
    changed = config.with_overrides(
        {"architecture.latent_dim": original + 4, "objective.beta": 0.5}
    )
    assert (changed.architecture.latent_dim, changed.objective.beta) == (original + 4, 0.5)
    assert (config.architecture.latent_dim, config.objective.beta) == (original, 1.0)
    assert changed.search == config.search and changed.name == "vae"
    with pytest.raises(models.ConfigError, match="objective.beta"):
        config.with_overrides({"objective.lambda": 1.0})
    with pytest.raises(models.ConfigError, match="architecture.latent_dim"):
        config.with_overrides({"learning_rate": 1.0})
    with pytest.raises(models.ConfigError, match="latent_dim"):
        config.with_overrides({"architecture.latent_dim": 1.5})


def test_tunable_fields_and_params_round_trip():
    config = variant("vae")
    assert models.tunable_fields(config) == {
        "architecture.latent_dim",
        "architecture.hidden_units",
        "architecture.activation",
        "architecture.code_activation",
        "objective.loss",
        "objective.beta",
    }
    for name in VARIANT_BLOCKS:
        config = variant(name)
        assert models.VariantConfig.from_params(name, config.to_params()) == config
        # every search key of params.yaml names a field the search may set
        for key in config.search:
            if key.startswith(("architecture.", "objective.")):
                assert key in models.tunable_fields(config)


@pytest.mark.parametrize(
    ("filters", "kernel", "padding", "shape"),
    [
        (1, 3, "same", (4, 7, 5, 6)),  # the sigmoid pixels layer; odd, non-square input
        (16, 3, "valid", (4, 8, 8, 8)),  # the reference's valid 16x16 -> 14x14 layer
        (3, (2, 4), "same", (2, 5, 6, 3)),  # even, non-square kernels
        (2, 2, "valid", (2, 5, 4, 3)),  # even valid kernel: an odd output size
        (2, 5, "valid", (2, 6, 7, 2)),
    ],
)
def test_upsampled_conv_is_upsampling_then_conv2d_with_the_same_weights_and_gradients(
    filters, kernel, padding, shape
):
    import tensorflow as tf

    from autoencoders.models.upsampling import UpsampledConv2D

    x = tf.constant(np.random.default_rng(0).random(shape, dtype=np.float32))
    upsample = keras.layers.UpSampling2D(2)  # Keras' own layers are the reference
    reference = keras.layers.Conv2D(filters, kernel, padding=padding, activation="sigmoid")
    fused = UpsampledConv2D(filters, kernel, padding=padding, activation="sigmoid")
    reference.build(upsample.compute_output_shape(x.shape))
    fused.build(x.shape)
    rng = np.random.default_rng(1)  # bias too, so that a dropped bias shows
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in reference.get_weights()]
    reference.set_weights(weights)
    fused.set_weights(weights)
    assert [tuple(w.shape) for w in fused.weights] == [tuple(w.shape) for w in reference.weights]
    results = []
    for forward, layer in ((lambda t: reference(upsample(t)), reference), (fused, fused)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            output = forward(x)
            loss = tf.reduce_sum(output * tf.range(output.shape[-1], dtype=tf.float32) + output**2)
        results.append([output, *tape.gradient(loss, [x, *layer.trainable_weights])])
    assert tuple(results[1][0].shape) == fused.compute_output_shape(x.shape)
    for expected, actual in zip(*results, strict=True):
        assert actual.shape == expected.shape
        scale = float(np.abs(expected.numpy()).max())  # float32 sums taken in another order
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6 * scale)


def test_idec_manifold_restarts_are_checked_where_written():
    config = variant("idec")
    assert config.objective.init == "manifold" and config.objective.manifold_n_init >= 1
    with pytest.raises(models.ConfigError, match="objective.manifold_n_init"):
        config.with_overrides({"objective.manifold_n_init": 0})
    for key, bad in (("augment_shift", 0.5), ("augment_shift", -0.1), ("augment_rotation", 181)):
        with pytest.raises(models.ConfigError, match=f"objective.{key}"):
            config.with_overrides({f"objective.{key}": bad})
