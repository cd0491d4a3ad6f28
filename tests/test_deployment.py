"""autoencoders.services: the Triton model repository and batch encoding on Ray Data.

The exports and scorers are tiny ONNX graphs built here with ``onnx.helper`` (encoder, decoder
and clusters in exports/<v>, scorer in scorers/<v>, each folder with a model card holding the
parity batch sizes as the export and anomaly stages write it, which Triton's configs ignore), so
these tests need neither TensorFlow nor a trained model. Triton's configs are parsed with
Triton's own ModelConfig protobuf (``tritonclient``) and checked against ONNX Runtime's view of
each graph; the Ray tests run on a local two-CPU cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from autoencoders import errors, inference
from autoencoders.services import batch, shards, triton

REPO = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (8, 8, 1)
PIXELS = int(np.prod(IMAGE_SHAPE))
CODE_SHAPE = (2, 3)
ORT_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(uint8)": "TYPE_UINT8",
                 "tensor(int64)": "TYPE_INT64"}  # fmt: skip
FLOAT, UINT8, INT64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT64
node, info = helper.make_node, helper.make_tensor_value_info


def _weights(name: str, shape: tuple[int, ...], seed: int) -> TensorProto:
    values = np.random.default_rng(seed).normal(0, 0.3, shape).astype(np.float32)
    return helper.make_tensor(name, FLOAT, shape, values.ravel().tolist())


def _shape(name: str, values: list[int]) -> TensorProto:
    return helper.make_tensor(name, INT64, [len(values)], values)


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _encoder(batch_dim: str | int = "batch", element=FLOAT) -> onnx.ModelProto:
    """images (batch, 8, 8, 1) -> code (batch, 2, 3); a uint8 input is cast to float."""
    size = int(np.prod(CODE_SHAPE))
    return _model(
        [node("Cast", ["images"], ["pixels"], to=FLOAT),
         node("Reshape", ["pixels", "flat_shape"], ["flat"]),
         node("MatMul", ["flat", "weights"], ["projected"]),
         node("Add", ["projected", "bias"], ["linear"]),
         node("Tanh", ["linear"], ["activated"]),
         node("Reshape", ["activated", "code_shape"], ["code"])],
        [info("images", element, [batch_dim, *IMAGE_SHAPE])],
        [info("code", FLOAT, [batch_dim, *CODE_SHAPE])],
        [_shape("flat_shape", [-1, PIXELS]), _weights("weights", (PIXELS, size), 0),
         _weights("bias", (size,), 1), _shape("code_shape", [-1, *CODE_SHAPE])],
    )  # fmt: skip


def _decoder() -> onnx.ModelProto:
    """code (batch, 2, 3) -> reconstruction (batch, 8, 8, 1) in [0, 1]."""
    size = int(np.prod(CODE_SHAPE))
    return _model(
        [node("Reshape", ["code", "flat_shape"], ["flat"]),
         node("MatMul", ["flat", "weights"], ["linear"]),
         node("Sigmoid", ["linear"], ["pixels"]),
         node("Reshape", ["pixels", "image_shape"], ["reconstruction"])],
        [info("code", FLOAT, ["batch", *CODE_SHAPE])],
        [info("reconstruction", FLOAT, ["batch", *IMAGE_SHAPE])],
        [_shape("flat_shape", [-1, size]), _weights("weights", (size, PIXELS), 2),
         _shape("image_shape", [-1, *IMAGE_SHAPE])],
    )  # fmt: skip


def _scorer() -> onnx.ModelProto:
    """images -> score (batch,) and map (batch, 8, 8, 1): two outputs, one of rank 1."""
    return _model(
        [node("Sub", ["images", "half"], ["centred"]),
         node("Mul", ["centred", "centred"], ["map"]),
         node("ReduceMean", ["map"], ["score"], axes=[1, 2, 3], keepdims=0)],
        [info("images", FLOAT, ["batch", *IMAGE_SHAPE])],
        [info("score", FLOAT, ["batch"]), info("map", FLOAT, ["batch", *IMAGE_SHAPE])],
        [helper.make_tensor("half", FLOAT, [], [0.5])],
    )  # fmt: skip


def _clusters() -> onnx.ModelProto:
    """uint8 images -> probabilities (batch, 3) and assignments (batch,) int64."""
    return _model(
        [node("Cast", ["images"], ["pixels"], to=FLOAT),
         node("Reshape", ["pixels", "flat_shape"], ["flat"]),
         node("MatMul", ["flat", "weights"], ["logits"]),
         node("Softmax", ["logits"], ["probabilities"], axis=-1),
         node("ArgMax", ["logits"], ["assignments"], axis=-1, keepdims=0)],
        [info("images", UINT8, ["batch", *IMAGE_SHAPE])],
        [info("probabilities", FLOAT, ["batch", 3]), info("assignments", INT64, ["batch"])],
        [_shape("flat_shape", [-1, PIXELS]), _weights("weights", (PIXELS, 3), 3)],
    )  # fmt: skip


def _write_export(directory: Path, models: dict[str, onnx.ModelProto], batch_sizes) -> Path:
    """An export (or scorer) folder as the export (or anomaly) stage leaves it: the .onnx files
    and a model card whose ``parity.batch_sizes`` are the batch sizes the parity gate ran at."""
    directory.mkdir(parents=True)
    for role, model in models.items():
        onnx.save(model, directory / triton.ROLE_FILES[role])
    card = {"variant": directory.name, "parity": {"batch_sizes": list(batch_sizes)}}
    (directory / "model_card.json").write_text(json.dumps(card))
    return directory


@pytest.fixture
def exports(tmp_path) -> Path:
    """exports/ with two variants and, beside it, scorers/ with tiny's scorer (its own card)."""
    root = tmp_path / "exports"
    _write_export(root / "tiny", {"encoder": _encoder(), "decoder": _decoder()}, (1, 7))
    _write_export(tmp_path / "scorers" / "tiny", {"scorer": _scorer()}, (1, 5))
    _write_export(
        root / "idec",
        {"encoder": _encoder(element=UINT8), "decoder": _decoder(), "clusters": _clusters()},
        (1, 257),
    )
    (root / "notes").mkdir()  # not an export: no .onnx files
    (root / "notes" / "README.md").write_text("notes\n")
    _write_export(root / ".tiny.old", {"encoder": _encoder()}, (1,))  # a staging leftover
    return root


