"""make serve / make promote: MLflow's own model server on the registry an export fills.

A repo-like layout (an untrained conv model, 300 real MNIST digits a split, a temporary SQLite
store) goes through the real export and anomaly stages, as the pipeline runs them: export@V
registers ``conv-encoder`` and anomaly@V ``conv-scorer``, each under the alias ``candidate``.
The servers are the real ``mlflow models serve`` processes on free 127.0.0.1 ports, started by
``python -m autoencoders.services.serving``; their answers are compared with ONNX Runtime on
exports/conv and scorers/conv (``inference.Encoder`` / ``Scorer``), and the registered models
(``autoencoders.served``'s pyfuncs) refuse and scale what the CLI refuses and scales.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from autoencoders import fileio, inference, models, tracking
from autoencoders.services import promotion, registered, serving

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STARTUP_S = 240


def _load_stage(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"stage_{name}", REPO / "pipeline" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def registry(tmp_path_factory, mnist_small) -> Iterator[dict]:
    """The export and anomaly stages run once on a repo-like layout; yields its root and test
    images."""
    import keras
    import mlflow

    from autoencoders import config

    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
        processed = root / "data" / "processed"
        processed.mkdir(parents=True)
        for split in ("train", "val", "test"):
            np.savez(processed / f"{split}.npz", x=mnist_small[f"x_{split}"])
        fileio.write_json(processed / "card.json", {"checksum": "mnist_small"})
        keras.utils.set_random_seed(0)
        params = config.load_params(REPO / "params.yaml")["variants"]["conv"]
        variant = models.VariantConfig.from_params("conv", params)
        models.save_autoencoder(
            models.build_autoencoder(variant, (28, 28, 1)), root / "models/conv"
        )
        experiment_id = tracking.setup()
        with mlflow.start_run() as run:
            pass
        tracking.write_run_ref(root / "models/conv/run.json", run.info.run_id, experiment_id)
        _load_stage("export").main(["--variant", "conv"])
        _load_stage("anomaly").main(["--variant", "conv"])
        yield {"root": root, "run_id": run.info.run_id, "images": mnist_small["x_test"][:5]}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _servers(root: Path, *argument_lists: list[str]) -> Iterator[list[tuple[str, Path]]]:
    """One ``python -m autoencoders.services.serving serve --variant conv ARGUMENTS`` per list,
    started together on free ports, each in its own process group (mlflow's CLI runs uvicorn
    under it), all terminated after the block; yields (base URL, log of what it printed)."""
    started = []
    try:
        for arguments in argument_lists:
            port = _free_port()
            log_path = root / f"serve-{port}.log"
            command = [sys.executable, "-m", "autoencoders.services.serving", "serve",
                       "--variant", "conv", "--port", str(port), *arguments]  # fmt: skip
            with open(log_path, "w") as log:
                process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            started.append((process, f"http://127.0.0.1:{port}", log_path))
        for process, url, log_path in started:
            _wait_for(process, url, log_path)
        yield [(url, log_path) for _, url, log_path in started]
    finally:
        for process, _, _ in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process, _, _ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_for(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.5)
    raise AssertionError(f"no answer on {url}/ping in {STARTUP_S} s: {log_path.read_text()}")


def _strict_json(text: bytes) -> dict:
    """``text`` parsed as strict JSON: the tokens NaN and Infinity, which Python's json writes
    and reads but JSON has not, fail the test."""

    def refuse(token: str) -> None:
        raise AssertionError(f"invalid JSON: the answer holds the token {token}")

    return json.loads(text, parse_constant=refuse)


def _post(url: str, payload: object) -> tuple[int, dict]:
    """POST ``payload`` as JSON (NaN and infinity written as the ``NaN`` and ``Infinity``
    tokens Python's json reads); the answer must be strict JSON."""
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, _strict_json(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, _strict_json(error.read())


def _client():
    import mlflow

    return mlflow.MlflowClient(tracking.tracking_uri())


def _alias(name: str, alias: str) -> str:
    return str(_client().get_model_version_by_alias(name, alias).version)


def test_export_registers_candidates_requiring_the_gpu_wheel_alone(registry):
    import mlflow
    import yaml

    client = _client()
    for name in ("conv-encoder", "conv-scorer"):
        assert registered.aliases(client, name) == {"candidate": "1"}
    scorer = client.get_model_version("conv-scorer", "1")
    assert scorer.tags["encoder_version"] == "1" and scorer.run_id == registry["run_id"]
    for name in ("conv-encoder", "conv-scorer"):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1"))
        requirements = (local / "requirements.txt").read_text().split()
        assert f"onnxruntime-gpu=={version('onnxruntime-gpu')}" in requirements
        assert not [line for line in requirements if line.startswith("onnxruntime==")]
        # The served pyfunc: its artifacts are the export's own .onnx file and model card.
        flavours = yaml.safe_load((local / "MLmodel").read_text())["flavors"]
        assert "onnx" not in flavours
        assert flavours["python_function"]["loader_module"] == "mlflow.pyfunc.model"
        role = name.rsplit("-", 1)[1]
        card = fileio.read_json(local / "artifacts" / "model_card.json")
        digest = hashlib.sha256((local / "artifacts" / f"{role}.onnx").read_bytes()).hexdigest()
        assert digest == card["files"][role]["sha256"]
        info = mlflow.models.get_model_info(f"models:/{name}/1")
        assert info.signature.inputs is None  # inference's rules, not a tensor schema
        assert info.metadata["input_name"] == "images"
        assert info.metadata["input_shape"] == [-1, 28, 28, 1]
    # The decoder, logged beside the encoder as an ONNX-flavour model, states its providers.
    (decoder,) = mlflow.search_logged_models(
        filter_string="name = 'decoder_onnx'", output_format="list"
    )
    local = Path(mlflow.artifacts.download_artifacts(decoder.model_uri))
    flavour = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["onnx"]
    assert flavour["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


NO_TENSORFLOW = """
import sys

sys.modules["tensorflow"] = None  # any import of TensorFlow (or Keras) now fails
sys.modules["keras"] = None
import mlflow
import numpy as np

model = mlflow.pyfunc.load_model(sys.argv[1])
images = np.load(sys.argv[2])
outputs = model.predict({"images": images})
np.savez(sys.argv[3], **outputs)
print(sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras")))
"""


def test_served_models_load_and_predict_without_tensorflow(registry, tmp_path):
    """The registered pyfuncs load and answer in a process where importing TensorFlow fails,
    uint8 images scaled as ``inference`` scales them."""
    root = registry["root"]
    pixels = np.round(registry["images"] * 255).astype(np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    expected = {
        "conv-encoder": {"code": inference.Encoder(root / "exports/conv").encode(pixels)},
        "conv-scorer": dict(
            zip(
                ("score", "anomaly_map"),
                inference.Scorer(root / "scorers/conv").score_and_maps(pixels),
                strict=True,
            )
        ),
    }
    for name, outputs in expected.items():
        result = tmp_path / f"{name}.npz"
        finished = subprocess.run(
            [
                sys.executable,
                "-c",
                NO_TENSORFLOW,
                f"models:/{name}/1",
                tmp_path / "pixels.npy",
                result,
            ],
            capture_output=True,
            text=True,
        )
        assert finished.returncode == 0, finished.stderr
        assert finished.stdout.splitlines()[-1] == "['keras', 'tensorflow']"  # the None entries
        with np.load(result) as answer:
            assert sorted(answer.files) == sorted(outputs)
            for key, value in outputs.items():
                np.testing.assert_allclose(answer[key], value, rtol=0, atol=1e-6)


def test_promote_moves_champion_and_fails_in_one_line(registry, capsys):
    from mlflow.exceptions import MlflowException

    from autoencoders.anomaly import stage as anomaly_stage
    from autoencoders.export import stage

    client = _client()
    for name in ("conv-encoder", "conv-scorer"):
        with contextlib.suppress(MlflowException):  # another test may have promoted already
            client.delete_registered_model_alias(name, "champion")
    assert serving.promote("conv") == [
        "conv-encoder: champion unset -> version 1",
        "conv-scorer: champion unset -> version 1",
    ]
    printed = capsys.readouterr().out
    assert "conv-encoder has no champion yet: version 1 is promoted without comparison" in printed
    for name in ("conv-encoder", "conv-scorer"):
        _check_promotion_tags(client, name, "1", promoted_from="none", forced="false")
    # A second export and anomaly stage of the same run: version 2 is the candidate, the
    # champion stays at 1.
    root = registry["root"]
    stage.log_onnx_models(
        root / "exports" / "conv",
        variant="conv",
        example_images=registry["images"][:2],
        run_id=registry["run_id"],
    )
    anomaly_stage.log_scorer(
        root / "scorers" / "conv",
        variant="conv",
        example_images=registry["images"][:2],
        run_id=registry["run_id"],
        metrics=fileio.read_json(root / "metrics" / "anomaly" / "conv.json"),
    )
    assert client.get_model_version("conv-scorer", "2").tags["encoder_version"] == "2"
    assert [
        _alias(n, a) for n in ("conv-encoder", "conv-scorer") for a in ("candidate", "champion")
    ] == ["2", "1", "2", "1"]
    capsys.readouterr()  # the stages' own lines
    assert serving.promote("conv")[0] == "conv-encoder: champion version 1 -> version 2"
    assert _alias("conv-scorer", "champion") == "2"
    # Two versions of one run: the same contract and data; its val loss (none was logged to
    # this run) is not compared.
    contract = f"images[-1, 28, 28, 1] ({inference.SCALING})"
    assert capsys.readouterr().out.splitlines() == [
        "[promote] conv-encoder champion version 1 vs version 2:",
        f"[promote]   input contract: champion {contract} | candidate {contract}: ok",
        "[promote]   data checksum: champion not recorded | candidate not recorded: ok",
        "[promote]   best_val_loss: champion not recorded | candidate not recorded (not "
        "compared): ok",
        "[promote] conv-encoder: champion version 1 -> version 2",
        "[promote] conv-scorer: champion version 1 -> version 2",
    ]
    for name in ("conv-encoder", "conv-scorer"):
        _check_promotion_tags(client, name, "2", promoted_from="1", forced="false")
    # Back to version 1: the scorer follows the encoder it was exported with.
    assert serving.promote("conv", version="1") == [
        "conv-encoder: champion version 2 -> version 1",
        "conv-scorer: champion version 2 -> version 1",
    ]
    # make serve's default is what was promoted, not the newest version (2, the candidate).
    assert serving.resolve(client, "conv-encoder") == ("models:/conv-encoder@champion", "1")
    with pytest.raises(registered.RegistryError, match="no registered model 'nope-encoder'"):
        serving.promote("nope")
    with pytest.raises(
        registered.RegistryError, match=r"conv-encoder has no version 7 \(versions: 1, 2\)"
    ):
        serving.promote("conv", version="7")
    # A model registered by hand, without the export's alias.
    first = client.get_model_version("conv-encoder", "1")
    client.create_registered_model("bare-encoder")
    client.create_model_version("bare-encoder", first.source, run_id=first.run_id)
    with pytest.raises(registered.RegistryError, match="bare-encoder has no 'candidate' version"):
        serving.promote("bare")
    with pytest.raises(
        registered.RegistryError, match="bare-encoder has neither 'champion' nor 'candidate'"
    ):
        serving.resolve(client, "bare-encoder")  # nothing promoted: no default to serve
    client.set_registered_model_alias("bare-encoder", "candidate", "1")
    assert serving.resolve(client, "bare-encoder") == ("models:/bare-encoder@candidate", "1")
    assert "no 'champion' yet; serving its 'candidate' (version 1)" in capsys.readouterr().err
    assert serving.promote("bare", version="1") == [
        "bare-encoder: champion unset -> version 1",
        "bare-scorer: not registered (the variant has no scorer)",
    ]
    missing = registry["root"] / "elsewhere.db"
    for arguments, message, store in (
        (["promote", "--variant", "nope"], "no registered model 'nope-encoder'", None),
        (["promote", "--variant", "conv"], f"no MLflow store at {missing}: ",
         f"sqlite:///{missing}"),
        (["serve", "--variant", "conv", "--alias", "gold"],
         "conv-encoder has no alias 'gold' (its aliases: candidate -> 2, champion -> 1)", None),
    ):  # fmt: skip
        environment = {**os.environ, "MLFLOW_TRACKING_URI": store or tracking.tracking_uri()}
        finished = subprocess.run(
            [sys.executable, "-m", "autoencoders.services.serving", *arguments],
            capture_output=True,
            text=True,
            env=environment,
        )
        assert finished.returncode == 1 and finished.stdout == ""
        program = "python -m autoencoders.services.serving: error: "
        (line,) = finished.stderr.strip().splitlines()
        assert line.startswith(program) and message in line
    assert not missing.exists()  # not created empty by asking


def _check_promotion_tags(
    client, name: str, version: str, *, promoted_from: str, forced: str
) -> None:
    tags = client.get_model_version(name, version).tags
    assert tags["promoted_from"] == promoted_from and tags["promotion_forced"] == forced
    assert tags["promoted_by"] == getpass.getuser()
    promoted_at = datetime.datetime.fromisoformat(tags["promoted_at"])
    assert promoted_at.utcoffset() == datetime.timedelta(0)
    age = datetime.datetime.now(datetime.timezone.utc) - promoted_at
    assert datetime.timedelta(seconds=-1) <= age < datetime.timedelta(minutes=10)


def test_promote_refuses_other_data_or_a_worse_val_loss_unless_forced(registry, capsys):
    """Versions registered from runs of their own (the export's model, another data_checksum
    or best_val_loss): a candidate trained on other data or whose val loss rises by more than
    the tolerance is refused with the comparison printed; --force promotes it and says so."""
    client = _client()
    name = "conv-encoder"
    held = {model: registered.aliases(client, model) for model in (name, "conv-scorer")}
    source = client.get_model_version(name, "1").source
    experiment_id = client.get_run(registry["run_id"]).info.experiment_id

    def register(checksum: str, val_loss: float) -> str:
        run = client.create_run(experiment_id, tags={"data_checksum": checksum})
        client.log_metric(run.info.run_id, "best_val_loss", val_loss)
        client.set_terminated(run.info.run_id)
        return str(client.create_model_version(name, source, run_id=run.info.run_id).version)

    tolerance = promotion.VAL_LOSS_TOLERANCE
    contract = f"images[-1, 28, 28, 1] ({inference.SCALING})"
    try:
        champion = register("a" * 64, 0.02)
        client.set_registered_model_alias(name, "champion", champion)
        other_data = register("b" * 64, 0.02)
        client.set_registered_model_alias(name, "candidate", other_data)
        capsys.readouterr()
        with pytest.raises(registered.RegistryError) as refused:
            serving.promote("conv")
        assert str(refused.value) == (
            f"conv-encoder version {other_data} not promoted over version {champion}: data "
            "checksum differs (comparison above); to promote it anyway: make promote "
            "VARIANT=conv FORCE=1 (--force)."
        )
        assert capsys.readouterr().out.splitlines() == [
            f"[promote] conv-encoder champion version {champion} vs version {other_data}:",
            f"[promote]   input contract: champion {contract} | candidate {contract}: ok",
            "[promote]   data checksum: champion aaaaaaaaaaaa | candidate bbbbbbbbbbbb: refused",
            "[promote]   best_val_loss: champion 0.02 | candidate 0.02 (+0.0%, at most "
            f"{tolerance:.0%} above): ok",
        ]
        assert _alias(name, "champion") == champion  # refused: nothing moved
        assert serving.promote("conv", force=True)[0] == (
            f"conv-encoder: champion version {champion} -> version {other_data}"
        )
        assert "[promote] --force overrides: data checksum differs" in capsys.readouterr().out
        _check_promotion_tags(client, name, other_data, promoted_from=champion, forced="true")
        # The same data: a val loss up by twice the tolerance is refused, by half of it passes.
        worse_loss = 0.02 * (1 + 2 * tolerance)
        worse = register("b" * 64, worse_loss)
        with pytest.raises(registered.RegistryError) as refused:
            serving.promote("conv", version=worse)
        assert (
            f"not promoted over version {other_data}: best_val_loss {2 * tolerance:+.1%} "
            f"(tolerance {tolerance:.0%}) (comparison above); to promote it anyway: make promote "
            f"VARIANT=conv VERSION={worse} FORCE=1 (--force)."
        ) in str(refused.value)
        assert capsys.readouterr().out.splitlines()[2:] == [
            "[promote]   data checksum: champion bbbbbbbbbbbb | candidate bbbbbbbbbbbb: ok",
            f"[promote]   best_val_loss: champion 0.02 | candidate {worse_loss:.6g} "
            f"({2 * tolerance:+.1%}, at most {tolerance:.0%} above): refused",
        ]
        assert _alias(name, "champion") == other_data
        within = register("b" * 64, 0.02 * (1 + tolerance / 2))
        assert serving.promote("conv", version=within)[0].endswith(f"-> version {within}")
        _check_promotion_tags(client, name, within, promoted_from=other_data, forced="false")
        # The input contract: another shape is refused; an ONNX-flavour version, whose
        # signature states a dtype and no scaling, matches a pyfunc of the same name and shape.
        record = promotion.version_record(client, name, within)
        assert record["contract"] == {
            "name": "images",
            "shape": [-1, 28, 28, 1],
            "dtype": None,
            "scaling": inference.SCALING,
        }
        assert record["data_checksum"] == "b" * 64
        assert record["best_val_loss"] == pytest.approx(0.02 * (1 + tolerance / 2), rel=1e-12)
        smaller = {**record, "contract": {**record["contract"], "shape": [-1, 8, 8, 1]}}
        checks = promotion.compare(record, smaller)
        assert [check.ok for check in checks] == [False, True, True]
        assert checks[0].failure == "input contract differs"
        onnx = {**record, "contract": {**record["contract"], "dtype": "float32", "scaling": None}}
        assert all(check.ok for check in promotion.compare(onnx, record))
        assert not promotion.compare(record, {**record, "best_val_loss": None})[2].ok
    finally:
        for model, named in held.items():
            for alias, number in named.items():
                client.set_registered_model_alias(model, alias, number)


def _codes(answer: dict) -> np.ndarray:
    return np.asarray(answer["predictions"]["code"], dtype=np.float32)


def test_served_models_answer_both_input_forms_as_onnx_runtime_does(registry):
    root, images = registry["root"], registry["images"]
    serving.promote("conv")
    champion = _alias("conv-encoder", "champion")
    scorer_champion = _alias("conv-scorer", "champion")
    with _servers(root, ["--alias", "champion"], ["--role", "scorer"]) as servers:
        (encoder_url, encoder_log), (scorer_url, scorer_log) = servers
        printed = encoder_log.read_text().splitlines()
        assert printed[0].startswith(f"[serve] models:/conv-encoder@champion (version {champion})")
        # No alias given: the champion, as promoted.
        served = f"[serve] models:/conv-scorer@champion (version {scorer_champion})"
        assert scorer_log.read_text().startswith(served)
        assert f"Uvicorn running on {encoder_url} " in encoder_log.read_text()  # bound to loopback
        expected = inference.Encoder(root / "exports" / "conv").encode(images)
        batch = images.tolist()
        for payload in (
            {"inputs": {"images": batch}},
            {"inputs": batch},
            {"instances": batch},
            {"instances": [{"images": image} for image in batch]},
        ):
            status, answer = _post(encoder_url, payload)
            assert status == 200, answer
            np.testing.assert_allclose(_codes(answer), expected, rtol=0, atol=1e-6)
        # The curl line it printed, pasted into a shell: one all-zero image.
        curl = printed[1].removeprefix("[serve] try: ")
        pasted = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True)
        zeros = np.zeros((1, 28, 28, 1), np.float32)
        np.testing.assert_allclose(
            _codes(json.loads(pasted.stdout)),
            inference.Encoder(root / "exports" / "conv").encode(zeros),
            rtol=0,
            atol=1e-6,
        )
        status, answer = _post(scorer_url, {"inputs": {"images": batch}})
        assert status == 200, answer
        scores, maps = inference.Scorer(root / "scorers" / "conv").score_and_maps(images)
        np.testing.assert_allclose(answer["predictions"]["score"], scores, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            answer["predictions"]["anomaly_map"], maps, rtol=1e-6, atol=1e-6
        )
        _check_bad_requests(encoder_url, images, root / "exports" / "conv")
        # The scorer follows the same rules: uint8 pixels scaled, NaN refused.
        pixels = np.round(images * 255).astype(int).tolist()
        status, answer = _post(scorer_url, {"instances": pixels})
        assert status == 200, answer
        np.testing.assert_allclose(answer["predictions"]["score"], scores, rtol=1e-5, atol=1e-6)
        status, answer = _post(scorer_url, {"inputs": {"images": [[[[float("nan")]] * 28] * 28]}})
        assert status == 400 and answer["message"] == (
            "images contain 784 NaN or infinite value(s); clean them before encoding."
        )


def _check_bad_requests(url: str, images: np.ndarray, export_dir: Path) -> None:
    """The served encoder's input rules are the CLI's (``inference``): uint8 pixels (JSON
    integers) scaled, ``(N, H, W)`` grey accepted, NaN, infinity, ``null``, values outside
    [0, 1] and wrong shapes a 400 whose message's first line is the reason; MLflow's own check
    of the request's keys stays. Every answer is strict JSON (``_post``)."""
    encoder = inference.Encoder(export_dir)
    expected = encoder.encode(images[:2])
    pixels = np.round(images[:2] * 255)
    scaled = encoder.encode((pixels / 255).astype(np.float32))
    for payload in (
        {"inputs": {"images": pixels.astype(int).tolist()}},  # uint8 pixel values
        {"instances": pixels[..., 0].astype(int).tolist()},  # uint8, (N, 28, 28)
    ):
        status, answer = _post(url, payload)
        assert status == 200, answer
        np.testing.assert_allclose(_codes(answer), scaled, rtol=0, atol=1e-6)
        np.testing.assert_allclose(
            _codes(answer), encoder.encode(pixels.astype(np.uint8)), rtol=0, atol=1e-6
        )
    grey = images[:2, ..., 0]
    for payload in (
        {"inputs": {"images": grey.tolist()}},
        {"instances": [{"images": image.tolist()} for image in grey]},
    ):
        status, answer = _post(url, payload)  # (N, 28, 28) floats: the codes of (N, 28, 28, 1)
        assert status == 200, answer
        np.testing.assert_allclose(_codes(answer), expected, rtol=0, atol=1e-6)
    status, answer = _post(url, {"inputs": {"images": images[0].tolist()}})  # one image
    assert status == 200 and _codes(answer).shape == expected[0].shape
    np.testing.assert_allclose(_codes(answer), expected[0], rtol=0, atol=1e-6)
    nan, inf, null = images[:2].tolist(), images[:2].tolist(), images[:2].tolist()
    nan[0][3][4][0], inf[1][5][6][0], null[0][7][8][0] = float("nan"), float("inf"), None
    refused = [
        (images[:2, :27].tolist(), "images: size mismatch: got shape (2, 27, 28, 1)"),
        (images[:2, ..., 0].reshape(2, -1).tolist(), "images: wrong rank: got shape (2, 784)"),
        (nan, "images contain 1 NaN or infinite value(s)"),
        (inf, "images contain 1 NaN or infinite value(s)"),
        (null, "images contain 1 NaN or infinite value(s)"),  # JSON null is NaN
        ((pixels / 255 * 2).tolist(), "float images must lie in [0, 1] but reach 2"),
        ((pixels - 1).astype(int).tolist(), "integer pixel values must lie in 0-255"),
        (pixels.astype(float).tolist(), "float images must lie in [0, 1] but reach 255"),
        (np.full((1, 28, 28, 1), "a").tolist(), "images have dtype <U1"),
        ([[[[{}]] * 28] * 28], "images must be numbers"),
        ([], "images: wrong rank: got shape (0,)"),  # an empty list has no image shape
    ]
    for wrong, reason in refused:
        status, answer = _post(url, {"inputs": {"images": wrong}})
        assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE", answer
        (first, *rest) = answer["message"].splitlines()
        assert first.startswith(reason), answer["message"]
        assert not rest and len(first) < 400  # the reason alone: no repr of the request
    status, answer = _post(url, {"inputs": {"pixels": images[:1].tolist()}})
    assert status == 400 and answer["message"].startswith("expected one input named 'images'")
    status, answer = _post(url, {"images": images[:1].tolist()})
    assert status == 400 and "'inputs'" in answer["message"] and "'instances'" in answer["message"]


def test_a_copied_workspace_serves_alone_after_the_original_is_gone(registry, tmp_path):
    """MLflow records absolute artifact locations; the copy's first MLflow command points its
    store at its own mlartifacts/, and its server answers with the original removed."""
    import sqlite3

    original, copy = tmp_path / "original", tmp_path / "nested" / "copy"
    shutil.copytree(registry["root"], original)  # a trained workspace of its own
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    old_uri = (original / "mlartifacts").as_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(copy)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy / 'mlflow.db'}")
        with _servers(copy, ["--version", "1"]) as [(url, log)]:
            assert f"now in {copy / 'mlartifacts'}" in log.read_text()
            status, answer = _post(url, {"inputs": registry["images"].tolist()})
        assert status == 200, answer
        expected = inference.Encoder(copy / "exports" / "conv").encode(registry["images"])
        np.testing.assert_allclose(_codes(answer), expected, rtol=0, atol=1e-6)
        with contextlib.closing(sqlite3.connect(copy / "mlflow.db")) as store:
            for table, column in tracking._text_columns(store):
                query = f'SELECT count(*) FROM "{table}" WHERE instr("{column}", ?) > 0'
                assert store.execute(query, (old_uri,)).fetchone() == (0,), (table, column)
        # Nothing moved since: the next command rewrites nothing.
        assert tracking.relocate_artifacts(copy / "mlflow.db") == 0
