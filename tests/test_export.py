"""ONNX export: every variant converts and matches Keras, metadata and card, the parity gate,
the anomaly scorer that ``anomaly@V`` writes beside the export (its parity with Keras and the
numpy ScoreModel, its threshold in the card and metadata), MLflow logging, the export and
anomaly stages end to end and the benchmark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest

from autoencoders import anomaly, config, export, fileio, inference, models
from autoencoders.anomaly import fitting
from autoencoders.anomaly import scorer as anomaly_scorer
from autoencoders.anomaly import stage as anomaly_stage
from autoencoders.benchmarks import onnx_latency

REPO = Path(__file__).resolve().parents[1]
PARAMS = config.load_params(REPO / "params.yaml")
VARIANTS = list(PARAMS["variants"])
BATCH_SIZES = (1, 257)


def _build(variant: str, input_shape=(28, 28, 1)) -> models.Autoencoder:
    keras.utils.set_random_seed(0)
    variant_config = models.VariantConfig.from_params(variant, PARAMS["variants"][variant])
    return models.build_autoencoder(variant_config, input_shape)


@pytest.fixture(scope="module")
def conv_export(tmp_path_factory, mnist_small) -> dict:
    model = _build("conv")
    directory = tmp_path_factory.mktemp("exports") / "conv"
    card = export.export_models(
        model.encoder,
        model.decoder,
        directory,
        variant="conv",
        opset=17,
        tolerance=1e-5,
        parity_images=mnist_small["x_test"],
        parity_batch_sizes=BATCH_SIZES,
        source_run_id="run123",
        resolved_config={"name": "conv", "objective": "plain"},
    )
    return {"dir": directory, "card": card, "model": model}


def _scorer_inputs(splits: dict, normal=None) -> dict:
    """What anomaly@V fits and measures on, from ``splits`` (mnist_small or digits_small); with
    ``normal`` train and val keep those classes and the other validation images are the
    labelled anomalies."""
    x_train, x_val, val_anomalies = splits["x_train"], splits["x_val"], None
    if normal is not None:
        x_train = x_train[np.isin(splits["y_train"], normal)]
        keep = np.isin(splits["y_val"], normal)
        x_val, val_anomalies = splits["x_val"][keep], splits["x_val"][~keep]
    evaluation = {
        "val_anomalies": val_anomalies,
        "x_test": splits["x_test"],
        "y_test": splits["y_test"],
        "normal_classes": None if normal is None else list(normal),
    }
    return {"x_train": x_train, "x_val": x_val, "evaluation": evaluation}


def _prepare_scorer(model, splits: dict, settings: anomaly.AnomalyParams, normal=None):
    """``anomaly.fitting.prepare`` on ``splits``: (score model, None) or (None, why)."""
    inputs = _scorer_inputs(splits, normal)
    return fitting.prepare(
        model,
        settings,
        seed=0,
        x_train=inputs["x_train"],
        x_val=inputs["x_val"],
        val_anomalies=inputs["evaluation"]["val_anomalies"],
    )


def _write_scorer(directory: Path, model, score_model, settings, export_card, splits, normal=None):
    """``anomaly.stage.write_scorer`` as anomaly@V calls it: (the scorer's card, the metrics'
    ``anomaly`` block)."""
    inputs = _scorer_inputs(splits, normal)
    return anomaly_stage.write_scorer(
        directory,
        model,
        score_model,
        settings,
        export_card=export_card,
        x_val=inputs["x_val"],
        evaluation=inputs["evaluation"],
    )


def _parity_recomputed(onnx_path: Path, keras_model, inputs: np.ndarray) -> dict:
    """{batch size: (max |ONNX Runtime - Keras|, max |Keras|)} over the first ``size`` inputs
    (repeated when fewer), computed here with a session of our own, as a reference."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    measured = {}
    for size in BATCH_SIZES:
        batch = np.resize(inputs.astype(np.float32), (size, *inputs.shape[1:]))
        expected = np.asarray(keras_model(batch, training=False))
        (actual,) = session.run(None, {name: batch})
        measured[size] = (float(np.abs(actual - expected).max()), float(np.abs(expected).max()))
    return measured


