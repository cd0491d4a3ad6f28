"""Command line for exported models (ONNX Runtime only; imports no TensorFlow).

    python -m autoencoders encode --model exports/conv --input images.npy --output codes.npy
    python -m autoencoders decode --model exports/conv --input codes.npy --output images.npy
    python -m autoencoders cluster --model clusterers/conv --input images.npy --output c.npz
    python -m autoencoders score --model scorers/conv --input images.npy --output scores.npz

``--input`` is a ``.npy`` file, or a ``.npz`` whose array is picked by ``--key`` (default ``x``).
Images are uint8 0-255 or float in [0, 1]; the output ``.npy`` is written atomically. ``cluster``
(a folder with ``clusters.onnx``: any variant's ``clusterers/<v>``, cluster@V's, or IDEC's
``exports/idec``) writes an ``.npz`` holding ``assignments`` (N,) and
``probabilities`` (N, n_clusters); ``score`` (a scorer folder, ``scorers/<v>`` with
``scorer.onnx``, or the file) one holding ``scores`` (N,), ``labels`` (N,) bool (score above
the scorer's threshold) and, with ``--maps``, ``maps`` (N, H, W, C).
"""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from pathlib import Path

import numpy as np

from autoencoders import errors, fileio, inference

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
        command.add_argument("--input", required=True, type=Path, help=".npy or .npz file")
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
                "--maps", action="store_true", help="also write the per-pixel anomaly maps"
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
        array = _load_array(args.input, args.key)
        if args.command == "cluster":
            assignments, probabilities = model.cluster(array)
        elif args.command == "score":
            scores, maps = model.score_and_maps(array)
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
        _save_npz(
            args.output, scores=scores, labels=labels, **({"maps": maps} if args.maps else {})
        )
        print(
            f"score: {array.shape} {array.dtype} -> {args.output} (scores {scores.shape}"
            f"{', maps ' + str(maps.shape) if args.maps else ''}); {int(labels.sum())} of "
            f"{labels.size} above the threshold {model.threshold:.6g} ({model.threshold_rule})"
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
