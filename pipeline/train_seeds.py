"""`make train-seeds`: a variant's final training over seeds, mean ± std of its test figures.

python pipeline/train_seeds.py --variant idec --seeds 0,1,2

Trains as `train@V` does (params.yaml, then tuning/<V>/best.json), once per seed, in memory;
prints each seed's test MSE (and, for IDEC, the accuracy of its own assignments) and the mean
± std. Writes nothing. Needs data/processed (`dvc repro preprocess`).
"""

from __future__ import annotations

import argparse

from autoencoders import backend, config, errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a key of params.yaml `variants`")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated integers")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    seed_list = config.parse_seeds(args.seeds)
    params = config.load_params(args.params)
    block = config.variant_block(params, args.variant, stage="train")
    backend.activate(backend.variant_backend(params, args.variant))
    from autoencoders import seeds  # imports Keras: after its backend is chosen

    results = []
    for result in seeds.score_seeds(
        args.variant,
        block,
        config.section(params, "train"),
        seed_list,
        "data/processed",
        f"tuning/{args.variant}/best.json",
    ):
        shown = ", ".join(f"{k} {result[k]:.4f}" for k in seeds.KEYS if k in result)
        print(
            f"[train-seeds] {args.variant} seed {result['seed']}: {shown} ({result['seconds']} s)",
            flush=True,
        )
        results.append(result)
    for key, value in seeds.spread(results).items():
        if key != "runs":
            print(
                f"[train-seeds] {args.variant} over seeds {seed_list}: {key} "
                f"{value['mean']:.4f} ± {value['std']:.4f}"
            )


if __name__ == "__main__":
    errors.cli(main)
