"""`make bench`: ONNX Runtime vs TensorFlow (tf.function) for every exported encoder.

python pipeline/bench.py                     # every variant in params.yaml with an export
python pipeline/bench.py --variants conv vae

Times batch-1 latency (median, p99) and throughput at ``bench.throughput_batch`` in one process,
describes the machine, prints a markdown table and writes reports/bench.json and reports/bench.md.
"""

from __future__ import annotations

import argparse
import logging

from autoencoders import bench, config, errors, fileio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--exports-dir", default="exports")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--output-dir", default="reports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = config.load_params(args.params)
    settings = config.from_mapping(bench.BenchConfig, config.section(params, "bench"), "bench")
    report = bench.run_benchmarks(
        args.variants or list(config.section(params, "variants")),
        exports_dir=args.exports_dir,
        models_dir=args.models_dir,
        latency_runs=settings.latency_runs,
        throughput_batch=settings.throughput_batch,
        throughput_runs=settings.throughput_runs,
        warmup_runs=settings.warmup_runs,
        intra_op_num_threads=settings.intra_op_num_threads,
    )
    markdown = bench.render_markdown(report)
    fileio.write_report(args.output_dir, "bench", report, markdown)
    print(markdown)
    print(f"[bench] wrote {args.output_dir}/bench.json and {args.output_dir}/bench.md")


if __name__ == "__main__":
    errors.cli(main)
