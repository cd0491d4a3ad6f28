"""ONNX Runtime encoder, decoder, clusterer and scorer for downstream use; no TensorFlow.

Load an export directory written by ``pipeline/export.py`` (or one ``.onnx`` file)::

    from autoencoders.inference import Clusterer, Decoder, Encoder, Scorer

    codes = Encoder("exports/conv").encode(images)   # (N, H, W, C), or (N, H, W) when C == 1
    reconstructions = Decoder("exports/conv").decode(codes)     # (N, H, W, C) in [0, 1]
    assignments, probabilities = Clusterer("clusterers/conv").cluster(images)
    scores = Scorer("scorers/conv").score(images)    # .flag(images): above its threshold
    images = Encoder("exports/conv").read_images(["photos/"])   # image files, as fetch reads

Images are float32/float64 in [0, 1], or uint8 in 0-255 (divided by 255, as in training);
image files are decoded under the export's input contract (``autoencoders.imagefiles``).
The CUDA provider is used only where a profiled run shows it really runs the model
(``providers.cuda_usable``), else the CPU, the choice logged once with its reason;
``require_gpu=True`` raises instead. On CUDA, cuDNN picks convolution algorithms by heuristics
and TF32 is off unless ``allow_tf32=True``; ``io_binding=True`` reuses one I/O binding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from autoencoders import errors, imagefiles
from autoencoders.providers import CPU, CUDA, cuda_usable, session_providers

DEFAULT_BATCH_SIZE = 256
SCALING = "float32 in [0,1]; uint8 images divided by 255"


class InferenceInputError(errors.UserError, ValueError):
    """An array handed to an Encoder or Decoder has the wrong rank, size, dtype or values."""


class ModelLoadError(errors.UserError, RuntimeError):
    """An .onnx file is missing, truncated or not an ONNX model; the message names the path."""


class GPUUnavailableError(errors.UserError, RuntimeError):
    """``require_gpu=True`` but the CUDA execution provider cannot be used here."""


def resolve_model_path(model: str | os.PathLike[str], default_name: str) -> Path:
    """A model directory (containing ``default_name``) or an .onnx file, checked to exist."""
    path = Path(model)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        if default_name == "scorer.onnx":  # the anomaly stage's, beside the export
            where = (
                "a scorer directory (scorers/<variant>, written by `dvc repro anomaly@<variant>`)"
            )
        else:
            where = (
                "an export directory (exports/<variant>, written by `dvc repro export@<variant>`)"
            )
        raise ModelLoadError(
            f"{path} not found: pass {where} holding {default_name} or an .onnx file."
        )
    return path


def _session_options(intra_op_num_threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_num_threads:
        options.intra_op_num_threads = intra_op_num_threads
    return options


def _static_shape(shape: Sequence[Any], path: Path, what: str) -> tuple[int, ...]:
    """The model's per-example shape (batch axis dropped); every other axis must be fixed."""
    dims = tuple(shape[1:])
    if not all(isinstance(dim, int) for dim in dims):
        raise ModelLoadError(f"{path}: {what} shape {list(shape)} has a dynamic non-batch axis.")
    return dims  # type: ignore[return-value]