# The pipeline's anomaly settings, with a mixture small enough for 300 training images.
DEFAULT_ANOMALY = {**PARAMS["anomaly"], "n_components": 3, "fit_subsample": 0}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_exports_within_tolerance(variant, mnist_small, tmp_path):
    model = _build(variant)
    images = mnist_small["x_test"]  # 300 images; batch 257 uses the first 257
    settings = config.from_mapping(anomaly.AnomalyParams, DEFAULT_ANOMALY, "anomaly")
    score_model, skipped = _prepare_scorer(model, mnist_small, settings)
    assert skipped is None  # every variant gets a scorer with the default scores
    card = export.export_models(
        model.encoder,
        model.decoder,
        tmp_path / variant,
        variant=variant,
        opset=17,
        tolerance=1e-5,
        parity_images=images,
        parity_batch_sizes=BATCH_SIZES,
    )
    # anomaly@V: the scorer at the export's opset, tolerance and batch sizes, in scorers/<v>.
    scorer_card, _ = _write_scorer(
        tmp_path / "scorers" / variant, model, score_model, settings, card, mnist_small
    )
    assert scorer_card["opset"] == 17 and scorer_card["parity"]["batch_sizes"] == [1, 257]
    # The decoder's parity inputs are the codes of the first 257 images, repeated as needed.
    codes = np.asarray(model.encoder(np.resize(images, (max(BATCH_SIZES), *images.shape[1:]))))
    for role, keras_model, inputs in (
        ("encoder", model.encoder, images),
        ("decoder", model.decoder, codes),
    ):
        figures = card["parity"][role]
        measured = _parity_recomputed(tmp_path / variant / f"{role}.onnx", keras_model, inputs)
        assert set(figures["by_batch_size"]) == {"1", "257"}
        for size, (difference, _) in measured.items():
            assert figures["by_batch_size"][str(size)] == pytest.approx(difference, abs=1e-12)
        assert figures["max_abs_diff"] == max(figures["by_batch_size"].values()) <= 1e-5
        scales = {size: scale for size, (_, scale) in measured.items()}
        assert figures["max_abs_reference"] == pytest.approx(max(scales.values()))
        # The gate's figure in closed form: each batch size's difference over max(1, max |Keras|).
        scaled = max(figures["by_batch_size"][str(s)] / max(1.0, scales[s]) for s in scales)
        assert figures["scaled_diff"] == pytest.approx(scaled, rel=1e-12, abs=0.0)
    scorer_figures = scorer_card["parity"]["scorer"]
    for figures in (scorer_figures, scorer_figures["score_model"], scorer_figures["anomaly_map"]):
        assert 0.0 <= figures["scaled_diff"] <= scorer_figures["score_tolerance"]
    assert scorer_figures["score_tolerance"] == pytest.approx(
        1e-5 * np.sqrt(784 + model.latent_dim)
    )
    # The downstream API gives the Keras codes and reconstructions (the VAE: the mean).
    codes = inference.Encoder(tmp_path / variant).encode(images[:5])
    np.testing.assert_allclose(codes, np.asarray(model.encoder(images[:5])), atol=1e-5)
    assert codes.shape == (5, *model.code_shape)
    assert card["latent_dim"] == model.latent_dim
    reconstructions = inference.Decoder(tmp_path / variant).decode(codes)
    np.testing.assert_allclose(reconstructions, model.reconstruct(images[:5]), atol=1e-5)


@pytest.mark.parametrize("variant", ["conv", "seq2seq"])
def test_conversion_is_byte_reproducible(variant):
    # tf2onnx alone gives other bytes each time (its name counter runs on within a process, and
    # which of two equal nodes or constants it keeps, and the order of independent nodes, vary):
    # DVC then saw a changed export after every re-run. The canonical form must not vary.
    model = _build(variant)
    for part, names in ((model.encoder, ("images", "code")), (model.decoder, ("code", "out"))):
        blobs = {
            export.convert_keras_model(
                part, input_name=names[0], output_name=names[1], opset=17
            ).SerializeToString()
            for _ in range(4)
        }
        assert len(blobs) == 1, f"{variant} {part.name}: {len(blobs)} different conversions"


