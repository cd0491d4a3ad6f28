"""autoencoders.inference and the CLI: ONNX Runtime only, clear errors on bad input or files.

The models are tiny functional Keras models exported with ``export.export_models`` (the
scorer's wrapped in an ``Autoencoder``), so these tests do not depend on the model zoo.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from autoencoders import __main__ as cli
from autoencoders import export, inference, providers

REPO = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (8, 8, 1)


def _tiny_conv_models() -> tuple[keras.Model, keras.Model]:
    images = keras.Input(IMAGE_SHAPE)
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(images)
    code = keras.layers.MaxPooling2D()(features)  # (batch, 4, 4, 4)
    encoder = keras.Model(images, code, name="encoder")
    code_input = keras.Input((4, 4, 4))
    upsampled = keras.layers.UpSampling2D()(code_input)
    output = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(upsampled)
    return encoder, keras.Model(code_input, output, name="decoder")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((40, *IMAGE_SHAPE), dtype=np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images) -> dict:
    keras.utils.set_random_seed(0)
    encoder, decoder = _tiny_conv_models()
    directory = tmp_path_factory.mktemp("exports") / "tiny"
    export.export_models(
        encoder,
        decoder,
        directory,
        variant="tiny",
        opset=17,
        tolerance=1e-5,
        parity_images=images,
        parity_batch_sizes=(1, 7),
    )
    return {"dir": directory, "encoder": encoder, "decoder": decoder}


def test_encode_decode_match_keras_and_accept_every_layout(exported, images):
    encoder = inference.Encoder(exported["dir"], batch_size=16)  # 40 images: 3 chunks
    decoder = inference.Decoder(exported["dir"] / "decoder.onnx")
    # The provider reported is the one its session runs first; with no NVIDIA driver loaded
    # (no /proc/driver/nvidia) it must be the CPU's, even where the wheel lists CUDA first.
    assert encoder.provider == encoder.session.get_providers()[0]
    if not Path("/proc/driver/nvidia/version").exists():
        assert encoder.provider == decoder.provider == "CPUExecutionProvider"
    assert (encoder.input_name, encoder.output_name) == ("images", "code")
    assert (decoder.input_name, decoder.output_name) == ("code", "reconstruction")
    assert encoder.code_shape == decoder.code_shape == (4, 4, 4)
    assert encoder.metadata["variant"] == "tiny"

    codes = encoder.encode(images)
    expected = np.asarray(exported["encoder"](images))
    assert codes.shape == (40, 4, 4, 4) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, expected, atol=1e-5)
    # (N, H, W) when C == 1, one image (H, W, C) or (H, W), and uint8 scaled by 1/255.
    np.testing.assert_allclose(encoder.encode(images[..., 0]), codes, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(images[3]), codes[3], atol=1e-6)
    np.testing.assert_allclose(encoder.encode(images[3, ..., 0]), codes[3], atol=1e-6)
    as_bytes = np.round(images * 255).astype(np.uint8)
    np.testing.assert_allclose(
        encoder(as_bytes), encoder(as_bytes.astype(np.float64) / 255.0), atol=1e-6
    )

    reconstructions = decoder.decode(codes)
    assert reconstructions.shape == (40, *IMAGE_SHAPE)
    assert reconstructions.min() >= 0.0 and reconstructions.max() <= 1.0
    np.testing.assert_allclose(reconstructions, np.asarray(exported["decoder"](codes)), atol=1e-5)
    np.testing.assert_allclose(decoder(codes.reshape(40, -1)), reconstructions, atol=1e-6)
    assert decoder.decode(codes[0]).shape == IMAGE_SHAPE


BAD_IMAGES = {
    "rank5": (lambda x: x[np.newaxis], "wrong rank"),
    "rank1": (lambda x: x[0, 0, :, 0], "wrong rank"),
    "size": (lambda x: np.zeros((4, 9, 9, 1), np.float32), "size mismatch"),
    "channels": (lambda x: np.zeros((4, 8, 8, 3), np.float32), "size mismatch"),
    "nan": (lambda x: np.where(x > 0.5, np.nan, x), "NaN or infinite"),
    "inf": (lambda x: np.where(x > 0.5, np.inf, x), "NaN or infinite"),
    "float_over_1": (lambda x: x * 255.0, "uint8 semantics? pass uint8 or divide by 255"),
    "negative": (lambda x: x - 0.5, "must lie in [0, 1]"),
    "empty": (lambda x: x[:0], "empty batch"),
    "int64": (lambda x: (x * 255).astype(np.int64), "dtype int64"),
}


@pytest.fixture(scope="module")
def scored(tmp_path_factory, images, exported) -> dict:
    """The tiny conv models as an Autoencoder, exported, and its anomaly scorer fitted on
    ``images`` (reconstruction + density of the flattened (4, 4, 4) code) as anomaly@V
    writes it: ``dir`` holds scorer.onnx, ``export_dir`` the export it was converted beside."""
    from autoencoders import anomaly, models
    from autoencoders.anomaly import fitting, stage

    block = {"architecture": {"name": "conv"}, "objective": {"name": "plain", "loss": "bce"}}
    config = models.VariantConfig.from_params("tiny", block)
    model = models.Autoencoder(exported["encoder"], exported["decoder"], config, IMAGE_SHAPE)
    settings = anomaly.AnomalyParams(n_components=1, fit_subsample=0, target_fpr=0.1)
    evaluation = {"val_anomalies": None, "x_test": images, "y_test": None, "normal_classes": None}
    score_model, _ = fitting.prepare(
        model, settings, seed=0, x_train=images, x_val=images, val_anomalies=None
    )
    root = tmp_path_factory.mktemp("scored")
    export_card = export.export_models(
        model.encoder,
        model.decoder,
        root / "exports" / "tiny",
        variant="tiny",
        opset=17,
        tolerance=1e-5,
        parity_images=images,
        parity_batch_sizes=(1, 7),
    )
    card, _ = stage.write_scorer(
        root / "scorers" / "tiny",
        model,
        score_model,
        settings,
        export_card=export_card,
        x_val=images,
        evaluation=evaluation,
    )
    return {
        "dir": root / "scorers" / "tiny",
        "export_dir": root / "exports" / "tiny",
        "card": card,
        "model": model,
        "score_model": score_model,
    }


@pytest.mark.parametrize("role", ["encoder", "scorer"])
@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_images_raise_clear_errors(exported, scored, images, case, role):
    # The scorer checks images exactly as the encoder does.
    make_input, message = BAD_IMAGES[case]
    if role == "encoder":
        run = inference.Encoder(exported["dir"]).encode
    else:
        run = inference.Scorer(scored["dir"]).score
    with pytest.raises(inference.InferenceInputError) as raised:
        run(make_input(images))
    assert message in str(raised.value)


def test_bad_codes_raise_clear_errors(exported):
    decoder = inference.Decoder(exported["dir"])
    with pytest.raises(inference.InferenceInputError, match="size mismatch"):
        decoder.decode(np.zeros((3, 4, 4, 5), np.float32))
    with pytest.raises(inference.InferenceInputError, match="NaN or infinite"):
        decoder.decode(np.full((3, 4, 4, 4), np.nan, np.float32))
    with pytest.raises(inference.InferenceInputError, match="empty batch"):
        decoder.decode(np.zeros((0, 64), np.float32))


def test_missing_and_truncated_onnx_name_the_path(exported, tmp_path):
    with pytest.raises(inference.ModelLoadError, match=str(tmp_path / "encoder.onnx")):
        inference.Encoder(tmp_path)
    truncated = tmp_path / "encoder.onnx"
    payload = (exported["dir"] / "encoder.onnx").read_bytes()
    truncated.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(inference.ModelLoadError, match="could not be loaded") as raised:
        inference.Encoder(tmp_path)
    assert str(truncated) in str(raised.value)


def test_require_gpu_without_a_gpu_fails_clearly(exported):
    usable, reason = inference.cuda_usable((exported["dir"] / "encoder.onnx").read_bytes())
    if usable:
        encoder = inference.Encoder(exported["dir"], require_gpu=True)
        assert encoder.provider == "CUDAExecutionProvider"
        return
    with pytest.raises(inference.GPUUnavailableError) as raised:
        inference.Encoder(exported["dir"], require_gpu=True)
    assert "require_gpu=True" in str(raised.value) and reason in str(raised.value)


def test_cpu_fallback_is_logged_once_with_its_reason(exported, monkeypatch, caplog):
    monkeypatch.setattr(providers, "_cuda_decision", None)
    with caplog.at_level(logging.INFO, logger="autoencoders.providers"):
        first = inference.Encoder(exported["dir"])
        inference.Decoder(exported["dir"])
    messages = [r.getMessage() for r in caplog.records if "provider" in r.getMessage()]
    assert len(messages) == 1 and first.provider in messages[0] and "(" in messages[0]


def test_cuda_sessions_search_heuristically_and_keep_fp32():
    cuda, cpu = providers.session_providers(True)
    assert cuda == (
        "CUDAExecutionProvider",
        {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0"},
    )
    assert cpu == "CPUExecutionProvider"
    assert providers.session_providers(True, allow_tf32=True)[0][1]["use_tf32"] == "1"
    assert providers.session_providers(False) == ["CPUExecutionProvider"]


def test_the_probe_reads_where_each_node_ran_from_a_profiled_run(exported):
    """The conv encoder's profile names every node ONNX Runtime ran: its Conv nodes (read from
    the graph itself with onnx) among them, each on the CPU here, so the verdict is "not CUDA"."""
    import onnx

    path = exported["dir"] / "encoder.onnx"
    placement = providers.node_placement(path.read_bytes(), ["CPUExecutionProvider"])
    graph_ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Conv" in graph_ops and "Conv" in {op for op, _ in placement}
    assert {provider for _, provider in placement} == {"CPUExecutionProvider"}
    usable, reason = providers.placement_verdict(placement)
    assert not usable and "no node ran on CUDAExecutionProvider" in reason


def test_the_verdict_wants_compute_on_cuda_and_no_host_copies():
    cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"
    clean = [("Conv", cuda), ("Shape", cpu), ("Gemm", cuda)]
    assert providers.placement_verdict(clean)[0]
    fallback = providers.placement_verdict([("Conv", cuda), ("LSTM", cpu)])
    assert not fallback[0] and "['LSTM'] fell back" in fallback[1]
    copies = [("Conv", cuda), ("MemcpyToHost", cuda), ("Relu", cpu), ("MemcpyFromHost", cuda)]
    assert providers.placement_verdict(copies) == (
        False,
        "2 host copies between nodes (1 on CPUExecutionProvider, 3 on CUDAExecutionProvider)",
    )


def test_io_binding_gives_the_same_outputs_in_every_chunk(exported, images):
    plain = inference.Encoder(exported["dir"], batch_size=7)
    bound = inference.Encoder(exported["dir"], batch_size=7, io_binding=True)
    np.testing.assert_array_equal(bound.encode(images), plain.encode(images))
    decoder = inference.Decoder(exported["dir"], batch_size=5, io_binding=True)
    codes = plain.encode(images)
    np.testing.assert_array_equal(
        decoder.decode(codes), inference.Decoder(exported["dir"]).decode(codes)
    )


def test_batch_size_must_be_positive(exported):
    with pytest.raises(ValueError, match="batch_size"):
        inference.Encoder(exported["dir"], batch_size=0)


def test_cli_encode_then_decode(exported, images, tmp_path):
    np.save(tmp_path / "images.npy", np.round(images * 255).astype(np.uint8))
    assert (
        cli.main(
            [
                "encode",
                "--model",
                str(exported["dir"]),
                "--input",
                str(tmp_path / "images.npy"),
                "--output",
                str(tmp_path / "codes.npy"),
            ]
        )
        == 0
    )
    codes = np.load(tmp_path / "codes.npy")
    expected = inference.Encoder(exported["dir"]).encode(np.load(tmp_path / "images.npy"))
    np.testing.assert_array_equal(codes, expected)
    assert (
        cli.main(
            [
                "decode",
                "--model",
                str(exported["dir"]),
                "--input",
                str(tmp_path / "codes.npy"),
                "--output",
                str(tmp_path / "out.npy"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "out.npy").shape == (40, *IMAGE_SHAPE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npy", "images.npy", "out.npy"]


def test_cli_reports_bad_input_without_traceback(exported, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.full((2, 8, 8), 200.0, np.float32))
    status = cli.main(
        [
            "encode",
            "--model",
            str(exported["dir"]),
            "--input",
            str(tmp_path / "bad.npy"),
            "--output",
            str(tmp_path / "codes.npy"),
        ]
    )
    assert status == 2
    assert "divide by 255" in capsys.readouterr().err
    assert not (tmp_path / "codes.npy").exists()


def _python_without_tensorflow(tmp_path: Path) -> dict[str, str]:
    """An environment where `import tensorflow` (and keras) fails."""
    for name in ("tensorflow", "keras", "tf2onnx"):
        package = tmp_path / "blocked" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "blocked"), str(REPO / "src")])
    return environment


def test_inference_and_cli_import_no_tensorflow(tmp_path):
    code = (
        "import sys, autoencoders.inference, autoencoders.__main__\n"
        "heavy = {'tensorflow', 'keras', 'tf2onnx'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], env=_python_without_tensorflow(tmp_path), check=True
    )


def test_downstream_example_and_cli_run_without_tensorflow(exported, images, tmp_path):
    environment = _python_without_tensorflow(tmp_path)
    np.save(tmp_path / "images.npy", np.round(images[:5, ..., 0] * 255).astype(np.uint8))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "downstream.py"),
            str(exported["dir"]),
            str(tmp_path / "images.npy"),
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "codes (5, 4, 4, 4)" in result.stdout and "reconstructions (5, 8, 8, 1)" in result.stdout
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "autoencoders",
            "encode",
            "--model",
            str(exported["dir"]),
            "--input",
            str(tmp_path / "images.npy"),
            "--output",
            str(tmp_path / "codes.npy"),
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert np.load(tmp_path / "codes.npy").shape == (5, 4, 4, 4)


def test_scorer_scores_flags_and_maps_every_layout(scored, images):
    scorer = inference.Scorer(scored["dir"], batch_size=16)  # 40 images: 3 chunks
    assert (scorer.input_name, scorer.threshold_rule) == ("images", "target_fpr")
    threshold = scored["card"]["anomaly"]["threshold"]
    assert scorer.threshold == threshold["value"]
    scores, maps = scorer.score_and_maps(images)
    assert scores.shape == (40,) and scores.dtype == np.float32
    assert maps.shape == (40, *IMAGE_SHAPE) and maps.min() >= 0.0
    score_model = scored["score_model"]
    from autoencoders import anomaly

    expected = score_model.score(anomaly.keras_outputs(scored["model"], images))
    np.testing.assert_allclose(scores, expected, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_array_equal(scorer.flag(images), scores > scorer.threshold)
    # Calibrated on these images: at most 10% of them above the threshold.
    assert scorer.flag(images).mean() == threshold["fpr"] <= 0.1
    np.testing.assert_allclose(scorer.score(images[..., 0]), scores, atol=1e-6)
    assert scorer.score(images[3]).shape == () and scorer.maps(images[3]).shape == IMAGE_SHAPE
    np.testing.assert_allclose(scorer(images[3, ..., 0]), scores[3], atol=1e-6)
    np.testing.assert_allclose(scorer.maps(images), maps, atol=1e-6)
    as_bytes = np.round(images * 255).astype(np.uint8)
    np.testing.assert_allclose(
        scorer.score(as_bytes), scorer.score(as_bytes.astype(np.float64) / 255.0), atol=1e-5
    )


def test_scorer_needs_a_scorer_file(exported, scored):
    with pytest.raises(inference.ModelLoadError, match=str(exported["dir"] / "scorer.onnx")):
        inference.Scorer(exported["dir"])  # encoder and decoder only
    with pytest.raises(inference.ModelLoadError, match="expected one input and 3 output"):
        inference.Scorer(scored["export_dir"] / "encoder.onnx")


def _cli(*arguments: object) -> int:
    return cli.main([str(argument) for argument in arguments])


def test_cli_score_writes_scores_labels_and_maps(scored, images, tmp_path):
    # An unlabelled .npz (x only, as a user's own data) runs through scoring.
    np.savez(tmp_path / "images.npz", x=np.round(images * 255).astype(np.uint8))
    model = scored["dir"]
    assert _cli("score", "--model", model, "--input", tmp_path / "images.npz", "--output",
                tmp_path / "scores.npz") == 0  # fmt: skip
    with np.load(tmp_path / "scores.npz") as result:
        assert sorted(result.files) == ["labels", "scores"]
        scores, labels = result["scores"], result["labels"]
    scorer = inference.Scorer(model)
    expected = scorer.score(np.load(tmp_path / "images.npz")["x"])
    np.testing.assert_array_equal(scores, expected)
    assert labels.dtype == bool and np.array_equal(labels, expected > scorer.threshold)
    assert _cli("score", "--model", model, "--input", tmp_path / "images.npz", "--output",
                tmp_path / "maps.npz", "--maps") == 0  # fmt: skip
    with np.load(tmp_path / "maps.npz") as result:
        assert sorted(result.files) == ["labels", "local_maps", "maps", "scores"]
        assert result["maps"].shape == (40, *IMAGE_SHAPE)


@pytest.mark.parametrize("case", ["float_over_1", "size", "nan", "empty"])
def test_cli_score_rejects_what_encode_rejects(exported, scored, images, tmp_path, capsys, case):
    make_input, message = BAD_IMAGES[case]
    np.save(tmp_path / "bad.npy", make_input(images))
    errors = {}
    for command, model in (("encode", exported["dir"]), ("score", scored["dir"])):
        output = tmp_path / f"{command}.out"
        assert _cli(command, "--model", model, "--input", tmp_path / "bad.npy", "--output",
                    output) == 2  # fmt: skip
        errors[command] = capsys.readouterr().err
        assert not output.exists()
    for command, error in errors.items():
        assert message in error and error.count("\n") == 1, command


def test_cli_score_runs_without_tensorflow(scored, images, tmp_path):
    np.save(tmp_path / "images.npy", np.round(images[:5] * 255).astype(np.uint8))
    result = subprocess.run(
        [sys.executable, "-m", "autoencoders", "score", "--model", str(scored["dir"]),
         "--input", str(tmp_path / "images.npy"), "--output", str(tmp_path / "s.npz"), "--maps"],
        env=_python_without_tensorflow(tmp_path), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "above the threshold" in result.stdout
    assert np.load(tmp_path / "s.npz")["maps"].shape == (5, *IMAGE_SHAPE)


def test_cli_score_maps_dir_writes_png_overlays_marking_the_pixels_above_threshold(
    scored, images, tmp_path
):
    from PIL import Image

    np.save(tmp_path / "images.npy", images[:3])
    out = tmp_path / "overlays"
    assert _cli("score", "--model", scored["dir"], "--input", tmp_path / "images.npy",
                "--output", tmp_path / "s.npz", "--maps", out) == 0  # fmt: skip
    scorer = inference.Scorer(scored["dir"])
    card_threshold = scored["card"]["anomaly"]["pixel_threshold"]
    assert scorer.pixel_threshold == card_threshold["value"]
    local = np.load(tmp_path / "s.npz")["local_maps"]
    np.testing.assert_allclose(local, scorer.local_maps(images[:3]), atol=1e-6)
    # At most pixel_target_fpr of the calibration images' pixels lie above the threshold.
    assert scorer.flag_pixels(images).mean() <= anomaly_params().pixel_target_fpr
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["00000.png", "00001.png", "00002.png"]
    height, width = IMAGE_SHAPE[:2]
    scale = max(1, 256 // height)
    picture = np.asarray(Image.open(files[0]))
    assert picture.shape == (height * scale, 2 * width * scale, 3)
    # The left half is the image itself, in grey.
    left = picture[::scale, : width * scale : scale, 0] / 255.0
    np.testing.assert_allclose(left, images[0, ..., 0], atol=1 / 255)


def anomaly_params():
    from autoencoders import anomaly

    return anomaly.AnomalyParams()
