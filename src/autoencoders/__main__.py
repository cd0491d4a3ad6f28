"""Command line for exported models (ONNX Runtime only; imports no TensorFlow).

    python -m autoencoders encode --model exports/conv --input images.npy --output codes.npy
    python -m autoencoders decode --model exports/conv --input codes.npy --output images.npy
    python -m autoencoders cluster --model clusterers/conv --input images.npy --output c.npz
    python -m autoencoders score --model scorers/conv --input images.npy --output scores.npz

``--input`` is a ``.npy`` file, or a ``.npz`` whose array is picked by ``--key`` (default ``x``);
for encode, score and cluster also an image file (PNG, JPEG, ...) or a folder of them, walked
in sorted order and decoded as fetch decodes a folder, under the export's input contract
(``inference.Encoder(...).contract``: size, colour mode, interpolation, crop or pad).
Images are uint8 0-255 or float in [0, 1]; the output ``.npy`` is written atomically. ``cluster``
(a folder with ``clusters.onnx``: any variant's ``clusterers/<v>``, cluster@V's, or IDEC's
``exports/idec``) writes an ``.npz`` holding ``assignments`` (N,) and
``probabilities`` (N, n_clusters); ``score`` (a scorer folder, ``scorers/<v>`` with
``scorer.onnx``, or the file) one holding ``scores`` (N,), ``labels`` (N,) bool (score above
the scorer's threshold) and, with ``--maps``, ``maps`` (N, H, W, C) and ``local_maps``
(N, H, W, 1); ``--maps DIR`` also writes one PNG per image into DIR: the image beside it with
its local map overlaid in red (full red at twice the scorer's pixel threshold), the pixels
above the threshold outlined in yellow.
"""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from pathlib import Path

import numpy as np

from autoencoders import errors, fileio, imagefiles, inference

PROGRAM = "python -m autoencoders"


def _load_array(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} not found.")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if key not in archive.files:
                    raise KeyError(
                        f"{path} has no array {key!r} (it has {archive.files}); use --key."
                    )
                return archive[key]
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as error:
        raise errors.corrupt(path, error, "pass a .npy or .npz file written by numpy") from None


def _save_array(path: Path, array: np.ndarray) -> None:
    with fileio.atomic_path(path) as temporary, temporary.open("wb") as handle:
        # A file handle, not a path: np.save would append ".npy" to the temporary name.
        np.save(handle, array)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with fileio.atomic_path(path) as temporary, temporary.open("wb") as handle:
        np.savez(handle, **arrays)


