"""Decode and resize image files with Pillow, in threads over every core, into uint8 blocks.

``render`` is one opened image converted to the colour mode, centre-cropped or zero-padded to
the target's aspect ratio when asked, resized with Pillow's filter. ``decode_block`` reads,
checks (``folders.inspect``) and decodes a list of files into the rows of one preallocated uint8
block, chunk by chunk in a thread pool: each file is read once, its pixels land in their row
(the bytes never depend on the number of threads), and nothing is pickled between processes.
Plain PNGs (the common case) are decoded by libspng (``decode_png``; a lossless format:
Pillow's pixels), straight into their row when they already have the target's size and mode,
else handed to ``render``.
libspng and Pillow release the GIL while they decode, convert and resize, so the threads run
those on every core at once.

Pillow's resize filters antialias when they shrink (TensorFlow's ``tf.image.resize``, which
keras's ``image_dataset_from_directory`` uses, does not by default): the pixels differ from
keras's, by design. EXIF orientation is not applied (as keras and torchvision's ImageFolder).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders.data import folders
from autoencoders.threads import usable_cores

# Files a thread takes at once: enough that handing out work costs little, few enough that
# the last chunks of a block keep every core busy.
CHUNK_FILES = 64

DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


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


def render(
    image: Any,
    image_size: tuple[int, int],
    color_mode: str,
    interpolation: str = "bilinear",
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
) -> Any:
    """The opened Pillow ``image`` decoded, in the colour mode, cropped or padded, resized."""
    image = to_mode(image, color_mode)
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
    return image


def decode_png(frame: folders.PngFrame, out: np.ndarray | None = None) -> np.ndarray:
    """A plain PNG's pixels, uint8 (H, W) for grey or (H, W, C), decoded by libspng
    (imagecodecs, the GIL released) into ``out`` when given; a damaged stream is an OSError."""
    import imagecodecs

    try:
        return imagecodecs.spng_decode(frame.file, out=out)
    except imagecodecs.SpngError as error:
        raise OSError(f"broken PNG data: {error}") from None


def _decode_row(out: np.ndarray, row: int, image: Any, settings: dict[str, Any]) -> None:
    """``image`` (opened, or a plain PNG's frame) decoded and rendered into ``out[row]``."""
    from PIL import Image

    if isinstance(image, folders.PngFrame):
        height, width = settings["image_size"]
        mode = folders.COLOR_MODES[settings["color_mode"]][0]
        if image.size == (width, height) and image.mode == mode:  # nothing to render
            decode_png(image, out=out[row, ..., 0] if mode == "L" else out[row])  # grey: (H, W)
            return
        image = Image.fromarray(decode_png(image))
    with image:
        out[row] = np.asarray(render(image, **settings)).reshape(out.shape[1:])


def read_file(path: str) -> bytes:
    """The whole file, in one unbuffered read (fewer calls than Path.read_bytes)."""
    with open(path, "rb", buffering=0) as handle:
        return handle.readall()


def decode_into(
    out: np.ndarray,
    first_row: int,
    relatives: Sequence[str],
    root: str,
    settings: dict[str, Any],
    check_only: threading.Event,
    fail_fast: bool,
) -> list[str | None]:
    """Read, check and decode ``relatives`` below ``root`` into ``out[first_row:]``; return per
    file None or why it is bad. A bad file sets ``check_only`` when ``fail_fast``; once set,
    files are only checked (the stage will fail; the check costs a fraction of a decode)."""
    image_size, crop = settings["image_size"], settings["crop_to_aspect_ratio"]
    reasons: list[str | None] = []
    for row, relative in enumerate(relatives, start=first_row):
        try:
            data = read_file(os.path.join(root, relative))
        except OSError as error:
            reason, image = f"unreadable ({error.strerror})", None
        else:
            reason, image = folders.inspect(data, relative, image_size, crop)
        if reason is None and not check_only.is_set():
            try:
                _decode_row(out, row, image, settings)
            except DECODE_ERRORS as error:
                reason = f"could not be decoded ({' '.join(str(error).split())[:120]})"
        elif image is not None and not isinstance(image, folders.PngFrame):
            image.close()
        if reason is not None and fail_fast:
            check_only.set()
        reasons.append(reason)
    return reasons


def decode_block(
    out: np.ndarray,
    relatives: Sequence[str],
    root: str | Path,
    settings: dict[str, Any],
    check_only: threading.Event,
    fail_fast: bool,
    executor: ThreadPoolExecutor | None = None,
    progress: Any = None,
) -> list[str | None]:
    """``decode_into`` over ``relatives`` (rows 0.. of ``out``) in chunks of ``CHUNK_FILES``,
    on ``executor``'s threads (or this one); the reasons in file order."""
    arguments = (str(root), settings, check_only, fail_fast)
    starts = range(0, len(relatives), CHUNK_FILES)
    chunks = [(out, start, relatives[start : start + CHUNK_FILES]) for start in starts]
    if executor is None:
        results = (decode_into(*chunk, *arguments) for chunk in chunks)
    else:
        futures = [executor.submit(decode_into, *chunk, *arguments) for chunk in chunks]
        results = (future.result() for future in futures)
    reasons: list[str | None] = []
    for result in results:
        reasons += result
        if progress is not None:
            progress.update(len(result))
    return reasons


def make_executor(workers: int | None = None) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads (default: one a core) for ``decode_block`` and the
    shard writes that overlap it."""
    return ThreadPoolExecutor(usable_cores() if workers is None else workers, "decode")
