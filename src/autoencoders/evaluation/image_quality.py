"""Reconstruction metrics of images (N, H, W, C) in [0, 1], and the denoising figures.

- ``mse``: mean over every pixel of every image.
- ``bce``: binary cross-entropy, mean over every pixel (predictions clipped to [1e-7, 1 - 1e-7],
  Keras's epsilon), so it is comparable across image sizes.
- ``psnr``: 10 log10(1 / mse) of the whole split's mse (data range 1), in dB.
- ``ssim``: Wang et al. (2004) SSIM with a Gaussian window (sigma 1.5), K1 0.01, K2 0.03, data
  range 1, averaged over the valid window positions and channels of each image, then over images.
  The window is the standard 11x11; images smaller than 11 pixels on a side use the largest odd
  window that fits (7x7 for the 8x8 digits), same sigma. It matches ``tf.image.ssim``.

SSIM stays hand-written (numpy/scipy) rather than ``tf.image.ssim``: it agrees with it to 1e-4
(tests/test_evaluation.py), and switching would shift every tracked ssim figure by that much.
"""

from __future__ import annotations

import math

import numpy as np

SSIM_SIGMA = 1.5


SSIM_WINDOW = 11


SSIM_K1 = 0.01


SSIM_K2 = 0.03


BCE_EPSILON = 1e-7


def check_images(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be images (N, H, W, C), got shape {x.shape}: add a channel axis with "
            "x[..., None] for grey images."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no images: pass a non-empty split.")
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"{name} contains NaN or infinite values: the model diverged; retrain it with a "
            "lower learning_rate (or check the input data)."
        )
    return x


