"""A folder of sample images to try ``data.source: images`` on, offline.

python -m autoencoders.data.samples --out data/sample-images --per-class 300 --size 64

Seeded random square crops of real photographs that ship inside installed wheels:
scikit-learn's ``load_sample_images()`` (china, flower) and scikit-image's ``skimage.data``
(astronaut, chelsea, coffee, rocket, hubble_deep_field, immunohistochemistry, retina, camera),
one class folder per photograph, each crop resized to ``size`` x ``size`` RGB and saved as PNG or
JPEG (half each, seeded). The same arguments write the same files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from autoencoders import errors, fileio, paths
from autoencoders.errors import DataError

SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
)

MARKER = ".samples.json"  # marks a folder this module wrote (and may overwrite)

FLAT_STD = 6.0  # crops flatter than this (a black sky, the retina's border) are drawn again


def photographs() -> dict[str, np.ndarray]:
    """name -> uint8 (H, W, 3) photograph, from the wheels installed (skimage's if present)."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    photos = {
        Path(name).stem: image for name, image in zip(bunch.filenames, bunch.images, strict=True)
    }
    try:
        import skimage.data
    except ImportError:
        print("[samples] scikit-image not installed: only scikit-learn's two photographs")
        return photos
    for name in SKIMAGE_PHOTOS:
        image = np.asarray(getattr(skimage.data, name)())
        photos[name] = (
            np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
        )
    return photos


def random_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded square crop (side between ``size`` and half the photo's shorter side) resized
    to ``size`` x ``size`` with Lanczos; flat crops are drawn again (up to 20 times)."""
    from PIL import Image

    height, width = photo.shape[:2]
    largest = max(size, min(height, width) // 2)
    for _ in range(20):
        side = int(rng.integers(size, largest + 1))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        crop = photo[top : top + side, left : left + side]
        if crop.std() >= FLAT_STD:
            break
    image = Image.fromarray(np.ascontiguousarray(crop)).resize(
        (size, size), Image.Resampling.LANCZOS
    )
    return np.asarray(image)


def _check_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DataError(
            f"{out} exists and was not written by autoencoders.data.samples: pick another --out "
            "(nothing there was touched)."
        )


def write_samples(
    out: str | Path, per_class: int, size: int = 64, seed: int = 0, jpeg_share: float = 0.5
) -> dict[str, Any]:
    """Write ``per_class`` crops of each photograph under ``out/<photo>/``; return a summary.
    ``out`` is replaced whole (atomically) when this module wrote it, refused otherwise."""
    from PIL import Image

    if per_class <= 0 or size <= 0:
        raise DataError(f"--per-class and --size must be positive, got {per_class}, {size}.")
    out = Path(out)
    _check_out(out)
    photos = photographs()
    rng = np.random.default_rng(seed)
    counts = {"png": 0, "jpeg": 0}
    with fileio.atomic_directory(out) as staging:
        for name in sorted(photos):
            (staging / name).mkdir()
            for index in range(per_class):
                image = Image.fromarray(random_crop(photos[name], size, rng))
                if rng.random() < jpeg_share:
                    image.save(staging / name / f"{index:05d}.jpg", quality=90)
                    counts["jpeg"] += 1
                else:
                    image.save(staging / name / f"{index:05d}.png")
                    counts["png"] += 1
        summary = {
            "classes": sorted(photos),
            "per_class": per_class,
            "size": size,
            "seed": seed,
            "files": counts,
        }
        (staging / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=paths.SAMPLE_IMAGES)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jpeg-share", type=float, default=0.5, help="share saved as JPEG (0: PNG only)"
    )
    args = parser.parse_args(argv)
    summary = write_samples(args.out, args.per_class, args.size, args.seed, args.jpeg_share)
    total = sum(summary["files"].values())
    print(
        f"[samples] {total} images of {args.size}x{args.size} in {len(summary['classes'])} "
        f"classes ({summary['files']['png']} PNG, {summary['files']['jpeg']} JPEG) -> {args.out}/"
    )


if __name__ == "__main__":
    errors.cli(main, "samples")
