"""DVC stage `preprocess`: data/raw -> data/processed/{train,val,test}.npz + card.json.

python pipeline/preprocess.py       # what `dvc repro preprocess` runs
"""

from __future__ import annotations

import argparse
import time

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import config, data, paths, timing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=paths.PARAMS)
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    settings = config.from_mapping(data.DataParams, config.section(params, "data"), "data")
    seed = config.value(params, "seed", int)
    started = time.monotonic()
    card = data.preprocess(
        raw_dir=paths.RAW,
        processed_dir=paths.PROCESSED,
        val_fraction=settings.val_fraction,
        seed=seed,
        test_fraction=settings.test_fraction,
        normal_classes=settings.normal_classes,
    )
    print(
        f"[preprocess] {card['source']}: {card['counts']} images {card['input_shape']}, "
        f"{card['num_classes']} classes, in {time.monotonic() - started:.1f} s "
        f"-> {paths.PROCESSED}/"
    )


if __name__ == "__main__":
    timing.run_stage("preprocess", main)
