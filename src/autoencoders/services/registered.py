"""The MLflow registry as ``make serve`` and ``make promote`` read it: the tracking store's
client, a registered model's versions and aliases, which version a request names, and a
version's input contract (name, shape, dtype, scaling)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoencoders import tracking
from autoencoders.registry import CANDIDATE, CHAMPION, RegistryError


def client() -> Any:
    """A client of the tracking store (``MLFLOW_TRACKING_URI``, else ./mlflow.db), which is
    also the registry; MLflow's process-wide URIs are left as they are."""
    import mlflow

    uri = tracking.tracking_uri()
    database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if database is not None and not database.is_file():  # MLflow would create an empty one
        raise RegistryError(
            f"no MLflow store at {database}: run the pipeline (make repro) here first, or set "
            "MLFLOW_TRACKING_URI to the store that holds the registry."
        )
    tracking.check_tracking(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def versions(client: Any, name: str) -> dict[str, Any]:
    """``name``'s model versions by number (as strings), oldest first; a model the registry
    lacks is a RegistryError naming the store and the fix."""
    found = client.search_model_versions(f"name='{name}'")
    if not found:
        variant, role = name.rsplit("-", 1)
        stage = "anomaly" if role == "scorer" else "export"
        raise RegistryError(
            f"no registered model {name!r} in {tracking.mask(tracking.tracking_uri())}: the "
            f"{stage}@{variant} stage registers it (make repro), or set "
            "MLFLOW_TRACKING_URI to the store that holds it (a team's server)."
        )
    return {str(v.version): v for v in sorted(found, key=lambda v: int(v.version))}


def aliases(client: Any, name: str) -> dict[str, str]:
    """``name``'s aliases: {alias: version number as a string} (stores differ in the type)."""
    found = client.get_registered_model(name).aliases
    return {alias: str(number) for alias, number in found.items()}


def resolve(
    client: Any, name: str, version: str | None = None, alias: str | None = None
) -> tuple[str, str]:
    """(the ``models:/`` URI, its version number): ``alias`` (``models:/name@alias``),
    ``version``, or else the ``champion`` (the ``candidate`` when none was promoted, with a
    warning on stderr). The newest version is never served by default: an experiment may have
    registered it."""
    if version is not None and alias is not None:
        raise RegistryError("give VERSION or ALIAS, not both.")
    known = versions(client, name)
    if alias is None and version is None:
        named = aliases(client, name)
        if CHAMPION not in named and CANDIDATE not in named:
            raise RegistryError(
                f"{name} has neither {CHAMPION!r} nor {CANDIDATE!r} (versions: "
                f"{', '.join(known)}): give VERSION=n, or promote one (make promote)."
            )
        alias = CHAMPION if CHAMPION in named else CANDIDATE
        if alias == CANDIDATE:
            print(
                f"[serve] warning: {name} has no {CHAMPION!r} yet; serving its {CANDIDATE!r} "
                f"(version {named[CANDIDATE]}); `make promote` makes it the champion.",
                file=sys.stderr,
                flush=True,
            )
    if alias is not None:
        named = aliases(client, name)
        if alias not in named:
            held = ", ".join(f"{a} -> {v}" for a, v in sorted(named.items())) or "none"
            raise RegistryError(
                f"{name} has no alias {alias!r} (its aliases: {held}); `make promote` sets "
                f"{CHAMPION!r}, each export sets {CANDIDATE!r}."
            )
        return f"models:/{name}@{alias}", named[alias]
    if str(version) not in known:
        raise RegistryError(f"{name} has no version {version} (versions: {', '.join(known)}).")
    return f"models:/{name}/{version}", str(version)


def input_contract(metadata: Mapping[str, Any] | None, signature: Any) -> dict[str, Any]:
    """The model's input name, shape, dtype and scaling (None where unstated): from the
    metadata ``autoencoders.served`` writes, else from the input signature (an ONNX-flavour
    model; its dtype is the tensor's, its scaling unstated)."""
    metadata = metadata or {}
    if "input_name" in metadata:
        return {
            "name": metadata["input_name"],
            "shape": [int(size) for size in metadata["input_shape"]],
            "dtype": metadata.get("input_dtype"),
            "scaling": metadata.get("input_scaling"),
        }
    if signature is None or signature.inputs is None:
        return {"name": None, "shape": None, "dtype": None, "scaling": None}
    (spec,) = signature.inputs.inputs
    dtype = getattr(spec, "type", None)
    return {
        "name": spec.name,
        "shape": list(spec.shape),
        "dtype": None if dtype is None else str(dtype),
        "scaling": None,
    }
