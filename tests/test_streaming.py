"""Later stages read shards through data.open_split: the rows equal the array the shards were
written from, the seeded order repeats, training from shards equals training from the array,
the incremental PCA baseline agrees with the exact one, the report flags other data's figures,
and a stage's peak memory stays far below the split's float32 size."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from autoencoders import data, models
from autoencoders.data import shards
from autoencoders.evaluation import baselines
from autoencoders.reporting import stage as report_stage
from autoencoders.training import loop

DENSE = {
    "architecture": {"name": "dense", "latent_dim": 4},
    "objective": {"name": "plain", "loss": "mse"},
}


def write_shards(
    directory: Path, split: str, images: np.ndarray, labels=None, rows: int = 70
) -> None:
    """``images`` (uint8) as the split's shards of ``rows`` rows each (several shards)."""
    writer = shards.ShardWriter(directory, split, images.shape[1:])
    writer.buffer = np.empty((rows, *images.shape[1:]), np.uint8)  # small shards: many maps
    writer.add(images, labels, [f"{i}.png" for i in range(len(images))])
    writer.close()


@pytest.fixture()
def sharded(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, 300)
    write_shards(tmp_path, "train", images, labels)
    return tmp_path, images, labels


def test_split_rows_and_batches_equal_the_array_they_were_written_from(sharded):
    directory, images, labels = sharded
    split = data.open_split(directory, "train")
    reference = images.astype(np.float32) / np.float32(255)
    assert not split.in_memory and len(split._source.shards) == 5
    assert len(split) == 300 and split.shape == (300, 8, 8, 3)
    np.testing.assert_array_equal(split.labels, labels)
    np.testing.assert_array_equal(np.concatenate(list(split.batches(64))), reference)
    picked = np.array([299, 3, 70, 69, 140])  # across shard boundaries, out of order
    np.testing.assert_array_equal(split.images(picked), reference[picked])
    np.testing.assert_array_equal(split.first(71), reference[:71])
    with pytest.raises(TypeError, match="batches"):
        split.array  # noqa: B018


def test_seeded_order_repeats_and_is_a_permutation(sharded):
    directory, images, _ = sharded
    split = data.open_split(directory, "train")
    reference = images.astype(np.float32) / np.float32(255)
    first = np.concatenate(list(split.batches(64, shuffle=True, seed=7)))
    again = np.concatenate(list(data.open_split(directory, "train").batches(64, True, 7)))
    other = np.concatenate(list(split.batches(64, shuffle=True, seed=8)))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    order = np.random.default_rng(7).permutation(300)  # numpy's own permutation: the reference
    np.testing.assert_array_equal(first, reference[order])


def test_sample_picks_the_rows_of_a_seeded_choice_for_shards_and_arrays(sharded):
    directory, images, labels = sharded
    chosen = np.sort(np.random.default_rng(3).choice(300, size=40, replace=False))
    reference = images.astype(np.float32) / np.float32(255)
    sample = data.open_split(directory, "train").sample(40, seed=3)
    np.testing.assert_array_equal(np.concatenate(list(sample.batches(16))), reference[chosen])
    np.testing.assert_array_equal(sample.labels, labels[chosen])
    in_memory = data.Split("train", x=reference, labels=labels).sample(40, seed=3)
    np.testing.assert_array_equal(in_memory.array, reference[chosen])
    assert data.open_split(directory, "train").sample(0, seed=3).shape == (300, 8, 8, 3)


@pytest.mark.parametrize("noise_std", [0.0, 0.2])
def test_the_shard_pipeline_gives_the_array_pipelines_batches(sharded, noise_std):
    directory, images, _ = sharded
    split = data.open_split(directory, "train")
    reference = data.to_unit_float(images)
    ours = data.make_split_dataset(split, 32, shuffle=True, seed=5, noise_std=noise_std)
    theirs = data.make_dataset(reference, 32, shuffle=True, seed=5, noise_std=noise_std)
    # Without noise the shards' batches come as uint8 and alone (the model takes the input as
    # its target and scales it in its step); with noise as (noisy, clean) float32 pairs.
    expected = np.dtype(np.uint8 if noise_std == 0 else np.float32)
    assert int(ours.cardinality()) == 10  # ceil(300 / 32): Keras knows an epoch's length
    for _ in range(2):  # two epochs: each reshuffles the same way
        pairs = list(zip(ours, theirs, strict=True))
        assert len(pairs) == 10
        for element, (x_theirs, y_theirs) in pairs:
            x_ours, y_ours = (element, element) if noise_std == 0 else element
            assert x_ours.dtype.as_numpy_dtype == expected
            scaled = [np.asarray(data.scale_batch(batch)) for batch in (x_ours, y_ours)]
            np.testing.assert_array_equal(scaled[0], x_theirs.numpy())
            np.testing.assert_array_equal(scaled[1], y_theirs.numpy())


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_models_in_step_scaling_has_the_bits_of_numpys_division(jit_compile):
    import tensorflow as tf

    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    scaled = tf.function(data.scale_batch, jit_compile=jit_compile)(tf.constant(values))
    # numpy's float32 division is the reference: a multiplication by 1/255 differs on 126 values
    np.testing.assert_array_equal(scaled.numpy(), values.astype(np.float32) / np.float32(255))
    floats = tf.constant(values.astype(np.float32))
    assert data.scale_batch(floats) is floats  # float images pass through, no op added


