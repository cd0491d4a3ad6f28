"""Image files -> uint8 pixels: the checks and decoding fetch applies to every file of a folder,
and every downstream path to new files (the input contract). Needs numpy and Pillow only.

``inspect`` checks one file's bytes cheaply (header, PNG chunk CRCs as Pillow's ``verify()``,
the JPEG end marker) just before it is decoded, so a file is read once; ``check_file`` is the
same on disk. ``decode_row`` decodes a checked file into a row of a uint8 block: plain PNGs by
libspng (lossless: Pillow's pixels; Pillow itself where imagecodecs is not installed), the rest
by ``render`` (colour mode, centre crop or zero pad to the aspect ratio, Pillow's resize).
An export records its ``Contract``; ``read_images`` applies it to new files and folders.

Pillow's resize filters antialias when they shrink (``tf.image.resize``, which keras's
``image_dataset_from_directory`` uses, does not by default): the pixels differ from keras's,
by design. EXIF orientation is not applied (as keras and torchvision's ImageFolder).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders.errors import DataError

# Extension -> the formats Pillow may report for it (a camera's JPEG can open as MPO).
EXTENSION_FORMATS = {
    ".png": ("PNG",),
    ".jpg": ("JPEG", "MPO"),
    ".jpeg": ("JPEG", "MPO"),
    ".bmp": ("BMP", "DIB"),
    ".gif": ("GIF",),
    ".webp": ("WEBP",),
    ".tif": ("TIFF",),
    ".tiff": ("TIFF",),
    ".ppm": ("PPM",),
    ".pgm": ("PPM",),
}


COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3), "rgba": ("RGBA", 4)}


DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


def _jpeg_ends(data: bytes) -> bool:
    """A whole JPEG ends with its EOI marker (FF D9), perhaps followed by a little padding;
    entropy-coded data never holds FF D9, so a truncated file lacks it near its end."""
    return b"\xff\xd9" in data[-4096:]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# (bit depth, colour type) -> Pillow's mode, for the PNGs ``PngFrame`` decodes
PLAIN_PNG_MODES = {(8, 0): "L", (8, 2): "RGB", (8, 6): "RGBA"}


@dataclasses.dataclass(frozen=True)
class PngFrame:
    """A plain PNG (8-bit grey, RGB or RGBA, not interlaced, no palette, transparency or
    animation chunk), its chunks checked: ``decode_png`` decodes it with libspng to the
    pixels ``Image.open(...).load()`` gives, without Pillow's per-file Python parsing."""

    size: tuple[int, int]  # (width, height)
    mode: str
    file: bytes  # the whole file


def _png_scan(data: bytes) -> tuple[str | None, PngFrame | None]:
    """(why a PNG's chunks are damaged or None, its ``PngFrame`` when plain). Damaged: a CRC
    that does not match, a chunk cut short, no IEND (the checks of Pillow's ``verify()``)."""
    position, size, view = 8, len(data), memoryview(data)
    header, has_idat, plain = None, False, True
    while position + 12 <= size:
        (length,) = struct.unpack_from(">I", data, position)
        end = position + 8 + length
        if end + 4 > size:
            return "truncated PNG file", None
        kind = data[position + 4 : position + 8]
        if zlib.crc32(view[position + 4 : end]) != struct.unpack_from(">I", data, end)[0]:
            return f"broken PNG file (bad CRC in the {kind!r} chunk)", None
        if kind == b"IHDR" and length >= 13:
            header = struct.unpack_from(">IIBBBBB", data, position + 8)
        elif kind == b"IDAT":
            has_idat = True
        elif kind == b"IEND":
            break
        elif kind in (b"PLTE", b"tRNS", b"acTL"):
            plain = False
        position = end + 4
    else:
        return "truncated PNG file (no IEND chunk)", None
    if not (plain and header and has_idat):
        return None, None
    from PIL import Image

    width, height, depth, colour, _, filter_method, interlace = header
    mode = PLAIN_PNG_MODES.get((depth, colour))
    if mode is None or interlace or filter_method or not 0 < width * height:
        return None, None
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        return None, None  # Image.open's decompression-bomb check decides
    return None, PngFrame((width, height), mode, data)


