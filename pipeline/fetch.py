"""DVC stage `fetch`: get `data.source` into data/raw/ (dataset.npz + source.json).

python pipeline/fetch.py            # what `dvc repro fetch` runs
"""

from __future__ import annotations

import argparse
import sys

from autoencoders import config, data, timing

RAW_DIR = "data/raw"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.section(config.load_params(args.params), "data")
    try:
        record = data.fetch(
            source=params["source"], raw_dir=RAW_DIR, npz_path=params.get("npz_path")
        )
    except data.DataError as error:
        sys.exit(f"fetch failed: {error}")
    print(
        f"[fetch] {record['source']} via {record['mirror']}: {record['counts']} images "
        f"of shape {record['image_shape']} in {record['seconds']} s -> {RAW_DIR}/"
    )


if __name__ == "__main__":
    timing.run_stage("fetch", main)
