"""A folder of image files as a data source: its params, the index of its files, the pre-scan.

``data.source: images`` reads ``data.path`` the way ``keras.utils.image_dataset_from_directory``
does (the same argument names): ``labels: inferred`` takes one class per sub-folder (sorted,
hidden ones skipped, files at the root ignored) and every image below it, ``labels: null``
every image below the path with no labels. A tree with ``train/`` and ``test/`` sub-folders
keeps that split. Files Pillow does not decode by their extension are counted and ignored.

``index_tree`` lists the files (names only, nothing opened); ``inspect`` is the cheap check
of one file's bytes (the header, PNG chunk CRCs as Pillow's ``verify()``, the JPEG end marker;
no decode), which ``decoding`` runs on each file it has read just before decoding it, so that a
file is read once; ``check_file`` is the same check of a file on disk.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Literal

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

MISSING_PATH = (
    "data.path is not set: data.source images reads a folder of images; set data.path in "
    "params.yaml (make sample-images writes one to data/sample-images)."
)

COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3), "rgba": ("RGBA", 4)}


@dataclasses.dataclass(frozen=True)
class FolderParams:
    """params.yaml ``data`` keys of the ``images`` source (keras's names where it has one).

    ``path``: the folder (inside or outside the repository); ``labels``: ``inferred`` (one
    class per sub-folder) or None; ``color_mode``: grayscale, rgb or rgba; ``image_size``:
    [height, width] every image is resized to; ``interpolation``: Pillow's filter;
    ``crop_to_aspect_ratio`` / ``pad_to_aspect_ratio``: centre-crop or zero-pad to the target's
    aspect ratio first (never distort); ``test_fraction``: the seeded, class-stratified share
    held out as test when the tree has no ``train/`` and ``test/``; ``on_bad_file``: ``fail``
    (the stage stops, naming the files) or ``skip`` (left out and listed in the data card).
    """

    # params.yaml's placeholder: an empty folder that dvc.yaml can hash whatever the source.
    path: str | None = "examples/images"
    labels: Literal["inferred"] | None = "inferred"
    color_mode: Literal["grayscale", "rgb", "rgba"] = "rgb"
    image_size: tuple[int, ...] = (64, 64)
    interpolation: Literal[
        "nearest", "bilinear", "bicubic", "lanczos", "box", "area", "hamming"
    ] = "bilinear"
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    test_fraction: float = 0.1
    on_bad_file: Literal["fail", "skip"] = "fail"

    def __post_init__(self) -> None:
        size = tuple(self.image_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(
                f"image_size must be [height, width], two positive integers, got {list(size)}."
            )
        object.__setattr__(self, "image_size", size)
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError(
                "crop_to_aspect_ratio and pad_to_aspect_ratio cannot both be true: pick one."
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(
                f"test_fraction must lie strictly between 0 and 1, got {self.test_fraction}."
            )

    def check_path(self) -> Path:
        """The folder as a Path; a DataError naming ``data.path`` when unset or not a folder."""
        if not self.path:
            raise DataError(MISSING_PATH)
        path = Path(self.path).expanduser()
        if not path.is_dir():
            raise DataError(f"data.path {self.path} is not a directory: point it at your images.")
        return path


@dataclasses.dataclass(frozen=True)
class Index:
    """The files of a folder, before any is opened.

    ``splits`` maps ``train`` (and ``test`` for a tree with both sub-folders) to sorted
    (relative path, label) pairs, the label -1 without labels; ``class_names`` are the
    sub-folders' names in label order; ``empty`` the class folders holding no image file;
    ``ignored`` the files that are not images by their extension (or lie at the root).
    """

    root: Path
    splits: dict[str, list[tuple[str, int]]]
    class_names: list[str]
    empty: list[str]
    ignored: list[str]


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in EXTENSION_FORMATS


def _walk(directory: Path, prefix: str) -> tuple[list[str], list[str]]:
    """(image files, other files) below ``directory`` as paths relative to the root, sorted
    depth first; hidden files and folders (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``)
    are passed over, folder symlinks not followed (as keras)."""
    images, others = [], []
    with os.scandir(directory) as entries:
        listed = sorted(entries, key=lambda entry: entry.name)
    for entry in listed:
        relative = f"{prefix}{entry.name}"
        if entry.name.startswith("."):
            if not entry.is_dir(follow_symlinks=False):
                others.append(relative)
        elif entry.is_dir(follow_symlinks=False):
            more_images, more_others = _walk(Path(entry.path), relative + "/")
            images += more_images
            others += more_others
        elif entry.is_file():
            (images if _is_image(entry.name) else others).append(relative)
    return images, others


def _subfolders(directory: Path) -> list[str]:
    with os.scandir(directory) as entries:
        return sorted(
            entry.name
            for entry in entries
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
        )


def _index_one(root: Path, prefix: str, labels: str | None, class_names: list[str]):
    """(pairs, empty class folders, ignored files) of one tree (the root, or train/ or test/)."""
    directory = root / prefix if prefix else root
    if labels is None:
        images, ignored = _walk(directory, prefix)
        return [(path, -1) for path in images], [], ignored
    pairs, empty, ignored = [], [], []
    with os.scandir(directory) as entries:
        ignored += sorted(prefix + e.name for e in entries if not e.is_dir(follow_symlinks=False))
    for name in _subfolders(directory):
        if name not in class_names:
            raise DataError(
                f"{directory / name} is a class folder that {root / 'train'} lacks: a test "
                "class must also be a training class (add it to train/ or remove it)."
            )
        images, others = _walk(directory / name, f"{prefix}{name}/")
        pairs += [(path, class_names.index(name)) for path in images]
        ignored += others
        if not images:
            empty.append(f"{prefix}{name}/")
    return pairs, empty, ignored


def index_tree(root: str | Path, labels: str | None) -> Index:
    """List ``root``'s images (nothing is opened): see ``Index``."""
    root = Path(root)
    split_tree = (root / "train").is_dir() and (root / "test").is_dir()
    prefixes = {"train": "train/", "test": "test/"} if split_tree else {"train": ""}
    class_names = [] if labels is None else _subfolders(root / prefixes["train"])
    splits, empty, ignored = {}, [], []
    for split, prefix in prefixes.items():
        pairs, split_empty, split_ignored = _index_one(root, prefix, labels, class_names)
        splits[split] = pairs
        empty += split_empty
        ignored += split_ignored
    if split_tree:  # the root's other entries are outside both sub-trees
        with os.scandir(root) as entries:
            ignored += sorted(e.name for e in entries if e.name not in ("train", "test"))
    if labels is not None and not class_names:
        raise DataError(
            f"{root / prefixes['train']} has no class sub-folders (labels: inferred reads one "
            "folder per class); move the images into class folders or set data.labels: null."
        )
    if not any(splits.values()):
        raise DataError(
            f"{root} holds no image files ({', '.join(sorted(EXTENSION_FORMATS))}); "
            f"{len(ignored)} other files were passed over."
        )
    return Index(root, splits, class_names, empty, ignored)


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
    animation chunk), its chunks checked: ``decoding.decode_png`` decodes it with libspng to the
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