def test_canonical_names_merge_equal_constants_and_order_by_computation():
    # Two graphs computing the same thing, written as tf2onnx might on two runs: other names,
    # the equal constants merged or not, the independent nodes swapped.
    from onnx import TensorProto, helper, numpy_helper

    def graph(first: str, merged: bool, swapped: bool):
        one = numpy_helper.from_array(np.array([1.0], np.float32), f"{first}__7")
        two = numpy_helper.from_array(np.array([1.0], np.float32), "other__9")
        add = helper.make_node("Add", ["x", one.name], ["a"], name="add__3")
        mul = helper.make_node("Mul", ["x", one.name if merged else two.name], ["m"], name="m__1")
        out = helper.make_node("Sub", ["a", "m"], ["y"], name="sub")
        nodes = [mul, add, out] if swapped else [add, mul, out]
        value = helper.make_tensor_value_info
        return helper.make_graph(
            nodes,
            "g",
            [value("x", TensorProto.FLOAT, [1])],
            [value("y", TensorProto.FLOAT, [1])],
            [one] if merged else [one, two],
        )

    variants = [graph("c", True, False), graph("k", False, True), graph("z", False, False)]
    for item in variants:
        export.graph.canonical_names(item)
    assert len({item.SerializeToString() for item in variants}) == 1
    canonical = variants[0]
    assert [t.name for t in canonical.initializer] == ["initializer_0"]
    assert [n.output[0] for n in canonical.node][-1] == "y"  # the interface keeps its names
    onnx.checker.check_model(helper.make_model(canonical), full_check=True)


def test_onnx_files_carry_names_dynamic_batch_and_metadata(conv_export):
    directory = conv_export["dir"]
    for filename, in_name, out_name in (
        ("encoder.onnx", "images", "code"),
        ("decoder.onnx", "code", "reconstruction"),
    ):
        proto = onnx.load(str(directory / filename))
        onnx.checker.check_model(proto, full_check=True)
        assert [value.name for value in proto.graph.input] == [in_name]
        assert [value.name for value in proto.graph.output] == [out_name]
        for value in (proto.graph.input[0], proto.graph.output[0]):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
        assert any(
            entry.domain in ("", "ai.onnx") and entry.version == 17 for entry in proto.opset_import
        )
        metadata = {entry.key: entry.value for entry in proto.metadata_props}
        assert metadata["variant"] == "conv"
        # What differs from run to run stays out of the ONNX files (run.json holds it).
        assert "source_run_id" not in metadata and "git_commit" not in metadata
        assert metadata["opset"] == "17"
        assert metadata["pixel_scaling"] == "float32 in [0,1]; uint8 images divided by 255"
        assert json.loads(metadata["image_shape"]) == [28, 28, 1]
        assert json.loads(metadata["latent_dim"]) == conv_export["model"].latent_dim
    run = fileio.read_json(directory / "run.json")
    assert run["source_run_id"] == "run123" and run["git_commit"]


def test_model_card_checksums_and_fields(conv_export):
    directory = conv_export["dir"]
    card = fileio.read_json(directory / "model_card.json")
    assert card == json.loads(json.dumps(conv_export["card"]))
    assert card["input"] == {
        "name": "images",
        "shape": [None, 28, 28, 1],
        "dtype": "float32",
        "scaling": "float32 in [0,1]; uint8 images divided by 255",
    }
    assert card["opset"] == 17 and "source_run_id" not in card
    assert card["code_shape"] == list(conv_export["model"].code_shape)
    for role in ("encoder", "decoder"):
        assert card["files"][role]["sha256"] == fileio.sha256_file(directory / f"{role}.onnx")
    assert card["parity"]["tolerance"] == 1e-5 and card["parity"]["batch_sizes"] == [1, 257]
    assert card["config"]["name"] == "conv"
    assert sorted(p.name for p in directory.iterdir()) == [
        "decoder.onnx",
        "encoder.onnx",
        "model_card.json",
        "run.json",
    ]
    metrics = export.parity_metrics(card)
    assert set(metrics["encoder"]) == {"max_abs_diff", "scaled_diff", "batch_1", "batch_257"}


