"""Architecture registry: typed configs and the builders that turn them into Keras layers.

Each architecture is a frozen config dataclass (only its own fields) and a builder class whose
methods create the layers of one model, each method called once per build:

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

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import keras
import numpy as np
from keras import layers, ops

from autoencoders.config import ConfigError, registered_name
from autoencoders.config import lookup as config_lookup

Shape = tuple[int, int, int]


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


def _dense_stack(x: Any, units: Sequence[int], activation: str, prefix: str) -> Any:
    """Dense layers of ``units`` (between a trunk and its code, or back)."""
    for index, count in enumerate(units):
        x = layers.Dense(count, activation=activation, name=f"{prefix}_{index}")(x)
    return x


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


def _phase_taps(kernel: int, pad_before: int) -> tuple[np.ndarray, int]:
    """How a ``kernel``-tap convolution over a 2x nearest-upsampled axis reads the axis before
    upsampling: ``taps[phase, d - d_min, t] = 1`` where output ``2i + phase`` takes tap ``t``
    from input ``i + d``, and ``-d_min`` (the zero padding needed before the first input)."""
    d_min, d_max = -pad_before // 2, (kernel - pad_before) // 2
    taps = np.zeros((2, d_max - d_min + 1, kernel), dtype="float32")
    for phase in range(2):
        for tap in range(kernel):
            taps[phase, (phase + tap - pad_before) // 2 - d_min, tap] = 1.0
    return taps, -d_min


@keras.saving.register_keras_serializable(package="autoencoders")
class UpsampledConv2D(layers.Conv2D):
    """2x nearest-neighbour upsampling followed by this ``Conv2D`` (stride 1): the same function
    of the same ``(kh, kw, C, filters)`` kernel and bias, computed on the input before upsampling.

    Each output pixel ``(2i + a, 2j + b)`` reads a small window of input pixels around ``(i, j)``
    with taps that are sums of the kernel's taps, so one convolution with ``4 * filters`` outputs
    (one group per phase ``(a, b)``) followed by a depth-to-space reshape gives the upsampled
    convolution. Its kernel is derived from the layer's own on every call (a fixed linear map),
    so the layer trains and saves exactly the weights a ``Conv2D`` would.

    Why: profiled on the seed conv autoencoder (TensorFlow, 2-core CPU), the upsampling's Tile
    and its gradient's Sum took about 10% of a training step, the ``valid`` convolution after
    an upsampling reads each input pixel four times (this form does half its multiply-adds),
    and a one-output-channel ``Conv2D`` has pathological backward kernels on the CPU (the last
    layer's took two thirds of a step; here it gets four output channels). ``make bench-train``:
    the seed conv's trainer went from 11.3k to 14.7-15.5k images/s.
    """

    def build(self, input_shape: Any) -> None:
        plain = tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
        if not plain or self.groups != 1:
            raise ValueError("UpsampledConv2D supports stride 1, dilation 1 and groups 1 only.")
        if self.data_format != "channels_last":
            raise ValueError("UpsampledConv2D supports channels_last only.")
        super().build(input_shape)  # the kernel depends on the channels only

    def _output_size(self, size: int, kernel: int) -> int:
        return 2 * size if self.padding == "same" else 2 * size - kernel + 1

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        batch, height, width, _ = input_shape
        kh, kw = self.kernel_size
        return (batch, self._output_size(height, kh), self._output_size(width, kw), self.filters)

    def call(self, inputs: Any) -> Any:
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError("UpsampledConv2D needs a static input height and width.")
        sizes = (
            self._output_size(height, self.kernel_size[0]),
            self._output_size(width, self.kernel_size[1]),
        )
        padding, phases = [], []
        for size, kernel, out in (
            (height, self.kernel_size[0], sizes[0]),
            (width, self.kernel_size[1], sizes[1]),
        ):
            # Keras' "same" pads (kernel - 1) // 2 before (TensorFlow's convention).
            taps, before = _phase_taps(kernel, (kernel - 1) // 2 if self.padding == "same" else 0)
            after = -(-out // 2) + taps.shape[1] - 1 - before - size  # ceil(out / 2) per phase
            padding.append((before, after))  # after >= 0 for stride-1 convolutions
            phases.append(taps)
        rows, cols = phases[0].shape[1], phases[1].shape[1]
        # The derived kernel as one matmul: (rows, cols, a, b) x (kh, kw) taps times the kernel.
        taps = np.einsum("adt,bes->deabts", *phases).reshape(rows * cols * 4, -1)
        kernel = ops.matmul(taps, ops.reshape(self.kernel, (taps.shape[1], -1)))
        kernel = ops.reshape(kernel, (rows, cols, 4, -1, self.filters))
        kernel = ops.transpose(kernel, (0, 1, 3, 2, 4))  # (rows, cols, C, a x b, filters)
        kernel = ops.reshape(kernel, (rows, cols, -1, 4 * self.filters))
        if padding == [(0, 0), (0, 0)]:
            mode, x = "valid", inputs
        elif padding == [((rows - 1) // 2, rows // 2), ((cols - 1) // 2, cols // 2)]:
            mode, x = "same", inputs
        else:
            mode, x = "valid", ops.pad(inputs, ((0, 0), *padding, (0, 0)))
        x = ops.conv(x, kernel, padding=mode)  # (batch, h', w', 2 * 2 * filters)
        if self.use_bias:  # bias and activation before the reshape: TensorFlow fuses them
            x = x + ops.tile(self.bias, (4,))
        if self.activation is not None:
            x = self.activation(x)
        out_h, out_w = x.shape[1], x.shape[2]
        x = ops.reshape(x, (-1, out_h, out_w, 2, 2, self.filters))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # depth to space
        x = ops.reshape(x, (-1, 2 * out_h, 2 * out_w, self.filters))
        if (2 * out_h, 2 * out_w) != sizes:  # a "valid" even kernel: one surplus row or column
            x = x[:, : sizes[0], : sizes[1]]
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
