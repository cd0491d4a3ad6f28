"""DVC stage `preprocess`: data/raw -> data/processed/{train,val,test}.npz + card.json.

python pipeline/preprocess.py       # what `dvc repro preprocess` runs
"""

from __future__ import annotations

import argparse
import time

from autoencoders import config, data, timing

RAW_DIR = "data/raw"
PROCESSED_DIR = "data/processed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    settings = config.from_mapping(data.DataParams, config.section(params, "data"), "data")
    seed = config.value(params, "seed", int)
    started = time.monotonic()
    card = data.preprocess(
        raw_dir=RAW_DIR,
        processed_dir=PROCESSED_DIR,
        val_fraction=settings.val_fraction,
        seed=seed,
        test_fraction=settings.test_fraction,
        normal_classes=settings.normal_classes,
    )
    print(
        f"[preprocess] {card['source']}: {card['counts']} images {card['input_shape']}, "
        f"{card['num_classes']} classes, in {time.monotonic() - started:.1f} s -> {PROCESSED_DIR}/"
    )


if __name__ == "__main__":
    timing.run_stage("preprocess", main)