def _check_tensor(config_tensor, ort_tensor) -> str:
    """A config input/output against ONNX Runtime's view of the same graph tensor; returns
    the config's Triton data type."""
    from tritonclient.grpc import model_config_pb2

    data_type = model_config_pb2.DataType.Name(config_tensor.data_type)
    assert config_tensor.name == ort_tensor.name
    assert data_type == ORT_TO_TRITON[ort_tensor.type]
    per_example = list(ort_tensor.shape[1:])
    if per_example:
        assert list(config_tensor.dims) == per_example
        assert not config_tensor.HasField("reshape")
    else:  # a (batch,) tensor: dims [1], reshaped to the empty shape
        assert list(config_tensor.dims) == [1]
        assert config_tensor.HasField("reshape") and list(config_tensor.reshape.shape) == []
    return data_type


def _parse(path: Path):
    """config.pbtxt parsed by Triton's own ModelConfig message (unknown fields fail)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_triton_configs_parse_with_tritons_proto_and_match_the_graphs(exports, tmp_path):
    from tritonclient.grpc import model_config_pb2

    out, scorers = tmp_path / "triton", tmp_path / "scorers"
    assert (
        triton.main(["--exports", str(exports), "--scorers", str(scorers), "--out", str(out)]) == 0
    )
    # The scorer comes from scorers/<v>, the rest from exports/; the cards' parity batch sizes
    # (257 for idec) play no part.
    expected = {f"{variant}-{role}": folder / variant / triton.ROLE_FILES[role]
                for folder, variant, roles in (
                    (exports, "idec", ("encoder", "decoder", "clusters")),
                    (exports, "tiny", ("encoder", "decoder")),
                    (scorers, "tiny", ("scorer",)))
                for role in roles}  # fmt: skip
    assert sorted(path.name for path in out.iterdir()) == sorted(expected)
    data_types = set()
    for name, source in expected.items():
        assert sorted(p.name for p in (out / name).iterdir()) == ["1", "config.pbtxt"]
        config = _parse(out / name / "config.pbtxt")
        assert (config.name, config.platform) == (name, "onnxruntime_onnx")
        assert config.max_batch_size == triton.DEFAULT_MAX_BATCH_SIZE == 1024
        assert 512 <= config.max_batch_size  # a client's 512-image batch is one request
        # One instance, its kind left to Triton (KIND_AUTO: every GPU, else the CPU).
        assert [(group.count, group.kind) for group in config.instance_group] == [
            (1, model_config_pb2.ModelInstanceGroup.Kind.KIND_AUTO)
        ]
        assert config.HasField("dynamic_batching")
        served = out / name / "1" / "model.onnx"
        assert served.read_bytes() == source.read_bytes()
        session = ort.InferenceSession(str(served), providers=["CPUExecutionProvider"])
        for configured, graph in ((config.input, session.get_inputs()),
                                  (config.output, session.get_outputs())):  # fmt: skip
            assert len(configured) == len(graph)
            data_types |= {_check_tensor(c, g) for c, g in zip(configured, graph, strict=True)}
        # Triton batches up to max_batch_size along the first axis: the graph must run there.
        feed = {
            tensor.name: np.zeros((config.max_batch_size, *tensor.shape[1:]),
                                  np.uint8 if tensor.type == "tensor(uint8)" else np.float32)
            for tensor in session.get_inputs()
        }  # fmt: skip
        assert all(len(result) == config.max_batch_size for result in session.run(None, feed))
    assert data_types == {"TYPE_FP32", "TYPE_UINT8", "TYPE_INT64"}

    # Rewriting replaces each model whole and leaves other models of the repository alone.
    (out / "someone-else").mkdir()
    kinds = model_config_pb2.ModelInstanceGroup.Kind
    for options, kind in ((["--instances", "3", "--kind", "cpu"], kinds.KIND_CPU),
                          (["--instances", "2", "--kind", "gpu"], kinds.KIND_GPU),
                          (["--instances", "4", "--kind", "auto"], kinds.KIND_AUTO)):  # fmt: skip
        arguments = ["--exports", str(exports), "--scorers", str(scorers), "--out", str(out),
                     "--max-batch-size", "64", *options]  # fmt: skip
        assert triton.main(arguments) == 0
        for name in ("tiny-encoder", "tiny-scorer", "idec-clusters"):
            config = _parse(out / name / "config.pbtxt")
            assert config.max_batch_size == 64
            assert [(group.count, group.kind) for group in config.instance_group] == [
                (int(options[1]), kind)
            ]
    assert "kind:" not in (out / "tiny-encoder" / "config.pbtxt").read_text()  # auto: none
    assert (out / "someone-else").is_dir()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-batch-size", "0"], "--max-batch-size must be a positive integer, got 0."),
        (["--max-batch-size", "-512"], "--max-batch-size must be a positive integer, got -512."),
        (["--instances", "0"], "--instances must be a positive integer, got 0."),
    ],
)
def test_triton_bad_serving_options_fail_in_one_line(exports, tmp_path, options, message):
    out = tmp_path / "triton"
    command = [sys.executable, "-m", "autoencoders.services.triton", "--exports", str(exports),
               "--scorers", str(tmp_path / "scorers"), "--out", str(out), *options]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True)
    assert completed.returncode == errors.EXIT_CODE
    assert completed.stderr.strip().splitlines() == [f"{triton.PROGRAM}: error: {message}"]
    assert not out.exists()  # checked before anything was written


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"max_batch_size": 2.5}, "--max-batch-size must be a positive integer, got 2.5"),
        ({"max_batch_size": True}, "--max-batch-size must be a positive integer, got True"),
        ({"instances": -1}, "--instances must be a positive integer, got -1"),
        ({"kind": "tpu"}, "--kind must be one of auto, cpu, gpu, got 'tpu'"),
    ],
)
def test_triton_serving_options_are_checked_by_the_library_too(
    exports, tmp_path, keywords, message
):
    with pytest.raises(triton.TritonRepositoryError, match=message):
        triton.write_repository(exports, tmp_path / "triton", **keywords)
    assert not (tmp_path / "triton").exists()


def test_triton_without_a_scorers_folder_writes_the_exports_and_says_so(exports, tmp_path, capsys):
    out, missing = tmp_path / "triton", tmp_path / "no-scorers"
    assert (
        triton.main(["--exports", str(exports), "--scorers", str(missing), "--out", str(out)]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "idec-clusters", "idec-decoder", "idec-encoder", "tiny-decoder", "tiny-encoder",
    ]  # fmt: skip
    printed = capsys.readouterr().out
    assert f"no scorers folder {missing}" in printed and "anomaly@" in printed
    # A scorer.onnx left in an export folder by the old layout is not served from there.
    (exports / "tiny" / "scorer.onnx").write_bytes(
        (tmp_path / "scorers" / "tiny" / "scorer.onnx").read_bytes()
    )
    assert "tiny-scorer" not in triton.write_repository(exports, tmp_path / "again")


def test_triton_defaults_are_the_pipelines_folders():
    from autoencoders import paths

    defaults = triton.build_parser().parse_args([])
    assert (defaults.exports, defaults.scorers, defaults.out) == (
        paths.EXPORTS,
        paths.SCORERS,
        paths.TRITON,
    )
    assert (defaults.exports, defaults.scorers, defaults.out) == (
        Path("exports"),
        Path("scorers"),
        Path("exports/triton"),
    )  # dvc.yaml's outs of export@V and anomaly@V, and make triton's repository
    assert (defaults.max_batch_size, defaults.instances, defaults.kind) == (1024, 1, "auto")
    # argparse refuses a kind it does not know (its usage line, then the choices).
    with pytest.raises(SystemExit):
        triton.build_parser().parse_args(["--kind", "tpu"])


def test_triton_rejects_a_fixed_batch_dimension_in_one_line(tmp_path):
    root = tmp_path / "exports"
    fixed = _write_export(
        root / "fixed", {"encoder": _encoder(batch_dim=1), "decoder": _decoder()}, (1, 7)
    )
    out = tmp_path / "triton"
    command = [sys.executable, "-m", "autoencoders.services.triton", "--exports", str(root),
               "--scorers", str(tmp_path / "scorers"), "--out", str(out)]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True)
    assert completed.returncode == errors.EXIT_CODE
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert str(fixed / "encoder.onnx") in lines[0]
    assert "input 'images' has a fixed batch dimension of 1" in lines[0]
    assert "dynamic" in lines[0] and "re-export" in lines[0]
    assert not out.exists()  # checked before anything was written

    # No model card is read: without one the decoder is served with the default batch limit.
    (fixed / "model_card.json").unlink()
    (fixed / "encoder.onnx").unlink()
    assert triton.write_repository(root, out) == ["fixed-decoder"]
    assert _parse(out / "fixed-decoder" / "config.pbtxt").max_batch_size == 1024
    # A scorer folder's fix names the stage that writes it.
    scorers = _write_export(tmp_path / "scorers" / "fixed", {"scorer": _encoder(batch_dim=1)}, [0])
    with pytest.raises(
        triton.TritonRepositoryError, match=r"re-run its anomaly stage .*anomaly@fixed\)"
    ):
        triton.write_repository(root, out, scorers=scorers.parent)


# --- batch encoding on Ray Data -----------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def encoder_export(tmp_path) -> Path:
    return _write_export(tmp_path / "model", {"encoder": _encoder()}, (1, 7))


@pytest.fixture
def image_shards(tmp_path) -> Path:
    """uint8 (N, H, W, C) and (N, H, W) shards, a float one and an empty one."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "shards"
    folder.mkdir()
    np.save(folder / "a.npy", rng.integers(0, 256, (1000, *IMAGE_SHAPE), dtype=np.uint8))
    np.save(folder / "b.npy", rng.integers(0, 256, (777, 8, 8), dtype=np.uint8))
    np.save(folder / "c.npy", rng.random((300, *IMAGE_SHAPE), dtype=np.float32))
    np.save(folder / "d.npy", np.zeros((0, 8, 8), np.uint8))
    return folder