def test_training_from_shards_equals_training_from_the_array(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (260, 8, 8, 1), dtype=np.uint8)
    write_shards(tmp_path, "train", images[:200])
    write_shards(tmp_path, "val", images[200:])
    config = models.VariantConfig.from_params("dense", DENSE)
    arrays = data.to_unit_float(images)
    settings = dict(epochs=2, batch_size=32, learning_rate=1e-2, seed=0, patience=5)
    shard_run = loop.train_variant(
        config,
        data.open_split(tmp_path, "train"),
        data.open_split(tmp_path, "val"),
        verbose=False,
        **settings,
    )
    array_run = loop.train_variant(config, arrays[:200], arrays[200:], verbose=False, **settings)
    assert shard_run[1] == array_run[1]  # the same loss, epoch by epoch, bit for bit
    for ours, theirs in zip(shard_run[0].get_weights(), array_run[0].get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert shard_run[2]["train_images"] == 200 and shard_run[2]["val_images"] == 60


def test_incremental_pca_of_shards_agrees_with_the_exact_pca(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    # Low-rank images plus noise: the leading components are well separated.
    basis = rng.normal(size=(6, 8 * 8 * 3))
    weights = rng.normal(size=(2600, 6)) * np.array([6, 5, 4, 3, 2, 1])
    pixels = 128 + 12 * (weights @ basis) + rng.normal(scale=3, size=(2600, 192))
    images = np.clip(pixels, 0, 255).astype(np.uint8).reshape(2600, 8, 8, 3)
    write_shards(tmp_path, "train", images[:2300], rows=500)
    monkeypatch.setattr(baselines, "PCA_BATCH", 256)  # several partial fits
    x_test = data.to_unit_float(images[2300:])
    streamed = baselines.pca_baseline(data.open_split(tmp_path, "train"), x_test, [2, 4])
    exact = baselines.pca_baseline(data.to_unit_float(images[:2300]), x_test, [2, 4])
    for size in (2, 4):
        assert streamed[size]["n_components"] == exact[size]["n_components"] == size
        assert streamed[size]["mse"] == pytest.approx(exact[size]["mse"], rel=2e-3)


def test_chunked_reconstruction_metrics_equal_the_whole_split_ones():
    from autoencoders.evaluation import image_quality

    rng = np.random.default_rng(4)
    x = rng.random((50, 16, 16, 3)).astype(np.float32)
    reconstruction = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1).astype(np.float32)
    whole = image_quality.reconstruction_metrics(x, reconstruction)
    chunked = image_quality.reconstruction_metrics_in_chunks(x, reconstruction, rows=7)
    assert chunked.keys() == whole.keys()
    for key, value in whole.items():
        assert chunked[key] == pytest.approx(value, rel=1e-12)


def test_unchunked_reconstruction_metrics_are_the_whole_split_ones_exactly():
    """rows=None (the npz splits) is ``reconstruction_metrics`` itself, bit for bit."""
    from autoencoders.evaluation import image_quality

    rng = np.random.default_rng(3)
    x = rng.random((40, 8, 8, 1)).astype(np.float32)
    reconstruction = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    assert image_quality.reconstruction_metrics_in_chunks(
        x, reconstruction, rows=None
    ) == image_quality.reconstruction_metrics(x, reconstruction)


def test_the_report_names_variants_trained_on_other_data():
    collected = {
        "dense": (None, {"data_checksum": "a" * 64}, None),
        "conv": (None, {"data_checksum": "b" * 64}, None),
        "vae": (None, {}, None),  # no training record: not judged
    }
    assert report_stage.data_mismatches(collected, "b" * 64) == {"dense": "a" * 64}
    line = report_stage.mismatch_line({"dense": "a" * 64}, "b" * 64)
    assert "dense (`aaaaaaaaaaaa`)" in line and "`bbbbbbbbbbbb`" in line


PEAK_SCRIPT = """
import resource, sys
import numpy as np
from autoencoders import data
split = data.open_split(sys.argv[1], "train")
total = 0.0
for batch in split.batches(1024, shuffle=True, seed=0):
    total += float(batch.sum(dtype=np.float64))
codes = split.codes(lambda batch: batch.mean(axis=(1, 2)))
# VmHWM, this process's own high-water mark: ru_maxrss keeps the forking parent's (pytest's,
# with TensorFlow loaded) across exec on Linux.
status = open("/proc/self/status").read() if sys.platform == "linux" else ""
if "VmHWM:" in status:
    peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": peak, "total": total, "codes": list(codes.shape)}))
"""


@pytest.mark.slow
def test_peak_memory_stays_bounded_on_shards_larger_than_the_budget(tmp_path):
    """About 300 MB of uint8 shards (1.2 GB as float32): iterating every batch shuffled and
    encoding the split must stay under a 400 MB budget."""
    rng = np.random.default_rng(0)
    count, shape = 24_000, (64, 64, 3)
    writer = shards.ShardWriter(tmp_path, "train", shape)
    expected = 0
    for start in range(0, count, 2000):
        block = rng.integers(0, 256, (2000, *shape), dtype=np.uint8)
        expected += int(block.sum(dtype=np.int64))
        writer.add(block, None, [f"{start + i}.png" for i in range(2000)])
    writer.close()
    shard_bytes = sum(path.stat().st_size for path in tmp_path.glob("train-*.npy"))
    float_bytes = count * int(np.prod(shape)) * 4
    assert shard_bytes > 290e6 and float_bytes > 1.1e9
    script = "import json\n" + textwrap.dedent(PEAK_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [count, 3]
    assert report["total"] == pytest.approx(
        expected / 255, rel=1e-6
    )  # every row read once (float32 rounding)
    budget = 400e6
    assert report["peak"] < budget < float_bytes / 2, report
    Path(tmp_path / "peak.json").write_text(json.dumps(report))
