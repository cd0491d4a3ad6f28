"""Benchmark of the exported encoders: ONNX Runtime against the same Keras encoder in TensorFlow.

For each variant with both ``exports/<v>/encoder.onnx`` and ``models/<v>``, times in one process
(so the ratios compare like with like): batch-1 latency (median and p99 over ``latency_runs``
calls) and throughput at ``throughput_batch`` images a call. TensorFlow runs the Keras encoder as
a ``tf.function`` with a dynamic batch axis (traced once, never ``predict``); ONNX Runtime runs
the session ``autoencoders.inference`` builds (graph optimisation ORT_ENABLE_ALL). Both are timed
numpy in, numpy out. The report describes the machine. Run by ``make bench``
(``python -m autoencoders.benchmarks latency``): reports/bench.json and reports/bench.md.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import inference


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """params.yaml ``bench:``."""

    latency_runs: int = 200
    throughput_batch: int = 1024
    throughput_runs: int = 10
    warmup_runs: int = 10
    # 0: ONNX Runtime's default (one thread per physical core).
    intra_op_num_threads: int = 0

    def __post_init__(self) -> None:
        for field in ("latency_runs", "throughput_batch", "throughput_runs"):
            if getattr(self, field) < 1:
                raise ValueError(f"bench.{field} must be >= 1, got {getattr(self, field)}")
        if self.warmup_runs < 0 or self.intra_op_num_threads < 0:
            raise ValueError("bench.warmup_runs and bench.intra_op_num_threads must be >= 0")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """CPU, cores, GPU providers and library versions, for the report's header."""
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cores = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers_available": ort.get_available_providers(),
        "tensorflow_gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
    }


def time_calls(function: Callable[[], Any], runs: int, warmup_runs: int) -> np.ndarray:
    """Seconds each of ``runs`` calls took, after ``warmup_runs`` untimed calls."""
    for _ in range(warmup_runs):
        function()
    seconds = np.empty(runs)
    for index in range(runs):
        start = time.perf_counter()
        function()
        seconds[index] = time.perf_counter() - start
    return seconds


def _summary(latency: np.ndarray, throughput: np.ndarray, batch: int) -> dict[str, float]:
    return {
        "latency_median_ms": float(np.median(latency) * 1e3),
        "latency_p99_ms": float(np.percentile(latency, 99) * 1e3),
        "throughput_images_per_s": float(batch / np.median(throughput)),
    }


