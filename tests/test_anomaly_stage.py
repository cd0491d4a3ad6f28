"""The anomaly@V stage on its own: its threshold against an independent numpy reference, and
its place in dvc.yaml (the anomaly params re-run it alone, never the export)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from autoencoders import anomaly, export, fileio, inference, models
from autoencoders.anomaly import fitting, stage

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits_small) -> dict:
    """A dense autoencoder with a 4-number code trained two epochs on 300 digits, exported as
    export@V writes it."""
    block = {"architecture": {"name": "dense", "latent_dim": 4}, "objective": {"name": "plain"}}
    keras.utils.set_random_seed(0)
    model = models.build_autoencoder(models.VariantConfig.from_params("tiny", block), (8, 8, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = digits_small["x_train"]
    model.fit(images, images, batch_size=32, epochs=2, shuffle=False, verbose=0)
    root = tmp_path_factory.mktemp("anomaly_stage")
    export_card = export.export_models(
        model.encoder,
        model.decoder,
        root / "exports" / "tiny",
        variant="tiny",
        opset=17,
        tolerance=1e-5,
        parity_images=digits_small["x_test"],
        parity_batch_sizes=(1, 7),
    )
    return {"root": root, "model": model, "export_card": export_card}


@pytest.mark.parametrize("target_fpr", [0.05, 0.013])
def test_threshold_is_the_target_fpr_quantile_of_the_scorers_own_normal_scores(
    exported, digits_small, target_fpr
):
    settings = anomaly.AnomalyParams(n_components=3, fit_subsample=0, target_fpr=target_fpr)
    model, x_val = exported["model"], digits_small["x_val"]
    score_model, skipped = fitting.prepare(
        model, settings, seed=0, x_train=digits_small["x_train"], x_val=x_val, val_anomalies=None
    )
    assert skipped is None
    directory = exported["root"] / "scorers" / f"tiny-{target_fpr}"
    card, block = stage.write_scorer(
        directory,
        model,
        score_model,
        settings,
        export_card=exported["export_card"],
        x_val=x_val,
        evaluation={
            "val_anomalies": None,
            "x_test": digits_small["x_test"],
            "y_test": digits_small["y_test"],
            "normal_classes": None,
        },
    )
    # The reference: the shipped scorer.onnx run in a session of our own, and numpy's quantile.
    scores = inference.Scorer(directory).score(x_val)
    n = len(scores)
    assert n == 300 and len(np.unique(scores)) == n  # no ties: the share flagged is exact
    allowed = math.floor(n * target_fpr)  # normal images that may be flagged: 15, then 3
    reference = np.quantile(scores, 1.0 - allowed / n, method="inverted_cdf")
    threshold = card["anomaly"]["threshold"]
    assert threshold["value"] == block["threshold"] == float(reference)
    assert threshold["n_normal"] == block["validation"]["images"] == n
    # Flagged (score > threshold): exactly floor(n x target_fpr) of the normal images.
    assert np.count_nonzero(scores > reference) == allowed
    assert threshold["fpr"] == block["validation"]["fpr"] == allowed / n <= target_fpr
    assert (threshold["rule"], threshold["target_fpr"]) == ("target_fpr", target_fpr)
    # The test split: the share above the same cut, with no normal classes every image counts.
    test_scores = inference.Scorer(directory).score(digits_small["x_test"])
    assert block["test"] == {
        "images": 300,
        "share_flagged": pytest.approx(np.mean(test_scores > reference), abs=0.0),
    }


def _stage(name: str) -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]["do"]


def _param_keys(stage: dict) -> set[str]:
    """The params.yaml keys a stage lists ("anomaly", "anomaly.target_fpr" and the
    ``{file: [keys]}`` form all name their key)."""
    keys = set()
    for entry in stage.get("params", []):
        listed = [entry] if isinstance(entry, str) else [k for ks in entry.values() for k in ks]
        keys |= {str(key) for key in listed}
    return keys


def _paths(entries: list) -> set[str]:
    return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries}


def test_anomaly_params_re_run_the_anomaly_stage_and_leave_the_export_alone():
    export_stage, anomaly_stage = _stage("export"), _stage("anomaly")
    export_params, anomaly_params = _param_keys(export_stage), _param_keys(anomaly_stage)
    # A change of anomaly.target_fpr (or any anomaly key) invalidates anomaly@V only.
    assert not {key for key in export_params if key.split(".")[0] == "anomaly"}
    assert {"anomaly", "seed"} <= anomaly_params
    # ... and nothing the export depends on is written by the anomaly stage.
    anomaly_outs = _paths(anomaly_stage["outs"])
    assert anomaly_outs == {"scorers/${key}", "metrics/anomaly/${key}.json"}
    for dependency in _paths(export_stage["deps"]):
        assert not any(dependency.startswith(out.split("$")[0]) for out in anomaly_outs)
    # anomaly@V runs after export@V: it reads the export's card (opset, tolerance, batch sizes).
    assert "exports/${key}/model_card.json" in _paths(anomaly_stage["deps"])
    assert not _paths(export_stage["outs"]) & anomaly_outs
    # The export script reads no anomaly params at all (what dvc.yaml lists is what it reads).
    source = (REPO / "pipeline" / "export.py").read_text()
    constants = {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert "anomaly" not in constants


def test_a_skipped_variant_gets_a_card_and_metrics_that_say_why(exported, tmp_path):
    plain = {"architecture": {"name": "dense", "latent_dim": 4}, "objective": {"name": "plain"}}
    model = models.build_autoencoder(models.VariantConfig.from_params("tiny", plain), (8, 8, 1))
    settings = anomaly.AnomalyParams(scores=("elbo", "density"))
    assert fitting.prepare(
        model, settings, seed=0, x_train=np.zeros((4, 8, 8, 1)), x_val=None, val_anomalies=None
    ) == (None, fitting.unsupported(model, settings.scores))
    result = stage._write_skipped(
        "tiny", "why", tmp_path / "scorers" / "tiny", tmp_path / "m.json"
    )
    assert result == fileio.read_json(tmp_path / "m.json") == {"anomaly": {"skipped": "why"}}
    card = fileio.read_json(tmp_path / "scorers" / "tiny" / "model_card.json")
    assert card == {"variant": "tiny", "anomaly": {"skipped": "why"}}
    assert sorted(p.name for p in (tmp_path / "scorers" / "tiny").iterdir()) == ["model_card.json"]
