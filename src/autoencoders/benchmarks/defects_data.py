"""The surface-defect benchmark's images: normal crops of texture photographs and synthetic
defects with ground-truth masks (``make bench-defects``; docs/defects.md).

Surfaces: scikit-image's bundled grey textures (``skimage.data.brick``, ``grass``, ``gravel``,
512x512, shipped inside the wheel, no network). Each photograph is cut into three bands of
rows, so that no pixel is shared between splits: rows [0, 320) train, [320, 416) validation,
[416, 512) test; every crop (``size`` x ``size``, default 64) lies inside one band.

Defects come in three families that never mix (the model never sees the test kinds, and
settings are chosen on the validation kinds only):

- ``TRAIN_KIND`` (what a DRAEM-style model trains on): Perlin-like blobs (smoothed lattice
  noise, thresholded) filled with patches of *other* photographs (scikit-learn's china and
  flower, scikit-image's coffee and astronaut), blended with a random opacity;
- ``VALIDATION_KINDS``: ``cutpaste`` (a rectangle of the same surface from elsewhere in the
  band, rotated 90 degrees) and ``noise`` (an elliptic blob of Gaussian noise);
- ``TEST_KINDS``: ``scratch`` (a thin curved line, dark or bright), ``hole`` (a dark ellipse
  with a soft rim) and ``stain`` (an ellipse of smoothly darkened or lightened surface).

Every function takes a seeded ``numpy.random.Generator``: the same seed gives the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SURFACES = ("brick", "grass", "gravel")
BANDS = {"train": (0, 320), "validation": (320, 416), "test": (416, 512)}
TRAIN_KIND = "perlin_patch"
VALIDATION_KINDS = ("cutpaste", "noise")
TEST_KINDS = ("scratch", "hole", "stain")
FOREIGN_PHOTOS = ("china", "flower", "coffee", "astronaut")


def surface(name: str) -> np.ndarray:
    """The grey photograph of surface ``name`` as float32 (512, 512) in [0, 1]."""
    import skimage.data

    if name not in SURFACES:
        raise ValueError(f"unknown surface {name!r}; valid surfaces are {list(SURFACES)}.")
    return np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / np.float32(255.0)


def foreign_photos() -> list[np.ndarray]:
    """Grey float32 photographs that are not surfaces: the fillers of the training defects."""
    from autoencoders.data import samples

    photos = samples.photographs()
    return [
        np.asarray(photos[name], np.float32).mean(axis=2) / np.float32(255.0)
        for name in FOREIGN_PHOTOS
        if name in photos
    ]


def crops(
    photo: np.ndarray, split: str, count: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` random ``size`` x ``size`` crops from ``split``'s band: (count, size, size, 1)."""
    top, bottom = BANDS[split]
    rows = rng.integers(top, bottom - size + 1, count)
    columns = rng.integers(0, photo.shape[1] - size + 1, count)
    return np.stack(
        [photo[r : r + size, c : c + size] for r, c in zip(rows, columns, strict=True)]
    )[..., None]