class OnnxModel:
    """One ONNX model with a dynamic batch axis, a single input and ``n_outputs`` outputs."""

    default_name = "model.onnx"
    n_outputs = 1

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        require_gpu: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        intra_op_num_threads: int | None = None,
        allow_tf32: bool = False,
        io_binding: bool = False,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.path = resolve_model_path(model, self.default_name)
        self.batch_size = batch_size
        model_bytes = self.path.read_bytes()
        options = _session_options(intra_op_num_threads)
        # Load on the CPU first: a bad file then fails here, naming the path, and never counts
        # as "CUDA unusable" in the once-per-process provider probe.
        try:
            cpu_session = ort.InferenceSession(model_bytes, options, providers=[CPU])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises pybind11 exception types
            raise ModelLoadError(
                f"{self.path} could not be loaded by onnxruntime (truncated or not an ONNX "
                f"model?): {error}. Re-export it with `dvc repro --force export@<variant>`."
            ) from error
        use_cuda, reason = cuda_usable(model_bytes)
        if require_gpu and not use_cuda:
            raise GPUUnavailableError(
                f"require_gpu=True but the GPU cannot be used: {reason}. Install the CUDA and "
                "cuDNN versions onnxruntime-gpu needs on a machine with an NVIDIA GPU, or pass "
                "require_gpu=False to run on the CPU."
            )
        self.session = (
            ort.InferenceSession(
                model_bytes, options, providers=session_providers(True, allow_tf32)
            )
            if use_cuda
            else cpu_session
        )
        self.provider = self.session.get_providers()[0]
        self.io_binding = io_binding
        if require_gpu and self.provider != CUDA:
            raise GPUUnavailableError(
                f"require_gpu=True but the session for {self.path} runs on {self.provider}."
            )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != self.n_outputs:
            raise ModelLoadError(
                f"{self.path}: expected one input and {self.n_outputs} output(s), got "
                f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}."
            )
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.input_shape = _static_shape(inputs[0].shape, self.path, "input")
        self.output_shape = _static_shape(outputs[0].shape, self.path, "output")
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def contract(self) -> imagefiles.Contract:
        """How image files become input: as the export recorded, else its size, bilinear."""
        recorded = self.metadata.get("input_contract")
        if recorded:
            return imagefiles.Contract.from_record(json.loads(recorded))
        if len(self.input_shape) != 3:
            raise InferenceInputError(f"{self.path} takes {self.input_shape} arrays, no images")
        return imagefiles.Contract.for_shape(self.input_shape)

    def read_images(self, paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
        """uint8 (N, H, W, C) of image files and folders ``paths``, decoded as fetch does."""
        return imagefiles.read_images(imagefiles.image_paths(paths), self.contract)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, input {self.input_name}"
            f"{list(self.input_shape)}, output {self.output_name}{list(self.output_shape)}, "
            f"provider {self.provider})"
        )

    def _run(self, batch: np.ndarray, names: Sequence[str] | None = None) -> Any:
        """Run ``batch`` (N, *input_shape) float32 through the model in chunks of batch_size:
        the output, or a list of the outputs ``names``."""
        wanted = list(names or [self.output_name])
        chunks: list[list[np.ndarray]] = [[] for _ in wanted]
        binding = self.session.io_binding() if self.io_binding else None
        device = "cuda" if self.provider == CUDA else "cpu"
        for start in range(0, len(batch), self.batch_size):
            chunk_in = np.ascontiguousarray(batch[start : start + self.batch_size])
            if binding is None:
                results = self.session.run(wanted, {self.input_name: chunk_in})
            else:  # one binding for every chunk: outputs allocated on the provider's device
                binding.bind_cpu_input(self.input_name, chunk_in)
                for name in wanted:
                    binding.bind_output(name, device)
                self.session.run_with_iobinding(binding)
                results = binding.copy_outputs_to_cpu()
            for chunk, result in zip(chunks, results, strict=True):
                chunk.append(result)
        outputs = [np.concatenate(chunk, axis=0) for chunk in chunks]
        return outputs if names else outputs[0]

    def _batched(
        self, array: np.ndarray, what: str, allow_flat: bool = False
    ) -> tuple[np.ndarray, bool]:
        """(N, *input_shape) from a batch, a batch without the channel axis when C == 1, a flat
        batch (when ``allow_flat``), or one unbatched example; and whether it was one example."""
        expected = self.input_shape
        size = int(np.prod(expected))
        if array.ndim == 0:
            raise InferenceInputError(f"{what} must be an array, got a scalar.")
        if array.shape[1:] == expected:
            batch, single = array, False
        elif array.shape == expected:
            batch, single = array[np.newaxis], True
        elif expected[-1] == 1 and array.shape[1:] == expected[:-1]:
            batch, single = array[..., np.newaxis], False
        elif expected[-1] == 1 and len(expected) > 1 and array.shape == expected[:-1]:
            batch, single = array[np.newaxis, ..., np.newaxis], True
        elif allow_flat and len(expected) > 1 and array.ndim == 2 and array.shape[1] == size:
            batch, single = array.reshape((len(array), *expected)), False
        else:
            accepted = f"(N, {', '.join(map(str, expected))})"
            if expected[-1] == 1 and len(expected) > 1:
                accepted += f" or (N, {', '.join(map(str, expected[:-1]))})"
            if array.ndim in (len(expected), len(expected) + 1):
                problem = (
                    f"size mismatch: got shape {array.shape} but {self.path} "
                    f"expects {expected} (resize the data or use the model trained on this size)"
                )
            else:
                problem = f"wrong rank: got shape {array.shape} (rank {array.ndim})"
            raise InferenceInputError(f"{what}: {problem}; expected {accepted}.")
        if len(batch) == 0:
            raise InferenceInputError(
                f"{what}: empty batch (shape {array.shape}); pass at least one example."
            )
        return batch, single


