"""The registered models that ``make serve`` serves: MLflow pyfuncs over ONNX Runtime.

``<v>-encoder`` and ``<v>-scorer`` are logged (``log_model``, by the export and anomaly stages)
as ``mlflow.pyfunc`` models whose artifacts are the export's own files, ``encoder.onnx`` (or
``scorer.onnx``) and its ``model_card.json``; loading builds ``inference.Encoder`` (``Scorer``)
on them, so a request is checked and scaled exactly as ``inference`` and the CLI check it:
uint8 pixels divided by 255, ``(N, H, W)`` accepted for grey images, NaN, infinity, values
outside [0, 1] and wrong shapes refused. JSON has no uint8: integer pixel values (0-255) are
read as uint8 and ``null`` as NaN. A refused request is an HTTP 400 whose message is the reason
alone. Answers: ``{"code": ...}`` (encoder), ``{"score": ..., "anomaly_map": ...}`` (scorer).

Imports numpy, onnxruntime (through ``inference``) and mlflow only, never TensorFlow::

    model = mlflow.pyfunc.load_model("models:/conv-encoder@champion")
    model.predict({"images": images_uint8})["code"]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

from autoencoders import inference

MODEL, CARD = "model", "model_card"  # artifact keys: the .onnx file and its model card


class ServedInputError(MlflowException):
    """A request the served model refuses: HTTP 400 (``INVALID_PARAMETER_VALUE``) whose message
    is the reason alone."""

    def __init__(self, reason: str) -> None:
        self._reason = reason
        super().__init__(reason, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        # MLflow's scoring server rewrites the message of an error raised in predict to
        # "Failed to predict data '<repr of the request>'. Error: ...": up to kilobytes of array
        # before the reason. The reason stays the whole message.
        del value


def request_images(model_input: Any, input_name: str) -> np.ndarray:
    """The image array in a request as MLflow's server parsed it: an array (``{"inputs":
    batch}``, ``{"instances": batch}``) or ``{input_name: array}`` (``{"inputs": {"images":
    batch}}``, ``{"instances": [{"images": image}, ...]}``). What JSON cannot say is settled
    here, and nothing else: integers are uint8 pixels (0-255), ``null`` is NaN. The values are
    left for ``inference`` to check."""
    if isinstance(model_input, Mapping):
        if list(model_input) != [input_name]:
            raise ServedInputError(
                f"expected one input named {input_name!r}, got {sorted(map(str, model_input))}: "
                f'send {{"inputs": {{"{input_name}": batch}}}} or {{"inputs": batch}}.'
            )
        model_input = model_input[input_name]
    if not isinstance(model_input, (np.ndarray, list, tuple)):
        raise ServedInputError(
            f"expected an array of images, got a {type(model_input).__name__} (a dataframe "
            f'carries no image shape): send {{"inputs": batch}} or {{"instances": batch}}.'
        )
    try:
        array = np.asarray(model_input)
    except ValueError as error:  # ragged nesting
        raise ServedInputError(f"images are not a regular array: {error}") from None
    if array.dtype == object:  # null among the numbers, or values that are no numbers
        values = array.ravel().tolist()
        strange = {
            type(value).__name__
            for value in values
            if not (value is None or type(value) in (int, float))
        }
        if strange:
            raise ServedInputError(
                f"images must be numbers ({inference.SCALING}), got {', '.join(sorted(strange))} "
                "values."
            )
        array = np.array(
            [np.nan if value is None else value for value in values], dtype=np.float64
        ).reshape(array.shape)
    elif np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ServedInputError(
                f"integer pixel values must lie in 0-255 (uint8) but span {array.min()} to "
                f"{array.max()}; {inference.SCALING}."
            )
        array = array.astype(np.uint8)
    return array


def _checksum(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class ServedModel(mlflow.pyfunc.PythonModel):
    """An ``inference`` model behind MLflow's pyfunc interface; subclasses name the role."""

    role = "model"
    model_class: type[inference.OnnxModel] = inference.OnnxModel
    # MLflow's type-hint validation (and its warning where predict has no hints) is off:
    # ``inference`` alone decides what input is valid, one set of rules everywhere.
    _skip_type_hint_validation = True

    def load(self, model_file: str | Path, card_file: str | Path) -> ServedModel:
        """Build the ONNX Runtime model on ``model_file``, checked against its card's
        checksum (a model logged beside another export's card fails here)."""
        self.card = json.loads(Path(card_file).read_text())
        expected = self.card["files"][self.role]["sha256"]
        if _checksum(model_file) != expected:
            raise inference.ModelLoadError(
                f"{model_file} does not match its model card (sha256 {expected}): log the "
                "model again from one export folder."
            )
        self.model = self.model_class(model_file)
        return self

    def load_context(self, context: Any) -> None:
        self.load(context.artifacts[MODEL], context.artifacts[CARD])

    def predict(self, context, model_input, params=None):
        """The outputs for the request's images, checked and scaled as ``inference`` does."""
        images = request_images(model_input, self.model.input_name)
        try:
            outputs = self.outputs(images)
        except inference.InferenceInputError as error:
            raise ServedInputError(str(error)) from None
        for name, values in outputs.items():
            if not np.isfinite(values).all():  # JSON has no NaN: never answer with one
                raise MlflowException(
                    f"the model gave non-finite {name!r} values for finite images in [0, 1].",
                    error_code=INTERNAL_ERROR,
                )
        return outputs

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class EncoderModel(ServedModel):
    """Images -> ``{"code": codes}`` with ``inference.Encoder``."""

    role = "encoder"
    model_class = inference.Encoder

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {"code": self.model.encode(images)}


