"""Training throughput: the seed code's plain ``model.fit`` against the project's trainer.

On the same images (the processed training split), the same model, batch size and number of
epochs, each after one untimed warm-up epoch, the two timed alternately ``repeats`` times, so
that a slow spell of the machine falls on both. Each trainer's images/s is its throughput over
all its repeats (total images over total seconds, ``throughput``); each repeat's rates and ratio
are reported too:

- ``seed``: the seed articles' code as written, a Sequential-style Keras model compiled with
  ``optimizer="adam"`` and a built-in loss, trained by ``model.fit(x, x, batch_size, epochs,
  shuffle=True)`` on numpy arrays, on TensorFlow (the seed's backend), in this process;
- ``project``: ``loop.build_and_compile`` plus ``data.fit_arguments``, with the settings
  the pipeline trains that architecture with (params.yaml ``train`` and the variant's
  ``train:``): ``backend``, ``steps_per_execution``, ``jit_compile``. A variant on another Keras
  backend (the dense ones train on JAX) runs in a spawned child process (Keras' backend is
  fixed per process; ``trainers.ChildTrainer``), idle while the seed trains and vice versa.

Two seed models: the Keras blog's simple autoencoder (784-32-784, relu code, sigmoid output, BCE)
and its convolutional one (the 4,385-weight design). For the convolutional pair, a per-op profile
of the project's training steps (TensorFlow's profiler, summed by op type on the compute threads)
gives the share of op time spent in convolution kernels, forward and backward: the floor no
pipeline or dispatch change can go under. Every default variant's images/s comes last. Run by
``make bench-train`` (``python -m autoencoders.benchmarks training``): reports/train_bench.*.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from autoencoders.benchmarks import onnx_latency, profile, trainers
from autoencoders.training import loop

# The seed designs, written as the seed code writes them, and the project variant config that
# trains the same model.
SEED_MODELS = {
    "dense": {"architecture": {"name": "dense", "latent_dim": 32}, "variant": "dense"},
    "conv": {"architecture": {"name": "conv"}, "variant": "conv"},
}


@dataclasses.dataclass(frozen=True)
class TrainBenchConfig:
    """params.yaml ``bench_train``."""

    epochs: int = 2  # timed epochs per repeat, after one warm-up epoch
    # Seed and project timed alternately this many times; throughput over all of them and each
    # repeat's rates are reported (one short timing on a shared machine moves a lot: the seed
    # fit's epochs run at one of two speeds, see ``throughput``).
    repeats: int = 9
    batch_size: int = 128
    images: int = 0  # training images used (0: the whole split)
    variant_images: int = 4096  # images per timed epoch for each default variant
    profile_images: int = 2048  # images in the profiled epoch of the conv trainer

    def __post_init__(self) -> None:
        for field in ("epochs", "repeats", "batch_size", "variant_images", "profile_images"):
            if getattr(self, field) < 1:
                raise ValueError(f"bench_train.{field} must be >= 1, got {getattr(self, field)}")
        if self.images < 0:
            raise ValueError(f"bench_train.images must be >= 0, got {self.images}")


def seed_model(name: str, input_shape: tuple[int, int, int]) -> Any:
    """The seed code's model: ``dense`` (784-32-784) or ``conv`` (16-8-8, 4,385 weights)."""
    import keras
    from keras import layers

    if name == "dense":
        inputs = keras.Input(shape=(math.prod(input_shape),))
        encoded = layers.Dense(32, activation="relu")(inputs)
        decoded = layers.Dense(math.prod(input_shape), activation="sigmoid")(encoded)
    elif name == "conv":
        inputs = keras.Input(shape=input_shape)
        x = layers.Conv2D(16, (3, 3), activation="relu", padding="same")(inputs)
        x = layers.MaxPooling2D((2, 2), padding="same")(x)
        x = layers.Conv2D(8, (3, 3), activation="relu", padding="same")(x)
        x = layers.MaxPooling2D((2, 2), padding="same")(x)
        x = layers.Conv2D(8, (3, 3), activation="relu", padding="same")(x)
        encoded = layers.MaxPooling2D((2, 2), padding="same")(x)  # (batch, 4, 4, 8)
        x = layers.Conv2D(8, (3, 3), activation="relu", padding="same")(encoded)
        x = layers.UpSampling2D((2, 2))(x)
        x = layers.Conv2D(8, (3, 3), activation="relu", padding="same")(x)
        x = layers.UpSampling2D((2, 2))(x)
        x = layers.Conv2D(16, (3, 3), activation="relu")(x)
        x = layers.UpSampling2D((2, 2))(x)
        decoded = layers.Conv2D(input_shape[2], (3, 3), activation="sigmoid", padding="same")(x)
    else:
        raise ValueError(f"unknown seed model {name!r}; valid: {sorted(SEED_MODELS)}")
    model = keras.Model(inputs, decoded)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def images_per_second(fit: Callable[[int], Any], images: int, epochs: int) -> float:
    """Run ``fit(1)`` untimed (tracing, caches), then time ``fit(epochs)``."""
    fit(1)
    return _timed(fit, images, epochs)


