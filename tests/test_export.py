"""ONNX export: every variant converts and matches Keras, metadata and card, the parity gate,
MLflow logging, the export stage end to end and the benchmark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest

from autoencoders import config, export, fileio, inference, models
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


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_exports_within_tolerance(variant, mnist_small, tmp_path):
    model = _build(variant)
    images = mnist_small["x_test"]  # 300 images; batch 257 uses the first 257
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
    for role in ("encoder", "decoder"):
        figures = card["parity"][role]
        assert set(figures["by_batch_size"]) == {"1", "257"}
        assert 0.0 <= figures["scaled_diff"] <= figures["max_abs_diff"] <= 1e-5
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
    np.savez(processed / "test.npz", x=mnist_small["x_test"], y=mnist_small["y_test"])
    models.save_autoencoder(_build("conv"), tmp_path / "models" / "conv")
    experiment_id = tracking.setup()
    with mlflow.start_run() as run:
        pass
    tracking.write_run_ref(
        tmp_path / "models" / "conv" / "run.json", run.info.run_id, experiment_id
    )
    return {"root": tmp_path, "run_id": run.info.run_id}


@pytest.mark.slow
def test_export_stage_end_to_end_logs_to_mlflow(trained_layout):
    import mlflow

    client = mlflow.MlflowClient()
    before = client.get_run(trained_layout["run_id"]).info
    pipeline_export = _load_stage("export")
    pipeline_export.main(["--variant", "conv"])
    root = trained_layout["root"]
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

    versions = client.search_model_versions("name='conv-encoder'")
    assert [v.run_id for v in versions] == [trained_layout["run_id"]]
    run = client.get_run(trained_layout["run_id"])
    assert run.data.metrics["export_encoder.max_abs_diff"] <= 1e-5
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