def _check_codes(image_shards: Path, output: Path, model: Path) -> None:
    """Every shard's codes identical to one process's ``inference.Encoder``, and nothing else
    (no temporary file) in the output folder."""
    reference = inference.Encoder(model)
    stems = sorted(path.stem for path in image_shards.glob("*.npy"))
    assert sorted(p.name for p in output.iterdir()) == [f"{s}.codes.npy" for s in stems]
    for stem in stems:
        images = np.load(image_shards / f"{stem}.npy")
        codes = np.load(output / f"{stem}.codes.npy")
        assert codes.shape == (len(images), *CODE_SHAPE) and codes.dtype == np.float32
        if len(images):
            assert np.array_equal(codes, reference.encode(images)), stem


def test_ray_codes_equal_the_single_process_encoder(ray_cluster, encoder_export, image_shards):
    output = image_shards.parent / "codes"
    arguments = [
        "--model",
        str(encoder_export),
        "--input",
        str(image_shards),
        "--output",
        str(output),
        "--concurrency",
        "2",
        "--batch-size",
        "128",
        "--no-progress",
    ]
    assert batch.main(arguments) == 0
    _check_codes(image_shards, output, encoder_export)


def test_a_worker_killed_mid_job_still_gives_every_row_once(
    ray_cluster, encoder_export, image_shards, tmp_path
):
    marker = str(tmp_path / "killed")

    class KilledOnce(batch.ChunkEncoder):
        """Dies (the whole worker process, no cleanup) on the first chunk any actor gets."""

        def __call__(self, chunk):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return super().__call__(chunk)
            os._exit(1)

    output = tmp_path / "codes"
    summary = batch.encode_directory(
        encoder_export,
        image_shards,
        output,
        concurrency=2,
        batch_size=100,
        max_retries=2,
        progress=False,
        encoder_class=KilledOnce,
    )
    assert os.path.exists(marker)  # an actor really died
    assert summary["images"] == 1000 + 777 + 300 and summary["shards"] == 4
    _check_codes(image_shards, output, encoder_export)