def test_parity_failure_raises_and_keeps_the_previous_export(
    conv_export, mnist_small, tmp_path, monkeypatch
):
    directory = tmp_path / "conv"
    shutil.copytree(conv_export["dir"], directory)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    convert = export.convert_keras_model

    def perturbed(model, **kwargs):
        proto = convert(model, **kwargs)
        if kwargs["output_name"] == "reconstruction":
            weights = next(i for i in proto.graph.initializer if i.data_type == 1 and i.dims)
            array = onnx.numpy_helper.to_array(weights) + np.float32(1e-2)
            weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
        return proto

    monkeypatch.setattr(export.convert, "convert_keras_model", perturbed)
    model = conv_export["model"]
    with pytest.raises(export.ParityError, match=r"conv decoder: max \|ONNX Runtime - Keras\|"):
        export.export_models(
            model.encoder,
            model.decoder,
            directory,
            variant="conv",
            opset=17,
            tolerance=1e-5,
            parity_images=mnist_small["x_test"],
            parity_batch_sizes=BATCH_SIZES,
        )
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv"]  # no staging left behind


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tolerance": -1.0}, "tolerance"),
        ({"opset": 9}, "opset"),
        ({"parity_batch_sizes": [0]}, "parity_batch_sizes"),
        ({"tolerence": 1e-5}, "unknown key"),
    ],
)
def test_bad_export_params_fail_loudly(settings, message):
    with pytest.raises(config.ConfigError, match=message):
        config.from_mapping(export.ExportConfig, {**PARAMS["export"], **settings}, "export")


def test_parity_images_of_the_wrong_shape_are_rejected(conv_export, tmp_path):
    model = conv_export["model"]
    with pytest.raises(export.ExportError, match="parity images"):
        export.export_models(
            model.encoder,
            model.decoder,
            tmp_path / "x",
            variant="conv",
            opset=17,
            tolerance=1e-5,
            parity_images=np.zeros((4, 8, 8, 1)),
            parity_batch_sizes=(1,),
        )
    assert not (tmp_path / "x").exists()


@pytest.fixture
def trained_layout(tmp_path, monkeypatch, mnist_small):
    """A repo-like working directory: params.yaml, data/processed, models/conv with run.json."""
    import mlflow

    from autoencoders import tracking

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    for split in ("train", "val", "test"):
        np.savez(
            processed / f"{split}.npz", x=mnist_small[f"x_{split}"], y=mnist_small[f"y_{split}"]
        )
    fileio.write_json(processed / "card.json", {"checksum": "mnist_small"})
    models.save_autoencoder(_build("conv"), tmp_path / "models" / "conv")
    experiment_id = tracking.setup()
    with mlflow.start_run() as run:
        pass
    tracking.write_run_ref(
        tmp_path / "models" / "conv" / "run.json", run.info.run_id, experiment_id
    )
    return {"root": tmp_path, "run_id": run.info.run_id}