def _timed(fit: Callable[[int], Any], images: int, epochs: int) -> float:
    start = time.perf_counter()
    fit(epochs)
    return images * epochs / (time.perf_counter() - start)


def interleaved(
    first: Callable[[int], Any],
    second: Callable[[int], Any],
    images: int,
    epochs: int,
    repeats: int,
) -> tuple[list[float], list[float]]:
    """Images/s of two trainers timed alternately ``repeats`` times, each warmed up once first:
    a slow spell of the machine then falls on both rather than on one."""
    first(1)
    second(1)
    rates: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        rates[0].append(_timed(first, images, epochs))
        rates[1].append(_timed(second, images, epochs))
    return rates


def throughput(rates: Sequence[float]) -> float:
    """Images/s over several timings of the same number of images: the total images over the
    total seconds (the harmonic mean of the rates).

    Why not the median: on the 2-core VM this was built on, the seed conv ``fit``'s epochs run
    at about 10k or 5-6k images/s from one epoch to the next (the trainer's did too, until
    ``data.make_dataset`` turned tf.data's autotuning off), while a busy loop on both cores
    timed before and after each epoch kept one speed: the slow epochs use the same CPU seconds
    with more idle time, inside TensorFlow's runtime. The median of such a sample jumps between
    the modes with the draw (a 9-repeat run: seed 9.0k from five fast and four slow epochs); the
    total over all repeats is what a long training run gets.
    """
    if not rates or min(rates) <= 0:
        raise ValueError(f"throughput needs positive rates, got {list(rates)!r}")
    return len(rates) / sum(1.0 / rate for rate in rates)


