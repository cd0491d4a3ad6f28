"""train_bench: the seed models are the published designs; the kernel share adds up."""

from __future__ import annotations

import math

import pytest

from autoencoders.benchmarks import profile, training_speed


@pytest.mark.parametrize(("name", "weights"), [("dense", 50_992), ("conv", 4_385)])
def test_seed_models_have_the_published_weight_counts(name, weights):
    # The Keras blog's simple (784-32-784) and convolutional (4,385-weight) autoencoders.
    assert training_speed.seed_model(name, (28, 28, 1)).count_params() == weights


def test_kernel_share_counts_forward_and_backward_convolutions_only():
    seconds = {
        "Conv2DBackpropFilter": 3.0,
        "Conv2DBackpropInput": 2.0,
        "_FusedConv2D": 1.0,
        "DepthwiseConv2dNativeBackpropFilter": 1.0,
        "DepthwiseConv2dNativeBackpropInput": 0.5,
        "DepthwiseConv2dNative": 0.5,
        "MaxPoolGrad": 1.0,
        "AddV2": 1.0,
    }
    assert profile.kernel_share(seconds) == pytest.approx(8.0 / 10.0)
    assert math.isnan(profile.kernel_share({}))
    # The same kernels as oneDNN's native ops (seen on a CPU where TensorFlow picks them).
    mkl = {
        "_MklNativeConv2DBackpropFilterWithBias": 3.0,
        "_MklNativeConv2DBackpropInput": 2.0,
        "_MklNativeFusedConv2D": 1.0,
        "_MklNativeDepthwiseConv2dNativeBackpropFilter": 1.0,
        "_MklNativeDepthwiseConv2dNative": 1.0,
        "_MklNativeMaxPoolGrad": 1.0,
        "Sum": 1.0,
    }
    assert profile.kernel_share(mkl) == pytest.approx(8.0 / 10.0)


def test_bench_settings_are_validated():
    with pytest.raises(ValueError, match="bench_train.epochs"):
        training_speed.TrainBenchConfig(epochs=0)
    with pytest.raises(ValueError, match="bench_train.repeats"):
        training_speed.TrainBenchConfig(repeats=0)


def test_interleaved_warms_each_once_then_alternates():
    # A slow spell of the machine must fall on both trainers: they take turns.
    calls = []
    rates = training_speed.interleaved(
        lambda epochs: calls.append(("seed", epochs)),
        lambda epochs: calls.append(("project", epochs)),
        images=100,
        epochs=2,
        repeats=3,
    )
    assert calls == [("seed", 1), ("project", 1)] + [("seed", 2), ("project", 2)] * 3
    assert [len(r) for r in rates] == [3, 3] and all(v > 0 for r in rates for v in r)


def test_throughput_is_total_images_over_total_seconds():
    # 100 images in 1 s, then 100 in 3 s: 200 images in 4 s (the median would say 66.7).
    assert training_speed.throughput([100.0, 100.0 / 3]) == pytest.approx(50.0)
    # Bimodal timings as on the VM: the total follows the share of slow epochs.
    rates = [9000.0] * 5 + [6000.0] * 4
    seconds = sum(54000 / rate for rate in rates)
    assert training_speed.throughput(rates) == pytest.approx(9 * 54000 / seconds)
    for bad in ([], [100.0, 0.0]):
        with pytest.raises(ValueError, match="positive rates"):
            training_speed.throughput(bad)


def test_markdown_shows_each_repeat_of_each_trainer_and_the_variants():
    entry = {
        "parameters": 4385,
        "seed_images_per_second": 8000.0,
        "project_images_per_second": 12000.0,
        "ratio": 1.5,
        "ratio_of_medians": 1.5,
        "repeat_ratios": [2.0, 1.2],
        "seed_repeats": [6000, 10000],
        "project_repeats": [12000, 12000],
        "project_settings": {"backend": "tensorflow"},
    }
    variant = {
        "parameters": 10,
        "batch_size": 128,
        "steps_per_execution": 32,
        "jit_compile": False,
        "images_per_second": 5000.0,
    }
    report = {
        "machine": {"cpu": "x", "usable_cores": 2},
        "images": 100,
        "batch_size": 128,
        "repeats": 2,
        "epochs": 1,
        "models": {"conv": entry},
        "variants": {"conv": variant},
    }
    markdown = training_speed.render_markdown(report)
    assert "| conv | 4,385 | 8,000 | 12,000 | 1.50 | 2.00, 1.20 |" in markdown
    assert "- conv: 6,000 / 12,000, 10,000 / 12,000 (ratio of the medians 1.50)" in markdown
    assert "| `conv` | 10 | tensorflow | 128 | 32 | no | 5,000 |" in markdown