@pytest.mark.slow
def test_export_and_anomaly_stages_end_to_end_log_to_mlflow(trained_layout):
    import mlflow

    client = mlflow.MlflowClient()
    before = client.get_run(trained_layout["run_id"]).info
    _load_stage("export").main(["--variant", "conv"])
    root = trained_layout["root"]
    assert sorted(p.name for p in (root / "exports" / "conv").iterdir()) == [
        "decoder.onnx",
        "encoder.onnx",
        "model_card.json",
        "run.json",
    ]
    # The export alone registers the encoder; anomaly@V then adds the scorer beside it.
    assert mlflow.MlflowClient().search_registered_models("name='conv-scorer'") == []
    _load_stage("anomaly").main(["--variant", "conv"])
    # Logged into the finished training run by id: not re-opened, its duration unchanged.
    after = client.get_run(trained_layout["run_id"]).info
    assert after.status == "FINISHED" and after.end_time == before.end_time
    assert after.start_time == before.start_time
    card = fileio.read_json(root / "exports" / "conv" / "model_card.json")
    run = fileio.read_json(root / "exports" / "conv" / "run.json")
    assert run["source_run_id"] == trained_layout["run_id"]
    assert card["config"]["name"] == "conv" and card["config"]["input_shape"] == [28, 28, 1]
    metrics = fileio.read_json(root / "metrics" / "export" / "conv.json")
    assert metrics["encoder"]["max_abs_diff"] <= 1e-5
    assert metrics["decoder"]["max_abs_diff"] <= 1e-5
    assert "anomaly" not in metrics and "scorer" not in metrics  # anomaly@V's, below

    versions = client.search_model_versions("name='conv-encoder'")
    assert [v.run_id for v in versions] == [trained_layout["run_id"]]
    run = client.get_run(trained_layout["run_id"])
    assert run.data.metrics["export_encoder.max_abs_diff"] <= 1e-5
    # The scorer: fitted, thresholded, measured on test (no normal classes: the share flagged)
    # by anomaly@V into scorers/conv and metrics/anomaly/conv.json, registered beside the encoder.
    scorers = root / "scorers" / "conv"
    assert sorted(p.name for p in scorers.iterdir()) == [
        "model_card.json",
        "score_model.json",
        "scorer.onnx",
    ]
    scorer_card = fileio.read_json(scorers / "model_card.json")
    assert scorer_card["encoder_sha256"] == card["files"]["encoder"]["sha256"]
    metrics = fileio.read_json(root / "metrics" / "anomaly" / "conv.json")
    assert set(metrics) == {"tolerance", "scorer", "anomaly"}
    block = metrics["anomaly"]
    assert block["rule"] == "target_fpr" and block["validation"]["fpr"] <= 0.01
    assert block["threshold"] == scorer_card["anomaly"]["threshold"]["value"]
    assert set(block["test"]) == {"images", "share_flagged"} and block["test"]["images"] == 300
    assert metrics["scorer"]["scaled_diff"] <= scorer_card["parity"]["scorer"]["score_tolerance"]
    # The figures recorded are the shipped scorer's: its flags on the normal validation images
    # and the test split.
    shipped = inference.Scorer(scorers)
    x_val = np.load(root / "data" / "processed" / "val.npz")["x"]
    x_test = np.load(root / "data" / "processed" / "test.npz")["x"]
    assert shipped.flag(x_val).mean() == block["validation"]["fpr"]
    assert shipped.flag(x_test).mean() == pytest.approx(block["test"]["share_flagged"])
    scorer_versions = client.search_model_versions("name='conv-scorer'")
    assert [v.run_id for v in scorer_versions] == [trained_layout["run_id"]]
    assert run.data.metrics["anomaly_threshold"] == pytest.approx(block["threshold"])
    scorer = mlflow.pyfunc.load_model(f"models:/conv-scorer/{scorer_versions[0].version}")
    test_images = np.load(root / "data" / "processed" / "test.npz")["x"][:3]
    logged_scores = scorer.predict({"images": test_images})["score"]
    np.testing.assert_allclose(logged_scores, shipped.score(test_images), atol=1e-6)
    logged = mlflow.pyfunc.load_model(f"models:/conv-encoder/{versions[0].version}")
    images = np.load(root / "data" / "processed" / "test.npz")["x"][:3]
    codes = logged.predict({"images": images})
    codes = codes["code"] if isinstance(codes, dict) else np.asarray(codes)
    np.testing.assert_allclose(
        codes, inference.Encoder(root / "exports" / "conv").encode(images), atol=1e-6
    )

    # The benchmark runs on the same layout (a few calls only) and reports both runtimes.
    report = onnx_latency.run_benchmarks(
        ["conv", "vae"],
        latency_runs=5,
        throughput_batch=16,
        throughput_runs=2,
        warmup_runs=1,
        progress=lambda line: None,
    )
    result = report["results"]["conv"]
    assert result["max_abs_diff"] <= 1e-5
    for runtime in ("onnxruntime", "tensorflow"):
        figures = result[runtime]
        assert 0 < figures["latency_median_ms"] <= figures["latency_p99_ms"]
        assert figures["throughput_images_per_s"] > 0
    assert result["latency_speedup"] == pytest.approx(
        result["tensorflow"]["latency_median_ms"] / result["onnxruntime"]["latency_median_ms"]
    )
    assert "vae" in report["skipped"] and report["machine"]["logical_cores"] >= 1
    markdown = onnx_latency.render_markdown(report)
    assert (
        "| conv |" in markdown and "skipped" in markdown and report["machine"]["cpu"] in markdown
    )


