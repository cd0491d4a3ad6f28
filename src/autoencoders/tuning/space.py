"""The search space and plan of a variant's study, validated before any training.

A variant's ``search`` block declares its space: ``learning_rate``, ``batch_size`` or any
``architecture.<field>``/``objective.<field>``, each a range ``{low, high[, log]}`` or
``{choices: [...]}``. ``plan_search`` validates all of it (and the ``tune`` section) and names
the study after the variant and a short hash of everything its trials' values depend on (search
space, fidelity, base config, data checksum, seed), so that a study only ever holds comparable
trials.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from autoencoders import config as config_module
from autoencoders import models, paths
from autoencoders.config import ConfigError
from autoencoders.training import loop

_RANGE_KEYS = {"low", "high", "log", "step"}


@dataclasses.dataclass(frozen=True)
class TuneSettings:
    """params.yaml ``tune``: the search's size, fidelity, pruner and storage."""

    n_trials: int = 3
    timeout_s: float = 300.0  # per variant and call; 0 for none
    epochs: int = 2
    train_subset: int = 6000  # training images per trial; 0 for all
    val_subset: int = 2000  # validation images per trial; 0 for all
    pruner_startup_trials: int = 2
    pruner_warmup_epochs: int = 0
    storage: str = paths.STUDIES

    def __post_init__(self) -> None:
        fixes = {
            "n_trials": (self.n_trials >= 1, "at least 1 (the trials each study holds)"),
            "timeout_s": (self.timeout_s >= 0, ">= 0 seconds (0 for no time limit)"),
            "epochs": (self.epochs >= 1, "at least 1 (epochs per trial)"),
            "train_subset": (self.train_subset >= 0, ">= 0 images (0 for all)"),
            "val_subset": (self.val_subset >= 0, ">= 0 images (0 for all)"),
            "pruner_startup_trials": (self.pruner_startup_trials >= 0, ">= 0"),
            "pruner_warmup_epochs": (self.pruner_warmup_epochs >= 0, ">= 0"),
            "storage": (bool(self.storage.strip()), "a path (SQLite) or an RDB URL"),
        }
        for name, (ok, expected) in fixes.items():
            if not ok:
                raise ConfigError(
                    f"tune.{name} must be {expected}, got {getattr(self, name)!r}: "
                    f"fix tune.{name} in params.yaml (or the matching command-line option)."
                )


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a float/int range or a list of choices."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def describe(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        described = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            described["step"] = self.step
        return described


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """Everything a variant's search needs, validated; built by ``plan_search``."""

    variant: str
    config: Any  # models.VariantConfig
    space: tuple[Dimension, ...]
    base: loop.TrainSettings  # train section + the variant's train: overrides
    settings: TuneSettings
    seed: int
    data_checksum: str
    study_name: str

    def fidelity(self) -> dict[str, int]:
        return {
            "epochs": self.settings.epochs,
            "train_subset": self.settings.train_subset,
            "val_subset": self.settings.val_subset,
        }

    def defaults(self) -> dict[str, Any]:
        """The configured (untuned) value of every searched hyperparameter, plus lr and batch."""
        values = {
            "learning_rate": self.base.learning_rate,
            "batch_size": self.base.batch_size,
        }
        block = self.config.to_params()
        for dimension in self.space:
            section, _, key = dimension.name.partition(".")
            if key:
                value = block[section][key]
                values[dimension.name] = list(value) if isinstance(value, tuple) else value
        return values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string.
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number, got {value!r}.") from None
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}.")
    return value


def _parse_choices(name: str, spec: Mapping[str, Any], where: str) -> Dimension:
    """A ``{choices: [..]}`` entry: a non-empty list of distinct JSON scalars."""
    extra = sorted(set(spec) - {"choices"})
    choices = spec["choices"]
    if extra:
        raise ConfigError(f"{where}: 'choices' cannot be combined with {extra}; use one form.")
    if not isinstance(choices, (list, tuple)) or not choices:
        raise ConfigError(f"{where}.choices must be a non-empty list, got {choices!r}.")
    for choice in choices:
        if choice is not None and not isinstance(choice, (bool, int, float, str)):
            raise ConfigError(
                f"{where}.choices may hold numbers, strings, booleans or null, got "
                f"{choice!r}: Optuna stores only such values."
            )
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"{where}.choices lists a value twice: {list(choices)}.")
    return Dimension(name=name, kind="categorical", choices=tuple(choices))


