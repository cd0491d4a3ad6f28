"""ONNX export of a trained autoencoder: conversion, checks, metadata and a parity gate.

``export_models(encoder, decoder, "exports/conv", variant="conv", opset=17, tolerance=1e-5,
parity_images=x_test, parity_batch_sizes=(1, 257))`` converts the variant's Keras encoder and
decoder with tf2onnx (dynamic batch axis; encoder "images" -> "code", decoder "code" ->
"reconstruction"), checks them with ``onnx.checker``, stamps ONNX metadata, compares ONNX Runtime
with Keras at each batch size and writes ``encoder.onnx``, ``decoder.onnx`` and
``model_card.json`` into the export directory atomically: when a check or the parity gate fails,
the previous export stays as it was. Run as a DVC stage by ``pipeline/export.py``
(``export.stage``); ``load_variant`` reads a trained model and its resolved config.

A model with cluster centres (the ``clustering`` objective, IDEC) adds a third model,
``clusters.onnx`` ("images" -> "probabilities", the soft assignments Q), under the same gate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import errors, fileio, tracking
from autoencoders.export import card, graph

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
CLUSTERS_FILE = "clusters.onnx"
CLUSTERS_OUTPUT = "probabilities"
CARD_FILE = "model_card.json"
RUN_FILE = "run.json"  # the MLflow run and git commit an export came from
ENCODER_INPUT = "images"
ENCODER_OUTPUT = "code"
DECODER_INPUT = "code"
DECODER_OUTPUT = "reconstruction"
BATCH_AXIS = "batch"
# The parity gate runs ONNX Runtime on the CPU: the reference provider every machine has.
PARITY_PROVIDER = "CPUExecutionProvider"


class ExportError(errors.UserError, RuntimeError):
    """Conversion or the ONNX checker failed; the message names the model."""


class ParityError(ExportError):
    """ONNX Runtime and Keras disagree by more than the tolerance; names the model and figures."""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """params.yaml ``export:``."""

    opset: int = 17
    tolerance: float = 1.0e-5
    parity_batch_sizes: tuple[int, ...] = (1, 257)

    def __post_init__(self) -> None:
        if not 13 <= self.opset <= 18:
            raise ValueError(
                f"opset must be in 13..18 (what tf2onnx 1.17 writes), got {self.opset}"
            )
        if not self.tolerance >= 0.0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if not self.parity_batch_sizes or any(size < 1 for size in self.parity_batch_sizes):
            raise ValueError(
                f"parity_batch_sizes must be positive integers, got {self.parity_batch_sizes}"
            )


def _static_dims(shape: Sequence[Any], what: str) -> list[int]:
    dims = list(shape[1:])
    if not all(isinstance(dim, int) for dim in dims):
        raise ExportError(f"{what} has a dynamic non-batch axis {list(shape)}; cannot export.")
    return dims


def convert_keras_model(model: Any, *, input_name: str, output_name: str, opset: int) -> Any:
    """Convert a single-input, single-output Keras model to an ``onnx.ModelProto``.

    The model is traced as a ``tf.function`` (not ``tf2onnx.convert.from_keras``, which does not
    understand Keras 3) with a dynamic batch axis named ``batch`` on the input and the output.
    """
    dims = _static_dims(model.inputs[0].shape, f"{model.name} input")

    def call(inputs: Any) -> dict[str, Any]:
        # A dict output names the ONNX graph output.
        return {output_name: model(inputs, training=False)}

    return convert_function(
        call,
        input_name=input_name,
        input_dims=dims,
        opset=opset,
        name=f"Keras model {model.name!r}",
    )


def convert_function(
    call: Any, *, input_name: str, input_dims: Sequence[int], opset: int, name: str
) -> Any:
    """Convert ``call`` (float32 images (batch, *input_dims) -> a dict of named outputs, each
    with a leading batch axis) to a canonical ``onnx.ModelProto``; ``name`` says what it is."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *input_dims), tf.float32, name=input_name),)
    function = tf.function(call, input_signature=spec)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
    except Exception as error:  # noqa: BLE001 - tf2onnx raises many types; name the model
        raise ExportError(f"tf2onnx could not convert {name}: {error}") from error
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    try:
        graph.canonical_names(proto.graph)
    except ValueError as error:
        raise ExportError(f"{name}: {error}") from error
    # tf2onnx writes the traced function's name, which carries TensorFlow's own counter.
    proto.graph.doc_string = f"converted from {name} by tf2onnx"
    return proto


