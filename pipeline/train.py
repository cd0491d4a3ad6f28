"""DVC stage `train@<variant>`: data/processed + tuning/<variant>/best.json -> models/<variant>/.

python pipeline/train.py --variant conv     # what `dvc repro train@conv` runs

Hyperparameters: params.yaml `train`, then `variants.<variant>.train`, then best.json's params.
Writes the model files, history.json, training.json and run.json (its MLflow run) atomically.
"""

from __future__ import annotations

import argparse

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import config, paths, timing
from autoencoders.training import backend


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a key of params.yaml `variants`")
    parser.add_argument("--params", default=paths.PARAMS)
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    variant_block = config.variant_block(params, args.variant, stage="train")
    backend.activate(backend.variant_backend(params, args.variant))
    from autoencoders.models import derived  # imports Keras: after its backend is chosen
    from autoencoders.training import loop

    # The data-dependent values derived from the training split (identity on MNIST).
    variant_block = derived.derive_from_split(params, [args.variant], paths.PROCESSED)[
        args.variant
    ]

    loop.train_and_save(
        variant=args.variant,
        variant_block=variant_block,
        train_section=config.section(params, "train"),
        seed=config.value(params, "seed", int),
        processed_dir=paths.PROCESSED,
        best_path=paths.best(args.variant),
        output_dir=paths.model(args.variant),
    )


if __name__ == "__main__":
    timing.run_stage("train", main)
