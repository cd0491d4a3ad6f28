"""Make-only measurements (not DVC stages), one subcommand each; prints and writes reports/.

python -m autoencoders.benchmarks latency [--variants conv vae]   # make bench
python -m autoencoders.benchmarks training                        # make bench-train
python -m autoencoders.benchmarks train-seeds --variant idec --seeds 0,1,2   # make train-seeds
python -m autoencoders.benchmarks cluster-seeds --best --seeds 0,1,2         # make cluster-seeds
python -m autoencoders.benchmarks cluster-shift [--variants dense vae]      # make cluster-shift
python -m autoencoders.benchmarks data --folder data/bench-images           # make bench-data
python -m autoencoders.benchmarks one-class                                  # make bench-anomaly
python -m autoencoders.benchmarks photos                                     # make bench-photos
python -m autoencoders.benchmarks defects                                    # make bench-defects

``latency``: ONNX Runtime against tf.function per exported encoder (reports/bench.{json,md}).
``training``: the seed code's ``model.fit`` against the trainer (reports/train_bench.{json,md};
needs data/processed). ``train-seeds`` and ``cluster-seeds`` print mean ± std over seeds and
write nothing; ``cluster-shift``: the cluster@V head from seeds 42+ and 52+ per variant
(reports/cluster_shift.{json,md}). ``data``: a folder's fetch and the shards' epoch against keras's
``image_dataset_from_directory``, and DVC's no-op on the folder, at params.yaml's
``data.image_size`` and ``data.color_mode`` (reports/data_bench.{json,md}).
``one-class``: the one-class MNIST anomaly benchmark, params.yaml ``anomaly_bench`` (needs
data/processed of full MNIST; reports/anomaly_bench.{json,md} and reports/anomaly_maps.png).
``defects``: the surface-defect benchmark, params.yaml ``defects_bench`` (no data needed;
reports/defects_bench.{json,md,png}; docs/defects.md).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
from collections.abc import Callable
from pathlib import Path

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import config, data, errors, fileio, paths


def latency(args: argparse.Namespace, params: dict) -> None:
    from autoencoders.benchmarks import onnx_latency

    settings = config.from_mapping(
        onnx_latency.BenchConfig, config.section(params, "bench"), "bench"
    )
    report = onnx_latency.run_benchmarks(
        args.variants or list(config.section(params, "variants")),
        exports_dir=args.exports_dir,
        models_dir=args.models_dir,
        latency_runs=settings.latency_runs,
        throughput_batch=settings.throughput_batch,
        throughput_runs=settings.throughput_runs,
        warmup_runs=settings.warmup_runs,
        intra_op_num_threads=settings.intra_op_num_threads,
    )
    _write(args.output_dir, "bench", report, onnx_latency.render_markdown(report))


def training(args: argparse.Namespace, params: dict) -> None:
    from autoencoders.benchmarks import training_speed

    settings = config.from_mapping(
        training_speed.TrainBenchConfig, params.get("bench_train"), "bench_train"
    )
    report = training_speed.run_train_bench(
        data.load_split(args.processed_dir, "train")[0],
        variants=config.section(params, "variants"),
        train_section=config.section(params, "train"),
        settings=settings,
        seed=config.value(params, "seed", int),
    )
    _write(args.output_dir, "train_bench", report, training_speed.render_markdown(report))


def train_seeds(args: argparse.Namespace, params: dict) -> None:
    from autoencoders.benchmarks import seeds
    from autoencoders.training import backend

    block = config.variant_block(params, args.variant, stage="train")
    backend.activate(backend.variant_backend(params, args.variant))
    seed_list, results = config.parse_seeds(args.seeds), []
    for result in seeds.score_seeds(
        args.variant,
        block,
        config.section(params, "train"),
        seed_list,
        args.processed_dir,
        paths.best(args.variant),
    ):
        shown = ", ".join(f"{k} {result[k]:.4f}" for k in seeds.KEYS if k in result)
        print(f"[train-seeds] {args.variant} seed {result['seed']}: {shown}", flush=True)
        results.append(result)
    for key, value in seeds.spread(results).items():
        if key != "runs":
            print(
                f"[train-seeds] {args.variant} over seeds {seed_list}: {key} "
                f"{value['mean']:.4f} ± {value['std']:.4f}"
            )


def cluster_seeds(args: argparse.Namespace, params: dict) -> None:
    from autoencoders import clustering
    from autoencoders.benchmarks import seeds

    settings = config.from_mapping(
        clustering.HeadParams, config.section(params, "cluster"), "cluster"
    )
    if args.variant:
        config.variant_block(params, args.variant, stage="cluster")
    variant = args.variant or seeds.best_variant()
    seeds.cluster_seeds(variant, settings, config.parse_seeds(args.seeds))


def cluster_shift(args: argparse.Namespace, params: dict) -> None:
    from autoencoders import clustering
    from autoencoders.benchmarks import cluster_seeds

    settings = config.from_mapping(
        clustering.HeadParams, config.section(params, "cluster"), "cluster"
    )
    variants = args.variants or [
        name for name in config.section(params, "variants") if paths.export(name).exists()
    ]
    cluster_seeds.run(
        variants,
        settings,
        config.value(params, "seed", int),
        Path(args.processed_dir),
        Path(args.output_dir),
    )


def data_bench(args: argparse.Namespace, params: dict) -> None:
    from autoencoders.benchmarks import ingest

    settings = config.from_mapping(data.DataParams, config.section(params, "data"), "data")
    report = ingest.run_data_bench(
        args.folder,
        image_size=settings.image_size,
        color_mode=settings.color_mode,
        with_dvc=not args.no_dvc,
    )
    _write(args.output_dir, "data_bench", report, ingest.render_markdown(report))


def one_class(args: argparse.Namespace, params: dict) -> None:
    from autoencoders.benchmarks import one_class as bench
    from autoencoders.benchmarks import one_class_report as report_module
    from autoencoders.benchmarks import one_class_run

    section = dict(params.get("anomaly_bench") or {})
    if args.digits:
        section["digits"] = config.parse_seeds(args.digits)
    if args.seeds_given:
        section["seeds"] = config.parse_seeds(args.seeds)
    settings = config.from_mapping(bench.OneClassConfig, section, "anomaly_bench")
    splits = bench.Splits.load(args.processed_dir)
    if args.validation_only:  # levers: rank the candidates on validation, print, write nothing
        one_class_run.run_benchmark(settings, splits, log=_print, validation_only=True)
        return
    figure_path = f"{args.output_dir}/anomaly_maps.png"
    before = _machine()

    def write(result: dict) -> None:  # after every task, then once complete
        machine = {**before, "load_average_after": _machine()["load_average_before"]}
        report = report_module.summarise(result, settings, machine)
        markdown = report_module.render_markdown(report)
        fileio.write_report(args.output_dir, "anomaly_bench", report, markdown)
        if result["complete"]:
            _write(args.output_dir, "anomaly_bench", report, markdown)

    write(
        one_class_run.run_benchmark(
            settings,
            splits,
            log=_print,
            on_figure_task=functools.partial(report_module.plot_anomaly_maps, path=figure_path),
            on_progress=write,
        )
    )


def photos(args: argparse.Namespace, params: dict) -> None:
    from autoencoders.benchmarks import photos as bench
    from autoencoders.benchmarks import photos_report

    section = dict(params.get("photos_bench") or {})
    if args.variants:
        section["variants"] = args.variants
    settings = config.from_mapping(bench.PhotosConfig, section, "photos_bench")
    before = _machine()

    def write(result: dict) -> None:  # after every variant, then once complete
        machine = {**before, "load_average_after": _machine()["load_average_before"]}
        report = photos_report.summarise(result, machine)
        markdown = photos_report.render_markdown(report)
        photos_report.plot_examples(result, f"{args.output_dir}/photos_bench.png")
        fileio.write_report(args.output_dir, "photos_bench", report, markdown)
        if result["complete"]:
            _write(args.output_dir, "photos_bench", report, markdown)

    write(bench.run_benchmark(params, settings, log=_print, on_progress=write))


def defects_bench(args: argparse.Namespace, params: dict) -> None:
    from autoencoders.benchmarks import defects, defects_run

    section = params.get("defects_bench") or {}
    settings = config.from_mapping(defects.DefectsConfig, section, "defects_bench")
    baseline = config.variant_block(params, settings.baseline_variant, stage="train")
    before = _machine()
    result = defects_run.run_benchmark(settings, config.section(params, "export"), baseline)
    defects_run.plot(result.pop("figures"), f"{args.output_dir}/defects_bench.png")
    machine = {**before, "load_average_after": _machine()["load_average_before"]}
    report = defects_run.summarise(result, settings, machine)
    _write(args.output_dir, "defects_bench", report, defects_run.render(report))


def _print(line: str) -> None:
    print(line, flush=True)


def _machine() -> dict:
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_before": [round(value, 2) for value in os.getloadavg()],
    }


def _write(directory: str, name: str, report: dict, markdown: str) -> None:
    fileio.write_report(directory, name, report, markdown)
    print(markdown)
    print(f"[bench] wrote {directory}/{name}.json and {directory}/{name}.md")


COMMANDS: dict[str, Callable[[argparse.Namespace, dict], None]] = {
    "latency": latency,
    "training": training,
    "train-seeds": train_seeds,
    "cluster-seeds": cluster_seeds,
    "cluster-shift": cluster_shift,
    "data": data_bench,
    "one-class": one_class,
    "photos": photos,
    "defects": defects_bench,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autoencoders.benchmarks")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--params", default=paths.PARAMS)
    parser.add_argument("--variants", nargs="+", help="latency, photos: default every variant")
    parser.add_argument("--variant", help="train-seeds / cluster-seeds: a params.yaml variant")
    parser.add_argument("--best", action="store_true", help="cluster-seeds: the best head so far")
    parser.add_argument("--seeds", help="comma-separated integers (default 0,1,2)")
    parser.add_argument("--digits", help="one-class: comma-separated digits (default params)")
    parser.add_argument(
        "--validation-only",
        action="store_true",
        help="one-class: rank the scores on validation only; never reads the test split",
    )
    parser.add_argument("--exports-dir", default=paths.EXPORTS)
    parser.add_argument("--models-dir", default=paths.MODELS)
    parser.add_argument("--processed-dir", default=paths.PROCESSED)
    parser.add_argument("--folder", default=paths.BENCH_IMAGES, help="data: image folder")
    parser.add_argument("--no-dvc", action="store_true", help="data: skip the DVC rows")
    parser.add_argument("--output-dir", default=paths.REPORTS)
    args = parser.parse_args(argv)
    args.seeds_given = args.seeds is not None
    args.seeds = args.seeds or "0,1,2"
    if args.command == "train-seeds" and not args.variant:
        parser.error("train-seeds needs --variant")
    if args.command == "cluster-seeds" and not (args.variant or args.best):
        parser.error("cluster-seeds needs --variant V or --best")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    COMMANDS[args.command](args, config.load_params(args.params))


if __name__ == "__main__":
    errors.cli(main, program="python -m autoencoders.benchmarks")
