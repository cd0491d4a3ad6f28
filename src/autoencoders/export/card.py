"""What an export says about itself: the ONNX metadata every model carries and model_card.json.

``interface(...)`` gives the properties the models' metadata and the card share (variant, opset,
pixel scaling, image and code shapes); ``set_metadata`` stamps them on a model; ``model_card``
assembles the card that ``convert.export_models`` writes beside the ONNX files: the interface,
the files with their checksums, the parity figures, the resolved config and the versions of
the converting libraries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autoencoders.inference import SCALING


def interface(
    variant: str,
    opset: int,
    input_dims: Sequence[int],
    code_dims: Sequence[int],
    input_contract: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The properties shared by every exported model's metadata and the card;
    ``input_contract`` (``imagefiles.Contract``, from the data card): how image files become
    the input, where the data's images can be image files."""
    latent_dim = int(np.prod(code_dims))
    contract = {} if input_contract is None else {"input_contract": dict(input_contract)}
    return {
        "variant": variant,
        "opset": opset,
        "input_dtype": "float32",
        "pixel_scaling": SCALING,
        "code_shape": code_dims,
        "latent_dim": latent_dim,
        "image_shape": input_dims,
        **contract,
    }


def set_metadata(proto: Any, properties: Mapping[str, Any]) -> None:
    """Replace the model's metadata_props with ``properties`` (values stored as strings)."""
    import onnx

    del proto.metadata_props[:]
    onnx.helper.set_model_props(
        proto,
        {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in properties.items()
        },
    )


def versions() -> dict[str, str]:
    """The versions of the libraries that converted and checked the models."""
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def model_card(
    common: Mapping[str, Any],
    card_files: Mapping[str, Any],
    parity: Mapping[str, Any],
    resolved_config: Mapping[str, Any] | None,
    *,
    input_name: str,
) -> dict[str, Any]:
    """model_card.json: the interface (``common``, from :func:`interface`; the encoder's input
    ``input_name``), the files with their checksums, the ``parity`` block and the resolved
    config (what made the model; the same inputs give the same card)."""
    return {
        "variant": common["variant"],
        "format": "onnx",
        "opset": common["opset"],
        "input": {
            "name": input_name,
            "shape": [None, *common["image_shape"]],
            "dtype": "float32",
            "scaling": SCALING,
            **({"contract": common["input_contract"]} if "input_contract" in common else {}),
        },
        "latent_dim": common["latent_dim"],
        "code_shape": common["code_shape"],
        "encoder_output": "mean of q(z|x)" if is_variational(resolved_config) else "code",
        "files": dict(card_files),
        "parity": dict(parity),
        "config": dict(resolved_config or {}),
        "versions": versions(),
    }


def is_variational(resolved_config: Mapping[str, Any] | None) -> bool:
    """Whether the resolved config's objective is ``variational`` (its encoder gives q's mean)."""
    # models/<v>/config.json stores the objective's name; a params block stores a mapping.
    from autoencoders.models import objectives  # the exported model brought TensorFlow already

    objective = (resolved_config or {}).get("objective")
    if isinstance(objective, Mapping):
        objective = objective.get("name")
    return objective is not None and objectives.lookup(objective).variational


__all__ = ["interface", "is_variational", "model_card", "set_metadata", "versions"]
