"""Use an exported autoencoder with nothing but numpy and onnxruntime (no TensorFlow).

    python examples/downstream.py exports/conv                 # random images
    python examples/downstream.py exports/conv images.npy      # (N, H, W[, C]) uint8 or [0, 1]

Encodes the images to codes, decodes them back and prints the shapes and the reconstruction
error. Copy this file into any project: it does not import the autoencoders package.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

# cuDNN picks convolution algorithms by heuristics (no re-benchmark for every new batch size),
# and FP32 stays FP32 (not TF32 on A100/H100): the codes the export's parity check vouches for.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0"}


def nvidia_driver() -> bool:
    """Whether the NVIDIA driver library loads: without it the CUDA provider cannot run, and
    asking for it only prints ONNX Runtime's red load error before falling back to the CPU."""
    name = {"linux": "libcuda.so.1", "win32": "nvcuda.dll"}.get(sys.platform)
    try:
        ctypes.CDLL(name) if name else None
    except OSError:
        return False
    return name is not None


def open_session(path: Path, providers: list | None = None) -> ort.InferenceSession:
    """A session on the GPU when one really works, else on the CPU.

    The onnxruntime-gpu wheel lists CUDA even without a GPU (it then logs why it cannot load it
    and falls back): ``session.get_providers()`` says what the session really got.
    """
    if providers is None:
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers() and nvidia_driver():
            providers.insert(0, ("CUDAExecutionProvider", CUDA_OPTIONS))
    session = ort.InferenceSession(str(path), providers=providers)
    print(f"{path.name}: running on {session.get_providers()[0]}")
    return session


def to_model_input(images: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """(N, H, W[, C]) uint8 0-255 or float in [0, 1] -> float32 (N, H, W, C) in [0, 1]."""
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0  # the scaling the model was trained with
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3 and channels == 1:
        images = images[..., np.newaxis]
    if images.shape[1:] != (height, width, channels):
        sys.exit(f"images are {images.shape[1:]}, the model expects {(height, width, channels)}")
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        sys.exit("images must be finite and in [0, 1] (uint8 images: pass them as uint8)")
    return images


def main() -> None:
    export_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "exports/conv")
    encoder = open_session(export_dir / "encoder.onnx")
    on_gpu = encoder.get_providers()[0] == "CUDAExecutionProvider"
    decoder = open_session(
        export_dir / "decoder.onnx", providers=None if on_gpu else ["CPUExecutionProvider"]
    )
    metadata = encoder.get_modelmeta().custom_metadata_map
    height, width, channels = json.loads(metadata["image_shape"])
    print(
        f"variant {metadata['variant']}: images {height}x{width}x{channels}, "
        f"code {metadata['code_shape']}, scaling: {metadata['pixel_scaling']}"
    )

    if len(sys.argv) > 2:
        images = np.load(sys.argv[2])
    else:
        images = np.random.default_rng(0).integers(0, 256, (16, height, width), dtype=np.uint8)
    images = to_model_input(images, height, width, channels)

    # Input and output names are fixed by the export: images -> code -> reconstruction.
    (codes,) = encoder.run(["code"], {"images": images})
    (reconstructions,) = decoder.run(["reconstruction"], {"code": codes})
    error = float(np.mean((reconstructions - images) ** 2))
    print(
        f"encoded {images.shape} -> codes {codes.shape} -> reconstructions "
        f"{reconstructions.shape}; mean squared error {error:.4f}"
    )


if __name__ == "__main__":
    main()
