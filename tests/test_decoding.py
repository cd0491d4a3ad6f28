"""PNG variants through the one-pass check and decode, against Pillow's public path on the same
files: plain PNGs take the direct decoder (``imagefiles.PngFrame``, libspng; into their row when
size and mode already match), the others ``Image.open``; both give Pillow's pixels, and a
damaged stream with valid CRCs is still caught."""

from __future__ import annotations

import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from autoencoders import imagefiles
from autoencoders.data import decoding

SIZE = (10, 14)  # (height, width)
NATIVE = (13, 17)  # the images' own size: nothing to resize
BILINEAR = Image.Resampling.BILINEAR


def _image(kind: str) -> Image.Image:
    rng = np.random.default_rng(len(kind))
    if kind in ("L", "RGB", "RGBA", "LA"):
        channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[kind]
        shape = (13, 17) if channels == 1 else (13, 17, channels)
        return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), kind)
    palette = Image.fromarray(rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)).quantize(16)
    if kind == "P+tRNS":
        palette.info["transparency"] = 3
    return palette


CASES = [  # (image kind, save options, whether the direct decoder takes it)
    ("L", {}, True),
    ("RGB", {}, True),
    ("RGBA", {}, True),
    ("LA", {}, False),
    ("P", {}, False),
    ("P+tRNS", {}, False),
]


@pytest.mark.parametrize(("kind", "options", "direct"), CASES)
@pytest.mark.parametrize("color_mode", ["grayscale", "rgb", "rgba"])
@pytest.mark.parametrize("size", [SIZE, NATIVE])
def test_every_png_kind_decodes_to_pillows_pixels(
    tmp_path, kind, options, direct, color_mode, size
):
    path = tmp_path / "x.png"
    image = _image(kind)
    image.save(path, transparency=image.info.get("transparency"), **options)
    reason, opened = imagefiles.inspect(path.read_bytes(), "x.png", size, crop=False)
    assert reason is None
    assert isinstance(opened, imagefiles.PngFrame) == direct
    channels = imagefiles.COLOR_MODES[color_mode][1]
    out = np.zeros((2, *size, channels), np.uint8)  # row 1: a row that is not the block's first
    settings = {"image_size": size, "color_mode": color_mode, "interpolation": "bilinear",
                "crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False}  # fmt: skip
    reasons = decoding.decode_into(out, 1, ["x.png"], str(tmp_path), settings,
                                   threading.Event(), fail_fast=True)  # fmt: skip
    assert reasons == [None]
    with Image.open(path) as reference:
        mode = imagefiles.COLOR_MODES[color_mode][0]
        expected = np.asarray(reference.convert(mode).resize((size[1], size[0]), BILINEAR))
    np.testing.assert_array_equal(out[1], expected.reshape(*size, channels))
    assert not out[0].any()  # nothing written outside the file's row


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def test_an_interlaced_png_goes_to_image_open(tmp_path):
    # Pillow writes no Adam7 PNG: mark a plain one interlaced (its CRC fixed); the check must
    # hand it to Image.open, whose decoder knows interlacing, not to the direct decoder
    path = tmp_path / "x.png"
    _image("RGB").save(path)
    data = bytearray(path.read_bytes())
    data[8 + 8 + 12] = 1  # IHDR's interlace byte
    data[8 + 8 + 13 : 8 + 8 + 17] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    reason, opened = imagefiles.inspect(bytes(data), "x.png", SIZE, crop=False)
    assert reason is None and not isinstance(opened, imagefiles.PngFrame)
    assert opened.format == "PNG" and opened.info.get("interlace") == 1
    opened.close()


def test_a_cut_stream_with_valid_crcs_passes_the_check_and_fails_the_decode(tmp_path):
    rows = np.random.default_rng(0).integers(0, 256, (8, 1 + 8 * 3), dtype=np.uint8)
    rows[:, 0] = 0  # filter byte: none
    stream = zlib.compress(rows.tobytes())
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    cut = imagefiles.PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream[:40])
    (tmp_path / "cut.png").write_bytes(cut + _chunk(b"IEND", b""))
    whole = imagefiles.PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream)
    (tmp_path / "whole.png").write_bytes(whole + _chunk(b"IEND", b""))
    assert imagefiles.check_file(tmp_path, "cut.png", (8, 8), crop=False) is None  # CRCs fine
    out = np.zeros((2, 8, 8, 3), np.uint8)
    settings = {"image_size": (8, 8), "color_mode": "rgb", "interpolation": "bilinear",
                "crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False}  # fmt: skip
    stop = threading.Event()
    reasons = decoding.decode_into(out, 0, ["cut.png", "whole.png"], str(tmp_path), settings,
                                   stop, fail_fast=False)  # fmt: skip
    assert reasons[0].startswith("could not be decoded") and reasons[1] is None
    assert not stop.is_set()
    np.testing.assert_array_equal(out[1], rows[:, 1:].reshape(8, 8, 3))
    with Image.open(tmp_path / "whole.png") as reference:
        np.testing.assert_array_equal(out[1], np.asarray(reference))
