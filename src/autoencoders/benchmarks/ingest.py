"""Ingestion images/s of a folder: ``fetch`` of ``data.source: images`` (pre-scan, decode in a
process pool, uint8 shards written) against the first pass of
``keras.utils.image_dataset_from_directory`` over the same folder, one run each, side by side.

python -m autoencoders.benchmarks ingest --folder data/sample-images   # make bench-data

Both read the folder from the page cache (every file is read once before either runs), resize
to the same size with bilinear filters and use this process's cores. Keras only decodes into
float32 batches (it writes nothing); the fetch also pre-scans every file and writes shards.
A second pass shows what every later epoch costs: keras decodes again, the shards are read.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from autoencoders.benchmarks import onnx_latency
from autoencoders.data import decoding, folders, images, shards


def _warm(folder: Path) -> int:
    """Read every file once (so that neither side pays for the disk); return the bytes read."""
    return sum(len(path.read_bytes()) for path in sorted(folder.rglob("*")) if path.is_file())


def _keras_dataset(folder: Path, image_size: tuple[int, int], color_mode: str):
    import keras

    return keras.utils.image_dataset_from_directory(
        str(folder),
        labels="inferred",
        color_mode=color_mode,
        image_size=image_size,
        interpolation="bilinear",
        batch_size=256,
        shuffle=False,
        verbose=False,
    )


def _timed_pass(batches) -> tuple[int, float]:
    """(images, seconds) of one pass over ``batches``."""
    started = time.perf_counter()
    count = sum(int(batch.shape[0]) for batch in batches)
    return count, time.perf_counter() - started


def _rate(count: int, seconds: float) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "images_per_s": round(count / seconds, 1)}


def run_ingest_bench(
    folder: str | Path,
    image_size: tuple[int, int] = (64, 64),
    color_mode: str = "rgb",
    workers: int | None = None,
) -> dict[str, Any]:
    """One timed fetch of ``folder`` and one timed keras first pass; images/s of each."""
    folder = Path(folder)
    warmed = _warm(folder)
    workers = decoding.worker_count() if workers is None else workers
    params = folders.FolderParams(path=str(folder), image_size=image_size, color_mode=color_mode)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as scratch:
        started = time.perf_counter()
        record = images.fetch_images(params, Path(scratch) / "raw", workers=workers)
        ours = time.perf_counter() - started
        reread = _timed_pass(shards.iter_batches(Path(scratch) / "raw", "train", 256))
    count = sum(record["counts"].values())
    import keras  # noqa: F401  (TensorFlow's start-up is not keras's ingestion)

    started = time.perf_counter()  # keras's listing of the folder counts, as fetch's does
    dataset = _keras_dataset(folder, image_size, color_mode)
    keras_count, _ = _timed_pass(batch for batch, _ in dataset)
    keras_seconds = time.perf_counter() - started
    again = _timed_pass(batch for batch, _ in dataset)
    return {
        "folder": str(folder),
        "bytes": warmed,
        "images": count,
        "keras_images": keras_count,
        "image_size": list(image_size),
        "color_mode": color_mode,
        "workers": workers,
        "fetch": _rate(count, ours),
        "keras": _rate(keras_count, keras_seconds),
        "ratio": round((count / ours) / (keras_count / keras_seconds), 2),
        "shards_pass": _rate(*reread),
        "keras_second_pass": _rate(*again),
        "machine": onnx_latency.describe_machine(),
    }


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    size = "x".join(map(str, report["image_size"]))
    return "\n".join(
        [
            f"# Ingestion: {report['images']} images of {report['folder']} to {size} "
            f"{report['color_mode']}",
            "",
            f"Machine: {machine.get('cpu')}, {machine.get('usable_cores')} cores; fetch with "
            f"{report['workers']} worker processes; one run each, files in the page cache.",
            "",
            "| reader | seconds | images/s |",
            "| --- | --- | --- |",
            f"| fetch (pre-scan + decode + shards) | {report['fetch']['seconds']} "
            f"| {report['fetch']['images_per_s']} |",
            f"| keras image_dataset_from_directory, first pass | {report['keras']['seconds']} "
            f"| {report['keras']['images_per_s']} |",
            f"| later passes: the shards, float32 batches (iter_batches) "
            f"| {report['shards_pass']['seconds']} | {report['shards_pass']['images_per_s']} |",
            f"| later passes: keras decodes again | {report['keras_second_pass']['seconds']} "
            f"| {report['keras_second_pass']['images_per_s']} |",
            "",
            f"First pass, fetch / keras: {report['ratio']}x",
            "",
        ]
    )