class ScorerModel(ServedModel):
    """Images -> ``{"score": scores, "anomaly_map": maps}`` with ``inference.Scorer``."""

    role = "scorer"
    model_class = inference.Scorer

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        scores, maps = self.model.score_and_maps(images)
        return dict(zip(inference.Scorer.outputs, (scores, maps), strict=True))


MODELS: dict[str, type[ServedModel]] = {"encoder": EncoderModel, "scorer": ScorerModel}


def log_model(
    role: str,
    model_file: str | Path,
    card_file: str | Path,
    *,
    example_images: np.ndarray,
    metadata: Mapping[str, Any],
    **log_arguments: Any,
) -> Any:
    """Log the ``role`` model (``encoder``, ``scorer``) over ``model_file`` and ``card_file`` as
    an ``mlflow.pyfunc`` model; returns the ModelInfo. The signature states the outputs only:
    an input schema would make MLflow refuse uint8 and ``(N, H, W)`` before ``predict`` applies
    ``inference``'s rules. The input's name, shape and scaling are in the metadata.
    ``log_arguments`` (name, registered_model_name, pip_requirements, run_id) go to MLflow's
    ``Model.log``, which ``mlflow.pyfunc.log_model`` calls without a ``run_id``: logged by its
    id, a finished run is not re-opened."""
    from mlflow.models import Model, ModelSignature, infer_signature

    if role not in MODELS:
        raise ValueError(f"unknown served role {role!r}: use one of {', '.join(MODELS)}.")
    python_model = MODELS[role]()
    loaded = MODELS[role]().load(model_file, card_file)
    outputs = loaded.predict(None, np.asarray(example_images))
    signature = ModelSignature(outputs=infer_signature(None, outputs).outputs)
    contract = {
        "input_name": loaded.model.input_name,
        "input_shape": [-1, *loaded.model.input_shape],
        "input_scaling": inference.SCALING,
    }
    return Model.log(
        artifact_path=None,  # deprecated in favour of name, yet a required argument
        flavor=mlflow.pyfunc,
        python_model=python_model,
        artifacts={MODEL: str(model_file), CARD: str(card_file)},
        signature=signature,
        input_example={contract["input_name"]: np.asarray(example_images)},
        metadata={**metadata, **contract},
        **log_arguments,
    )


__all__ = [
    "CARD",
    "MODEL",
    "MODELS",
    "EncoderModel",
    "ScorerModel",
    "ServedInputError",
    "ServedModel",
    "log_model",
    "request_images",
]
