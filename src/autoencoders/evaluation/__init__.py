"""Reconstruction and latent-space metrics, reference baselines, and the side-by-side summary.

Everything here is a plain function: numpy arrays in, a dict of floats out. Only
``model_outputs``, ``prior_samples`` and ``evaluate_autoencoder`` touch a Keras model, and they
import nothing from TensorFlow themselves (the model brings it), so the module imports fast.

Modules: ``image_quality`` (mse, bce, psnr, ssim, denoising), ``latent`` (k-means accuracy,
NMI/ARI, silhouette, linear probe), ``baselines`` (PCA, raw pixels), ``outputs`` (a model's
outputs on the test split and all its metrics, ``EvaluateParams``), ``report`` (summary rows,
the quality bar, the markdown table). Their public names are importable from here.
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
from autoencoders.evaluation.outputs import (
    TEST_METRIC_KEYS,
    EvaluateParams,
    evaluate_arrays,
    evaluate_autoencoder,
    model_outputs,
    noise_std_of,
    prior_samples,
)
from autoencoders.evaluation.report import (
    build_summary,
    metric_row,
    quality_check,
    render_summary_markdown,
    summary_row,
)

__all__ = [
    "TEST_METRIC_KEYS",
    "EvaluateParams",
    "add_noise",
    "binary_cross_entropy",
    "build_summary",
    "check_codes",
    "clustering_accuracy",
    "clustering_metrics",
    "denoising_metrics",
    "evaluate_arrays",
    "evaluate_autoencoder",
    "kmeans_labels",
    "linear_probe_accuracy",
    "mean_squared_error",
    "metric_row",
    "model_outputs",
    "noise_std_of",
    "pca_baseline",
    "pca_baseline_mse",
    "pixel_baselines",
    "prior_samples",
    "psnr",
    "psnr_from_mse",
    "quality_check",
    "reconstruction_metrics",
    "render_summary_markdown",
    "silhouette",
    "ssim",
    "ssim_per_image",
    "ssim_window_size",
    "summary_row",
]