def crop_window(width: int, height: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the largest centred window with the target's aspect ratio
    (keras's ``smart_resize``)."""
    target_height, target_width = image_size
    return (
        min(width, height * target_width // target_height),
        min(height, width * target_height // target_width),
    )


def _too_small(width: int, height: int, image_size: tuple[int, int]) -> str | None:
    window = crop_window(width, height, image_size)
    if window[0] < image_size[1] or window[1] < image_size[0]:
        return (
            f"{width}x{height} is too small for a {image_size[1]}x{image_size[0]} crop "
            "(crop_to_aspect_ratio would enlarge it)"
        )
    return None


def inspect(
    data: bytes, relative: str, image_size: tuple[int, int], crop: bool
) -> tuple[str | None, Any]:
    """(why the file ``relative`` holding ``data`` is a bad image or None, then None when bad,
    else a plain PNG's ``PngFrame`` or the Pillow image opened on ``data``, not yet decoded,
    which the caller closes).

    Bad: unreadable by Pillow, content not of its extension's format, corrupt or truncated
    (PNG: every chunk's CRC, as ``verify()``; JPEG: its end marker; other formats are decoded
    whole, they are small or rare), or, when cropping, smaller than ``image_size``. PNG and
    JPEG are not decoded here, so the check costs a fraction of the decode.
    """
    from PIL import Image, UnidentifiedImageError

    expected = EXTENSION_FORMATS[os.path.splitext(relative)[1].lower()]
    if expected == ("PNG",) and data.startswith(PNG_SIGNATURE):
        damage, frame = _png_scan(data)
        if damage is not None:
            return f"corrupt ({damage})", None
        if frame is not None:
            reason = _too_small(*frame.size, image_size) if crop else None
            return reason, (frame if reason is None else None)
    image = None
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if image.format not in expected:
            reason = f"its content is {image.format}, its extension says {expected[0]}"
        elif image.format == "PNG":
            damage = _png_scan(data)[0]
            reason = None if damage is None else f"corrupt ({damage})"
        elif image.format in ("JPEG", "MPO"):
            reason = None if _jpeg_ends(data) else "truncated (no JPEG end marker)"
        else:
            image.load()
            reason = None
    except UnidentifiedImageError:
        reason = "not an image Pillow can read"
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        reason = f"corrupt ({' '.join(str(error).split())[:120]})"
    if reason is None and crop:
        reason = _too_small(width, height, image_size)
    if reason is not None and image is not None:
        image.close()
        image = None
    return reason, image


def check_file(root: Path, relative: str, image_size: tuple[int, int], crop: bool) -> str | None:
    """Why ``root/relative`` is a bad image file, or None (``inspect`` on its bytes)."""
    reason, image = inspect((root / relative).read_bytes(), relative, image_size, crop)
    if image is not None and not isinstance(image, PngFrame):
        image.close()
    return reason


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

    mode = COLOR_MODES[color_mode][0]
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
        crop_width, crop_height = crop_window(width, height, image_size)
        left, top = (width - crop_width) // 2, (height - crop_height) // 2
        box = (left, top, left + crop_width, top + crop_height)
    elif pad_to_aspect_ratio:
        image = _padded(image, image_size)
    size = (image_size[1], image_size[0])
    if image.size != size or box is not None:
        image = image.resize(size, _resample(interpolation), box=box)
    return image


def decode_png(frame: PngFrame, out: np.ndarray | None = None) -> np.ndarray:
    """A plain PNG's pixels, uint8 (H, W) for grey or (H, W, C), decoded by libspng
    (imagecodecs, the GIL released) into ``out`` when given; a damaged stream is an OSError."""
    try:
        import imagecodecs
    except ImportError:  # a downstream install without it: Pillow's pixels, the same bytes
        from PIL import Image

        pixels = np.asarray(Image.open(io.BytesIO(frame.file)))
        if out is None:
            return pixels
        out[...] = pixels
        return out
    try:
        return imagecodecs.spng_decode(frame.file, out=out)
    except imagecodecs.SpngError as error:
        raise OSError(f"broken PNG data: {error}") from None


def decode_row(out: np.ndarray, row: int, image: Any, settings: dict[str, Any]) -> None:
    """``image`` (opened, or a plain PNG's frame) decoded and rendered into ``out[row]``."""
    from PIL import Image

    if isinstance(image, PngFrame):
        height, width = settings["image_size"]
        mode = COLOR_MODES[settings["color_mode"]][0]
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


@dataclasses.dataclass(frozen=True)
class Contract:
    """How image files become a model's input: decoded, converted to ``color_mode``, cropped or
    padded to the aspect ratio when asked, resized to ``image_size`` (height, width) with
    Pillow's ``interpolation``; then uint8 (N, H, W, C), which the model divides by 255."""

    image_size: tuple[int, int]
    color_mode: str
    interpolation: str = "bilinear"
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False

    SCALING, LAYOUT = "uint8 pixels / 255, float32 in [0, 1]", "NHWC"

    @classmethod
    def for_shape(cls, image_shape: Sequence[int], **settings: Any) -> Contract:
        """For an (H, W, C) input: the colour mode from C, interpolation, crop, pad given."""
        height, width, channels = (int(size) for size in image_shape)
        modes = {count: name for name, (_, count) in COLOR_MODES.items()}
        if channels not in modes:
            raise DataError(f"a model input of {channels} channels takes no image files")
        return cls((height, width), modes[channels], **settings)

    @classmethod
    def for_source(cls, source: Mapping[str, Any], image_shape: Sequence[int]) -> dict | None:
        """``as_dict`` of the data ``source`` (a fetch record) gives; None for channels no
        image file has (2, or more than 4): such a model takes arrays only."""
        modes = {count for _, count in COLOR_MODES.values()}
        if len(image_shape) != 3 or int(image_shape[2]) not in modes:
            return None
        fields = ("interpolation", "crop_to_aspect_ratio", "pad_to_aspect_ratio")
        settings = {key: source[key] for key in fields if source.get(key) is not None}
        return cls.for_shape(image_shape, **settings).as_dict()

    @classmethod
    def from_record(cls, mapping: Mapping[str, Any]) -> Contract:
        """The contract an export's card or metadata records (``as_dict``)."""
        fields = {field.name for field in dataclasses.fields(cls)}
        settings = {key: value for key, value in mapping.items() if key in fields}
        settings["image_size"] = tuple(int(size) for size in settings["image_size"])
        return cls(**settings)

    def as_dict(self) -> dict[str, Any]:
        recorded = {**dataclasses.asdict(self), "image_size": list(self.image_size)}
        return {**recorded, "scaling": self.SCALING, "layout": self.LAYOUT}


def is_image_file(path: str | Path) -> bool:
    return os.path.splitext(str(path))[1].lower() in EXTENSION_FORMATS


def _walk(folder: Path) -> list[Path]:
    """The image files below ``folder``, entries sorted by name and sub-folders expanded in
    place (fetch's order); hidden entries and folder symlinks passed over."""
    found: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda entry: entry.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                found += _walk(Path(entry.path))
            elif entry.is_file() and is_image_file(entry.name):
                found.append(Path(entry.path))
    return found


def image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files named, folders walked depth first in sorted order (hidden entries and
    files of other extensions passed over, as fetch does)."""
    found: list[Path] = []
    for given in map(Path, inputs):
        if given.is_dir():
            found += _walk(given)
        elif is_image_file(given):
            found.append(given)
        else:
            raise DataError(
                f"{given} is neither a folder nor an image file "
                f"({', '.join(sorted(EXTENSION_FORMATS))})"
            )
    if not found:
        raise DataError(f"no image files in {', '.join(map(str, inputs))}")
    return found


def read_images(paths: Sequence[str | Path], contract: Contract) -> np.ndarray:
    """uint8 (N, H, W, C) pixels of ``paths`` under ``contract``, as fetch decodes them; a bad
    file is a DataError naming it and why."""
    height, width = contract.image_size
    channels = COLOR_MODES[contract.color_mode][1]
    out = np.empty((len(paths), height, width, channels), np.uint8)
    settings = dataclasses.asdict(contract)
    for row, path in enumerate(paths):
        reason, image = inspect(
            read_file(str(path)), str(path), contract.image_size, contract.crop_to_aspect_ratio
        )
        if reason is not None:
            raise DataError(f"{path}: {reason}; replace or remove the file.")
        try:
            decode_row(out, row, image, settings)
        except DECODE_ERRORS as error:
            raise DataError(f"{path} could not be decoded ({error}).") from None
    return out
