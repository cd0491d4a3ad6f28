"""DVC stage `fetch`: get `data.source` into data/raw/ (dataset.npz or shards + source.json).

python pipeline/fetch.py            # what `dvc repro fetch` runs
"""

from __future__ import annotations

import argparse

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import config, data, paths, timing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=paths.PARAMS)
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    settings = config.from_mapping(data.DataParams, config.section(params, "data"), "data")
    record = data.fetch(
        source=settings.source, raw_dir=paths.RAW, npz_path=settings.npz_path, folder=settings
    )
    print(
        f"[fetch] {record['source']} via {record['mirror']}: {record['counts']} images "
        f"of shape {record['image_shape']} in {record['seconds']} s -> {paths.RAW}/"
    )


if __name__ == "__main__":
    timing.run_stage("fetch", main)
