"""``spatial_conv``: a fully convolutional autoencoder whose code is a feature map, not a vector.

Every layer is a convolution, so the code keeps *where* things are: a code of
``(H / 2^k, W / 2^k, code_channels)`` for ``k = len(filters)`` stride-2 stages. A local defect
then changes only the code cells above it, and the decoder paints the surface back cell by
cell instead of from one global vector, which keeps the texture's detail that a Dense code
blurs away (issue 44; docs/defects.md). The bottleneck is set by ``code_channels`` and the
number of stages: too wide and the model copies defects through, too narrow and it blurs.

Layers (``padding="same"``, any input size; the surplus of odd sizes is cropped at the end):

- encoder: per ``filters[i]`` a ``kernel_size`` Conv2D with stride 2 and ``activation``, then a
  3x3 Conv2D of the same width (stride 1); the code is a 1x1 Conv2D to ``code_channels``
  (``code_activation``);
- decoder: in reverse, a 2x nearest upsampling and two ``kernel_size`` Conv2D per stage (no
  transposed convolutions: no checkerboard), then a 3x3 sigmoid Conv2D to the image's
  channels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from keras import layers

Shape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class SpatialConvConfig:
    """A fully convolutional autoencoder with a spatial code (``spatial_conv``)."""

    filters: tuple[int, ...] = (32, 64, 64)
    kernel_size: int = 3
    code_channels: int = 16
    activation: str = "relu"
    code_activation: str = "linear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(self.filters))
        sizes = {"filters": self.filters, "kernel_size": (self.kernel_size,)}
        sizes["code_channels"] = (self.code_channels,)
        for key, values in sizes.items():
            if not values or any(
                not isinstance(value, int) or isinstance(value, bool) or value <= 0
                for value in values
            ):
                raise ValueError(
                    f"architecture.{key} must be positive integers (a non-empty list for "
                    f"filters), got {getattr(self, key)!r}."
                )


class SpatialConvBuilder:
    """Builds ``SpatialConvConfig``'s layers (see the module doc)."""

    code_is_dense = False

    def __init__(self, config: SpatialConvConfig, input_shape: Shape) -> None:
        self.config = config
        self.input_shape = input_shape
        # A VAE flattens the feature map and puts its Dense heads on it.
        self.variational_latent_dim: int | None = None

    def _conv(self, x: Any, filters: int, name: str, strides: int = 1, size: int = 0) -> Any:
        return layers.Conv2D(
            filters,
            size or self.config.kernel_size,
            strides=strides,
            padding="same",
            activation=self.config.activation,
            name=name,
        )(x)

    def trunk(self, inputs: Any) -> Any:
        x = inputs
        for index, filters in enumerate(self.config.filters):
            x = self._conv(x, filters, f"down_{index}", strides=2)  # halves H and W
            x = self._conv(x, filters, f"conv_{index}", size=3)
        return x

    def code(self, features: Any) -> Any:
        return layers.Conv2D(
            self.config.code_channels,
            1,
            activation=self.config.code_activation,
            name="code",
        )(features)  # (batch, H / 2^k, W / 2^k, code_channels)

    def decode(self, code: Any) -> Any:
        x = code
        for index, filters in enumerate(reversed(self.config.filters)):
            x = layers.UpSampling2D(2, name=f"up_{index}")(x)
            x = self._conv(x, filters, f"deconv_{index}_a")
            x = self._conv(x, filters, f"deconv_{index}_b")
        x = layers.Conv2D(
            self.input_shape[2], 3, padding="same", activation="sigmoid", name="pixels"
        )(x)
        surplus_h = x.shape[1] - self.input_shape[0]
        surplus_w = x.shape[2] - self.input_shape[1]
        if surplus_h or surplus_w:
            # "same" striding pads odd sizes at the bottom/right, so the surplus lies there.
            x = layers.Cropping2D(((0, surplus_h), (0, surplus_w)), name="crop")(x)
        return x  # (batch, H, W, C)


__all__ = ["SpatialConvBuilder", "SpatialConvConfig"]