def check_pair(x: np.ndarray, reconstruction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = check_images(x, "x")
    reconstruction = check_images(reconstruction, "reconstruction")
    if x.shape != reconstruction.shape:
        raise ValueError(
            f"x has shape {x.shape} but reconstruction has {reconstruction.shape}: pass the "
            "model's reconstruction of exactly these images."
        )
    return x, reconstruction


def mean_squared_error(x: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean squared error over every pixel."""
    x, reconstruction = check_pair(x, reconstruction)
    difference = x.astype(np.float64) - reconstruction.astype(np.float64)
    return float(np.mean(np.square(difference)))


def binary_cross_entropy(x: np.ndarray, reconstruction: np.ndarray) -> float:
    """Binary cross-entropy (nats), mean over every pixel; predictions clipped like Keras."""
    x, reconstruction = check_pair(x, reconstruction)
    target = x.astype(np.float64)
    predicted = np.clip(reconstruction.astype(np.float64), BCE_EPSILON, 1.0 - BCE_EPSILON)
    loss = -(target * np.log(predicted) + (1.0 - target) * np.log(1.0 - predicted))
    return float(np.mean(loss))


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for a perfect reconstruction."""
    if mse < 0:
        raise ValueError(f"mse must be >= 0, got {mse}.")
    if mse == 0:
        return math.inf
    return float(10.0 * math.log10(data_range**2 / mse))


def psnr(x: np.ndarray, reconstruction: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR (dB) of the whole set: 10 log10(data_range^2 / mse)."""
    return psnr_from_mse(mean_squared_error(x, reconstruction), data_range)


def ssim_window_size(height: int, width: int) -> int:
    """11, or the largest odd size that fits an image smaller than 11 pixels on a side."""
    side = min(SSIM_WINDOW, height, width)
    return side if side % 2 == 1 else side - 1


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """The normalised 1-d Gaussian window of SSIM's separable filter: (size,) float64."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def ssim_per_image(
    x: np.ndarray,
    reconstruction: np.ndarray,
    data_range: float = 1.0,
    sigma: float = SSIM_SIGMA,
    window_size: int | None = None,
    batch_size: int = 512,
) -> np.ndarray:
    """SSIM of each image pair (N,), Gaussian window, valid positions only (see module doc)."""
    from scipy import ndimage

    x, reconstruction = check_pair(x, reconstruction)
    _, height, width, _ = x.shape
    size = window_size or ssim_window_size(height, width)
    if size < 1 or size % 2 == 0 or size > min(height, width):
        raise ValueError(
            f"SSIM window_size must be odd and at most {min(height, width)}, got {size}."
        )
    window = gaussian_window(size, sigma)
    radius = size // 2
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    def smooth(images: np.ndarray) -> np.ndarray:
        # Separable Gaussian over H and W; positions whose window leaves the image are cropped,
        # so the padding mode never matters. (n, H - 2r, W - 2r, C)
        out = ndimage.correlate1d(images, window, axis=1, mode="constant")
        out = ndimage.correlate1d(out, window, axis=2, mode="constant")
        return out[:, radius : height - radius, radius : width - radius, :]

    scores = []
    for start in range(0, x.shape[0], batch_size):
        a = x[start : start + batch_size].astype(np.float64)
        b = reconstruction[start : start + batch_size].astype(np.float64)
        mean_a, mean_b = smooth(a), smooth(b)
        var_a = smooth(a * a) - mean_a**2
        var_b = smooth(b * b) - mean_b**2
        covariance = smooth(a * b) - mean_a * mean_b
        numerator = (2 * mean_a * mean_b + c1) * (2 * covariance + c2)
        denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
        scores.append(np.mean(numerator / denominator, axis=(1, 2, 3)))
    return np.concatenate(scores)


def ssim(x: np.ndarray, reconstruction: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM over images (see module doc for the window)."""
    return float(np.mean(ssim_per_image(x, reconstruction, data_range=data_range)))


def reconstruction_metrics(x: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """``{"mse", "bce", "psnr", "ssim"}`` of a reconstruction of ``x``."""
    mse = mean_squared_error(x, reconstruction)
    return {
        "mse": mse,
        "bce": binary_cross_entropy(x, reconstruction),
        "psnr": psnr_from_mse(mse),
        "ssim": ssim(x, reconstruction),
    }


def reconstruction_metrics_in_chunks(
    x: np.ndarray, reconstruction: np.ndarray, rows: int | None
) -> dict[str, float]:
    """``reconstruction_metrics`` (exactly it when ``rows`` is None, the npz splits), else
    from ``rows`` images at a time (its float64 temporaries are
    8 bytes a pixel of the whole split otherwise): mse, bce and ssim are means over images of
    one size, so the chunks' means weighted by their rows give the same figures up to the
    summation order; psnr from the whole mse."""
    if rows is None:
        return reconstruction_metrics(x, reconstruction)
    x, reconstruction = check_pair(x, reconstruction)
    sums = {"mse": 0.0, "bce": 0.0, "ssim": 0.0}
    for start in range(0, len(x), rows):
        a, b = x[start : start + rows], reconstruction[start : start + rows]
        sums["mse"] += mean_squared_error(a, b) * len(a)
        sums["bce"] += binary_cross_entropy(a, b) * len(a)
        sums["ssim"] += float(np.sum(ssim_per_image(a, b)))
    means = {key: value / len(x) for key, value in sums.items()}
    return {**means, "psnr": psnr_from_mse(means["mse"])}


def add_noise(x: np.ndarray, noise_std: float, seed: int) -> np.ndarray:
    """``x`` plus seeded Gaussian noise of std ``noise_std``, clipped to [0, 1] (float32)."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    rng = np.random.default_rng(seed)
    noisy = np.asarray(x, dtype=np.float32) + rng.normal(0.0, noise_std, size=np.shape(x))
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def denoising_metrics(clean: np.ndarray, noisy: np.ndarray, denoised: np.ndarray) -> dict:
    """PSNR (dB) of the noisy input and of the denoised output against the clean images."""
    psnr_noisy = psnr(clean, noisy)
    psnr_denoised = psnr(clean, denoised)
    return {
        "psnr_noisy": psnr_noisy,
        "psnr_denoised": psnr_denoised,
        "psnr_gain": psnr_denoised - psnr_noisy,
    }