def _load_stage(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"stage_{name}", REPO / "pipeline" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parity_scales_large_outputs_and_reports_both_figures(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Rescaling(100.0)(inputs), name="scaled")
    path = tmp_path / "scaled.onnx"
    onnx.save_model(
        export.convert_keras_model(model, input_name="x", output_name="y", opset=17), str(path)
    )
    values = np.array([[0.0, 0.5, 0.25]], np.float32)
    figures = export.parity(path, model, values, batch_sizes=(1, 3))
    assert set(figures["by_batch_size"]) == {"1", "3"}
    assert figures["max_abs_reference"] == pytest.approx(50.0)
    assert figures["scaled_diff"] == pytest.approx(figures["max_abs_diff"] / 50.0)


# ------------------------------------------------------------------------- anomaly scorer

NORMAL = (0, 1, 2, 3, 4)  # digits_small: the other five classes are the anomalies
ALL_SCORES = ("reconstruction", "ssim", "density", "mahalanobis", "local_error")


def _tiny_autoencoder(objective: dict, images: np.ndarray) -> models.Autoencoder:
    """A dense autoencoder with a 4-number code, trained two epochs on ``images``."""
    block = {"architecture": {"name": "dense", "latent_dim": 4}, "objective": objective}
    keras.utils.set_random_seed(0)
    model = models.build_autoencoder(models.VariantConfig.from_params("tiny", block), (8, 8, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(images, images, batch_size=32, epochs=2, shuffle=False, verbose=0)
    return model


def _export_with_scorer(root: Path, objective: dict, splits: dict, **settings) -> dict:
    """A tiny model exported to ``root``/exports/tiny and its scorer written to
    ``root``/scorers/tiny, as export@V and anomaly@V write them; ``dir`` is the scorer's."""
    normal_train = splits["x_train"][np.isin(splits["y_train"], NORMAL)]
    model = _tiny_autoencoder(objective, normal_train)
    settings = anomaly.AnomalyParams(n_components=3, **settings)
    score_model, skipped = _prepare_scorer(model, splits, settings, NORMAL)
    assert skipped is None
    export_card = export.export_models(
        model.encoder,
        model.decoder,
        root / "exports" / "tiny",
        variant="tiny",
        opset=17,
        tolerance=1e-5,
        parity_images=splits["x_test"],
        parity_batch_sizes=BATCH_SIZES,
        resolved_config={"name": "tiny"},
    )
    directory = root / "scorers" / "tiny"
    card, block = _write_scorer(
        directory, model, score_model, settings, export_card, splits, NORMAL
    )
    x_val = splits["x_val"][np.isin(splits["y_val"], NORMAL)]
    return {
        "dir": directory,
        "export_dir": root / "exports" / "tiny",
        "card": card,
        "export_card": export_card,
        "model": model,
        "score_model": score_model,
        "settings": settings,
        "metrics": block,
        "x_val": x_val,
    }


@pytest.fixture(scope="module")
def scorer_export(tmp_path_factory, digits_small) -> dict:
    root = tmp_path_factory.mktemp("tiny")
    objective = {"name": "plain", "loss": "bce"}
    return _export_with_scorer(root, objective, digits_small, scores=ALL_SCORES, target_fpr=0.05)


def _score_model(directory: Path) -> anomaly.ScoreModel:
    return anomaly.ScoreModel.from_dict(fileio.read_json(directory / "score_model.json"))


def test_scorer_matches_keras_and_the_score_model(scorer_export, digits_small):
    figures = scorer_export["card"]["parity"]["scorer"]
    allowed = figures["score_tolerance"]  # 1e-5 x sqrt(64 pixels + 4 code numbers)
    assert allowed == pytest.approx(1e-5 * np.sqrt(68))
    assert set(figures["by_batch_size"]) == {"1", "257"}
    for key in ("score_model", "anomaly_map"):
        assert 0.0 <= figures[key]["scaled_diff"] <= allowed
    assert figures["scaled_diff"] <= allowed
    images, model = digits_small["x_test"], scorer_export["model"]
    scorer = inference.Scorer(scorer_export["dir"])
    inputs = anomaly.keras_outputs(model, images)
    score_model = _score_model(scorer_export["dir"])
    assert score_model.config.scores == ALL_SCORES
    expected = score_model.score(inputs)  # numpy, float64, on Keras' outputs
    scores, maps = scorer.score_and_maps(images)
    assert scores.shape == (300,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, rtol=0, atol=allowed * np.abs(expected).max())
    # The map is the per-pixel BCE of the reconstruction; its sums are the reconstruction score.
    assert maps.shape == (300, 8, 8, 1)
    per_pixel = anomaly.scores.PIXEL_LOSSES["bce"](inputs.images, inputs.reconstructions)
    np.testing.assert_allclose(maps, per_pixel, atol=1e-4)
    reconstruction = score_model.components(inputs)["reconstruction"]
    np.testing.assert_allclose(maps.reshape(300, -1).sum(axis=1), reconstruction, rtol=1e-5)
    # Standardised on the normal validation images: there the score has mean 0, one unit of
    # standard deviation per score at most.
    normal = score_model.score(anomaly.keras_outputs(model, scorer_export["x_val"]))
    assert normal.mean() == pytest.approx(0.0, abs=1e-9)
    assert 0 < normal.std() <= len(ALL_SCORES)


def test_scorer_card_and_metadata_carry_the_threshold_and_rule(scorer_export):
    directory = scorer_export["dir"]
    card = fileio.read_json(directory / "model_card.json")
    assert card == json.loads(json.dumps(scorer_export["card"]))
    section = card["anomaly"]
    threshold = section["threshold"]
    assert threshold["rule"] == "target_fpr" and threshold["target_fpr"] == 0.05
    assert section["scores"] == list(ALL_SCORES) and section["flag"] == "score > threshold"
    assert set(section["standardisation"]) == set(ALL_SCORES)
    assert section["normal_classes"] == list(NORMAL)
    assert section["score_model"]["sha256"] == fileio.sha256_file(directory / "score_model.json")
    assert card["files"]["scorer"]["sha256"] == fileio.sha256_file(directory / "scorer.onnx")
    outputs = [o["name"] for o in card["files"]["scorer"]["outputs"]]
    assert outputs == ["score", "anomaly_map", "local_map"]
    assert section["pixel_threshold"]["rule"] == "target_fpr"
    proto = onnx.load(str(directory / "scorer.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert sorted(value.name for value in proto.graph.output) == sorted(outputs)
    for value in (*proto.graph.input, *proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert float(metadata["threshold"]) == threshold["value"]
    assert metadata["threshold_rule"] == "target_fpr"
    assert float(metadata["validation_fpr"]) == threshold["fpr"]
    assert json.loads(metadata["score_components"]) == list(ALL_SCORES)
    assert json.loads(metadata["standardisation"]) == section["standardisation"]
    scorer = inference.Scorer(directory)
    assert (scorer.threshold, scorer.threshold_rule) == (threshold["value"], "target_fpr")
    # The FPR the card records is what the shipped scorer flags on the normal validation images.
    flagged = scorer.flag(scorer_export["x_val"])
    assert flagged.mean() == threshold["fpr"] <= 0.05
    assert threshold["n_normal"] == len(scorer_export["x_val"])
    assert sorted(p.name for p in directory.iterdir()) == [
        "model_card.json",
        "score_model.json",
        "scorer.onnx",
    ]
    # The export it was converted beside: its encoder's checksum, and no scorer in exports/.
    export_dir = scorer_export["export_dir"]
    assert card["encoder_sha256"] == fileio.sha256_file(export_dir / "encoder.onnx")
    assert not (export_dir / "scorer.onnx").exists()
    assert "scorer" not in scorer_export["export_card"]["parity"]
    metrics = anomaly_stage.scorer_metrics(card)
    assert set(metrics["scorer"]) >= {"max_abs_diff", "score_model_scaled_diff", "batch_257"}
    assert metrics["scorer"]["max_abs_diff"] == card["parity"]["scorer"]["max_abs_diff"]


def test_scorer_metrics_score_the_test_split_with_the_normal_classes(scorer_export, digits_small):
    metrics = scorer_export["metrics"]
    scores = inference.Scorer(scorer_export["dir"]).score(digits_small["x_test"])
    labels = (~np.isin(digits_small["y_test"], NORMAL)).astype(int)
    test = metrics["test"]
    assert test["images"] == 300 and test["anomalies"] == int(labels.sum())
    assert test["auroc"] == pytest.approx(anomaly.auroc(labels, scores), abs=1e-6)
    assert test["auprc"] == pytest.approx(anomaly.auprc(labels, scores), abs=1e-6)
    rates = anomaly.rates(labels, scores, metrics["threshold"])
    assert (test["fpr"], test["tpr"], test["f1"]) == pytest.approx(
        (rates.fpr, rates.tpr, rates.f1)
    )
    assert test["share_flagged"] == pytest.approx(np.mean(scores > metrics["threshold"]))
    assert 0.5 < test["auroc"] <= 1.0  # anomalous digits score higher than normal ones
    validation = metrics["validation"]
    assert validation["fpr"] <= 0.05 and 0.5 < validation["auroc"] <= 1.0
    assert metrics["scores"]["test"]["max"] == pytest.approx(float(scores.max()))


def test_scorer_conversion_is_byte_reproducible(scorer_export):
    graph = anomaly_scorer.ScorerGraph(scorer_export["model"], scorer_export["score_model"])
    blobs = {
        export.convert.convert_function(
            graph, input_name="images", input_dims=[8, 8, 1], opset=17, name="scorer"
        ).SerializeToString()
        for _ in range(2)
    }
    assert len(blobs) == 1


def test_vae_scorer_with_elbo_and_an_f1_threshold(tmp_path, digits_small):
    exported = _export_with_scorer(
        tmp_path,
        {"name": "variational", "loss": "mse", "beta": 0.5},
        digits_small,
        scores=("elbo", "density"),
        threshold="f1_optimal",
    )
    figures = exported["card"]["parity"]["scorer"]
    assert figures["score_model"]["scaled_diff"] <= figures["score_tolerance"]
    inputs = anomaly.keras_outputs(exported["model"], digits_small["x_test"])
    assert inputs.log_var is not None  # the ELBO needs the posterior, which the scorer runs
    expected = _score_model(exported["dir"]).score(inputs)
    scores = inference.Scorer(exported["dir"]).score(digits_small["x_test"])
    atol = figures["score_tolerance"] * np.abs(expected).max()
    np.testing.assert_allclose(scores, expected, rtol=0, atol=atol)
    threshold = exported["card"]["anomaly"]["threshold"]
    assert threshold["rule"] == "f1_optimal" and 0 < threshold["f1"] <= 1
    assert exported["metrics"]["validation"]["f1"] == threshold["f1"]


def test_scorer_is_skipped_where_it_cannot_apply_and_f1_needs_anomalies(digits_small):
    model = _tiny_autoencoder({"name": "plain", "loss": "bce"}, digits_small["x_train"][:32])
    score_model, reason = _prepare_scorer(
        model, digits_small, anomaly.AnomalyParams(scores=("elbo", "density"))
    )
    assert score_model is None and "elbo" in reason and "plain" in reason
    with pytest.raises(anomaly.AnomalyConfigError, match="f1_optimal needs labelled") as raised:
        _prepare_scorer(model, digits_small, anomaly.AnomalyParams(threshold="f1_optimal"))
    assert "\n" not in str(raised.value)


def test_threshold_fpr_on_held_out_normals_is_near_the_target():
    # Synthetic scores: the threshold is chosen on one normal sample and its FPR measured on
    # a fresh one, as the export measures it on the test split's normal classes.
    rng = np.random.default_rng(0)
    n = 50_000
    threshold = anomaly.target_fpr_threshold(rng.normal(size=n), target_fpr=0.01)
    test_scores = np.r_[rng.normal(size=n), rng.normal(4.0, 1.0, 5_000)]
    classes = np.r_[np.zeros(n, np.int64), np.full(5_000, 7)]
    validation = {"normal": rng.normal(size=10), "anomalies": None}
    metrics = anomaly.anomaly_metrics(threshold, validation, test_scores, classes, [0])
    assert metrics["validation"]["fpr"] == 0.01
    # The cut's own sampling error and the fresh sample's add up to about 6e-4 (one sigma).
    assert metrics["test"]["fpr"] == pytest.approx(0.01, abs=0.0025)
    assert metrics["test"]["tpr"] > 0.9 and metrics["test"]["auroc"] > 0.99
    # Without normal classes (or labels) every test image counts: the share flagged.
    unlabelled = anomaly.anomaly_metrics(threshold, validation, test_scores, None, None)
    assert set(unlabelled["test"]) == {"images", "share_flagged"}
    assert unlabelled["test"]["share_flagged"] == pytest.approx(
        np.mean(test_scores > threshold.value)
    )


def test_scorer_parity_failure_keeps_the_previous_scorer(
    scorer_export, digits_small, tmp_path, monkeypatch
):
    directory = tmp_path / "tiny"
    shutil.copytree(scorer_export["dir"], directory)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    convert_function = export.convert.convert_function

    def perturbed(call, **kwargs):
        proto = convert_function(call, **kwargs)
        if "anomaly scorer" in kwargs["name"]:  # a float64 constant of the score's formula
            constant = next(i for i in proto.graph.initializer if i.data_type == 11 and i.dims)
            array = onnx.numpy_helper.to_array(constant) * 1.01
            constant.CopyFrom(onnx.numpy_helper.from_array(array, constant.name))
        return proto

    monkeypatch.setattr(export.convert, "convert_function", perturbed)
    with pytest.raises(export.ParityError, match="tiny scorer: ONNX Runtime differs from"):
        _write_scorer(
            directory,
            scorer_export["model"],
            scorer_export["score_model"],
            scorer_export["settings"],
            scorer_export["export_card"],
            digits_small,
            NORMAL,
        )
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