def benchmark_encoder(
    onnx_path: str | Path,
    keras_encoder: Any,
    *,
    latency_runs: int,
    throughput_batch: int,
    throughput_runs: int,
    warmup_runs: int = 10,
    intra_op_num_threads: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Time one encoder under ONNX Runtime and TensorFlow (tf.function); return the figures."""
    import tensorflow as tf

    encoder = inference.Encoder(onnx_path, intra_op_num_threads=intra_op_num_threads or None)
    shape = encoder.input_shape
    random = np.random.default_rng(seed)
    single = random.random((1, *shape), dtype=np.float32)
    batch = random.random((throughput_batch, *shape), dtype=np.float32)

    spec = (tf.TensorSpec((None, *shape), tf.float32),)
    traced = tf.function(
        lambda images: keras_encoder(images, training=False), input_signature=spec
    )

    def run_keras(images: np.ndarray) -> Callable[[], np.ndarray]:
        return lambda: traced(images).numpy()

    def run_onnx(images: np.ndarray) -> Callable[[], np.ndarray]:
        feed = {encoder.input_name: images}
        return lambda: encoder.session.run([encoder.output_name], feed)[0]

    max_diff = float(np.max(np.abs(run_onnx(batch)() - run_keras(batch)())))
    figures = {}
    for runtime, make in (("onnxruntime", run_onnx), ("tensorflow", run_keras)):
        latency = time_calls(make(single), latency_runs, warmup_runs)
        throughput = time_calls(make(batch), throughput_runs, min(warmup_runs, 2))
        figures[runtime] = _summary(latency, throughput, throughput_batch)
    # The public API adds input validation on top of session.run; show what that costs.
    api = time_calls(lambda: encoder.encode(single), latency_runs, warmup_runs)
    figures["onnxruntime"]["api_latency_median_ms"] = float(np.median(api) * 1e3)
    onnx_figures, tf_figures = figures["onnxruntime"], figures["tensorflow"]
    return {
        "input_shape": list(shape),
        "code_shape": list(encoder.code_shape),
        "provider": encoder.provider,
        "intra_op_num_threads": intra_op_num_threads or "default",
        "max_abs_diff": max_diff,
        **figures,
        "latency_speedup": tf_figures["latency_median_ms"] / onnx_figures["latency_median_ms"],
        "throughput_speedup": onnx_figures["throughput_images_per_s"]
        / tf_figures["throughput_images_per_s"],
    }


def run_benchmarks(
    variants: Sequence[str],
    *,
    exports_dir: str | Path = "exports",
    models_dir: str | Path = "models",
    latency_runs: int,
    throughput_batch: int,
    throughput_runs: int,
    warmup_runs: int = 10,
    intra_op_num_threads: int = 0,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark every variant that has an export and a trained model; list the ones skipped."""
    from autoencoders import models

    config = BenchConfig(
        latency_runs=latency_runs,
        throughput_batch=throughput_batch,
        throughput_runs=throughput_runs,
        warmup_runs=warmup_runs,
        intra_op_num_threads=intra_op_num_threads,
    )
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for variant in variants:
        onnx_path = Path(exports_dir) / variant / "encoder.onnx"
        model_dir = Path(models_dir) / variant
        if not onnx_path.exists() or not model_dir.exists():
            missing = onnx_path if not onnx_path.exists() else model_dir
            skipped[variant] = f"{missing} missing: run `dvc repro export@{variant}` first"
            progress(f"bench: skip {variant} ({skipped[variant]})")
            continue
        progress(f"bench: {variant} ...")
        keras_encoder = models.load_autoencoder(model_dir).encoder
        results[variant] = benchmark_encoder(
            onnx_path, keras_encoder, **dataclasses.asdict(config)
        )
    return {
        "machine": describe_machine(),
        "params": dataclasses.asdict(config),
        "results": results,
        "skipped": skipped,
    }


def render_markdown(report: Mapping[str, Any]) -> str:
    """A markdown page: the machine, then one table row per variant."""
    machine = report["machine"]
    params = report["params"]
    batch = params["throughput_batch"]
    provider = next(iter(report["results"].values()), {}).get("provider", "n/a")
    lines = [
        "# Encoder inference: ONNX Runtime vs TensorFlow",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable of "
        f"{machine['logical_cores']} logical cores, {machine['platform']}; "
        f"ONNX Runtime {machine['onnxruntime']} on {provider}, TensorFlow "
        f"{machine['tensorflow']} (Keras {machine['keras']}, GPUs: "
        f"{machine['tensorflow_gpus'] or 'none'}), Python {machine['python']}.",
        "",
        f"Batch-1 latency over {params['latency_runs']} calls after {params['warmup_runs']} "
        f"warm-up calls; throughput at batch {batch}, median of {params['throughput_runs']} "
        "calls. TensorFlow runs the Keras encoder as a tf.function; both numpy in, numpy out. "
        "Speed-up = TensorFlow time / ONNX Runtime time (> 1: ONNX Runtime is faster).",
        "",
        "| variant | ORT median ms | ORT p99 ms | TF median ms | TF p99 ms | latency speed-up "
        f"| ORT img/s (b{batch}) | TF img/s (b{batch}) | throughput speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, result in report["results"].items():
        onnx_figures, tf_figures = result["onnxruntime"], result["tensorflow"]
        lines.append(
            f"| {variant} | {onnx_figures['latency_median_ms']:.3f} | "
            f"{onnx_figures['latency_p99_ms']:.3f} | {tf_figures['latency_median_ms']:.3f} | "
            f"{tf_figures['latency_p99_ms']:.3f} | {result['latency_speedup']:.1f}x | "
            f"{onnx_figures['throughput_images_per_s']:,.0f} | "
            f"{tf_figures['throughput_images_per_s']:,.0f} | {result['throughput_speedup']:.1f}x |"
        )
    for variant, reason in report["skipped"].items():
        lines.append(f"| {variant} | skipped: {reason} |||||||| ")
    return "\n".join(lines) + "\n"
