"""Typed, frozen configs built from params.yaml sections, failing loudly on bad keys or types.

``from_mapping(SomeConfig, mapping, where="variants.conv.architecture")`` builds a frozen
dataclass, rejecting unknown keys (naming the valid ones) and values of the wrong type (naming
the key). ``load_params()`` reads params.yaml. Used by every stage and by the model registry.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from autoencoders import paths
from autoencoders.errors import UserError

T = TypeVar("T")

PARAMS_FILE = paths.PARAMS


class ConfigError(UserError, ValueError):
    """A params.yaml value or key is wrong; the message names the key and the fix."""


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml (or another YAML file) into a plain dict."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: run from the repository root or pass --params.")
    try:
        with path.open() as handle:
            params = yaml.safe_load(handle) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ConfigError(
            f"{path} is not valid YAML{where} ({problem}): fix the file there "
            "(e.g. `git diff params.yaml`)."
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text ({error.reason}): fix the file.") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level.")
    return params


def section(params: Mapping[str, Any], dotted: str) -> Any:
    """Return ``params['a']['b']`` for ``dotted='a.b'``, naming the missing key if absent."""
    node: Any = params
    walked = []
    for part in dotted.split("."):
        walked.append(part)
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"params.yaml has no key {'.'.join(walked)!r}.")
        node = node[part]
    return node


def value(params: Mapping[str, Any], dotted: str, annotation: Any) -> Any:
    """``section(params, dotted)`` checked against ``annotation`` (``int``, ``float``, ...)."""
    return _check_type(section(params, dotted), annotation, dotted)


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` coerced to ``annotation`` where lossless, or raise ConfigError."""
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        return _check_union(value, get_args(annotation), where)
    if origin is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {list(choices)}, got {value!r}.")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        args = get_args(annotation)
        item_type = args[0] if args else Any
        return tuple(_check_type(item, item_type, f"{where}[{i}]") for i, item in enumerate(value))
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}.")
        return dict(value)
    if annotation in (bool, int, float, str):
        return _check_scalar(value, annotation, where)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return from_mapping(annotation, value, where)
    return value


def _check_union(value: Any, options: tuple[Any, ...], where: str) -> Any:
    """``value`` as the first of ``options`` it fits; None where ``options`` allow it."""
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _check_type(value, option, where)
        except ConfigError as error:
            errors.append(str(error))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits no type.")


def _check_scalar(value: Any, annotation: type, where: str) -> Any:
    """``value`` as a bool, int, float (numeric strings too) or str; ConfigError otherwise."""
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}.")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}.")
        return value
    if annotation is float:
        # YAML reads 1e-3 as a string; accept numeric strings and ints, reject the rest.
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}.")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, got {value!r}.")
    if not isinstance(value, str):  # annotation is str
        raise ConfigError(f"{where} must be a string, got {value!r}.")
    return value


def from_mapping(cls: type[T], mapping: Mapping[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``mapping``; unknown keys and wrong types raise ConfigError."""
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {mapping!r}.")
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(fields)}.")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in mapping:
            values[name] = _check_type(mapping[name], hints[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}.")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        # "tolerance must be >= 0" from __post_init__ becomes "export.tolerance must be >= 0".
        text = " ".join(str(error).split())
        if f" {where}." in f" {text}":  # the message names its key already
            raise ConfigError(text) from None
        if text.split(" ", 1)[0] in fields:
            raise ConfigError(f"{where}.{text}") from None
        raise ConfigError(f"{where}: {text}") from None


def variant_block(params: Mapping[str, Any], variant: str, stage: str) -> dict[str, Any]:
    """``params['variants'][variant]``; ConfigError naming the stage and the valid variants."""
    variants = section(params, "variants")
    if not isinstance(variants, Mapping):
        raise ConfigError("params.yaml variants must be a mapping of variant blocks.")
    if variant not in variants:
        raise ConfigError(
            f"{stage}: unknown variant {variant!r}; params.yaml lists {sorted(variants)}."
        )
    return variants[variant]


def lookup(registry: Mapping[str, T], name: Any, kind: str) -> T:
    """``registry[name]``; an unknown name raises ConfigError listing the valid ones."""
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; valid {kind}s are {sorted(registry)}.")
    return registry[name]


def registered_name(registry: Mapping[str, Any], config: Any, kind: str) -> str:
    """The name under which ``type(config)`` is the ``config_class`` of a registry entry."""
    for name, entry in registry.items():
        if type(config) is entry.config_class:
            return name
    raise ValueError(f"{type(config).__name__} is not a registered {kind} config.")


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2]; a ConfigError naming the fix otherwise."""
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--seeds must be comma-separated integers such as 0,1,2, got {text!r}."
        ) from None
