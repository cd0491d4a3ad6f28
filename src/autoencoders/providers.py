"""ONNX Runtime's execution providers: which one a session gets, with which options, and a
probe that says where a model's nodes really run.

Three traps of the CUDA provider that these settings avoid (docs/downstream.md, "On a GPU"):

- Its default cuDNN algorithm search (``EXHAUSTIVE``) benchmarks every convolution again for
  every new input shape, about 0.3-1.3 s each; ``inference`` sends a smaller last chunk, so
  every dataset size would pay it again. ``HEURISTIC`` picks from cuDNN's heuristics at once.
- On Ampere and newer GPUs it computes FP32 convolutions and matrix products in TF32 by
  default, about 1e-3 away from the parity-checked CPU codes; ``use_tf32`` is off unless a
  caller passes ``allow_tf32=True``.
- ``get_available_providers()`` lists CUDA wherever the onnxruntime-gpu wheel is installed,
  GPU or not, and ``get_providers()`` only says the CUDA provider was created. ``cuda_usable``
  decides from a profiled run instead: the model's compute nodes on CUDA and no host copies
  (``Memcpy`` nodes) between them.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from typing import Any

import numpy as np
import onnxruntime as ort

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Op types that do the arithmetic; shape bookkeeping (Shape, Reshape, ...) may stay on the CPU.
COMPUTE_OPS = frozenset(
    {"Conv", "ConvTranspose", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm"}
    | {"LSTM", "GRU", "RNN"}
)
MEMCPY_OPS = frozenset({"MemcpyFromHost", "MemcpyToHost"})

# Decided once per process (a probe is a full session creation and run, and a failed CUDA load
# prints ONNX Runtime's own errors); later sessions reuse it.
_cuda_decision: tuple[bool, str] | None = None


def cuda_options(allow_tf32: bool = False) -> dict[str, str]:
    """The CUDA provider's options: heuristic cuDNN algorithm choice, TF32 only when allowed."""
    return {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "1" if allow_tf32 else "0"}


def session_providers(use_cuda: bool, allow_tf32: bool = False) -> list[Any]:
    """The ``providers`` argument of an InferenceSession: CUDA (with ``cuda_options``) then CPU,
    or the CPU alone."""
    return [(CUDA, cuda_options(allow_tf32)), CPU] if use_cuda else [CPU]


def _nvidia_driver_reason() -> str | None:
    """Why there is certainly no usable NVIDIA driver, or None when there may be one."""
    library = {"linux": "libcuda.so.1", "win32": "nvcuda.dll"}.get(sys.platform)
    if library is None:
        return f"CUDA is not supported by onnxruntime on {sys.platform}"
    try:
        ctypes.CDLL(library)
    except OSError:
        return f"no NVIDIA driver ({library} cannot be loaded)"
    return None


def node_placement(
    model_bytes: bytes, providers: list[Any], options: ort.SessionOptions | None = None
) -> list[tuple[str, str]]:
    """(op type, provider) of every node one profiled run of a one-image batch executed."""
    options = options or ort.SessionOptions()
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as directory:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(directory, "probe")
        session = ort.InferenceSession(model_bytes, options, providers=providers)
        feeds = {}
        for node in session.get_inputs():
            shape = [1 if not isinstance(dim, int) else dim for dim in node.shape]
            feeds[node.name] = np.zeros(shape, dtype=np.float32)
        session.run(None, feeds)
        with open(session.end_profiling()) as handle:
            events = json.load(handle)
    return [
        (event["args"]["op_name"], event["args"]["provider"])
        for event in events
        if event.get("cat") == "Node" and "provider" in event.get("args", {})
    ]


def placement_verdict(placement: list[tuple[str, str]]) -> tuple[bool, str]:
    """Whether a profiled run kept the arithmetic on CUDA without host copies, and a summary."""
    counts = Counter(provider for _, provider in placement)
    off_gpu = sorted({op for op, provider in placement if op in COMPUTE_OPS and provider != CUDA})
    copies = sum(op in MEMCPY_OPS for op, _ in placement)
    summary = ", ".join(f"{count} on {name}" for name, count in sorted(counts.items()))
    if not counts.get(CUDA):
        return False, f"no node ran on {CUDA} ({summary or 'no nodes'})"
    if off_gpu:
        return False, f"compute nodes {off_gpu} fell back to the CPU ({summary})"
    if copies:
        return False, f"{copies} host copies between nodes ({summary})"
    return True, f"{CUDA} runs every compute node, no host copies ({summary})"


def cuda_usable(model_bytes: bytes) -> tuple[bool, str]:
    """Whether the CUDA provider really runs ``model_bytes`` (a valid ONNX model) here, and why:
    the wheel must offer it, a driver must load, and a profiled run must place the model's
    compute nodes on CUDA with no host copies between them. Decided once per process."""
    global _cuda_decision
    if _cuda_decision is not None:
        return _cuda_decision
    available = ort.get_available_providers()
    if CUDA not in available:
        decision = (False, f"onnxruntime {ort.__version__} has no {CUDA} (providers: {available})")
    elif (reason := _nvidia_driver_reason()) is not None:
        decision = (False, f"{CUDA} is listed but {reason}")
    else:
        try:
            placement = node_placement(model_bytes, session_providers(True))
        except Exception as error:  # noqa: BLE001 - any failure means: not usable
            decision = (False, f"{CUDA} is listed but a session could not use it: {error}")
        else:
            decision = placement_verdict(placement)
    _cuda_decision = decision
    logger.info("ONNX Runtime provider: %s (%s)", CUDA if decision[0] else CPU, decision[1])
    return decision


__all__ = [
    "CPU",
    "CUDA",
    "cuda_options",
    "cuda_usable",
    "node_placement",
    "placement_verdict",
    "session_providers",
]
