"""Decode and resize image files with Pillow, in a process pool over every core, in order.

``decode_file`` is one image: converted to the colour mode, centre-cropped or zero-padded to
the target's aspect ratio when asked, resized with Pillow's filter, as uint8 (H, W, C).
``ordered_map`` runs a function over chunks of work in worker processes and yields the results
in the chunks' order, so the output never depends on which worker finished first.

Pillow's resize filters antialias when they shrink (TensorFlow's ``tf.image.resize``, which
keras's ``image_dataset_from_directory`` uses, does not by default): the pixels differ from
keras's, by design. EXIF orientation is not applied (as keras and torchvision's ImageFolder).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders.data import folders

# Files a worker takes at once: large enough that the pool's overhead is small, small enough
# that a few thousand files keep every core busy.
CHUNK_FILES = 64


def _resample(name: str) -> int:
    from PIL import Image

    filters = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX,
        "area": Image.Resampling.BOX,
        "hamming": Image.Resampling.HAMMING,
    }
    return filters[name]


def to_mode(image: Any, color_mode: str) -> Any:
    """``image`` in the colour mode's Pillow mode (L, RGB, RGBA). 16-bit images are scaled to
    8 bits (Pillow's own conversion clips them at 255)."""
    from PIL import Image

    mode = folders.COLOR_MODES[color_mode][0]
    if image.mode.startswith("I"):  # I;16, I;16B, I: 16-bit grey (PNG, TIFF)
        values = np.asarray(image).astype(np.float64)
        image = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8))
    return image if image.mode == mode else image.convert(mode)


def _padded(image: Any, image_size: tuple[int, int]) -> Any:
    """``image`` centred on a zero canvas of the target's aspect ratio."""
    from PIL import Image

    width, height = image.size
    target_height, target_width = image_size
    if width * target_height > height * target_width:  # too wide: pad top and bottom
        canvas_size = (width, width * target_height // target_width)
    else:
        canvas_size = (height * target_width // target_height, height)
    if canvas_size == image.size:
        return image
    canvas = Image.new(image.mode, canvas_size, 0)
    canvas.paste(image, ((canvas_size[0] - width) // 2, (canvas_size[1] - height) // 2))
    return canvas


def decode_file(
    path: str | Path,
    image_size: tuple[int, int],
    color_mode: str,
    interpolation: str = "bilinear",
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
) -> np.ndarray:
    """One image file as uint8 (height, width, channels); Pillow's errors pass through."""
    from PIL import Image

    with Image.open(path) as opened:
        image = to_mode(opened, color_mode)
        box = None
        if crop_to_aspect_ratio:
            width, height = image.size
            crop_width, crop_height = folders.crop_window(width, height, image_size)
            left, top = (width - crop_width) // 2, (height - crop_height) // 2
            box = (left, top, left + crop_width, top + crop_height)
        elif pad_to_aspect_ratio:
            image = _padded(image, image_size)
        size = (image_size[1], image_size[0])
        if image.size != size or box is not None:
            image = image.resize(size, _resample(interpolation), box=box)
        pixels = np.asarray(image, dtype=np.uint8)
    return pixels.reshape(image_size[0], image_size[1], folders.COLOR_MODES[color_mode][1])


def decode_chunk(
    relatives: Sequence[str], root: str, settings: dict[str, Any]
) -> tuple[np.ndarray, list[str | None]]:
    """Decode ``relatives`` below ``root``: (uint8 images of those that decoded, in order;
    per file None or why it failed). Run in a worker process."""
    images, failures = [], []
    for relative in relatives:
        try:
            images.append(decode_file(Path(root) / relative, **settings))
            failures.append(None)
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            failures.append(f"could not be decoded ({' '.join(str(error).split())[:120]})")
    height, width = settings["image_size"]
    channels = folders.COLOR_MODES[settings["color_mode"]][1]
    stacked = np.stack(images) if images else np.empty((0, height, width, channels), np.uint8)
    return stacked, failures


def check_chunk(
    relatives: Sequence[str], root: str, image_size: tuple[int, int], crop: bool
) -> list[str | None]:
    """``folders.check_file`` over ``relatives`` (the pre-scan), run in a worker process."""
    return [folders.check_file(Path(root), relative, image_size, crop) for relative in relatives]


def worker_count() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def chunks(items: Sequence[Any], size: int = CHUNK_FILES) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def ordered_map(
    function: Callable[[Sequence[Any]], Any],
    work: Iterable[Sequence[Any]],
    workers: int | None = None,
    executor: ProcessPoolExecutor | None = None,
) -> Iterator[Any]:
    """``function(chunk)`` for each chunk of ``work``, the results in the chunks' order.

    ``function`` is a module-level function or a ``functools.partial`` of one (it travels to
    the workers by name). One worker, or a single chunk without an ``executor``, runs in this
    process; otherwise ``executor``, or a pool of ``workers`` made for the call.
    """
    work = list(work)
    workers = worker_count() if workers is None else workers
    if executor is None and (workers <= 1 or len(work) <= 1):
        yield from map(function, work)
        return
    owned = executor is None
    if owned:
        executor = make_executor(workers)
    try:
        futures = [executor.submit(function, chunk) for chunk in work]
        for future in futures:
            yield future.result()
    finally:
        if owned:
            executor.shutdown(cancel_futures=True)


def make_executor(workers: int | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` (default: every core) forkserver processes with Pillow loaded:
    forked from a clean server, they are safe in a process that runs threads (TensorFlow)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        return ProcessPoolExecutor(worker_count() if workers is None else workers)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["autoencoders.data.decoding", "PIL.Image"])
    return ProcessPoolExecutor(worker_count() if workers is None else workers, context)