def _ellipse(size: int, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A soft elliptic blob (size, size) in [0, 1] of radii in [low, high], anywhere inside."""
    radii = rng.uniform(low, high, 2)
    centre = rng.uniform(high, size - high, 2)
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[:size, :size].astype(np.float64)
    dy, dx = y - centre[0], x - centre[1]
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / radii[0]
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / radii[1]
    distance = np.sqrt(u**2 + v**2)
    return np.clip((1.2 - distance) / 0.4, 0.0, 1.0)  # 1 inside, a rim of ~0.4 radius


def scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin quadratic Bezier line, 1-2 pixels wide, 20-45 long, dark or bright."""
    size = image.shape[0]
    start = rng.uniform(8, size - 8, 2)
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(20, 45)
    end = np.clip(start + length * np.array([np.sin(angle), np.cos(angle)]), 2, size - 3)
    middle = (start + end) / 2 + rng.normal(0, 6, 2)
    t = np.linspace(0, 1, 200)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * middle + t**2 * end
    mask = np.zeros((size, size), bool)
    width = int(rng.integers(1, 3))
    for y, x in np.round(points).astype(int):
        mask[max(0, y - width // 2) : y + (width + 1) // 2, max(0, x - width // 2) : x + 1] = True
    value = rng.uniform(0.0, 0.15) if rng.random() < 0.5 else rng.uniform(0.85, 1.0)
    out = image.copy()
    out[mask, 0] = value
    return out, mask


def hole(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark ellipse of radii 3-8 pixels with a soft rim."""
    blob = _ellipse(image.shape[0], rng, 3.0, 8.0)[..., None]
    out = image * (1 - blob) + rng.uniform(0.0, 0.12) * blob
    return out.astype(np.float32), blob[..., 0] > 0.5


def stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An ellipse of radii 5-12 pixels where the surface is darkened or lightened by 35-50%."""
    blob = _ellipse(image.shape[0], rng, 5.0, 12.0)[..., None]
    change = rng.uniform(0.35, 0.5) * (1 if rng.random() < 0.5 else -1)
    stained = np.clip(image + change * blob * (1 - image if change > 0 else image), 0, 1)
    return stained.astype(np.float32), blob[..., 0] > 0.5


def noise(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Validation kind: Gaussian noise (std 0.2-0.35) inside an ellipse of radii 4-10."""
    blob = _ellipse(image.shape[0], rng, 4.0, 10.0)[..., None]
    noisy = image + blob * rng.normal(0, rng.uniform(0.2, 0.35), image.shape)
    return np.clip(noisy, 0, 1).astype(np.float32), blob[..., 0] > 0.5


def cutpaste(
    image: np.ndarray, rng: np.random.Generator, source: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validation kind: a rectangle (8-20 a side) of ``source`` (the same surface, another
    crop), rotated 90 degrees, pasted anywhere."""
    size = image.shape[0]
    height, width = (int(v) for v in rng.integers(8, 21, 2))
    patch = np.rot90(source[:width, :height, 0])  # (height, width)
    top, left = (int(v) for v in rng.integers(0, size - max(height, width), 2))
    out, mask = image.copy(), np.zeros((size, size), bool)
    out[top : top + height, left : left + width, 0] = patch
    mask[top : top + height, left : left + width] = True
    return out, mask


def perlin_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Perlin-like blobs (size, size) bool: lattice noise at a random scale, upsampled with
    cubic splines and thresholded; redrawn until it covers 1-30% of the image."""
    from scipy import ndimage

    for _ in range(20):
        cells = int(2 ** rng.integers(1, 4))  # 2, 4 or 8 lattice cells a side
        lattice = rng.normal(size=(cells + 1, cells + 1))
        field = ndimage.zoom(lattice, size / (cells + 1), order=3)[:size, :size]
        mask = field > rng.uniform(0.6, 1.2) * field.std()
        if 0.01 <= mask.mean() <= 0.3:
            return mask
    return mask


def perlin_patch(
    image: np.ndarray, rng: np.random.Generator, fillers: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Training kind (DRAEM): a Perlin-like mask filled with a patch of a foreign photograph,
    blended with opacity 0.5-1."""
    size = image.shape[0]
    mask = perlin_mask(size, rng)
    photo = fillers[int(rng.integers(len(fillers)))]
    top = int(rng.integers(0, photo.shape[0] - size + 1))
    left = int(rng.integers(0, photo.shape[1] - size + 1))
    patch = photo[top : top + size, left : left + size, None]
    opacity = rng.uniform(0.5, 1.0)
    blend = (mask[..., None] * opacity).astype(np.float32)
    return (image * (1 - blend) + patch * blend).astype(np.float32), mask


DEFECTS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "scratch": scratch,
    "hole": hole,
    "stain": stain,
    "noise": noise,
}


def with_defects(
    images: np.ndarray, kind: str, rng: np.random.Generator, sources: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """A defect of ``kind`` on each image: (defective images, masks (N, H, W) bool).
    ``cutpaste`` takes its patches from ``sources`` (other crops of the same split)."""
    pairs = []
    for index, image in enumerate(images):
        if kind == "cutpaste":
            pairs.append(cutpaste(image, rng, sources[(index + 1) % len(sources)]))
        else:
            pairs.append(DEFECTS[kind](image, rng))
    return (
        np.stack([pair[0] for pair in pairs]).astype(np.float32),
        np.stack([pair[1] for pair in pairs]),
    )


def corrupt_for_training(
    images: np.ndarray, rng: np.random.Generator, fillers: list[np.ndarray], share: float
) -> np.ndarray:
    """A copy of ``images`` where a ``share`` of them carry a ``perlin_patch`` defect."""
    out = images.copy()
    for index in np.flatnonzero(rng.random(len(images)) < share):
        out[index] = perlin_patch(images[index], rng, fillers)[0]
    return out


__all__ = [
    "BANDS",
    "SURFACES",
    "TEST_KINDS",
    "TRAIN_KIND",
    "VALIDATION_KINDS",
    "corrupt_for_training",
    "crops",
    "foreign_photos",
    "perlin_mask",
    "surface",
    "with_defects",
]
