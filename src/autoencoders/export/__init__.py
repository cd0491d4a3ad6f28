"""ONNX export: encoder, decoder (and IDEC's cluster assigner) converted, canonicalised, gated.

``convert`` converts a trained model and checks ONNX Runtime against Keras; ``graph`` puts a
converted graph in canonical form; ``card`` is what an export says about itself (ONNX
metadata, model_card.json); ``stage`` is the ``export@V`` stage's work. The anomaly scorer is
converted with ``convert.convert_function`` by the ``anomaly@V`` stage (``anomaly.scorer``).
``convert``'s public names, ``card.set_metadata`` and ``stage``'s ``parity_metrics`` and
``log_onnx_models`` are importable from here.
"""

from autoencoders.export import graph
from autoencoders.export.card import set_metadata
from autoencoders.export.convert import (
    BATCH_AXIS,
    CARD_FILE,
    CLUSTERS_FILE,
    CLUSTERS_OUTPUT,
    DECODER_FILE,
    DECODER_INPUT,
    DECODER_OUTPUT,
    ENCODER_FILE,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    PARITY_PROVIDER,
    RUN_FILE,
    ExportConfig,
    ExportError,
    ParityError,
    convert_keras_model,
    export_models,
    parity,
)
from autoencoders.export.stage import log_onnx_models, parity_metrics

__all__ = [
    "BATCH_AXIS",
    "CARD_FILE",
    "CLUSTERS_FILE",
    "CLUSTERS_OUTPUT",
    "DECODER_FILE",
    "DECODER_INPUT",
    "DECODER_OUTPUT",
    "ENCODER_FILE",
    "ENCODER_INPUT",
    "ENCODER_OUTPUT",
    "ExportConfig",
    "ExportError",
    "PARITY_PROVIDER",
    "ParityError",
    "RUN_FILE",
    "convert_keras_model",
    "export_models",
    "graph",
    "log_onnx_models",
    "parity",
    "parity_metrics",
    "set_metadata",
]