def cycle(array: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` rows of ``array``, repeating it when it has fewer."""
    return np.ascontiguousarray(np.take(array, np.arange(size) % len(array), axis=0))


def parity(
    onnx_path: str | Path, keras_model: Any, inputs: np.ndarray, batch_sizes: Sequence[int]
) -> dict[str, Any]:
    """Max |ONNX Runtime - Keras| over the first ``b`` inputs, for each batch size ``b``.

    ``scaled_diff`` divides each difference by max(1, max |Keras output|): the same number for
    outputs within [-1, 1] (images, most codes), and float32-meaningful for a large linear code
    (a deep_dense code near 50 is already 4e-6 between neighbouring float32 values).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=[PARITY_PROVIDER])
    input_name = session.get_inputs()[0].name
    by_batch_size, scaled, largest = {}, [], 0.0
    for size in batch_sizes:
        batch = cycle(np.asarray(inputs, dtype=np.float32), size)
        expected = np.asarray(keras_model(batch, training=False))
        (actual,) = session.run(None, {input_name: batch})
        if actual.shape != expected.shape:
            raise ParityError(
                f"{keras_model.name}: ONNX output shape {actual.shape} != Keras {expected.shape} "
                f"at batch size {size}."
            )
        difference = float(np.max(np.abs(actual - expected)))
        scale = float(np.max(np.abs(expected), initial=0.0))
        by_batch_size[str(size)] = difference
        scaled.append(difference / max(1.0, scale))
        largest = max(largest, scale)
    return {
        "max_abs_diff": max(by_batch_size.values()),
        "scaled_diff": max(scaled),
        "max_abs_reference": largest,
        "by_batch_size": by_batch_size,
    }


def export_models(
    encoder: Any,
    decoder: Any,
    out_dir: str | Path,
    *,
    variant: str,
    opset: int,
    tolerance: float,
    parity_images: np.ndarray,
    parity_batch_sizes: Sequence[int],
    source_run_id: str | None = None,
    resolved_config: Mapping[str, Any] | None = None,
    clusters: Any | None = None,
    input_contract: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export a Keras encoder and decoder to ``out_dir`` and return the model card.

    ``input_contract`` (the data card's) goes into every model's metadata and the card.

    ``clusters`` (images -> cluster probabilities, an IDEC model's ``assigner``) is exported
    too, as ``clusters.onnx``, under the same checks and parity gate. Nothing is written to
    ``out_dir`` unless every model converts, passes ``onnx.checker`` and the parity gate
    (max |ONNX Runtime - Keras| / max(1, max |Keras|) <= ``tolerance`` at every batch size,
    see :func:`parity`); otherwise :class:`ExportError` / :class:`ParityError` is raised and a
    previous export stays intact.
    """
    import tensorflow as tf

    config = ExportConfig(
        opset=opset, tolerance=float(tolerance), parity_batch_sizes=tuple(parity_batch_sizes)
    )
    # TF32 matmuls on recent NVIDIA GPUs would make Keras itself miss a 1e-5 parity gate.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    images, input_dims = _parity_images(encoder, parity_images)
    code_dims = _static_dims(encoder.outputs[0].shape, "encoder output")
    common = card.interface(variant, opset, input_dims, code_dims, input_contract)
    specs = _model_specs(encoder, decoder, clusters, input_dims, code_dims)
    card_files: dict[str, Any] = {}
    parity_figures: dict[str, Any] = {}
    with fileio.atomic_directory(out_dir) as staging:
        codes = np.asarray(encoder(cycle(images, max(config.parity_batch_sizes))))
        parity_inputs = {"encoder": images, "decoder": codes, "clusters": images}
        for role, spec in specs.items():
            parity_figures[role], card_files[role] = _export_one(
                role, spec, staging, common, parity_inputs[role], config, out_dir
            )
        model_card = card.model_card(
            common,
            card_files,
            _parity_record(config, parity_figures),
            resolved_config,
            input_name=ENCODER_INPUT,
        )
        _write_card(staging, model_card, source_run_id)
    return model_card


def _write_card(staging: Path, model_card: Mapping[str, Any], source_run_id: str | None) -> None:
    fileio.write_json(staging / CARD_FILE, model_card)
    # Which run and commit made these files differs on every run: run.json, not the card
    # or the ONNX metadata (.dvcignore keeps it out of dvc.lock, so git stays clean).
    fileio.write_json(
        staging / RUN_FILE, {"source_run_id": source_run_id, "git_commit": tracking.git_commit()}
    )


def _parity_record(config: ExportConfig, parity_figures: Mapping[str, Any]) -> dict[str, Any]:
    """The card's ``parity`` block: how the gate ran (provider, tolerance, batch sizes), then
    each model's figures from :func:`parity`."""
    return {
        "provider": PARITY_PROVIDER,
        "tolerance": config.tolerance,
        "batch_sizes": list(config.parity_batch_sizes),
        **parity_figures,
    }


def _parity_images(encoder: Any, parity_images: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The parity images as float32, checked against the encoder's input shape."""
    images = np.asarray(parity_images, dtype=np.float32)
    input_dims = _static_dims(encoder.inputs[0].shape, "encoder input")
    if images.ndim != 1 + len(input_dims) or list(images.shape[1:]) != input_dims:
        raise ExportError(
            f"parity images have shape {images.shape}; the encoder expects (N, {input_dims})."
        )
    if len(images) == 0:
        raise ExportError("no parity images: pass at least one test image.")
    return images, input_dims


def _model_specs(
    encoder: Any, decoder: Any, clusters: Any | None, input_dims: list[int], code_dims: list[int]
) -> dict[str, tuple[Any, str, str, str, list[int], list[int]]]:
    """role -> (model, file name, input name, output name, input dims, output dims)."""
    specs = {
        "encoder": (encoder, ENCODER_FILE, ENCODER_INPUT, ENCODER_OUTPUT, input_dims, code_dims),
        "decoder": (decoder, DECODER_FILE, DECODER_INPUT, DECODER_OUTPUT, code_dims, input_dims),
    }
    if clusters is not None:
        cluster_dims = _static_dims(clusters.outputs[0].shape, "clusters output")
        specs["clusters"] = (
            clusters,
            CLUSTERS_FILE,
            ENCODER_INPUT,
            CLUSTERS_OUTPUT,
            input_dims,
            cluster_dims,
        )
    return specs


def _export_one(
    role: str,
    spec: tuple[Any, str, str, str, list[int], list[int]],
    staging: Path,
    common: Mapping[str, Any],
    parity_input: np.ndarray,
    config: ExportConfig,
    out_dir: str | Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Convert, check, save and parity-test one model; return its figures and card entry."""
    import onnx

    model, filename, in_name, out_name, in_dims, out_dims = spec
    variant = common["variant"]
    proto = convert_keras_model(
        model, input_name=in_name, output_name=out_name, opset=common["opset"]
    )
    card.set_metadata(
        proto,
        {
            **common,
            "model": role,
            "input_name": in_name,
            "input_shape": [BATCH_AXIS, *in_dims],
            "output_name": out_name,
            "output_shape": [BATCH_AXIS, *out_dims],
        },
    )
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"{variant} {role}: onnx.checker rejected it: {error}") from error
    path = staging / filename
    onnx.save_model(proto, str(path))
    figures = parity(path, model, parity_input, config.parity_batch_sizes)
    if figures["scaled_diff"] > config.tolerance:
        raise ParityError(
            f"{variant} {role}: max |ONNX Runtime - Keras| = "
            f"{figures['max_abs_diff']:.3g} (outputs up to "
            f"{figures['max_abs_reference']:.3g}; scaled {figures['scaled_diff']:.3g}) > "
            f"tolerance {config.tolerance:g}, by batch size {figures['by_batch_size']}; "
            f"the previous export in {out_dir} is kept."
        )
    card_file = {
        "path": filename,
        "sha256": fileio.sha256_file(path),
        "input": {"name": in_name, "shape": [None, *in_dims], "dtype": "float32"},
        "output": {"name": out_name, "shape": [None, *out_dims], "dtype": "float32"},
    }
    return figures, card_file


def load_variant(model_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """The trained autoencoder of ``models/<variant>`` and its resolved config: ``config.json``
    with the training hyperparameters of ``training.json`` under ``"training"`` when present."""
    from autoencoders import models

    model_dir = Path(model_dir)
    autoencoder = models.load_autoencoder(model_dir)
    config_path = model_dir / "config.json"
    resolved_config = fileio.read_json(config_path) if config_path.exists() else {}
    training_path = model_dir / "training.json"
    if training_path.exists():
        resolved_config["training"] = fileio.read_json(training_path).get("params", {})
    return autoencoder, resolved_config
