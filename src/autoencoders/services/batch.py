"""Batch encoding of a folder of image shards on a Ray cluster (Ray Data), for datasets that one
process encodes too slowly.

    python -m autoencoders.services.batch --model exports/conv --input shards/ --output codes/ \\
        [--address auto] [--num-gpus-per-actor 0|1] [--concurrency N] [--batch-size N]

``--input`` holds ``.npy`` files, each a shard of images (N, H, W, C), or (N, H, W) when C == 1,
uint8 0-255 or float in [0, 1], as ``python -m autoencoders encode`` takes them. Each gives
``<output>/<stem>.codes.npy``: the codes (N, *code_shape) float32, row i the code of the
shard's image i, identical to what ``inference.Encoder`` gives in one process.

How: the driver checks the model and every shard's header, then hands Ray Data a dataset of
chunk descriptors (shard, first row, last row). ``map_batches`` runs them on a pool of actors,
each holding one ``inference.Encoder`` (one ONNX Runtime session, on a GPU with
``--num-gpus-per-actor 1``), which memory-maps its rows from the shard: images never travel
through the object store, only the codes do. The driver writes each row at its position in a
temporary file beside its target and renames it onto ``<stem>.codes.npy`` once every row has come
back exactly once; a killed actor is restarted and its chunk retried (``--max-retries``), and
a job that fails leaves no partial or duplicate file. Ray is optional: without it the command
ends with one line saying what to install. See docs/batch-encoding.md.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import errors, inference
from autoencoders.services import shards

PROGRAM = "python -m autoencoders.services.batch"
RAY_REQUIREMENT = "ray[data]==2.60.0"
DEFAULT_BATCH_SIZE = 1024
DEFAULT_MAX_RETRIES = 3


class BatchEncodingError(errors.UserError, RuntimeError):
    """A batch job cannot start, or an actor met bad input or no usable GPU; one line."""


def import_ray() -> Any:
    """The ``ray`` module with Ray Data loaded, or one clear line naming what to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is an extra of the ray package
    except ImportError as error:
        raise BatchEncodingError(
            f"batch encoding runs on Ray Data, which is not installed ({error}): "
            f"pip install '{RAY_REQUIREMENT}'"
        ) from None
    return ray


class ChunkEncoder:
    """Ray Data callable class: one ``inference.Encoder`` (ONNX Runtime session) per actor,
    made once when the actor starts and reused for every chunk it is given."""

    def __init__(
        self,
        model: str,
        paths: Sequence[str],
        *,
        batch_size: int,
        require_gpu: bool,
        intra_op_num_threads: int | None,
    ) -> None:
        self.paths = list(paths)
        self._shards: dict[int, np.ndarray] = {}
        self._error: errors.UserError | None = None
        try:
            self.encoder = inference.Encoder(
                model,
                require_gpu=require_gpu,
                batch_size=batch_size,
                intra_op_num_threads=intra_op_num_threads,
            )
        except errors.UserError as error:
            # Raised again from the first call: Ray reports a constructor's exception only as
            # the text of an ActorDiedError, and a call's exception as itself.
            self._error = error

    def _shard(self, index: int) -> np.ndarray:
        if index not in self._shards:
            # Memory-mapped: a chunk reads only its own rows.
            self._shards[index] = np.load(self.paths[index], mmap_mode="r", allow_pickle=False)
        return self._shards[index]

    def encode_chunk(self, index: int, start: int, stop: int) -> np.ndarray:
        """Codes of rows ``start:stop`` of shard ``index``; bad values name the file and rows."""
        images = np.asarray(self._shard(index)[start:stop])
        if images.ndim == len(self.encoder.input_shape):  # (n, H, W) for a one-channel model
            images = images[..., np.newaxis]
        try:
            return self.encoder.encode(images)
        except inference.InferenceInputError as error:
            raise inference.InferenceInputError(
                f"{self.paths[index]} {_bad_rows(images, start, stop)}: {error}"
            ) from None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Chunk descriptors -> one output row per image: (shard index, row, code)."""
        if self._error is not None:
            raise self._error
        sources, rows, codes = [], [], []
        for index, start, stop in zip(batch["source"], batch["start"], batch["stop"], strict=True):
            index, start, stop = int(index), int(start), int(stop)
            codes.append(self.encode_chunk(index, start, stop))
            sources.append(np.full(stop - start, index, dtype=np.int64))
            rows.append(np.arange(start, stop, dtype=np.int64))
        return {
            "source": np.concatenate(sources),
            "row": np.concatenate(rows),
            "code": np.concatenate(codes),
        }


def _bad_rows(images: np.ndarray, start: int, stop: int, shown: int = 10) -> str:
    """Which rows of ``start:stop`` hold values no model takes (NaN, infinite, or a float
    outside [0, 1]): ``rows 623, 1000 (2 of rows 600-1200)``; the chunk when none does."""
    flat = images.reshape(len(images), -1)
    bad = ~np.isfinite(flat).all(axis=1) if flat.dtype.kind == "f" else np.zeros(len(flat), bool)
    if flat.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad |= (flat < 0).any(axis=1) | (flat > 1).any(axis=1)
    rows = np.flatnonzero(bad) + start
    if len(rows) == 0:
        return f"rows {start}-{stop}"
    listed = ", ".join(str(row) for row in rows[:shown]) + (", ..." if len(rows) > shown else "")
    return f"rows {listed} ({len(rows)} of rows {start}-{stop})"


class _ExpectedFailureDropped(logging.Filter):
    """Drops Ray Data's own log record (a traceback) of an expected failure: the job ends with
    the project's one line for it instead. Any other failure is logged as Ray logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or _user_error(error) is None


