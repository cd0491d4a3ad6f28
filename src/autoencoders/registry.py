"""The MLflow model registry's conventions, shared by the stages that register models (export,
anomaly) and the server that serves them (``services.serving``): a foundation, so that
no pipeline stage depends on the ``services`` package.

Every export registers a new version of ``<v>-encoder``, every anomaly stage one of
``<v>-scorer`` (tagged with the encoder version it was fitted beside, ``encoder_version``); each
new version becomes the alias ``candidate``. ``make promote`` moves ``champion``. Logged models
state their pip requirements rather than letting MLflow infer them. The registered models are
``autoencoders.served``'s pyfuncs, whose ONNX Runtime session picks its execution provider as
``inference`` does; the ONNX-flavour models logged beside them (decoder, assigner) state theirs
(``SERVING_PROVIDERS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoencoders import errors

ROLES = ("encoder", "scorer")
CANDIDATE, CHAMPION = "candidate", "champion"
ENCODER_VERSION_TAG = "encoder_version"
# The ONNX-flavour models' providers: the CUDA provider where the serving host has one, else the
# CPU: stated, as MLflow's default leaves it to the ONNX Runtime build.
SERVING_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]


class RegistryError(errors.UserError, LookupError):
    """A registered model, version or alias that the MLflow registry does not hold."""


def model_name(variant: str, role: str = "encoder") -> str:
    """The registered model's name: ``<variant>-encoder`` or ``<variant>-scorer``."""
    if role not in ROLES:
        raise RegistryError(f"unknown role {role!r}: use one of {', '.join(ROLES)}.")
    return f"{variant}-{role}"


def model_requirements() -> list[str]:
    """The pinned pip requirements of every logged ONNX model, stated rather than inferred.

    MLflow's inference re-imports the model in a subprocess (seconds per model) and lists
    ``onnxruntime`` beside ``onnxruntime-gpu``: two wheels of one package, of which pip keeps
    whichever it installed last. The GPU wheel carries the CPU provider too, so it alone is
    required where it exists (Linux, Windows; the CPU wheel elsewhere, as pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        runtime = f"onnxruntime-gpu=={version('onnxruntime-gpu')}"
    except PackageNotFoundError:
        runtime = f"onnxruntime=={version('onnxruntime')}"
    return [f"{name}=={version(name)}" for name in ("mlflow", "onnx", "numpy")] + [runtime]


def mark_candidate(
    name: str, info: Any, tags: Mapping[str, str] | None = None, stage: str = "export"
) -> str:
    """Point ``name``'s alias ``candidate`` at the version ``info`` (a ModelInfo) registered,
    with ``tags`` on that version; returns the version."""
    import mlflow

    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CANDIDATE, version)
    variant = name.rsplit("-", 1)[0]
    print(
        f"[{stage}] {name} version {version} is the {CANDIDATE!r} (make promote VARIANT={variant})"
    )
    return version


def encoder_version(variant: str, run_id: str) -> str:
    """The newest version of ``<variant>-encoder`` logged to run ``run_id`` (the export of that
    training run), which a scorer fitted on the same model is paired with."""
    import mlflow

    name = model_name(variant, "encoder")
    found = [
        version
        for version in mlflow.MlflowClient().search_model_versions(f"name='{name}'")
        if version.run_id == run_id
    ]
    if not found:
        raise RegistryError(
            f"no version of {name} was logged to run {run_id}: run export@{variant} first "
            f"(dvc repro export@{variant}), against the same MLFLOW_TRACKING_URI."
        )
    return str(max(int(version.version) for version in found))


__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "ENCODER_VERSION_TAG",
    "ROLES",
    "SERVING_PROVIDERS",
    "RegistryError",
    "encoder_version",
    "mark_candidate",
    "model_name",
    "model_requirements",
]
