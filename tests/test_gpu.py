"""The GPU path (marked ``gpu``): skipped, with the probe's reason, where CUDA cannot run.

The model is built with onnx.helper (NHWC images -> Transpose -> Conv -> Relu -> Flatten ->
Gemm), as an encoder export's graph is, so that the CPU provider is the reference for CUDA's
FP32 results.
"""

from __future__ import annotations

import numpy as np
import pytest

from autoencoders import inference, providers

SHAPE = (12, 12, 1)


def _encoder_bytes() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)
    weights = rng.normal(size=(4 * 10 * 10, 8)).astype(np.float32) / 20
    nodes = [
        helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "kernel"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Flatten", ["relu"], ["flat"]),
        helper.make_node("Gemm", ["flat", "weights"], ["code"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_encoder",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("code", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(kernel, "kernel"), numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def gpu_encoder(tmp_path_factory):
    payload = _encoder_bytes()
    usable, reason = providers.cuda_usable(payload)
    if not usable:
        pytest.skip(f"no usable GPU here: {reason}")
    path = tmp_path_factory.mktemp("gpu") / "encoder.onnx"
    path.write_bytes(payload)
    return path


pytestmark = pytest.mark.gpu


def test_the_probe_places_every_compute_node_on_cuda(gpu_encoder):
    placement = providers.node_placement(
        gpu_encoder.read_bytes(), providers.session_providers(True)
    )
    usable, reason = providers.placement_verdict(placement)
    assert usable, reason
    assert ("Conv", providers.CUDA) in placement and ("Gemm", providers.CUDA) in placement


def test_fp32_codes_on_cuda_match_the_cpu(gpu_encoder):
    """TF32 off (the default): CUDA's codes within float32 rounding of the CPU's, for every
    chunk size including a short last one."""
    images = np.random.default_rng(1).random((1000, *SHAPE), dtype=np.float32)
    gpu = inference.Encoder(gpu_encoder, require_gpu=True, batch_size=256)
    assert gpu.provider == providers.CUDA
    cpu_session = inference.ort.InferenceSession(str(gpu_encoder), providers=[providers.CPU])
    expected = cpu_session.run(None, {"images": images})[0]
    got = gpu.encode(images)
    assert np.max(np.abs(got - expected)) <= 1e-5 * max(1.0, float(np.max(np.abs(expected))))


def test_io_binding_on_cuda_gives_the_plain_run_outputs(gpu_encoder):
    images = np.random.default_rng(2).random((300, *SHAPE), dtype=np.float32)
    plain = inference.Encoder(gpu_encoder, require_gpu=True, batch_size=128)
    bound = inference.Encoder(gpu_encoder, require_gpu=True, batch_size=128, io_binding=True)
    np.testing.assert_array_equal(bound.encode(images), plain.encode(images))