def _user_error(error: BaseException) -> BaseException | None:
    """The expected failure (bad values in a shard, no GPU) behind Ray's wrapping of an actor's
    exception, or None when it is not one."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        cause = getattr(current, "cause", None)  # ray.exceptions.RayTaskError keeps the original
        if isinstance(cause, errors.UserError):
            return cause
        if isinstance(current, errors.UserError) and not hasattr(current, "cause"):
            return current
        pending += [cause, current.__cause__, current.__context__]
    return None


def _actor_count(
    ray: Any, num_gpus_per_actor: float, num_cpus_per_actor: float, concurrency: int | None
) -> int:
    """How many actors: ``concurrency``, or by default as many as the cluster has room for
    (GPUs for GPU actors, CPUs otherwise)."""
    if num_gpus_per_actor < 0 or num_cpus_per_actor <= 0:
        raise BatchEncodingError(
            "--num-gpus-per-actor must be >= 0 and --num-cpus-per-actor > 0, got "
            f"{num_gpus_per_actor:g} and {num_cpus_per_actor:g}."
        )
    if concurrency is not None and concurrency < 1:
        raise BatchEncodingError(f"--concurrency must be a positive integer, got {concurrency}.")
    resources = ray.cluster_resources()
    if num_gpus_per_actor > 0:
        gpus = resources.get("GPU", 0.0)
        if gpus < num_gpus_per_actor:
            raise BatchEncodingError(
                f"--num-gpus-per-actor {num_gpus_per_actor:g} but the cluster has {gpus:g} GPUs; "
                "start Ray on GPU nodes or pass --num-gpus-per-actor 0."
            )
        room = int(gpus // num_gpus_per_actor)
    else:
        room = int(resources.get("CPU", 1.0) // num_cpus_per_actor)
    return concurrency or max(1, room)


def _encoded(
    ray: Any,
    sources: list[shards.Source],
    model: str | Path,
    *,
    batch_size: int,
    actors: int,
    num_gpus_per_actor: float,
    num_cpus_per_actor: float,
    max_retries: int,
    encoder_class: type[ChunkEncoder],
) -> Any:
    """The Ray Dataset of encoded rows: chunk descriptors mapped by a pool of actors."""
    chunks = shards.chunk_descriptors(sources, batch_size)
    gpu = num_gpus_per_actor > 0
    with warnings.catch_warnings():
        # Ray 2.60 takes an actor's restart policy only as a "ray_remote_args" keyword, which
        # it flags as deprecated; its default (-1) would retry a chunk that kills its actor
        # every time, forever.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ray.data.from_items(chunks, override_num_blocks=max(1, len(chunks))).map_batches(
            encoder_class,
            fn_constructor_kwargs={
                "model": str(Path(model).resolve()),
                "paths": [str(source.path.resolve()) for source in sources],
                "batch_size": batch_size,
                "require_gpu": gpu,
                "intra_op_num_threads": None if gpu else max(1, int(num_cpus_per_actor)),
            },
            batch_size=1,  # one chunk descriptor (batch_size images) per call
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=num_cpus_per_actor,
            num_gpus=num_gpus_per_actor,
            max_restarts=max_retries,
            max_task_retries=max_retries,
        )


def _connect(ray: Any, address: str | None, progress: bool) -> None:
    """Join ``address`` (or start a local cluster) unless Ray is initialised already, and set
    this driver's Ray Data options."""
    if not ray.is_initialized():
        # ERROR: no token-authentication or start-up notices; Ray Data's progress stays INFO.
        ray.init(address=address, log_to_driver=progress, logging_level=logging.ERROR)
    # Its "internal error, please open an issue" line for an actor's own exception: what
    # failed is raised here, with its traceback unless it is an expected failure (_drain).
    logging.getLogger("ray.data.exceptions").setLevel(logging.CRITICAL)
    data_logger = logging.getLogger("ray.data")
    data_logger.setLevel(logging.INFO if progress else logging.WARNING)
    for handler in [*data_logger.handlers, *logging.getLogger("ray").handlers]:
        if not any(isinstance(f, _ExpectedFailureDropped) for f in handler.filters):
            handler.addFilter(_ExpectedFailureDropped())
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    # An actor's own exception (bad values in a shard, no GPU), not a wrapper that drops it.
    context.raise_original_map_exception = True


