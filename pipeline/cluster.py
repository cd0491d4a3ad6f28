"""DVC stage `cluster@V` (and `cluster_pixels`): the N2D clustering head on a variant's codes.

python pipeline/cluster.py --variant conv      # what `dvc repro cluster@conv` runs
python pipeline/cluster.py --pixels            # the raw-pixel anchor (`dvc repro cluster_pixels`)

Work: ``autoencoders.clustering.stage`` (metrics/cluster/<V>.json, plots, clusterers/<V>/).
"""

from __future__ import annotations

import argparse
import sys

import autoencoders.runtime  # noqa: F401  (first: pins CPU dispatch before numpy loads)
from autoencoders import clustering, config, paths, timing
from autoencoders.clustering import stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", help="a key of params.yaml `variants`")
    which.add_argument("--pixels", action="store_true", help="the raw-pixel anchor")
    parser.add_argument("--params", default=paths.PARAMS)
    params = config.load_params((args := parser.parse_args(argv)).params)
    if args.variant:
        config.variant_block(params, args.variant, stage="cluster")
    name = args.variant or paths.PIXELS
    stage.run_head(
        name,
        config.from_mapping(clustering.HeadParams, config.section(params, "cluster"), "cluster"),
        seed=config.value(params, "seed", int),
        processed_dir=paths.PROCESSED,
        export_dir=paths.export(name) if args.variant else None,  # None: the raw pixels
        run_ref=paths.model(name) / "run.json",
        metrics_path=paths.cluster_metrics(name),
        plot_dir=paths.cluster_plots(name),
        timings_dir=paths.TIMINGS,
        clusterer_dir=paths.clusterer(name) if args.variant else None,
        tolerance=config.value(params, "export.tolerance", float) if args.variant else 0.0,
    )


if __name__ == "__main__":
    timing.run_stage("cluster_pixels" if "--pixels" in sys.argv else "cluster", main)
