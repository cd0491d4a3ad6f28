"""training: best-epoch weights, determinism, NaN handling, progress lines, hyperparameter layers,
and the train@<variant> stage's files and MLflow run. Small real data (8x8 digits, mnist5k)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from autoencoders import data, models
from autoencoders.config import ConfigError
from autoencoders.training import loop

DENSE = {
    "architecture": {"name": "dense", "latent_dim": 8},
    "objective": {"name": "plain", "loss": "bce"},
    "search": {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}},
}
DENOISING = {
    "architecture": {"name": "dense", "latent_dim": 8},
    "objective": {"name": "denoising", "loss": "bce", "noise_std": 0.2},
    "train": {"batch_size": 64},
}


def dense_config(name: str = "dense", block: dict | None = None) -> models.VariantConfig:
    return models.VariantConfig.from_params(name, block or DENSE)


def val_loss_of(model, x_val: np.ndarray, batch_size: int) -> float:
    dataset = data.make_dataset(x_val, batch_size=batch_size)
    return float(model.evaluate(dataset, verbose=0, return_dict=True)["loss"])


class SpoilAfter(keras.callbacks.Callback):
    """From epoch ``epoch`` on, a huge learning rate wrecks the weights: val_loss gets worse."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.optimizer.learning_rate.assign(5.0)


def test_keeps_best_weights_when_running_all_epochs(digits_small):
    config = dense_config()
    model, history, info = loop.train_variant(
        config,
        digits_small["x_train"],
        digits_small["x_val"],
        epochs=4,
        batch_size=32,
        learning_rate=1e-2,
        seed=0,
        patience=10,  # never stops early: the best weights must still come back at the end
        callbacks=[SpoilAfter(epoch=2)],
        verbose=False,
    )
    val_losses = history["val_loss"]
    assert info["epochs_run"] == 4 and not info["stopped_early"]
    assert len(history["loss"]) == len(val_losses) == 4
    assert min(val_losses[2:]) > min(val_losses[:2])  # the spoiled epochs are worse
    assert info["best_epoch"] == int(np.argmin(val_losses)) + 1 <= 2
    assert info["best_val_loss"] == pytest.approx(min(val_losses))
    # The returned model is the best epoch's, not the last one's.
    assert val_loss_of(model, digits_small["x_val"], 32) == pytest.approx(
        min(val_losses), rel=1e-4
    )


def test_early_stopping_stops_and_restores(digits_small):
    model, history, info = loop.train_variant(
        dense_config(),
        digits_small["x_train"],
        digits_small["x_val"],
        epochs=8,
        batch_size=32,
        learning_rate=1e-2,
        seed=0,
        patience=1,
        callbacks=[SpoilAfter(epoch=2)],
        verbose=False,
    )
    assert info["stopped_early"] and info["epochs_run"] < 8
    assert info["best_epoch"] <= 2
    assert val_loss_of(model, digits_small["x_val"], 32) == pytest.approx(
        min(history["val_loss"]), rel=1e-4
    )


def test_same_seed_same_history_and_info_fields(digits_small):
    runs = [
        loop.train_variant(
            dense_config("denoising", DENOISING),
            digits_small["x_train"],
            digits_small["x_val"],
            epochs=2,
            batch_size=64,
            learning_rate=3e-3,
            seed=7,
            patience=3,
            verbose=False,
        )
        for _ in range(2)
    ]
    (model, first, info), (_, second, _) = runs
    assert first["loss"] == second["loss"] and first["val_loss"] == second["val_loss"]
    assert first["loss"][1] < first["loss"][0]  # it learns
    assert info["parameter_count"] == model.count_params()  # Keras' own count
    assert info["images_per_second"] > 0
    assert info["train_images"] == len(digits_small["x_train"])
    assert len(info["epoch_seconds"]) == 2 and all(s > 0 for s in info["epoch_seconds"])