def test_bad_values_and_an_unusable_gpu_fail_in_one_line(ray_cluster, encoder_export, tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    images = np.random.default_rng(1).random((250, *IMAGE_SHAPE), dtype=np.float32)
    images[230, 2, 2, 0] = np.nan
    np.save(folder / "nan.npy", images)
    output = tmp_path / "codes"
    with pytest.raises(batch.BatchEncodingError) as raised:
        batch.encode_directory(encoder_export, folder, output, batch_size=100, progress=False)
    message = str(raised.value)
    assert "\n" not in message and str(folder / "nan.npy") in message
    assert "rows 230 (1 of rows 200-250)" in message and "NaN or infinite" in message
    assert not output.exists() or not list(output.iterdir())  # no partial file

    # The command line on a cluster of its own: the project's line, no Ray traceback or notice.
    run = subprocess.run(
        [sys.executable, "-m", "autoencoders.services.batch", "--model", str(encoder_export),
         "--input", str(folder), "--output", str(output), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    printed = run.stdout + run.stderr
    assert run.returncode != 0 and "error: " in printed and "rows 230 (1 of" in printed
    for noise in ("Traceback", "open an issue", "Token authentication", "ERROR"):
        assert noise not in printed, printed

    with pytest.raises(batch.BatchEncodingError, match="the cluster has 0 GPUs"):
        batch.encode_directory(encoder_export, folder, output, num_gpus_per_actor=1)
    if inference.cuda_usable((encoder_export / "encoder.onnx").read_bytes())[0]:
        return

    class RequiresGpu(batch.ChunkEncoder):
        """A GPU actor landing on a node whose GPU ONNX Runtime cannot use."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "require_gpu": True})

    np.save(folder / "nan.npy", np.zeros((10, *IMAGE_SHAPE), np.uint8))
    # A fresh local cluster: pytest's log capture keeps Ray Data's record of the NaN failure,
    # whose traceback frames hold that job's tasks and so its actors' handles; those actors stay
    # alive holding both CPUs and this job's actor would wait for ever (docs/batch-encoding.md).
    ray_cluster.shutdown()
    ray_cluster.init(num_cpus=2, include_dashboard=False)
    with pytest.raises(batch.BatchEncodingError) as raised:
        batch.encode_directory(
            encoder_export, folder, output, progress=False, encoder_class=RequiresGpu
        )
    assert "\n" not in str(raised.value) and "require_gpu=True" in str(raised.value)


def test_without_ray_the_command_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    arguments = ["--model", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [batch.PROGRAM, *arguments])
    with pytest.raises(SystemExit) as exited:
        errors.cli(batch.main, program=batch.PROGRAM)
    assert exited.value.code == errors.EXIT_CODE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"pip install '{batch.RAY_REQUIREMENT}'" in lines[0]


def test_code_writer_keeps_rows_in_place_and_refuses_duplicates_and_gaps(tmp_path):
    sources = [shards.Source(tmp_path / "a.npy", 5, tmp_path / "out" / "a.codes.npy")]
    codes = np.arange(5 * 6, dtype=np.float32).reshape(5, *CODE_SHAPE)

    def rows(indices):
        indices = np.asarray(indices)
        return {"source": np.zeros(len(indices), np.int64), "row": indices, "code": codes[indices]}

    writer = shards.CodeWriter(sources, CODE_SHAPE)
    writer.add(rows([3, 4]))
    writer.add(rows([0, 2, 1]))  # out of order: each row lands at its own position
    writer.close()
    assert np.array_equal(np.load(sources[0].target), codes)

    for batches, message in (([[0, 1], [1, 2]], "arrived twice"), ([[0, 1]], "missing rows")):
        sources[0].target.unlink(missing_ok=True)
        writer = shards.CodeWriter(sources, CODE_SHAPE)
        with pytest.raises(shards.ShardError, match=message):
            for indices in batches:
                writer.add(rows(indices))
            writer.close()
        writer.abort()
        assert not list((tmp_path / "out").iterdir())  # neither a target nor a temporary file


LIGHT_IMPORTS = """
import importlib.util, sys
import autoencoders.inference, autoencoders.served, autoencoders.services.batch
import autoencoders.services.serving
heavy = ("tensorflow", "keras", "jax", "dvc", "umap", "sklearn", "optuna", "onnx")
print(sorted(name for name in heavy if importlib.util.find_spec(name) is not None))
"""


@pytest.mark.slow
def test_the_light_install_imports_serving_and_ray_and_encodes_without_the_pipeline(
    encoder_export, image_shards, tmp_path
):
    """``pip install autoencoders[serving,batch]`` in a clean virtual environment: no TensorFlow,
    JAX, DVC, UMAP or scikit-learn installed, the served pyfunc, the registry commands and the
    Ray job import, and its command line gives this environment's codes bit for bit (the Ray
    job's codes equal the command line's: test_ray_codes_equal_the_single_process_encoder)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", f"{source}[serving,batch]"],
        check=True, timeout=900,
    )  # fmt: skip
    light = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    found = subprocess.run(
        [python, "-c", LIGHT_IMPORTS], env=light, capture_output=True, text=True, check=True
    )
    assert found.stdout.split("\n")[-2] == "[]", found.stdout
    images = image_shards / "a.npy"
    subprocess.run(
        [python, "-m", "autoencoders", "encode", "--model", str(encoder_export),
         "--input", str(images), "--output", str(tmp_path / "a.codes.npy")],
        env=light, check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    reference = inference.Encoder(encoder_export).encode(np.load(images))
    assert np.array_equal(np.load(tmp_path / "a.codes.npy"), reference)


def test_the_command_line_encodes_image_files_as_fetch_decodes_them(encoder_export, tmp_path):
    """A folder of PNG and JPEG files of other sizes, encoded by ``python -m autoencoders
    encode --input FOLDER``: the codes of the pixels fetch gives the same folder (its own
    8x8 grey contract: size and channels from the model, bilinear)."""
    from PIL import Image

    from autoencoders import config
    from autoencoders.__main__ import main
    from autoencoders.data import folders, images
    from autoencoders.data import shards as data_shards

    rng = np.random.default_rng(3)
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for index, (height, width) in enumerate([(20, 30), (8, 8), (33, 17)]):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{index}.png")
        Image.fromarray(pixels).save(folder / "more" / f"j{index}.jpg", quality=90)
    assert main(["encode", "--model", str(encoder_export), "--input", str(folder),
                 "--output", str(tmp_path / "codes.npy")]) == 0  # fmt: skip
    settings = {"path": str(folder), "labels": None, "image_size": [8, 8],
                "color_mode": "grayscale"}  # fmt: skip
    params = config.from_mapping(folders.FolderParams, settings, "data")
    images.fetch_images(params, tmp_path / "raw", workers=1)
    fetched = data_shards.ShardedSplit(tmp_path / "raw", "train")
    expected = inference.Encoder(encoder_export).encode(fetched.take(np.arange(len(fetched))))
    assert np.array_equal(np.load(tmp_path / "codes.npy"), expected)
    assert main(["encode", "--model", str(encoder_export), "--input", str(tmp_path / "no.txt"),
                 "--output", str(tmp_path / "x.npy")]) == 2  # fmt: skip
