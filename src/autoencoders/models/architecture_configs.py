"""Typed configs of params.yaml ``variants.<v>.architecture``: one frozen dataclass per
architecture (only its own fields), each validating its values on construction (a bad value
raises ConfigError naming the key). ``architectures`` maps each registry name to its config
and its builder.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from autoencoders.config import ConfigError


def _positive(where: str, values: dict[str, Any]) -> None:
    """Raise ConfigError unless every integer (or each item of a tuple) is positive."""
    for key, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        if any(item <= 0 for item in items):
            raise ConfigError(f"{where}.{key} must be positive, got {value!r}.")


def _check_hidden_units(units: tuple[int, ...], has_dense_code: bool, code_key: str) -> None:
    """``hidden_units`` after a convolutional or LSTM trunk: positive, and only before a
    Dense code."""
    if not units:
        return
    _positive("architecture", {"hidden_units": units})
    if not has_dense_code:
        raise ConfigError(
            f"architecture.hidden_units needs a Dense code: set architecture.{code_key}."
        )


@dataclasses.dataclass(frozen=True)
class DenseConfig:
    """784 -> [hidden...] -> latent_dim -> [hidden reversed] -> 784 (the Keras-blog default)."""

    latent_dim: int = 32
    hidden_units: tuple[int, ...] = ()
    activation: str = "relu"
    code_activation: str = "relu"

    def __post_init__(self) -> None:
        _positive(
            "architecture", {"latent_dim": self.latent_dim, "hidden_units": self.hidden_units}
        )


@dataclasses.dataclass(frozen=True)
class DeepDenseConfig:
    """784-100-50-25-2 and its mirror, relu, linear 2-d code (170,536 parameters on 28x28x1)."""

    latent_dim: int = 2
    hidden_units: tuple[int, ...] = (100, 50, 25)
    activation: str = "relu"
    code_activation: str = "linear"

    def __post_init__(self) -> None:
        _positive(
            "architecture", {"latent_dim": self.latent_dim, "hidden_units": self.hidden_units}
        )


@dataclasses.dataclass(frozen=True)
class ConvConfig:
    """Conv 16-8-8 with 2x2 max-pooling, decoder 8-8-16 with upsampling (4,385 on 28x28x1).

    ``latent_dim`` None keeps the reference code, the last pooled feature map (4x4x8 = 128
    numbers on 28x28). A number adds a Dense bottleneck of that size after the trunk (activation
    ``code_activation``) and a relu Dense back to the feature map before the decoder."""

    filters: tuple[int, ...] = (16, 8, 8)
    kernel_size: int = 3
    activation: str = "relu"
    latent_dim: int | None = None
    code_activation: str = "linear"
    # Dense layers between the trunk and the Dense code (mirrored in the decoder).
    hidden_units: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _positive("architecture", {"filters": self.filters, "kernel_size": self.kernel_size})
        if self.latent_dim is not None:
            _positive("architecture", {"latent_dim": self.latent_dim})
        if not self.filters:
            raise ConfigError("architecture.filters must list at least one layer.")
        _check_hidden_units(self.hidden_units, self.latent_dim is not None, "latent_dim")


@dataclasses.dataclass(frozen=True)
class DeepConvConfig:
    """Conv 16 (stride 2), 32, 64, 128, a 256-unit sigmoid Dense code, transposed convs
    128 (stride 2), 64, 32, C. ``strides`` applies in order to both stacks."""

    filters: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 1, 1, 1)
    kernel_size: int = 3
    latent_dim: int = 256
    activation: str = "relu"
    code_activation: str = "sigmoid"
    # Dense layers between the trunk and the code (mirrored in the decoder).
    hidden_units: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _positive(
            "architecture",
            {
                "filters": self.filters,
                "strides": self.strides,
                "kernel_size": self.kernel_size,
                "latent_dim": self.latent_dim,
            },
        )
        if not self.filters:
            raise ConfigError("architecture.filters must list at least one layer.")
        _check_hidden_units(self.hidden_units, True, "latent_dim")
        if len(self.strides) != len(self.filters):
            raise ConfigError(
                f"architecture.strides needs one stride per filter ({len(self.filters)}), "
                f"got {list(self.strides)}."
            )


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig:
    """An LSTM reads the image row by row into a latent_dim code; RepeatVector; an LSTM decoder
    writes the rows back (a sigmoid Dense maps each step to a row)."""

    latent_dim: int = 64
    decoder_units: int | None = None  # None: same as latent_dim
    # None: the encoder LSTM has latent_dim units and its last state is the code (the seed
    # design). A number: an LSTM of that width, then a Dense code of latent_dim numbers.
    encoder_units: int | None = None
    code_activation: str = "linear"
    # Dense layers between the encoder LSTM and the Dense code (mirrored before the decoder).
    hidden_units: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _positive("architecture", {"latent_dim": self.latent_dim})
        for key in ("decoder_units", "encoder_units"):
            if getattr(self, key) is not None:
                _positive("architecture", {key: getattr(self, key)})
        _check_hidden_units(self.hidden_units, self.encoder_units is not None, "encoder_units")


__all__ = [
    "ConvConfig",
    "DeepConvConfig",
    "DeepDenseConfig",
    "DenseConfig",
    "Seq2SeqConfig",
]
