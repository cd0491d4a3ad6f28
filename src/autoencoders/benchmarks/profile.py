"""Where a training step's time goes: TensorFlow's profiler, summed by op type on the compute
threads, and the share spent in convolution kernels (forward and backward)."""

from __future__ import annotations

import collections
import glob
import math
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

CONVOLUTION_OPS = (
    "Conv2D",
    "_FusedConv2D",
    "Conv2DBackpropInput",
    "Conv2DBackpropFilter",
    "DepthwiseConv2dNative",
    "DepthwiseConv2dNativeBackpropInput",
    "DepthwiseConv2dNativeBackpropFilter",
)


def op_seconds(fit: Callable[[int], Any]) -> dict[str, float]:
    """Seconds per TensorFlow op type over one ``fit(1)``, from the profiler's host trace."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory(prefix="train-bench-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            fit(1)
        finally:
            tf.profiler.experimental.stop()
        paths = glob.glob(f"{logdir}/plugins/profile/*/*.xplane.pb")
        if not paths:
            raise RuntimeError(f"TensorFlow's profiler wrote no trace under {logdir}.")
        space = xplane_pb2.XSpace()
        with open(paths[0], "rb") as handle:
            space.ParseFromString(handle.read())
    totals: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                # Op events are named "<op name>:<op type>"; executor/threadpool events are not.
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:
                    totals[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return dict(totals.most_common())


def base_op(op: str) -> str:
    """The plain op type of oneDNN's kernels where TensorFlow names them its own way
    (``_MklNativeFusedConv2D`` -> ``_FusedConv2D``,
    ``_MklNativeConv2DBackpropFilterWithBias`` -> ``Conv2DBackpropFilter``)."""
    for prefix in ("_MklNative", "_Mkl"):
        if op.startswith(prefix):
            op = op[len(prefix) :]
            op = "_FusedConv2D" if op == "FusedConv2D" else op
            break
    return op.removesuffix("WithBias")


def kernel_share(seconds_by_op: Mapping[str, float]) -> float:
    """The share of op time spent in convolution kernels (forward and backward)."""
    total = sum(seconds_by_op.values())
    convolution = sum(
        seconds for op, seconds in seconds_by_op.items() if base_op(op) in CONVOLUTION_OPS
    )
    return convolution / total if total > 0 else math.nan