def overlay(image: np.ndarray, local_map: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """uint8 (H, 2W, 3): the image, and beside it the image in grey with ``local_map`` in red
    (full at twice ``pixel_threshold``) and the pixels above the threshold edged in yellow."""
    grey = image.mean(axis=2) if image.shape[2] != 3 else image @ np.array([0.299, 0.587, 0.114])
    rgb = image if image.shape[2] == 3 else np.repeat(image[..., :1], 3, axis=2)
    heat = np.clip(local_map[..., 0] / (2.0 * pixel_threshold), 0.0, 1.0)[..., None]
    tinted = (1.0 - 0.7 * heat) * grey[..., None] + 0.7 * heat * np.array([1.0, 0.0, 0.0])
    above = local_map[..., 0] > pixel_threshold
    inside = above.copy()
    for axis in (0, 1):
        for shift in (1, -1):
            inside &= np.roll(above, shift, axis=axis)
    tinted[above & ~inside] = (1.0, 1.0, 0.0)
    return np.round(np.concatenate([rgb, tinted], axis=1) * 255.0).astype(np.uint8)


def write_overlays(
    out: Path, images: np.ndarray, local_maps: np.ndarray, pixel_threshold: float
) -> int:
    """One PNG per image, ``out/00000.png`` ..., enlarged to at least 256 pixels high."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    scale = max(1, 256 // images.shape[1])
    for index, (image, local_map) in enumerate(zip(images, local_maps, strict=True)):
        picture = Image.fromarray(overlay(image, local_map, pixel_threshold))
        size = (picture.width * scale, picture.height * scale)
        picture.resize(size, Image.Resampling.NEAREST).save(out / f"{index:05d}.png")
    return len(images)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what in (
        ("encode", "images -> codes"),
        ("decode", "codes -> images"),
        ("cluster", "images -> cluster assignments and probabilities (.npz)"),
        ("score", "images -> anomaly scores, labels at the threshold [and maps] (.npz)"),
    ):
        command = commands.add_parser(name, help=what, description=what)
        command.add_argument(
            "--model",
            required=True,
            help="model directory (exports/<variant>; score: scorers/<variant>) or .onnx file",
        )
        command.add_argument(
            "--input",
            required=True,
            type=Path,
            help=".npy or .npz file; encode, score, cluster: also an image file or a folder of "
            "them, decoded as the export's input contract records",
        )
        command.add_argument(
            "--output", required=True, type=Path, help="file to write (.npy; cluster: .npz)"
        )
        command.add_argument("--key", default="x", help="array name when --input is .npz")
        command.add_argument("--batch-size", type=int, default=inference.DEFAULT_BATCH_SIZE)
        command.add_argument(
            "--require-gpu", action="store_true", help="fail instead of falling back to the CPU"
        )
        if name == "score":
            command.add_argument(
                "--maps",
                nargs="?",
                const=True,
                default=False,
                metavar="DIR",
                help="also write the anomaly maps; with DIR, PNG overlays of them there too",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Progress (the execution provider) to stdout: stderr holds nothing but an error's one line.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    model_class = {
        "encode": inference.Encoder,
        "decode": inference.Decoder,
        "cluster": inference.Clusterer,
        "score": inference.Scorer,
    }[args.command]
    try:
        model = model_class(args.model, require_gpu=args.require_gpu, batch_size=args.batch_size)
        if args.command != "decode" and (
            args.input.is_dir() or imagefiles.is_image_file(args.input)
        ):
            array = model.read_images([args.input])
        else:
            array = _load_array(args.input, args.key)
        if args.command == "cluster":
            assignments, probabilities = model.cluster(array)
        elif args.command == "score":
            scores, maps, local_maps = model.score_and_all_maps(array)
        else:
            result = model.encode(array) if args.command == "encode" else model.decode(array)
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        print(f"{PROGRAM}: error: {errors.one_line(error)}", file=sys.stderr)
        return 2
    if args.command == "cluster":
        _save_npz(args.output, assignments=assignments, probabilities=probabilities)
        sizes = np.bincount(np.ravel(assignments), minlength=model.n_clusters).tolist()
        print(
            f"cluster: {array.shape} {array.dtype} -> {args.output} (assignments "
            f"{assignments.shape}, probabilities {probabilities.shape}); cluster sizes {sizes}"
        )
        return 0
    if args.command == "score":
        labels = np.asarray(scores > model.threshold)
        extra = {"maps": maps, "local_maps": local_maps} if args.maps else {}
        _save_npz(args.output, scores=scores, labels=labels, **extra)
        print(
            f"score: {array.shape} {array.dtype} -> {args.output} (scores {scores.shape}"
            f"{', maps ' + str(maps.shape) if args.maps else ''}); {int(labels.sum())} of "
            f"{labels.size} above the threshold {model.threshold:.6g} ({model.threshold_rule})"
        )
        if isinstance(args.maps, str):
            images = np.asarray(array, np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
            images = images.reshape(len(scores), *model.input_shape)
            count = write_overlays(Path(args.maps), images, local_maps, model.pixel_threshold)
            print(
                f"score: {count} PNG overlays (pixel threshold {model.pixel_threshold:.6g})"
                f" -> {args.maps}/"
            )
        return 0
    _save_array(args.output, result)
    print(
        f"{args.command}: {array.shape} {array.dtype} -> {args.output} "
        f"{result.shape} {result.dtype}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(errors.cli(main, program=PROGRAM))
