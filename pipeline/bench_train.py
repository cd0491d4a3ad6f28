"""`make bench-train`: training throughput, the seed code's plain `model.fit` vs the trainer.

python pipeline/bench_train.py

Needs data/processed (`dvc repro preprocess`). Measures in one process (see
autoencoders.train_bench), prints the table and writes reports/train_bench.json and .md.
"""

from __future__ import annotations

import argparse

from autoencoders import config, data, errors, fileio, train_bench


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--processed-dir", default="data/processed")
    parser.add_argument("--output-dir", default="reports")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    settings = config.from_mapping(
        train_bench.TrainBenchConfig, params.get("bench_train"), "bench_train"
    )
    x_train, _ = data.load_split(args.processed_dir, "train")
    report = train_bench.run_train_bench(
        x_train,
        variants=config.section(params, "variants"),
        train_section=config.section(params, "train"),
        settings=settings,
        seed=config.value(params, "seed", int),
    )
    markdown = train_bench.render_markdown(report)
    fileio.write_report(args.output_dir, "train_bench", report, markdown)
    print(markdown)
    print(f"[bench-train] wrote {args.output_dir}/train_bench.json and .md")


if __name__ == "__main__":
    errors.cli(main)
