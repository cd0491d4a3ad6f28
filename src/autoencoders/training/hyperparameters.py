"""Training hyperparameters: params.yaml's ``train`` layered with a variant's overrides and its
search result.

``resolve_hyperparameters(train_section, variant_config, read_best(paths.best("conv")))``
layers params.yaml's ``train`` section, the variant's own ``train:`` overrides and
``tuning/<variant>/best.json`` (its learning rate, batch size and architecture/objective values),
validating each layer where it is written. Used by ``training.train_and_save``, the Optuna
trials (``autoencoders.tuning``) and ``train_bench``; ``autoencoders.training.loop`` re-exports it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from autoencoders import config as config_module
from autoencoders import errors, fileio, paths
from autoencoders.config import ConfigError

# The training hyperparameters an Optuna search may set, besides architecture.*/objective.*.
SEARCHABLE_HYPERPARAMETERS = ("learning_rate", "batch_size")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """params.yaml ``train`` (then a variant's ``train:``): the final training's knobs."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    early_stopping_patience: int = 3
    shuffle_buffer: int = 0  # 0: a full permutation of the split every epoch
    # Training steps run per call into the compiled graph: fewer Python round trips per epoch.
    steps_per_execution: int = 32
    # XLA: fuses the small dense models' step (measured faster); slower for convolutions here.
    jit_compile: bool = False
    # Keras' backend for this variant's training (training.backend): jax always compiles with
    # XLA and feeds Keras' own array batches; the dense objectives only (see _check_backend).
    backend: Literal["tensorflow", "jax"] = "tensorflow"

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "early_stopping_patience": self.early_stopping_patience >= 0,
            "shuffle_buffer": self.shuffle_buffer >= 0,
            "steps_per_execution": self.steps_per_execution >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                minimum = (
                    ">= 0" if name in ("early_stopping_patience", "shuffle_buffer") else "> 0"
                )
                # A ValueError: from_mapping names the layer that set it ("train.epochs", ...).
                raise ValueError(f"{name} must be {minimum}, got {getattr(self, name)!r}.")


def compiles_with_xla(jit_compile: bool, backend_name: str) -> bool:
    """Whether a trainer's step compiles with XLA: ``jit_compile``, and always on JAX (where
    Keras would otherwise run the step eagerly)."""
    return jit_compile or backend_name == "jax"


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The final hyperparameters of one variant and where each layer came from."""

    config: Any  # models.VariantConfig with best.json's architecture/objective values applied
    settings: TrainSettings
    tuned: dict[str, Any]  # best.json "params" (empty when there is none)
    tuning_source: str  # "study", "defaults" or "none"

    def as_params(self) -> dict[str, Any]:
        """Flat, JSON-ready hyperparameters, as written to training.json and MLflow;
        ``jit_compile`` as the trainer compiles (a JAX variant always with XLA)."""
        flat = dataclasses.asdict(self.settings)
        flat["jit_compile"] = compiles_with_xla(self.settings.jit_compile, self.settings.backend)
        flat.update({key: value for key, value in self.tuned.items() if "." in key})
        return flat


def resolve_hyperparameters(
    train_section: Mapping[str, Any] | None,
    variant_config: Any,
    best: Mapping[str, Any] | None = None,
    where: str = "train",
) -> Resolved:
    """Final hyperparameters: params.yaml ``train``, then the variant's ``train:``, then ``best``.

    ``best`` is the content of ``tuning/<variant>/best.json`` (or None): its ``params`` set
    ``learning_rate``, ``batch_size`` and ``architecture.*``/``objective.*`` fields.
    """
    # Each layer is checked where it is written, although a later one may override its values:
    # `train.learning_rate: -1` is an error even when best.json sets learning_rate.
    base = dict(train_section or {})
    config_module.from_mapping(TrainSettings, base, "train")
    overrides = dict(getattr(variant_config, "train", None) or {})
    merged = {**base, **overrides}
    config_module.from_mapping(TrainSettings, overrides, f"variants.{variant_config.name}.train")
    tuned: dict[str, Any] = {}
    source = "none"
    if best is not None:
        best_file = paths.best(variant_config.name).as_posix()
        rerun = "re-run its search (dvc repro --force tune@<variant>) or delete the file"
        tuned = dict(best.get("params") or {})
        source = str(best.get("source", "study"))
        bad = sorted(
            key
            for key in tuned
            if key not in SEARCHABLE_HYPERPARAMETERS
            and not key.startswith(("architecture.", "objective."))
        )
        if bad:
            raise ConfigError(f"{best_file} sets unknown hyperparameter(s) {bad}: {rerun}.")
        searched = {key: tuned[key] for key in SEARCHABLE_HYPERPARAMETERS if key in tuned}
        layered = {**merged, **searched}
        try:
            config_module.from_mapping(TrainSettings, layered, f"{best_file} params")
        except ConfigError as error:
            raise ConfigError(f"{str(error).rstrip('.')}: {rerun}.") from None
        merged.update(searched)
    settings = config_module.from_mapping(TrainSettings, merged, where)
    field_overrides = {key: value for key, value in tuned.items() if "." in key}
    resolved_config = (
        variant_config.with_overrides(field_overrides) if field_overrides else variant_config
    )
    _check_backend(settings, resolved_config)
    return Resolved(config=resolved_config, settings=settings, tuned=tuned, tuning_source=source)


def _check_backend(settings: TrainSettings, variant_config: Any) -> None:
    """The JAX trainer runs Keras' own train step on numpy batches: no TensorFlow-only penalty
    (contractive's Jacobian, IDEC's clustering phase), no tf.data noise or shuffle buffer."""
    if settings.backend != "jax":
        return
    from autoencoders.models import objectives  # the variant's config brought Keras already

    where = f"variants.{variant_config.name}.train.backend: jax"
    if objectives.lookup(variant_config.objective_name).tensorflow_only:
        reason = f"the {variant_config.objective_name} objective trains on TensorFlow only"
    elif variant_config.noise_std > 0:
        reason = "input noise (denoising) comes from the TensorFlow input pipeline"
    elif settings.shuffle_buffer:
        reason = "it always shuffles the whole split (shuffle_buffer: 0)"
    else:
        return
    raise ConfigError(f"{where} is not supported here: {reason}; use backend: tensorflow.")


def read_best(path: str | Path) -> dict[str, Any] | None:
    """``tuning/<variant>/best.json`` as a dict, or None when there is no such file."""
    path = Path(path)
    if not path.exists():
        return None
    fix = "re-run its search (dvc repro --force tune@<variant>) or delete the file"
    best = fileio.read_json(path, fix)
    if not isinstance(best, dict) or not isinstance(best.get("params", {}), dict):
        raise errors.corrupt(path, "not a mapping with a 'params' mapping", fix)
    return best
