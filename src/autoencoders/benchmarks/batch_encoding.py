"""Images per second of the Ray batch job against the single-process CLI, on the same images.

    python -m autoencoders.benchmarks.batch_encoding --model exports/conv [--images 60000] \\
        [--shards 6] [--data data/processed] [--concurrency N] [--batch-size N] [--report F]

The same ``--images`` uint8 images (from ``--data``'s ``train.npz`` then ``val.npz`` when they
exist, as preprocess writes them, else seeded random ones of the model's input shape) are
written once as one ``.npy`` (the CLI's input) and once as ``--shards`` shards (the Ray job's).
Then, one after the other on this machine, ``python -m autoencoders encode`` and
``python -m autoencoders.services.batch`` run as their own processes; each figure is the
command's whole wall-clock time, start-up included (the Ray job starts a local cluster), and the
Ray job's own figure for its encoding phase is printed beside it. The codes of the two are
checked to be identical before any figure is printed. ``--report`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import errors, fileio, inference, paths

PROGRAM = "python -m autoencoders.benchmarks.batch_encoding"


def benchmark_images(
    count: int, image_shape: tuple[int, ...], data_dir: Path | None, seed: int = 0
) -> tuple[np.ndarray, str]:
    """``count`` uint8 images (N, *image_shape) and where they came from."""
    arrays, names = [], []
    for split in ("train", "val", "test"):
        path = data_dir / f"{split}.npz" if data_dir else None
        if path is None or not path.is_file() or sum(map(len, arrays)) >= count:
            continue
        with np.load(path) as archive:
            x = archive["x"]
        if tuple(x.shape[1:]) != image_shape:
            raise errors.DataError(
                f"{path} holds images of shape {x.shape[1:]}; the model takes {image_shape}."
            )
        # preprocess stores pixel / 255 as float32: round back to the bytes.
        arrays.append(x if x.dtype == np.uint8 else np.round(x * 255).astype(np.uint8))
        names.append(str(path))
    if arrays and sum(map(len, arrays)) >= count:
        return np.concatenate(arrays)[:count], " + ".join(names)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, *image_shape), dtype=np.uint8)
    return images, f"seeded random uint8 (seed {seed})"


def _timed(command: list[str]) -> tuple[float, str]:
    """Wall-clock seconds of ``command`` as its own process, and its stdout."""
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(command)} failed: {' | '.join(tail)}")
    return seconds, completed.stdout


def machine() -> str:
    """This machine in one line: CPU model, cores the process may use, load at the start."""
    model = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as handle:
        found = re.search(r"model name\s*:\s*(.+)", handle.read())
    if found:
        model = found.group(1).strip()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{model}, {len(os.sched_getaffinity(0))} cores, load average {load}"


def run(
    model: str, *, images: int, shards: int, data_dir: Path | None, batch_size: int,
    concurrency: int | None,
) -> dict[str, Any]:  # fmt: skip
    """Both commands on the same images; the figures and what they were measured on."""
    described = machine()  # the load before either command runs
    encoder = inference.Encoder(model)
    array, origin = benchmark_images(images, encoder.input_shape, data_dir)
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as scratch:
        root = Path(scratch)
        (root / "shards").mkdir()
        np.save(root / "all.npy", array)
        bounds = np.linspace(0, len(array), shards + 1).astype(int)
        for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            np.save(root / "shards" / f"part-{index:03d}.npy", array[start:stop])
        cli = [sys.executable, "-m", "autoencoders", "encode", "--model", model,
               "--input", str(root / "all.npy"), "--output", str(root / "cli.npy"),
               "--batch-size", str(batch_size)]  # fmt: skip
        ray = [sys.executable, "-m", "autoencoders.services.batch", "--model", model,
               "--input", str(root / "shards"), "--output", str(root / "ray"),
               "--batch-size", str(batch_size), "--no-progress"]  # fmt: skip
        if concurrency:
            ray += ["--concurrency", str(concurrency)]
        cli_seconds, _ = _timed(cli)
        ray_seconds, ray_output = _timed(ray)
        ray_codes = np.concatenate(
            [np.load(path) for path in sorted((root / "ray").glob("*.codes.npy"))]
        )
        identical = bool(np.array_equal(ray_codes, np.load(root / "cli.npy")))
    if not identical:
        raise RuntimeError("the Ray job's codes differ from the CLI's on the same images.")
    phase = re.search(r"in ([0-9.]+) s \(([0-9]+) images/s, ([0-9]+) actors\)", ray_output)
    return {
        "machine": described,
        "model": model,
        "images": len(array),
        "image_shape": list(encoder.input_shape),
        "images_from": origin,
        "shards": shards,
        "batch_size": batch_size,
        "cli_seconds": cli_seconds,
        "cli_images_per_second": len(array) / cli_seconds,
        "ray_seconds": ray_seconds,
        "ray_images_per_second": len(array) / ray_seconds,
        "ray_encode_seconds": float(phase.group(1)) if phase else None,
        "ray_encode_images_per_second": float(phase.group(2)) if phase else None,
        "ray_actors": int(phase.group(3)) if phase else None,
        "codes_identical": identical,
        "command": " ".join([PROGRAM, *sys.argv[1:]]),
    }


def markdown(result: dict[str, Any]) -> str:
    """The figures as the table docs/batch-encoding.md shows."""
    actors = result["ray_actors"]
    return "\n".join([
        f"{result['images']} images {tuple(result['image_shape'])} from "
        f"{result['images_from']}, model {result['model']}, batch size {result['batch_size']}; "
        f"{result['machine']}.",
        "",
        "| command | wall time (s) | images/s |",
        "| --- | ---: | ---: |",
        f"| `python -m autoencoders encode` (one process) | {result['cli_seconds']:.1f} | "
        f"{result['cli_images_per_second']:.0f} |",
        f"| Ray job, {actors} CPU actors, {result['shards']} shards (start-up included) | "
        f"{result['ray_seconds']:.1f} | {result['ray_images_per_second']:.0f} |",
        f"| Ray job, its encoding phase only | {result['ray_encode_seconds']:.1f} | "
        f"{result['ray_encode_images_per_second']:.0f} |",
        "",
        f"Codes identical: {result['codes_identical']}. Command: `{result['command']}`",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=paths.export("conv"))
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("--data", type=Path, default=paths.PROCESSED)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--report", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    result = run(
        args.model, images=args.images, shards=args.shards, data_dir=args.data,
        batch_size=args.batch_size, concurrency=args.concurrency,
    )  # fmt: skip
    if args.report:
        fileio.write_json(args.report, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(errors.cli(main, program=PROGRAM))
