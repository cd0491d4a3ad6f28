"""A variant: a named architecture x objective pair with its hyperparameters (params.yaml
``variants.<name>``), as a frozen, typed config that round-trips through ``to_params()``.

Params keys and dataclass fields coincide except where a key is a Python keyword: a field's
``metadata["key"]`` names its params key (``ContractiveConfig.lambda_`` is ``lambda``).
Overrides and ``tunable_fields`` use the params spelling (``objective.lambda``); the field
spelling (``objective.lambda_``) is accepted too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from autoencoders.config import ConfigError, from_mapping
from autoencoders.models import architectures, objectives

_BLOCK_KEYS = ("architecture", "objective", "search", "train")
_SECTIONS = ("architecture", "objective")


def _key_to_field(config_class: type) -> dict[str, str]:
    """params key -> dataclass field name, for every field of ``config_class``."""
    return {
        field.metadata.get("key", field.name): field.name
        for field in dataclasses.fields(config_class)
    }


def _build_section(registry_lookup: Any, block: Any, where: str) -> Any:
    """A typed config from a ``{name: ..., <key>: ...}`` block; bad names/keys raise."""
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where} must be a mapping with a 'name', got {block!r}.")
    if "name" not in block:
        raise ConfigError(f"{where} needs a 'name' key.")
    entry = registry_lookup(block["name"])
    keys = _key_to_field(entry.config_class)
    values = {key: value for key, value in block.items() if key != "name"}
    # Accept both spellings (lambda / lambda_), report unknown keys in the params spelling.
    fields = set(keys.values())
    unknown = sorted(key for key in values if key not in keys and key not in fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {block['name']!r}; "
            f"valid keys are {sorted(keys)}."
        )
    mapping = {keys.get(key, key): value for key, value in values.items()}
    return from_mapping(entry.config_class, mapping, where)


def _section_params(config: Any, name: str) -> dict[str, Any]:
    """A params-style dict ``{name, <key>: value}`` of an architecture/objective config."""
    block: dict[str, Any] = {"name": name}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        block[field.metadata.get("key", field.name)] = (
            list(value) if isinstance(value, tuple) else value
        )
    return block


@dataclasses.dataclass(frozen=True)
class VariantConfig:
    """A variant: ``name``, typed ``architecture``/``objective``, raw ``search``/``train``."""

    name: str
    architecture: Any
    objective: Any
    search: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_params(cls, name: str, block: Mapping[str, Any]) -> VariantConfig:
        """Build from params.yaml ``variants.<name>``; unknown names or keys raise ConfigError."""
        where = f"variants.{name}"
        if not isinstance(block, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {block!r}.")
        unknown = sorted(set(block) - set(_BLOCK_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown}; valid keys are {list(_BLOCK_KEYS)}."
            )
        for required in _SECTIONS:
            if required not in block:
                raise ConfigError(f"{where} needs an {required!r} block with a 'name'.")
        for optional in ("search", "train"):
            if block.get(optional) is not None and not isinstance(block[optional], Mapping):
                raise ConfigError(f"{where}.{optional} must be a mapping.")
        return cls(
            name=name,
            architecture=_build_section(
                architectures.lookup, block["architecture"], f"{where}.architecture"
            ),
            objective=_build_section(objectives.lookup, block["objective"], f"{where}.objective"),
            search=dict(block.get("search") or {}),
            train=dict(block.get("train") or {}),
        )

    @property
    def architecture_name(self) -> str:
        return architectures.architecture_name(self.architecture)

    @property
    def objective_name(self) -> str:
        return objectives.objective_name(self.objective)

    @property
    def noise_std(self) -> float:
        """Input-pipeline noise for ``data.make_dataset``: the denoising noise_std, else 0."""
        return float(getattr(self.objective, "noise_std", 0.0))

    def to_params(self) -> dict[str, Any]:
        """The params.yaml block this config was built from (resolved, with all defaults)."""
        return {
            "architecture": _section_params(self.architecture, self.architecture_name),
            "objective": _section_params(self.objective, self.objective_name),
            "search": dict(self.search),
            "train": dict(self.train),
        }

    def with_overrides(self, overrides: Mapping[str, Any]) -> VariantConfig:
        """A new config with ``{"architecture.<key>": v, "objective.<key>": v}`` applied.

        Unknown sections or fields raise ConfigError naming the valid ones.
        """
        block = self.to_params()
        valid = sorted(tunable_fields(self))
        for dotted, value in overrides.items():
            section, _, key = str(dotted).partition(".")
            if section not in _SECTIONS or not key or key == "name":
                raise ConfigError(
                    f"cannot override {dotted!r} of variant {self.name!r}; valid fields are "
                    f"{valid}."
                )
            entry = (architectures if section == "architecture" else objectives).lookup(
                block[section]["name"]
            )
            keys = _key_to_field(entry.config_class)
            params_key = next((k for k, f in keys.items() if key in (k, f)), None)
            if params_key is None:
                raise ConfigError(
                    f"cannot override {dotted!r} of variant {self.name!r}; valid fields are "
                    f"{valid}."
                )
            block[section][params_key] = value
        return VariantConfig.from_params(self.name, block)


def tunable_fields(config: VariantConfig) -> set[str]:
    """Every ``architecture.<key>`` and ``objective.<key>`` (params spelling) of ``config``."""
    names = set()
    for section in _SECTIONS:
        for field in dataclasses.fields(getattr(config, section)):
            names.add(f"{section}.{field.metadata.get('key', field.name)}")
    return names
