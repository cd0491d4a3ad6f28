"""The ``evaluate@V`` stage's figures of one variant, some drawn from the model itself (its
decoder on draws from the prior); ``autoencoders.plots`` draws them from arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoencoders import plots
from autoencoders.evaluation.outputs import prior_samples


def plot_variant(
    *,
    directory: Path,
    model: Any,
    outputs: dict[str, Any],
    x_test: Any,
    y_test: Any,
    history: dict[str, Any] | None,
    variant: str,
    n_examples: int,
    seed: int,
    noise_std: float,
) -> list[str]:
    """Every figure of one variant into ``directory``; returns the file names."""
    written = []
    shown = plots.example_indices(len(x_test), n_examples, y_test, seed)
    plots.plot_reconstructions(
        x_test[shown],
        outputs["test_reconstructions"][shown],
        directory / "reconstructions.png",
        n=n_examples,
        title=f"{variant}: test images (top) and reconstructions (bottom)",
    )
    written.append("reconstructions.png")
    plots.plot_code_space(
        outputs["test_codes"], y_test, directory / "code_space.png", seed=seed, title=variant
    )
    written.append("code_space.png")
    if history:
        plots.plot_training_curves(history, directory / "training_curves.png", title=variant)
        plots.write_history_csv(history, directory / plots.HISTORY_CSV)
        written += ["training_curves.png", plots.HISTORY_CSV]
    if "denoised_test" in outputs:
        plots.plot_denoising(
            outputs["noisy_test"][shown],
            outputs["denoised_test"][shown],
            x_test[shown],
            directory / "denoising.png",
            n=n_examples,
            noise_std=noise_std,
        )
        written.append("denoising.png")
    if getattr(model, "posterior", None) is not None:
        samples = prior_samples(model, n=32, seed=seed)
        plots.plot_prior_samples(samples, directory / "prior_samples.png")
        written.append("prior_samples.png")
    return written