def encode_directory(
    model: str | Path,
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    address: str | None = None,
    num_gpus_per_actor: float = 0,
    num_cpus_per_actor: float = 1,
    concurrency: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_retries: int = DEFAULT_MAX_RETRIES,
    progress: bool = True,
    encoder_class: type[ChunkEncoder] = ChunkEncoder,
) -> dict[str, Any]:
    """Encode every ``.npy`` shard of ``input_dir`` into ``output_dir/<stem>.codes.npy`` on Ray
    (joining ``address``, or starting a local cluster unless Ray is initialised already) and
    return a summary: shards, images, actors, seconds and images per second of the encoding.

    ``encoder_class`` is the actor class (a subclass of ``ChunkEncoder`` may add pre- or
    post-processing); an actor whose process dies is restarted and its chunk retried up to
    ``max_retries`` times."""
    ray = import_ray()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BatchEncodingError(f"--batch-size must be a positive integer, got {batch_size!r}.")
    # Checked here, once, so a bad model or shard is one line before any actor starts.
    probe = inference.Encoder(model, batch_size=batch_size)
    sources = shards.list_sources(input_dir, output_dir, probe.input_shape)
    _connect(ray, address, progress)
    actors = _actor_count(ray, num_gpus_per_actor, num_cpus_per_actor, concurrency)
    # No more actors than chunks: an idle actor still holds its CPU or GPU.
    actors = min(actors, max(1, sum(-(-source.rows // batch_size) for source in sources)))
    started = time.perf_counter()
    writer = shards.CodeWriter(sources, probe.code_shape)
    _drain(
        lambda: _encoded(
            ray,
            sources,
            model,
            batch_size=batch_size,
            actors=actors,
            num_gpus_per_actor=num_gpus_per_actor,
            num_cpus_per_actor=num_cpus_per_actor,
            max_retries=max_retries,
            encoder_class=encoder_class,
        ),
        writer,
    )
    seconds = time.perf_counter() - started
    images = sum(source.rows for source in sources)
    return {
        "shards": len(sources),
        "images": images,
        "outputs": [str(path) for path in writer.written],
        "actors": actors,
        "num_gpus_per_actor": num_gpus_per_actor,
        "seconds": seconds,
        "images_per_second": images / seconds if seconds > 0 else float("inf"),
    }


def _drain(make_dataset: Callable[[], Any], writer: shards.CodeWriter) -> None:
    """Run the dataset ``make_dataset`` gives and feed every encoded batch to ``writer``; on a
    failure drop the unfinished files and raise the expected failure behind Ray's wrapping as
    one line.

    Only this frame holds the dataset: Ray Data frees a failed job's actors by reference
    counting, and a traceback still holding the dataset would keep their CPUs from the next
    job on the same cluster. (A logging handler that keeps Ray Data's error record still holds
    them through that record's traceback: a known limitation, docs/batch-encoding.md.)"""
    dataset = make_dataset()
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    failure: BaseException | None = None
    try:
        for batch in batches:
            writer.add(batch)
        writer.close()
    except BaseException as error:
        writer.abort()
        cause = _user_error(error)
        if cause is None or cause is error:
            raise
        # Ray appends its retry advice to the message's first argument, after a newline.
        failure = BatchEncodingError(str(cause).partition("\n")[0])
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # shuts the execution down now, not when the garbage collector runs
    if failure is not None:
        del dataset, batches
        gc.collect()
        raise failure  # outside the handler: no reference to Ray's exception or its frames


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="export directory or encoder .onnx")
    parser.add_argument("--input", required=True, type=Path, help="folder of .npy image shards")
    parser.add_argument("--output", required=True, type=Path, help="folder for <stem>.codes.npy")
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join (auto: the running one); "
        "default: start a local one"
    )  # fmt: skip
    parser.add_argument("--num-gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--num-cpus-per-actor", type=float, default=1.0)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="actors (default: as many as fit)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per actor call"
    )
    parser.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES)
    parser.add_argument("--no-progress", action="store_true", help="no Ray progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    summary = encode_directory(
        args.model,
        args.input,
        args.output,
        address=args.address,
        num_gpus_per_actor=args.num_gpus_per_actor,
        num_cpus_per_actor=args.num_cpus_per_actor,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        max_retries=args.max_retries,
        progress=not args.no_progress,
    )
    print(
        f"batch: {summary['images']} images in {summary['shards']} shards -> {args.output} "
        f"in {summary['seconds']:.2f} s ({summary['images_per_second']:.0f} images/s, "
        f"{summary['actors']} actors)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(errors.cli(main, program=PROGRAM))
