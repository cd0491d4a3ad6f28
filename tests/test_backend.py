"""Keras' backend per variant: selection, its guards, and the JAX trainer against TensorFlow.

The pytest process runs Keras on TensorFlow; the JAX side runs in a child process (a process
cannot switch backends) started on the same initial weights and batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from autoencoders import models
from autoencoders.benchmarks import trainers
from autoencoders.config import ConfigError
from autoencoders.training import backend, loop

DENSE = {"architecture": {"name": "dense", "latent_dim": 8}, "objective": {"name": "plain"}}
SPARSE = {
    "architecture": {"name": "dense", "latent_dim": 8},
    "objective": {"name": "sparse", "loss": "bce", "kind": "l1", "weight": 1.0e-3},
}
VAE = {
    "architecture": {"name": "dense", "hidden_units": [16], "latent_dim": 4},
    "objective": {"name": "variational", "loss": "bce", "beta": 1.0},
}


def test_variant_backend_layers_the_train_section_and_the_variant():
    params = {
        "train": {"backend": "jax"},
        "variants": {"a": {}, "b": {"train": {"backend": "tensorflow"}}, "c": {"train": {}}},
    }
    assert backend.variant_backend(params, "a") == "jax"
    assert backend.variant_backend(params, "b") == "tensorflow"
    assert backend.variant_backend(params, "c") == "jax"
    assert backend.variant_backend({"variants": {"a": {}}}, "a") == "tensorflow"
    with pytest.raises(ConfigError, match=r"variants\.a\.train\.backend .*'torch'.*'jax'"):
        backend.variant_backend({"variants": {"a": {"train": {"backend": "torch"}}}}, "a")


def test_activate_leaves_a_loaded_keras_alone(monkeypatch):
    import keras

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert keras.backend.backend() == "tensorflow"
    backend.activate("jax")  # too late in this process: nothing changes
    assert "KERAS_BACKEND" not in os.environ and keras.backend.backend() == "tensorflow"
    backend.activate("tensorflow")
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    with pytest.raises(ConfigError, match="valid backends"):
        backend.activate("torch")


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (
            {"architecture": {"name": "dense"}, "objective": {"name": "contractive"}},
            "contractive objective trains on TensorFlow only",
        ),
        (
            {"architecture": {"name": "conv"}, "objective": {"name": "denoising"}},
            "input noise",
        ),
        ({**DENSE, "train": {"shuffle_buffer": 100}}, "shuffle_buffer"),
    ],
)
def test_jax_is_refused_where_the_trainer_needs_tensorflow(block, reason):
    block = {**block, "train": {**block.get("train", {}), "backend": "jax"}}
    with pytest.raises(ConfigError, match=f"backend: jax is not supported here: .*{reason}"):
        loop.resolve_variant("v", block, {}, None)
    resolved, _ = loop.resolve_variant("v", {**DENSE, "train": {"backend": "jax"}}, {}, None)
    assert resolved.settings.backend == "jax"


def test_training_on_the_wrong_backend_is_refused_before_any_work(digits_small):
    resolved, _ = loop.resolve_variant("v", {**DENSE, "train": {"backend": "jax"}}, {}, None)
    with pytest.raises(ConfigError, match=r"activate\('jax'\)"):
        loop.fit_resolved(resolved, digits_small["x_train"], digits_small["x_val"], seed=0)


JAX_SIDE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from autoencoders.training import backend
    backend.activate("jax")
    import keras
    from autoencoders import models
    from autoencoders.training import loop
    work = sys.argv[1]
    spec = json.load(open(f"{work}/spec.json"))
    x = np.load(f"{work}/x.npy")
    results = {}
    for name, block in spec["blocks"].items():
        config = models.VariantConfig.from_params(name, block)
        model = loop.build_and_compile(config, x.shape[1:], 1e-2, 0, steps_per_execution=4)
        model.load_weights(f"{work}/{name}.initial.weights.h5")
        evaluated = model.evaluate(x, x, batch_size=32, return_dict=True, verbose=0)
        if name != "vae":  # its sampling draws other numbers on another backend
            model.fit(x, x, batch_size=32, epochs=2, shuffle=False, verbose=0)
            model.save_weights(f"{work}/{name}.jax.weights.h5")
        results[name] = {key: float(value) for key, value in evaluated.items()}
    out = {"backend": keras.backend.backend(), "evaluated": results}
    json.dump(out, open(f"{work}/out.json", "w"))
    """
)


def test_the_jax_trainer_computes_what_the_tensorflow_trainer_computes(digits_small, tmp_path):
    # Same initial weights, same batches (no shuffle), two epochs of Adam: the JAX step (Keras'
    # own, through Autoencoder.compute_loss, 4 steps per execution, XLA) against TensorFlow's
    # (one step per execution), for a plain and a penalised objective; the VAE's losses on the
    # same weights (its training samples differ by backend's random numbers).
    x = digits_small["x_train"][:256]
    blocks = {"dense": DENSE, "sparse": SPARSE, "vae": VAE}
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "spec.json").write_text(json.dumps({"blocks": blocks}))
    tensorflow = {}
    for name, block in blocks.items():
        config = models.VariantConfig.from_params(name, block)
        model = loop.build_and_compile(config, x.shape[1:], 1e-2, 0)
        model.save_weights(tmp_path / f"{name}.initial.weights.h5")
        initial = [np.asarray(weight) for weight in model.weights]
        evaluated = model.evaluate(x, x, batch_size=32, return_dict=True, verbose=0)
        if name != "vae":
            model.fit(x, x, batch_size=32, epochs=2, shuffle=False, verbose=0)
        tensorflow[name] = (initial, [np.asarray(weight) for weight in model.weights], evaluated)
    subprocess.run(
        [sys.executable, "-c", JAX_SIDE, str(tmp_path)],
        check=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
        timeout=300,
    )
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["backend"] == "jax"
    for name, (initial, trained, evaluated) in tensorflow.items():
        for key, value in evaluated.items():
            assert out["evaluated"][name][key] == pytest.approx(float(value), rel=1e-5), key
        if name == "vae":
            continue
        config = models.VariantConfig.from_params(name, blocks[name])
        jax_model = models.build_autoencoder(config, x.shape[1:])
        jax_model.load_weights(tmp_path / f"{name}.jax.weights.h5")
        for before, ours, theirs in zip(initial, trained, jax_model.weights, strict=True):
            moved = np.max(np.abs(ours - before))
            assert moved > 1e-2  # 16 Adam steps at lr 1e-2 moved every weight tensor
            np.testing.assert_allclose(np.asarray(theirs), ours, rtol=0, atol=1e-3 * moved)


def test_a_child_trainer_runs_the_variant_on_its_backend(digits_small):
    # The bench's path for a JAX variant from this TensorFlow process: a spawned trainer with
    # the same model (weight count from the model built here) that trains on request.
    block = {**DENSE, "train": {"backend": "jax"}}
    expected = models.parameter_count(
        models.build_autoencoder(models.VariantConfig.from_params("v", block), (8, 8, 1))
    )
    parameters, settings, fit, close = trainers.trainer_for(
        ("v", block, {}, None), digits_small["x_train"], batch_size=32, seed=0
    )
    try:
        assert settings.backend == "jax" and parameters == expected
        fit(1)
        fit(2)
    finally:
        close()
