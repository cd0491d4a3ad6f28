"""Architecture registry: typed configs and the builders that turn them into Keras layers.

Each architecture is a frozen config dataclass (only its own fields, in
``architecture_configs``) and a builder class (here) whose methods create the layers of one
model, each method called once per build:

- ``trunk(inputs)``: the encoder up to its code layer, ``(batch, H, W, C)`` -> features;
- ``code(features)``: the deterministic code layer (identity where the trunk's output is the code);
- ``decode(code)``: code -> ``(batch, H, W, C)`` in [0, 1] (sigmoid).

A variational objective swaps ``code`` for two Dense heads (mean, log-variance) of size
``builder.variational_latent_dim`` (the config's ``latent_dim`` where the code is a Dense layer,
else the size of the flattened trunk output, reshaped back before decoding).

Any input shape works. Convolutional stacks pool or stride with ``padding="same"`` (which pads
the bottom/right edge of odd sizes, i.e. ceil division) and the decoder crops its surplus rows
and columns at the end with ``Cropping2D``. For ``conv`` the last decoder convolution is
``valid`` whenever that still covers the input, which reproduces the Keras-blog reference
exactly on 28x28 (28 -> 14 -> 7 -> 4, decoded 4 -> 8 -> 16 -> 14 -> 28, 4,385 parameters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from keras import layers

from autoencoders.config import lookup as config_lookup
from autoencoders.config import registered_name
from autoencoders.models.architecture_configs import (
    ConvConfig,
    DeepConvConfig,
    DeepDenseConfig,
    DenseConfig,
    Seq2SeqConfig,
)
from autoencoders.models.spatial_conv import SpatialConvBuilder, SpatialConvConfig
from autoencoders.models.upsampling import UpsampledConv2D

Shape = tuple[int, int, int]


def _dense_stack(x: Any, units: Sequence[int], activation: str, prefix: str) -> Any:
    """Dense layers of ``units`` (between a trunk and its code, or back)."""
    for index, count in enumerate(units):
        x = layers.Dense(count, activation=activation, name=f"{prefix}_{index}")(x)
    return x


def _check_shape(input_shape: Any) -> Shape:
    """Validate ``input_shape`` as (H, W, C) of positive ints."""
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(size, int) and size > 0 for size in shape):
        raise ValueError(
            f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}."
        )
    return shape  # type: ignore[return-value]


def _crop_to(tensor: Any, input_shape: Shape, name: str) -> Any:
    """Crop the bottom/right surplus of a (batch, h, w, C) tensor down to input_shape."""
    height, width = tensor.shape[1], tensor.shape[2]
    surplus_h, surplus_w = height - input_shape[0], width - input_shape[1]
    if surplus_h < 0 or surplus_w < 0:  # a bug in a builder, not a user error
        raise RuntimeError(f"decoder output {height}x{width} is smaller than {input_shape}.")
    if surplus_h or surplus_w:
        # "same" pooling/striding pads odd sizes at the bottom/right, so the surplus lies there.
        tensor = layers.Cropping2D(((0, surplus_h), (0, surplus_w)), name=name)(tensor)
    return tensor


class DenseBuilder:
    """Fully connected encoder/decoder (``dense`` and ``deep_dense``)."""

    code_is_dense: ClassVar[bool] = True

    def __init__(self, config: DenseConfig | DeepDenseConfig, input_shape: Shape) -> None:
        self.config = config
        self.input_shape = input_shape
        self.variational_latent_dim: int | None = config.latent_dim

    def trunk(self, inputs: Any) -> Any:
        x = layers.Flatten(name="flatten")(inputs)  # (batch, H*W*C)
        return _dense_stack(x, self.config.hidden_units, self.config.activation, "dense")

    def code(self, features: Any) -> Any:
        return layers.Dense(
            self.config.latent_dim, activation=self.config.code_activation, name="code"
        )(features)  # (batch, latent_dim)

    def decode(self, code: Any) -> Any:
        x = _dense_stack(code, self.config.hidden_units[::-1], self.config.activation, "dense")
        x = layers.Dense(math.prod(self.input_shape), activation="sigmoid", name="pixels")(x)
        return layers.Reshape(self.input_shape, name="image")(x)  # (batch, H, W, C)


class ConvBuilder:
    """Conv + 2x2 max-pool per filter; decoder conv + 2x2 upsampling in reverse, sigmoid conv;
    with ``latent_dim``, a Dense bottleneck between the two."""

    def __init__(self, config: ConvConfig, input_shape: Shape) -> None:
        self.config = config
        self.input_shape = input_shape
        self.code_is_dense = config.latent_dim is not None
        self.variational_latent_dim: int | None = config.latent_dim
        self._feature_shape: tuple[int, int, int] | None = None

    def trunk(self, inputs: Any) -> Any:
        x = inputs
        for index, filters in enumerate(self.config.filters):
            x = layers.Conv2D(
                filters,
                self.config.kernel_size,
                activation=self.config.activation,
                padding="same",
                name=f"conv_{index}",
            )(x)
            # "same" pooling rounds odd sizes up: 28 -> 14 -> 7 -> 4.
            x = layers.MaxPooling2D(2, padding="same", name=f"pool_{index}")(x)
        self._feature_shape = tuple(x.shape[1:])
        if self.config.hidden_units:
            x = layers.Flatten(name="flatten_trunk")(x)
            return _dense_stack(x, self.config.hidden_units, self.config.activation, "hidden")
        return x  # (batch, ceil(H / 2^n), ceil(W / 2^n), filters[-1])

    def code(self, features: Any) -> Any:
        if self.config.latent_dim is None:
            return features
        flat = layers.Flatten(name="flatten")(features)
        return layers.Dense(
            self.config.latent_dim, activation=self.config.code_activation, name="code"
        )(flat)  # (batch, latent_dim)

    def _last_conv_valid(self, code_height: int, code_width: int) -> bool:
        """Whether a 'valid' last decoder conv still leaves at least HxW (the reference design:
        on 28x28 it turns 16 into 14, so that the last upsampling lands exactly on 28)."""
        steps = len(self.config.filters)
        shrink = self.config.kernel_size - 1
        height = 2 * (code_height * 2 ** (steps - 1) - shrink)
        width = 2 * (code_width * 2 ** (steps - 1) - shrink)
        return height >= self.input_shape[0] and width >= self.input_shape[1]

    def decode(self, code: Any) -> Any:
        filters = tuple(reversed(self.config.filters))
        x = code
        if self.config.latent_dim is not None:
            if self._feature_shape is None:
                raise RuntimeError("ConvBuilder.trunk must run before decode.")
            x = _dense_stack(
                code, self.config.hidden_units[::-1], self.config.activation, "unhidden"
            )
            x = layers.Dense(
                math.prod(self._feature_shape), activation=self.config.activation, name="expand"
            )(x)
            x = layers.Reshape(self._feature_shape, name="features")(x)  # (batch, h, w, f)
        last_valid = self._last_conv_valid(x.shape[1], x.shape[2])
        # conv_0, then each later convolution (and the sigmoid one) after a 2x upsampling:
        # UpsampledConv2D computes upsampling + convolution as one layer (same function).
        for index, count in enumerate(filters):
            last = index == len(filters) - 1
            layer = layers.Conv2D if index == 0 else UpsampledConv2D
            x = layer(
                count,
                self.config.kernel_size,
                activation=self.config.activation,
                padding="valid" if last and last_valid else "same",
                name=f"conv_{index}",
            )(x)
        x = UpsampledConv2D(
            self.input_shape[2],
            self.config.kernel_size,
            activation="sigmoid",
            padding="same",
            name="pixels",
        )(x)
        return _crop_to(x, self.input_shape, name="crop")  # (batch, H, W, C)


class DeepConvBuilder:
    """Strided convs, a Dense code, a Dense + reshape and transposed convs back."""

    code_is_dense: ClassVar[bool] = True

    def __init__(self, config: DeepConvConfig, input_shape: Shape) -> None:
        self.config = config
        self.input_shape = input_shape
        self.variational_latent_dim: int | None = config.latent_dim
        self._feature_shape: tuple[int, int, int] | None = None

    def trunk(self, inputs: Any) -> Any:
        x = inputs
        for index, (filters, stride) in enumerate(
            zip(self.config.filters, self.config.strides, strict=True)
        ):
            x = layers.Conv2D(
                filters,
                self.config.kernel_size,
                strides=stride,
                activation=self.config.activation,
                padding="same",
                name=f"conv_{index}",
            )(x)
        self._feature_shape = tuple(x.shape[1:])  # (h, w, filters[-1]); 28x28: (14, 14, 128)
        x = layers.Flatten(name="flatten")(x)
        return _dense_stack(x, self.config.hidden_units, self.config.activation, "hidden")

    def code(self, features: Any) -> Any:
        return layers.Dense(
            self.config.latent_dim, activation=self.config.code_activation, name="code"
        )(features)

    def decode(self, code: Any) -> Any:
        if self._feature_shape is None:
            raise RuntimeError("DeepConvBuilder.trunk must run before decode.")
        x = _dense_stack(code, self.config.hidden_units[::-1], self.config.activation, "unhidden")
        x = layers.Dense(
            math.prod(self._feature_shape), activation=self.config.activation, name="expand"
        )(x)
        x = layers.Reshape(self._feature_shape, name="features")(x)
        filters = (*reversed(self.config.filters[1:]), self.input_shape[2])  # 128, 64, 32, C
        for index, (count, stride) in enumerate(zip(filters, self.config.strides, strict=True)):
            last = index == len(filters) - 1
            x = layers.Conv2DTranspose(
                count,
                self.config.kernel_size,
                strides=stride,
                activation="sigmoid" if last else self.config.activation,
                padding="same",
                name="pixels" if last else f"deconv_{index}",
            )(x)
        return _crop_to(x, self.input_shape, name="crop")


class Seq2SeqBuilder:
    """Rows as time steps: LSTM encoder -> code; RepeatVector(H) -> LSTM -> Dense(W*C) rows."""

    code_is_dense: ClassVar[bool] = False

    def __init__(self, config: Seq2SeqConfig, input_shape: Shape) -> None:
        self.config = config
        self.input_shape = input_shape
        self.variational_latent_dim: int | None = config.latent_dim

    def trunk(self, inputs: Any) -> Any:
        height, width, channels = self.input_shape
        x = layers.Reshape((height, width * channels), name="rows")(inputs)  # (batch, H, W*C)
        units = self.config.encoder_units or self.config.latent_dim
        x = layers.LSTM(units, name="lstm")(x)  # (batch, units)
        return _dense_stack(x, self.config.hidden_units, "relu", "hidden")

    def code(self, features: Any) -> Any:
        if self.config.encoder_units is None:
            return features
        return layers.Dense(
            self.config.latent_dim, activation=self.config.code_activation, name="code"
        )(features)  # (batch, latent_dim)

    def decode(self, code: Any) -> Any:
        height, width, channels = self.input_shape
        units = self.config.decoder_units or self.config.latent_dim
        x = _dense_stack(code, self.config.hidden_units[::-1], "relu", "unhidden")
        x = layers.RepeatVector(height, name="repeat")(x)  # (batch, H, latent_dim)
        x = layers.LSTM(units, return_sequences=True, name="lstm")(x)  # (batch, H, units)
        x = layers.Dense(width * channels, activation="sigmoid", name="pixels")(x)
        return layers.Reshape(self.input_shape, name="image")(x)


class Architecture(NamedTuple):
    config_class: type
    builder_class: type


ARCHITECTURES: dict[str, Architecture] = {
    "dense": Architecture(DenseConfig, DenseBuilder),
    "deep_dense": Architecture(DeepDenseConfig, DenseBuilder),
    "conv": Architecture(ConvConfig, ConvBuilder),
    "deep_conv": Architecture(DeepConvConfig, DeepConvBuilder),
    "seq2seq": Architecture(Seq2SeqConfig, Seq2SeqBuilder),
    "spatial_conv": Architecture(SpatialConvConfig, SpatialConvBuilder),
}


def architecture_name(config: Any) -> str:
    """The registry name of an architecture config instance."""
    return registered_name(ARCHITECTURES, config, "architecture")


def lookup(name: Any) -> Architecture:
    """The registry entry for ``name``; an unknown name raises ConfigError listing the valid."""
    return config_lookup(ARCHITECTURES, name, "architecture")


def make_builder(config: Any, input_shape: Any) -> Any:
    """A fresh builder (new layers) for ``config`` on ``input_shape``."""
    return lookup(architecture_name(config)).builder_class(config, _check_shape(input_shape))


__all__ = [
    "ARCHITECTURES",
    "ConvConfig",
    "DeepConvConfig",
    "DeepDenseConfig",
    "DenseConfig",
    "Seq2SeqConfig",
    "architecture_name",
    "lookup",
    "make_builder",
]