def test_prints_one_progress_line_per_epoch(digits_small, capsys):
    loop.train_variant(
        dense_config(),
        digits_small["x_train"],
        digits_small["x_val"],
        epochs=2,
        batch_size=64,
        learning_rate=1e-3,
        seed=0,
        patience=3,
        verbose=True,
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    for line in lines:
        fields = line.split()
        assert fields[2] == "loss" and math.isfinite(float(fields[3]))
        assert fields[4] == "val_loss" and math.isfinite(float(fields[5]))
        assert fields[6].endswith("s") and fields[-1] == "img/s"


class PoisonWeights(keras.callbacks.Callback):
    """Make the weights NaN after the first batch, as a diverging run would."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            for weight in self.model.trainable_weights:
                weight.assign(np.full(weight.shape, np.nan, dtype="float32"))


def test_nan_loss_stops_with_a_clear_error(digits_small):
    with pytest.raises(loop.TrainingDivergedError, match=r"NaN.*epoch 1.*learning rate"):
        loop.train_variant(
            dense_config(),
            digits_small["x_train"],
            digits_small["x_val"],
            epochs=3,
            batch_size=32,
            learning_rate=1e-3,
            seed=0,
            patience=3,
            callbacks=[PoisonWeights()],
            verbose=False,
        )


def test_rejects_bad_arrays(digits_small):
    with pytest.raises(ValueError, match="x_val"):
        loop.train_variant(
            dense_config(),
            digits_small["x_train"],
            digits_small["x_val"][:, :4],
            epochs=1,
            batch_size=32,
            learning_rate=1e-3,
            seed=0,
            patience=1,
            verbose=False,
        )


def test_hyperparameter_layers_in_order():
    config = dense_config("denoising", DENOISING)
    train_section = {"epochs": 5, "batch_size": 128, "learning_rate": 1e-3}
    # params.yaml train, then the variant's train: (batch_size 64).
    plain = loop.resolve_hyperparameters(train_section, config)
    assert (plain.settings.epochs, plain.settings.batch_size) == (5, 64)
    assert plain.settings.learning_rate == 1e-3 and plain.tuning_source == "none"
    # then best.json: learning_rate, batch_size and objective fields.
    best = {
        "params": {"learning_rate": 4e-4, "batch_size": 32, "objective.noise_std": 0.35},
        "source": "study",
    }
    tuned = loop.resolve_hyperparameters(train_section, config, best)
    assert tuned.settings.learning_rate == 4e-4 and tuned.settings.batch_size == 32
    assert tuned.config.objective.noise_std == 0.35 and config.objective.noise_std == 0.2
    assert tuned.as_params()["objective.noise_std"] == 0.35
    assert tuned.settings.epochs == 5 and tuned.tuning_source == "study"


def test_recorded_jit_compile_is_what_the_trainer_compiles_with():
    # JAX always compiles the step with XLA; training.json and MLflow must not say otherwise.
    config = dense_config()
    for backend_name, jit_compile, recorded in (
        ("jax", False, True),
        ("tensorflow", False, False),
        ("tensorflow", True, True),
    ):
        train = {"epochs": 1, "backend": backend_name, "jit_compile": jit_compile}
        resolved = loop.resolve_hyperparameters(train, config)
        assert resolved.settings.jit_compile is jit_compile
        assert resolved.as_params()["jit_compile"] is recorded


@pytest.mark.parametrize(
    ("train_section", "variant_train", "best", "message"),
    [
        ({"epochs": 0}, {}, None, "train.epochs"),
        ({"learning_rate": -1.0}, {}, None, "train.learning_rate"),
        ({}, {"epoch": 3}, None, r"unknown key\(s\) \['epoch'\]"),
        ({}, {}, {"params": {"momentum": 0.9}}, "momentum"),
        ({}, {}, {"params": {"objective.noise": 0.3}}, "objective.noise"),
    ],
)
def test_bad_hyperparameters_name_the_key(train_section, variant_train, best, message):
    config = dense_config("denoising", {**DENOISING, "train": variant_train})
    with pytest.raises(ConfigError, match=message):
        loop.resolve_hyperparameters(train_section, config, best)


def test_a_run_missing_from_the_store_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    # models/V/run.json names a run of another store (copied outputs, a changed URI): export,
    # evaluate and cluster stop with one line (a UserError: no traceback, exit 1) before they
    # write anything (tests/test_errors.py checks their outputs stay as they were).
    from autoencoders import fileio, tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    reference = tmp_path / "run.json"
    fileio.write_json(reference, {"run_id": "0123456789abcdef0123456789abcdef"})
    with pytest.raises(tracking.MissingRunError, match=r"re-run training \(dvc repro --force"):
        tracking.finished_run(reference)


@pytest.mark.slow
def test_train_and_save_writes_model_and_mlflow_run(tmp_path, monkeypatch, processed_dir):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    best_path = tmp_path / "tuning" / "denoising" / "best.json"
    best_path.parent.mkdir(parents=True)
    best_path.write_text(
        json.dumps(
            {
                "params": {"learning_rate": 2e-3, "batch_size": 256, "objective.noise_std": 0.3},
                "source": "study",
                "study_name": "denoising-abc",
                "value": 0.2,
            }
        )
    )
    output = tmp_path / "models" / "denoising"
    record = loop.train_and_save(
        variant="denoising",
        variant_block=DENOISING,
        train_section={"epochs": 2, "batch_size": 128, "learning_rate": 1e-3},
        seed=3,
        processed_dir=processed_dir,
        best_path=best_path,
        output_dir=output,
        verbose=False,
    )
    names = {path.name for path in output.iterdir()}
    assert set(models.SAVED_FILES) | {"history.json", "training.json", "run.json"} <= names
    assert not [path for path in output.parent.iterdir() if path.name.startswith(".")]
    saved = json.loads((output / "training.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["params"]["learning_rate"] == 2e-3 and saved["params"]["batch_size"] == 256
    assert saved["params"]["objective.noise_std"] == 0.3 and saved["params"]["seed"] == 3
    assert saved["epochs_run"] == 2 and 1 <= saved["best_epoch"] <= 2
    history = json.loads((output / "history.json").read_text())
    assert saved["best_val_loss"] == pytest.approx(min(history["val_loss"]))
    config = json.loads((output / "config.json").read_text())
    assert config["variant"]["objective"]["noise_std"] == 0.3
    reloaded = models.load_autoencoder(output)
    x_val, _ = data.load_split(processed_dir, "val")
    assert reloaded.reconstruct(x_val[:5]).shape == x_val[:5].shape

    run_ref = json.loads((output / "run.json").read_text())
    # training.json holds what the same inputs reproduce; this run's id and timings are
    # run.json's (which .dvcignore keeps out of dvc.lock).
    assert "seconds" not in json.dumps(saved) and run_ref["run_id"] not in json.dumps(saved)
    assert run_ref["train_seconds"] > 0 and len(run_ref["epoch_seconds"]) == saved["epochs_run"]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(run_ref["run_id"])
    assert run.info.run_name == "denoising-train" and run.info.status == "FINISHED"
    assert run.data.tags["kind"] == "final" and run.data.tags["dvc_stage"] == "train@denoising"
    assert run.data.tags["variant"] == "denoising" and len(run.data.tags["data_checksum"]) == 64
    assert float(run.data.params["learning_rate"]) == 2e-3
    assert run.data.params["config.objective.noise_std"] == "0.3"
    assert run.data.metrics["best_val_loss"] == pytest.approx(saved["best_val_loss"])
    curve = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in curve] == [0, 1]
    assert [m.value for m in curve] == pytest.approx(history["val_loss"])
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"history.json", "config.json"} <= artifacts
    # Its datasets: the training and validation splits, digest = the data checksum, i.e. the
    # SHA-256 of the three split files' SHA-256s (cut to the 36 characters MLflow stores).
    splits = "".join(
        hashlib.sha256((Path(processed_dir) / f"{name}.npz").read_bytes()).hexdigest()
        for name in ("train", "val", "test")
    )
    checksum = hashlib.sha256(splits.encode()).hexdigest()
    assert run.data.tags["data_checksum"] == checksum
    inputs = {
        next(tag.value for tag in found.tags if tag.key == "mlflow.data.context"): found.dataset
        for found in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "eval"}
    assert {found.digest for found in inputs.values()} == {checksum[:36]}
    x_train, _ = data.load_split(processed_dir, "train")
    profile = json.loads(inputs["training"].profile)
    assert profile["features_shape"] == list(x_train.shape)
    assert json.loads(inputs["eval"].source)["uri"] == "data/processed/val.npz"


def test_steps_per_execution_gives_the_same_weights_as_one(digits_small):
    weights = []
    for steps in (1, 4):
        model, _, _ = loop.train_variant(
            dense_config(),
            digits_small["x_train"][:256],
            digits_small["x_val"][:64],
            epochs=2,
            batch_size=32,
            learning_rate=1e-2,
            seed=3,
            patience=5,
            verbose=False,
            steps_per_execution=steps,
        )
        weights.append([np.asarray(weight) for weight in model.weights])
    for one, many in zip(*weights, strict=True):
        np.testing.assert_allclose(one, many, rtol=0, atol=1e-6)
    before = models.build_autoencoder(dense_config(), digits_small["x_train"].shape[1:], seed=3)
    assert any(  # and training moved them: the comparison is not between two untrained nets
        not np.allclose(np.asarray(a), np.asarray(b))
        for a, b in zip(before.weights, model.weights, strict=True)
    )


def test_dataset_is_a_seeded_full_permutation_each_epoch():
    x = np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1)  # image i holds the number i
    dataset = data.make_dataset(x, batch_size=16, shuffle=True, seed=7)

    def epoch_order(ds):
        order = []
        for inputs, targets in ds:
            np.testing.assert_array_equal(inputs.numpy(), targets.numpy())
            order += inputs.numpy().ravel().astype(int).tolist()
        return order

    first, second = epoch_order(dataset), epoch_order(dataset)
    assert sorted(first) == list(range(100)) and sorted(second) == list(range(100))
    assert first != second  # reshuffled every epoch
    assert first != list(range(100))
    again = data.make_dataset(x, batch_size=16, shuffle=True, seed=7)
    assert epoch_order(again) == first  # seeded
    batches = [len(inputs) for inputs, _ in data.make_dataset(x, batch_size=16)]
    assert batches == [16] * 6 + [4]
    assert epoch_order(data.make_dataset(x, batch_size=16)) == list(range(100))  # no shuffle
    # tf.data's autotuning model stays off (half-speed training epochs with it; make_dataset).
    assert dataset.options().autotune.enabled is False


def test_compile_settings_are_validated():
    with pytest.raises(ValueError, match="steps_per_execution"):
        loop.TrainSettings(steps_per_execution=0)
    with pytest.raises(ConfigError, match="jit_compile"):
        loop.resolve_hyperparameters({"jit_compile": "yes"}, dense_config())


# A short training of one variant in a fresh process; prints the instruction-set caps it ran
# under (oneDNN's, XLA's) and its weights' digest.
_DIGEST_SCRIPT = """
import hashlib, os, sys
import autoencoders.runtime
import numpy as np
from autoencoders import config, data
from autoencoders.data import sources
from autoencoders.training import loop
variant, overrides = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
params = config.load_params(os.environ["PARAMS"])
resolved, _ = loop.resolve_variant(variant, params["variants"][variant], params["train"], None)
variant_config = resolved.config.with_overrides({k: int(v) for k, v in overrides.items()})
x = data.to_unit_float(sources.make_source_arrays("mnist5k")["x_train"])
model, _, _ = loop.train_variant(
    variant_config, x[:768], x[768:1024], epochs=1, batch_size=128, learning_rate=0.004,
    seed=7, patience=1, verbose=False,
)
weights = b"".join(np.asarray(w).tobytes() for w in model.get_weights())
caps = os.environ.get("ONEDNN_MAX_CPU_ISA"), "--xla_cpu_max_isa=AVX2" in os.environ["XLA_FLAGS"]
print(*caps, hashlib.sha256(weights).hexdigest())
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "overrides"),
    [
        ("seq2seq", []),  # an LSTM: matrix products every time step
        # IDEC: pretraining, the manifold init (UMAP + a Gaussian mixture) and clustering steps
        ("idec", ["objective.init_subsample=512", "objective.max_iterations=12",
                  "objective.update_interval=6"]),
    ],
)  # fmt: skip
def test_training_gives_the_same_weights_in_two_processes(variant, overrides, tmp_path):
    """Two processes, the same settings: the same weights, byte for byte, under the instruction
    set caps the package sets for oneDNN and XLA (docs/determinism.md)."""
    import subprocess
    import sys

    env = {**os.environ, "PARAMS": str(Path(__file__).resolve().parents[1] / "params.yaml")}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    env.pop("XLA_FLAGS", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT, variant, *overrides],
            env=env, capture_output=True, text=True, timeout=600, check=True,
        ).stdout.split()[-3:]
        for _ in range(2)
    ]  # fmt: skip
    assert runs[0] == runs[1]
    assert runs[0][:2] == ["AVX2", "True"]