def _parse_dimension(name: str, spec: Any, where: str, current: Any) -> Dimension:
    """One ``search.<name>`` entry; ``current`` is the configured value (its type decides)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where} must be a range {{low: .., high: ..[, log: true]}} or {{choices: [..]}}, "
            f"got {spec!r}."
        )
    if "choices" in spec:
        return _parse_choices(name, spec, where)
    unknown = sorted(set(spec) - _RANGE_KEYS)
    missing = sorted({"low", "high"} - set(spec))
    if unknown or missing:
        raise ConfigError(
            f"{where}: a range needs low and high (optional log, step); "
            + (f"unknown key(s) {unknown}" if unknown else f"missing {missing}")
            + ". Or give {choices: [...]}."
        )
    low = _number(spec["low"], f"{where}.low")
    high = _number(spec["high"], f"{where}.high")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log must be true or false, got {log!r}.")
    if low == high:
        raise ConfigError(
            f"{where} is an empty range (low == high == {low}): widen it, or remove "
            f"{name} from the search to keep it fixed."
        )
    if low > high:
        raise ConfigError(f"{where} is inverted (low {low} > high {high}): swap low and high.")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}.")
    if step is not None and (not _is_number(step) or step <= 0 or log):
        raise ConfigError(f"{where}.step must be a positive number and cannot go with log.")
    if isinstance(current, bool):
        raise ConfigError(f"{where}: {name} is true/false; search it with {{choices: [..]}}.")
    wants_int = (
        isinstance(current, int)
        if current is not None
        else (isinstance(low, int) and isinstance(high, int))
    )
    if wants_int:
        if not all(float(v).is_integer() for v in (low, high, step or 1)):
            raise ConfigError(
                f"{where}: {name} is an integer; give integer low/high (got {low}, {high})."
            )
        return Dimension(
            name, "int", int(low), int(high), log, None if step is None else int(step)
        )
    if current is not None and not isinstance(current, float):
        raise ConfigError(
            f"{where}: {name} is not a number ({current!r}); search it with {{choices: [..]}}."
        )
    return Dimension(name, "float", float(low), float(high), log, step)


def parse_search_space(variant_config: Any) -> tuple[Dimension, ...]:
    """Validate ``variants.<name>.search``; return its dimensions sorted by name.

    Unknown hyperparameter names, empty or inverted ranges, bad choices and values the
    variant's typed config rejects raise ConfigError naming the key and the fix.
    """
    name = variant_config.name
    search = variant_config.search or {}
    valid = set(loop.SEARCHABLE_HYPERPARAMETERS) | set(models.tunable_fields(variant_config))
    valid -= {"architecture.name", "objective.name"}
    block = variant_config.to_params()
    dimensions = []
    for key in sorted(search):
        where = f"variants.{name}.search.{key}"
        if key not in valid:
            raise ConfigError(
                f"{where}: unknown hyperparameter {key!r}; valid names for this variant are "
                f"{sorted(valid)}."
            )
        section, _, field = key.partition(".")
        if field:
            current = block[section].get(field)
        else:
            current = 1e-3 if key == "learning_rate" else 1
        dimension = _parse_dimension(key, search[key], where, current)
        if key in loop.SEARCHABLE_HYPERPARAMETERS:
            values = dimension.choices or (dimension.low, dimension.high)
            if any(not _is_number(v) or v <= 0 for v in values) or (
                key == "batch_size" and any(not float(v).is_integer() for v in values)
            ):
                raise ConfigError(f"{where}: every {key} must be a positive number.")
        else:
            # Let the variant's typed config judge the extremes (types, allowed values).
            for value in dimension.choices or (dimension.low, dimension.high):
                try:
                    variant_config.with_overrides({key: value})
                except ConfigError as error:
                    raise ConfigError(f"{where}: {value!r} is not allowed: {error}") from None
        dimensions.append(dimension)
    return tuple(dimensions)


def _config_fingerprint(variant_config: Any) -> dict[str, Any]:
    block = variant_config.to_params()
    return {"architecture": block["architecture"], "objective": block["objective"]}


def make_study_name(
    variant: str,
    space: Sequence[Dimension],
    fidelity: Mapping[str, Any],
    data_checksum: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """``<variant>-<10 hex>``: a hash of what the trials' values depend on (not n_trials)."""
    payload = {
        "space": {dimension.name: dimension.describe() for dimension in space},
        "fidelity": dict(fidelity),
        "data_checksum": data_checksum,
        **(extra or {}),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return f"{variant}-{digest.hexdigest()[:10]}"


def plan_search(
    variant: str,
    variant_block: Mapping[str, Any],
    train_section: Mapping[str, Any] | None,
    tune_section: Mapping[str, Any] | None,
    seed: int,
    data_checksum: str,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    storage: str | None = None,
) -> SearchPlan:
    """Validate a variant's search (space, tune section, overrides) before any training."""
    variant_config = models.VariantConfig.from_params(variant, variant_block)
    space = parse_search_space(variant_config)
    base = loop.resolve_hyperparameters(
        train_section, variant_config, where=f"train (with variants.{variant}.train)"
    ).settings
    overrides = {
        key: value
        for key, value in {
            "n_trials": n_trials,
            "timeout_s": timeout_s,
            "storage": storage,
        }.items()
        if value is not None
    }
    settings = config_module.from_mapping(
        TuneSettings, {**dict(tune_section or {}), **overrides}, "tune"
    )
    fidelity = {
        "epochs": settings.epochs,
        "train_subset": settings.train_subset,
        "val_subset": settings.val_subset,
    }
    # What a trial uses from the train section: not the final epochs, nor what it searches.
    base_values = {
        key: value
        for key, value in dataclasses.asdict(base).items()
        if key != "epochs" and key not in {dimension.name for dimension in space}
    }
    study_name = make_study_name(
        variant,
        space,
        fidelity,
        data_checksum,
        extra={"config": _config_fingerprint(variant_config), "base": base_values, "seed": seed},
    )
    return SearchPlan(
        variant=variant,
        config=variant_config,
        space=space,
        base=base,
        settings=settings,
        seed=int(seed),
        data_checksum=data_checksum,
        study_name=study_name,
    )
