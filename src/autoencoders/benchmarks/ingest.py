"""The data bench: a folder of images through ``fetch`` and the shards' input pipeline, side by
side in one run with ``keras.utils.image_dataset_from_directory`` on the same folder.

python -m autoencoders.benchmarks data --folder data/bench-images   # make bench-data

Rows, each timed in a fresh process (its peak RSS from ``resource.getrusage``):
- first pass: ``fetch`` (index, check, decode, resize, write uint8 shards) against keras's first
  epoch (its listing of the folder included, as fetch's is), same size, bilinear, all cores;
- later epochs: one shuffled pass of float32 batches from the shards against keras's second
  epoch, which decodes every file again (no cache): ``iter_batches`` (the library's reader),
  and the ``tf.data`` pipeline training on TensorFlow reads (``data.make_split_dataset``, its
  second epoch, as keras's is);
- ``preprocess`` (seeded splits gathered from the shards);
- conv training: ``model.fit`` of the ``conv`` variant (params.yaml's) on a seeded sample of
  ``TRAIN_IMAGES`` shard rows, read from the shards (uint8 batches, scaled in the model's step)
  and from the same rows as an in-memory float32 array; an epoch untimed, the next timed;
- DVC: the first and the no-op ``dvc repro`` and ``dvc status`` of a project whose ``fetch``
  stage depends on the folder (``benchmarks/dvc_noop.py``).

Every file is read once before the first row, so both sides read from the page cache. The
rows run ``ROUNDS`` times, ours and keras's in turn, and each row reports its run of median
seconds (every run's seconds beside it, the highest peak RSS of them): on a shared machine one
run of a row is not the row's speed (docs/own-images.md). Ratios are of images/s measured in
this one bench; the machine's load average is recorded beside them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH = 256
TRAIN_IMAGES = 8192  # rows of the conv training rows' sample
ROUNDS = 5  # runs of every row, ours and keras's in turn; the median run is reported
ROLES = ("fetch", "preprocess", "epoch", "in_order", "training", "train_shards", "train_arrays")

TARGETS = {
    "first_pass": 1.0, "epoch": 20.0, "train_from_shards": 0.9, "peak_rss_mb": 2048,
    "dvc_repro_noop_s": 20.0,
}  # fmt: skip


def _warm(folder: Path) -> int:
    """Read every file once (so that neither side pays for the disk); return the bytes read."""
    total = 0
    for directory, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(directory, name), "rb", buffering=0) as handle:
                total += len(handle.readall())
    return total


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, every thread: on shared cores a
    fairer measure of the work than wall seconds."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ours(role: str, folder: str, scratch: str, size: list[int], color_mode: str) -> dict:
    from autoencoders.data import folders, images, shards

    raw, processed = Path(scratch) / "raw", Path(scratch) / "processed"
    started, cpu = time.perf_counter(), _cpu_seconds()
    if role == "fetch":
        params = folders.FolderParams(path=folder, image_size=tuple(size), color_mode=color_mode)
        record = images.fetch_images(params, raw)
        count = sum(record["counts"].values())
    elif role == "preprocess":
        card = images.preprocess_shards(raw, processed, 0.1, 0.1, seed=0)
        count = sum(card["counts"].values())
    elif role == "training":  # what model.fit reads on TensorFlow: its second epoch, timed
        from autoencoders import data

        dataset = data.make_split_dataset(data.open_split(raw, "train"), BATCH, shuffle=True)
        for _ in dataset:  # the first epoch, untimed (keras's second epoch is timed too)
            pass
        started, cpu = time.perf_counter(), _cpu_seconds()
        count = sum(int(batch.shape[0]) for batch in dataset)  # the batch alone (no target)
    elif role in ("train_shards", "train_arrays"):
        count, started, cpu = _train_conv(raw, from_shards=role == "train_shards")
    else:  # one epoch of the library's reader: shuffled float32 batches of the raw shards
        batches = shards.iter_batches(raw, "train", BATCH, shuffle=role == "epoch", seed=0)
        count = sum(len(batch) for batch in batches)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    return {
        "images": count, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
        "peak_rss_mb": _peak_rss_mb(),
    }  # fmt: skip


def _train_conv(raw: Path, from_shards: bool) -> tuple[int, float, float]:
    """Two epochs of the conv variant on a seeded sample of the shards' rows, from the shards or
    from the same rows in memory; the images of the second, when its clock starts."""
    from autoencoders import config, data, models, paths
    from autoencoders.training import loop

    params = config.load_params(paths.PARAMS)["variants"]["conv"]
    variant = models.VariantConfig.from_params("conv", params)
    sample = data.open_split(raw, "train").sample(TRAIN_IMAGES, seed=0)
    x = sample if from_shards else sample.first(len(sample))
    model = loop.build_and_compile(variant, sample.shape[1:], learning_rate=1e-3, seed=0)
    arguments = data.fit_arguments(x, BATCH, seed=0)
    model.fit(**arguments, epochs=1, verbose=0)  # tracing and the first epoch, untimed
    started, cpu = time.perf_counter(), _cpu_seconds()
    model.fit(**arguments, epochs=1, verbose=0)
    return len(sample), started, cpu


def _keras(folder: str, size: list[int], color_mode: str) -> dict:
    import keras

    def timed_pass(dataset, started: float, cpu: float) -> dict:
        count = sum(int(batch.shape[0]) for batch, _ in dataset)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        return {"images": count, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}

    started, cpu = time.perf_counter(), _cpu_seconds()  # keras's listing counts, as fetch's
    dataset = keras.utils.image_dataset_from_directory(
        folder, labels="inferred", color_mode=color_mode, image_size=tuple(size),
        interpolation="bilinear", batch_size=BATCH, shuffle=True, seed=0, verbose=False,
    )  # fmt: skip
    first = timed_pass(dataset, started, cpu)
    second = timed_pass(dataset, time.perf_counter(), _cpu_seconds())
    return {"first_pass": first, "second_pass": second, "peak_rss_mb": _peak_rss_mb()}


def _child(role: str, *arguments: Any) -> dict:
    """Run ``role`` in a fresh Python (this module's ``main``); its JSON answer. The writes of
    the rows before it reach the disk first (``os.sync``), so no row pays for another's."""
    os.sync()
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "autoencoders.benchmarks.ingest", role, json.dumps(arguments)]
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"bench {role} failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _median_run(runs: list[dict]) -> dict:
    """The run of median seconds, with every run's seconds and (where runs record one) the
    highest peak RSS of them."""
    middle = sorted(runs, key=lambda row: row["seconds"])[len(runs) // 2]
    row = {**middle, "runs_seconds": [run["seconds"] for run in runs]}
    if "peak_rss_mb" in middle:
        row["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return row


def _rate(row: dict) -> float:
    return round(row["images"] / row["seconds"], 1)


def run_data_bench(
    folder: str | Path,
    image_size: tuple[int, int] = (64, 64),
    color_mode: str = "rgb",
    with_dvc: bool = True,
) -> dict[str, Any]:
    """Every row of the bench on ``folder``; the report (see the module docstring)."""
    from autoencoders.benchmarks import dvc_noop, onnx_latency

    folder = Path(folder).resolve()
    size = list(image_size)
    load_before = os.getloadavg()
    warmed = _warm(folder)
    runs: list[tuple[dict, dict]] = []
    for round_number in range(1, ROUNDS + 1):
        print(f"[bench] round {round_number}/{ROUNDS}: every row, then keras's", flush=True)
        with tempfile.TemporaryDirectory(prefix="data-bench-", dir=folder.parent) as scratch:
            ours = {role: _child(role, str(folder), scratch, size, color_mode) for role in ROLES}
            runs.append((ours, _child("keras", str(folder), size, color_mode)))
    ours = {role: _median_run([run[0][role] for run in runs]) for role in ROLES}
    keras = {
        name: _median_run([run[1][name] for run in runs]) for name in ("first_pass", "second_pass")
    }
    keras["peak_rss_mb"] = max(run[1]["peak_rss_mb"] for run in runs)
    dvc = dvc_noop.run_dvc_bench(folder, size, color_mode) if with_dvc else None
    report = {
        "folder": str(folder),
        "bytes": warmed,
        "images": ours["fetch"]["images"],
        "image_size": size,
        "color_mode": color_mode,
        "batch_size": BATCH,
        "ours": ours,
        "keras": keras,
        "dvc": dvc,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": onnx_latency.describe_machine(),
    }
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    return report


def ratios(report: dict[str, Any]) -> dict[str, float]:
    ours, keras = report["ours"], report["keras"]
    return {
        "first_pass": round(_rate(ours["fetch"]) / _rate(keras["first_pass"]), 3),
        "epoch": round(_rate(ours["epoch"]) / _rate(keras["second_pass"]), 1),
        "epoch_in_order": round(_rate(ours["in_order"]) / _rate(keras["second_pass"]), 1),
        "training_epoch": round(_rate(ours["training"]) / _rate(keras["second_pass"]), 1),
        "train_from_shards": round(_rate(ours["train_shards"]) / _rate(ours["train_arrays"]), 3),
    }


def targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 22's targets this bench measures: each value, its bound, met or not."""
    peak = max(  # every stage's: the in-memory training row is the reference, not a stage
        row["peak_rss_mb"] for role, row in report["ours"].items() if role != "train_arrays"
    )
    rows = {
        "first_pass_vs_keras": (report["ratios"]["first_pass"], TARGETS["first_pass"], ">="),
        "epoch_vs_keras": (report["ratios"]["epoch"], TARGETS["epoch"], ">="),
        "training_epoch_vs_keras": (report["ratios"]["training_epoch"], TARGETS["epoch"], ">="),
        "conv_train_shards_vs_arrays": (
            report["ratios"]["train_from_shards"],
            TARGETS["train_from_shards"],
            ">=",
        ),  # fmt: skip
        "peak_rss_mb_every_stage": (peak, TARGETS["peak_rss_mb"], "<="),
    }
    if report["dvc"]:
        noop = report["dvc"]["repro_noop_s"]["median"]
        rows["dvc_repro_noop_s"] = (noop, TARGETS["dvc_repro_noop_s"], "<=")
    return {
        name: {"value": value, "target": f"{sign} {bound}", "met": bool(
            value >= bound if sign == ">=" else value <= bound
        )}
        for name, (value, bound, sign) in rows.items()
    }  # fmt: skip


def _row(name: str, row: dict) -> str:
    return f"| {name} | {row['images']} | {row['seconds']} | {_rate(row):,.0f} |"


def render_markdown(report: dict[str, Any]) -> str:
    ours, keras, machine = report["ours"], report["keras"], report["machine"]
    size = "x".join(map(str, report["image_size"]))
    load = report["load_average"]
    lines = [
        f"# Data bench: {report['images']:,} images of {report['folder']} to {size} "
        f"{report['color_mode']}",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('usable_cores')} cores, load average "
        f"{load['before'][0]:.1f} before and {load['after'][0]:.1f} after (other work shared "
        f"the cores); batches of {report['batch_size']}; each row the median of "
        f"{len(ours['fetch']['runs_seconds'])} runs, ours and keras's in turn, each in "
        "a fresh process, the files in the page cache.",
        "",
        "| pass | images | seconds | images/s |",
        "| --- | --- | --- | --- |",
        _row("first pass: fetch (index, check, decode, resize, write shards)", ours["fetch"]),
        _row("first pass: keras image_dataset_from_directory, first epoch", keras["first_pass"]),
        _row("an epoch: the shards, shuffled float32 batches (iter_batches)", ours["epoch"]),
        _row("an epoch: the shards in order", ours["in_order"]),
        _row(
            "an epoch: what training reads (make_split_dataset, tf.data: uint8 batches, scaled "
            "in the model's step)",
            ours["training"],
        ),
        _row("an epoch: keras decodes every file again", keras["second_pass"]),
        _row("preprocess (seeded splits gathered from the shards)", ours["preprocess"]),
        _row("conv training (model.fit, an epoch) from the shards", ours["train_shards"]),
        _row("conv training from the same rows in memory (float32)", ours["train_arrays"]),
        "",
        "| peak RSS, MB | fetch | preprocess | epoch (shuffled) | training's epoch "
        "| conv training, shards | keras |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| | {ours['fetch']['peak_rss_mb']} | {ours['preprocess']['peak_rss_mb']} "
        f"| {ours['epoch']['peak_rss_mb']} | {ours['training']['peak_rss_mb']} "
        f"| {ours['train_shards']['peak_rss_mb']} | {keras['peak_rss_mb']} |",
        "",
    ]
    dvc = report["dvc"]
    if dvc:
        lines += [
            f"DVC ({dvc['dvc_version']}), a project whose fetch depends on the folder "
            f"({dvc['files']:,} files), seconds (median of {len(dvc['repro_noop_s']['runs'])}):",
            "",
            "| first dvc repro (hash + fetch) | no-op dvc repro | no-op dvc status "
            "| status of a one-file stage | status, checksum_jobs 1 | status, checksum_jobs 8 |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {dvc['repro_first_s']} | {dvc['repro_noop_s']['median']} "
            f"| {dvc['status_noop_s']['median']} | {dvc['status_one_file_stage_s']['median']} "
            f"| {dvc['status_noop_checksum_jobs_1_s']['median']} "
            f"| {dvc['status_noop_checksum_jobs_8_s']['median']} |",
            "",
        ]
    lines += ["| target | value | bound | met |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {name} | {row['value']} | {row['target']} | {'yes' if row['met'] else 'no'} |"
        for name, row in report["targets"].items()
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    role, arguments = sys.argv[1], json.loads(sys.argv[2])
    result = _keras(*arguments) if role == "keras" else _ours(role, *arguments)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