def run_train_bench(
    x_train: np.ndarray,
    variants: Mapping[str, Mapping[str, Any]],
    train_section: Mapping[str, Any],
    settings: TrainBenchConfig,
    seed: int,
    tuning_dir: str = "tuning",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Seed ``fit`` vs the trainer per seed model, conv's op profile, every variant's img/s."""
    x = x_train[: settings.images] if settings.images else x_train
    report: dict[str, Any] = {
        "machine": onnx_latency.describe_machine(),
        "images": len(x),
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "repeats": settings.repeats,
        "models": {},
        "variants": {},
    }
    for name, spec in SEED_MODELS.items():
        block = dict(variants.get(spec["variant"], {}))
        block.update(architecture=spec["architecture"], objective={"name": "plain", "loss": "bce"})
        block.pop("search", None)
        entry = _bench_seed_model(name, block, x, train_section, settings, seed)
        report["models"][name] = entry
        log(
            f"[bench-train] {name}: seed {entry['seed_images_per_second']:,.0f} img/s, project "
            f"{entry['project_images_per_second']:,.0f} img/s, ratio {entry['ratio']:.2f}"
            + (
                f", conv kernel share {entry['kernel_share']:.1%}"
                if "kernel_share" in entry
                else ""
            )
        )
    subset = x[: settings.variant_images]
    for variant, block in variants.items():
        entry = _bench_variant(
            variant, block, subset, train_section, f"{tuning_dir}/{variant}/best.json", seed
        )
        report["variants"][variant] = entry
        log(f"[bench-train] {variant}: {entry['images_per_second']:,.0f} img/s")
    return report


def _bench_seed_model(
    name: str,
    block: Mapping[str, Any],
    x: np.ndarray,
    train_section: Mapping[str, Any],
    settings: TrainBenchConfig,
    seed: int,
) -> dict[str, Any]:
    """One seed model's ``fit`` against the project trainer on the same architecture."""
    import keras

    keras.utils.set_random_seed(seed)
    seed_net = seed_model(name, tuple(x.shape[1:]))
    seed_x = x.reshape(len(x), -1) if name == "dense" else x
    spec = (name, block, train_section, None)
    parameters, train_settings, fit, close = trainers.trainer_for(
        spec, x, settings.batch_size, seed
    )
    try:
        if parameters != seed_net.count_params():
            raise RuntimeError(
                f"{name}: the project model has {parameters} weights, the seed model "
                f"{seed_net.count_params()}: they must be the same model."
            )
        seed_rates, project_rates = interleaved(
            lambda epochs, net=seed_net, images=seed_x: net.fit(
                images,
                images,
                batch_size=settings.batch_size,
                epochs=epochs,
                shuffle=True,
                verbose=0,
            ),
            fit,
            len(x),
            settings.epochs,
            settings.repeats,
        )
    finally:
        close()
    seed_rate, project_rate = throughput(seed_rates), throughput(project_rates)
    entry = {
        "parameters": seed_net.count_params(),
        "seed_images_per_second": round(seed_rate, 1),
        "project_images_per_second": round(project_rate, 1),
        "ratio": round(project_rate / seed_rate, 3),
        # The ratio of the medians, for comparison with runs before throughput was used.
        "ratio_of_medians": round(float(np.median(project_rates) / np.median(seed_rates)), 3),
        "repeat_ratios": [round(p / q, 3) for p, q in zip(project_rates, seed_rates, strict=True)],
        # Each repeat's rates: on a shared VM one trainer's speed can jump between levels.
        "seed_repeats": [round(rate) for rate in seed_rates],
        "project_repeats": [round(rate) for rate in project_rates],
        "project_settings": _settings_entry(train_settings),
    }
    if name == "conv" and train_settings.backend == keras.backend.backend():
        images = x[: settings.profile_images]
        entry.update(_profile_entry(spec, train_settings, images, settings.batch_size, seed))
    return entry


def _profile_entry(
    spec: tuple[Any, ...],
    train_settings: loop.TrainSettings,
    images: np.ndarray,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """The convolution kernels' share of op time and the 12 op types that took longest, over
    one profiled epoch of ``images`` (after an untimed one). A trainer of its own, built after
    the timed ones were closed, so that the profiler slows none of the timed epochs."""
    config, _ = trainers.variant_settings(*spec)
    _, profiled = trainers.project_trainer(config, train_settings, images, batch_size, seed)
    profiled(1)  # trace outside the profile
    by_op = profile.op_seconds(profiled)
    return {
        "kernel_share": round(profile.kernel_share(by_op), 4),
        "op_seconds": {op: round(value, 4) for op, value in list(by_op.items())[:12]},
    }


def _settings_entry(settings: loop.TrainSettings) -> dict[str, Any]:
    """The settings that set a trainer's speed, as the report shows them."""
    return {
        "backend": settings.backend,
        "steps_per_execution": settings.steps_per_execution,
        "jit_compile": loop.compiles_with_xla(settings.jit_compile, settings.backend),
    }


def _bench_variant(
    variant: str,
    block: Mapping[str, Any],
    subset: np.ndarray,
    train_section: Mapping[str, Any],
    best_path: str,
    seed: int,
) -> dict[str, Any]:
    """One epoch of a variant with its resolved settings: img/s and what it ran with."""
    spec = (variant, block, train_section, best_path)
    parameters, settings, fit, close = trainers.trainer_for(spec, subset, None, seed)
    try:
        rate = images_per_second(fit, len(subset), 1)
    finally:
        close()
    return {
        "images_per_second": round(rate, 1),
        "parameters": parameters,
        "batch_size": settings.batch_size,
        **_settings_entry(settings),
    }


def render_markdown(report: Mapping[str, Any]) -> str:
    """reports/train_bench.md: the machine, the seed-vs-project table, conv's profile, variants."""
    machine = report["machine"]
    lines = [
        "# Training throughput: seed `model.fit` vs the project's trainer",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('usable_cores')} usable cores; "
        f"TensorFlow {machine.get('tensorflow')}, Keras {machine.get('keras')}. "
        f"{report['images']:,} training images, batch {report['batch_size']}, "
        f"one warm-up epoch each, then seed and project timed alternately "
        f"{report['repeats']} times, {report['epochs']} epochs each; images/s over all "
        "repeats (total images over total seconds). The seed trains on TensorFlow in the "
        "bench's process; a project trainer on another Keras "
        "backend (`backend=jax`) in a child process, idle while the other trains.",
        "",
        "| model | weights | seed `fit` img/s | project img/s | ratio | each repeat's ratio "
        "| project settings |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, entry in report["models"].items():
        settings = ", ".join(f"{k}={v}" for k, v in entry["project_settings"].items())
        repeats = ", ".join(f"{ratio:.2f}" for ratio in entry["repeat_ratios"])
        lines.append(
            f"| {name} | {entry['parameters']:,} | {entry['seed_images_per_second']:,.0f} | "
            f"{entry['project_images_per_second']:,.0f} | {entry['ratio']:.2f} | {repeats} | "
            f"{settings} |"
        )
    lines += ["", "Each repeat's images/s (seed / project):", ""]
    for name, entry in report["models"].items():
        pairs = zip(entry["seed_repeats"], entry["project_repeats"], strict=True)
        lines.append(
            f"- {name}: "
            + ", ".join(f"{seed:,} / {ours:,}" for seed, ours in pairs)
            + f" (ratio of the medians {entry['ratio_of_medians']:.2f})"
        )
    conv = report["models"].get("conv", {})
    if "kernel_share" in conv:
        lines += [
            "",
            f"Conv trainer per-op profile: convolution kernels (forward and backward) take "
            f"**{conv['kernel_share']:.1%}** of op time; seconds by op type over one profiled "
            "epoch:",
            "",
            "| op type | seconds |",
            "|---|---:|",
            *(f"| {op} | {seconds:.3f} |" for op, seconds in conv["op_seconds"].items()),
        ]
    lines += _variant_table(report["variants"])
    return "\n".join(lines) + "\n"


def _variant_table(variants: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The report's last section, apart from the seed-vs-project tables above: each default
    variant's img/s and the settings it ran with (``tensorflow`` where no backend is named)."""
    lines = [
        "",
        "Every default variant (its resolved settings, one timed epoch):",
        "",
        "| variant | weights | backend | batch | steps/execution | XLA | img/s |",
        "|---|---:|---|---:|---:|---|---:|",
    ]
    for variant, entry in variants.items():
        lines.append(
            f"| `{variant}` | {entry['parameters']:,} | {entry.get('backend', 'tensorflow')} | "
            f"{entry['batch_size']} | "
            f"{entry['steps_per_execution']} | {'yes' if entry['jit_compile'] else 'no'} | "
            f"{entry['images_per_second']:,.0f} |"
        )
    return lines