def _check_finite(array: np.ndarray, what: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - finite.sum())
        raise InferenceInputError(
            f"{what} contain {bad} NaN or infinite value(s); clean them before encoding."
        )


def _as_float_images(images: Any) -> np.ndarray:
    """Images as float32 in [0, 1]: uint8 divided by 255, floats checked to lie in [0, 1]."""
    array = np.asarray(images)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise InferenceInputError(
            f"images have dtype {array.dtype}; pass uint8 (0-255) or float32 in [0, 1] "
            f"({SCALING})."
        )
    _check_finite(array, "images")
    if array.size:
        low, high = float(array.min()), float(array.max())
        if high > 1.0:
            raise InferenceInputError(
                f"float images must lie in [0, 1] but reach {high:g}: uint8 semantics? pass "
                "uint8 or divide by 255."
            )
        if low < 0.0:
            raise InferenceInputError(f"float images must lie in [0, 1] but go down to {low:g}.")
    return array.astype(np.float32, copy=False)


class Encoder(OnnxModel):
    """Images -> codes with an exported ``encoder.onnx`` (input "images", output "code")."""

    default_name = "encoder.onnx"

    @property
    def code_shape(self) -> tuple[int, ...]:
        return self.output_shape

    def encode(self, images: Any) -> np.ndarray:
        """Codes (N, *code_shape) float32 for images (N, H, W, C), (N, H, W) when C == 1, or one
        image (H, W, C) / (H, W), which gives one code without the batch axis."""
        array = _as_float_images(images)
        batch, single = self._batched(array, "images")
        codes = self._run(np.ascontiguousarray(batch))
        return codes[0] if single else codes

    __call__ = encode


class Decoder(OnnxModel):
    """Codes -> images with an exported ``decoder.onnx`` (input "code", output
    "reconstruction")."""

    default_name = "decoder.onnx"

    @property
    def code_shape(self) -> tuple[int, ...]:
        return self.input_shape

    def decode(self, codes: Any) -> np.ndarray:
        """Images (N, H, W, C) float32 in [0, 1] for codes (N, *code_shape), flat codes
        (N, latent_dim), or one code without the batch axis (gives one image)."""
        array = np.asarray(codes)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InferenceInputError(f"codes have dtype {array.dtype}; pass float32 codes.")
        array = array.astype(np.float32, copy=False)
        _check_finite(array, "codes")
        batch, single = self._batched(array, "codes", allow_flat=True)
        images = self._run(np.ascontiguousarray(batch))
        return images[0] if single else images

    __call__ = decode


