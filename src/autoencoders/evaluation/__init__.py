"""Reconstruction and latent-space metrics and the reference baselines.

Everything exported here is a plain function: numpy arrays in, a dict of floats out, with no
model in sight. ``outputs`` runs a model (its names are imported from there).

Modules: ``image_quality`` (mse, bce, psnr, ssim, denoising), ``latent`` (k-means accuracy,
NMI/ARI, silhouette, linear probe), ``baselines`` (PCA, raw pixels), ``outputs`` (a model's
outputs on the test split and all its metrics, ``EvaluateParams``), ``stage`` (the
``evaluate@V`` stage's work). The metrics' public names are importable from here.
"""

from autoencoders.evaluation.baselines import pca_baseline, pca_baseline_mse, pixel_baselines
from autoencoders.evaluation.image_quality import (
    add_noise,
    binary_cross_entropy,
    denoising_metrics,
    mean_squared_error,
    psnr,
    psnr_from_mse,
    reconstruction_metrics,
    ssim,
    ssim_per_image,
    ssim_window_size,
)
from autoencoders.evaluation.latent import (
    check_codes,
    clustering_accuracy,
    clustering_metrics,
    kmeans_labels,
    linear_probe_accuracy,
    silhouette,
)

__all__ = [
    "add_noise",
    "binary_cross_entropy",
    "check_codes",
    "clustering_accuracy",
    "clustering_metrics",
    "denoising_metrics",
    "kmeans_labels",
    "linear_probe_accuracy",
    "mean_squared_error",
    "pca_baseline",
    "pca_baseline_mse",
    "pixel_baselines",
    "psnr",
    "psnr_from_mse",
    "reconstruction_metrics",
    "silhouette",
    "ssim",
    "ssim_per_image",
    "ssim_window_size",
]
