"""Keras layers the architectures build from: ``UpsampledConv2D`` (2x upsampling and a
convolution as one layer, saved and loaded by name)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops


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
    and its gradient's Sum took a share of each training step, the ``valid`` convolution after
    an upsampling reads each input pixel four times (this form does half its multiply-adds),
    and a one-output-channel ``Conv2D`` has pathological backward kernels on the CPU (the last
    layer's took most of a step; here it gets four output channels). ``make bench-train``
    measures the trainer with it (docs/performance.md).
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