class Clusterer(OnnxModel):
    """Images -> cluster assignments with a ``clusters.onnx`` ("images" -> "probabilities"):
    any variant's ``clusterers/<v>`` (cluster@V's distilled head: encoder + MLP + softmax) or
    IDEC's ``exports/idec`` (its soft assignments Q)."""

    default_name = "clusters.onnx"

    @property
    def n_clusters(self) -> int:
        return int(self.output_shape[-1])

    def probabilities(self, images: Any) -> np.ndarray:
        """Cluster probabilities (N, n_clusters) float32, or (n_clusters,) for one image; the
        images are checked exactly as ``Encoder.encode`` checks them."""
        array = _as_float_images(images)
        batch, single = self._batched(array, "images")
        probabilities = self._run(np.ascontiguousarray(batch))
        return probabilities[0] if single else probabilities

    def cluster(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """(assignments (N,) int64, probabilities (N, n_clusters)); one image gives a scalar
        assignment and a (n_clusters,) vector."""
        probabilities = self.probabilities(images)
        return np.argmax(probabilities, axis=-1).astype(np.int64), probabilities

    __call__ = cluster


class Scorer(OnnxModel):
    """Images -> anomaly scores with a ``scorer.onnx`` (``scorers/<variant>/``, the anomaly
    stage's): "score" (N,), higher is more anomalous, "anomaly_map" (N, H, W, C), the
    per-pixel reconstruction loss, and "local_map" (N, H, W, 1), the smoothed squared error the
    ``local_error`` score takes its maximum of; ``flag`` cuts scores at the scorer's
    ``threshold``, ``flag_pixels`` local maps at its ``pixel_threshold`` (its metadata, as in
    its model_card.json). Images are checked as ``Encoder.encode`` checks them."""

    default_name = "scorer.onnx"
    n_outputs = 3
    outputs = ("score", "anomaly_map")  # what the served scorer answers
    local_output = "local_map"

    def __init__(self, model: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        names = {output.name for output in self.session.get_outputs()}
        expected = {*self.outputs, self.local_output}
        try:
            if names != expected:
                raise ValueError(f"outputs {sorted(names)}, expected {sorted(expected)}")
            self.threshold = float(self.metadata["threshold"])
            self.threshold_rule = self.metadata["threshold_rule"]
            self.pixel_threshold = float(self.metadata["pixel_threshold"])
        except (KeyError, ValueError) as error:
            raise ModelLoadError(
                f"{self.path} is not an anomaly scorer with a threshold ({error}): rewrite it "
                "with `dvc repro --force anomaly@<variant>`."
            ) from None

    def score_and_maps(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """(scores (N,) float32, maps (N, H, W, C) float32); one image gives a scalar score
        and one map."""
        scores, maps, _ = self.score_and_all_maps(images)
        return scores, maps

    def score_and_all_maps(self, images: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores (N,), maps (N, H, W, C), local maps (N, H, W, 1)), float32; one image gives
        a scalar score and one map of each."""
        array = _as_float_images(images)
        batch, single = self._batched(array, "images")
        names = (*self.outputs, self.local_output)
        scores, maps, local = self._run(np.ascontiguousarray(batch), names)
        return (scores[0], maps[0], local[0]) if single else (scores, maps, local)

    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores (N,) float32 of images laid out as ``Encoder.encode`` accepts them."""
        return self.score_and_maps(images)[0]

    def maps(self, images: Any) -> np.ndarray:
        """The per-pixel reconstruction loss of each image: (N, H, W, C) float32."""
        return self.score_and_maps(images)[1]

    def local_maps(self, images: Any) -> np.ndarray:
        """The smoothed squared error of each image: (N, H, W, 1) float32."""
        return self.score_and_all_maps(images)[2]

    def flag(self, images: Any) -> np.ndarray:
        """True where an image's score is above the export's threshold: (N,) bool."""
        return np.asarray(self.score(images) > self.threshold)

    def flag_pixels(self, images: Any) -> np.ndarray:
        """True where a pixel's local map is above the pixel threshold: (N, H, W, 1) bool."""
        return np.asarray(self.local_maps(images) > self.pixel_threshold)

    __call__ = score
