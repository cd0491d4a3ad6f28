"""The shards' read path against numpy's own reading of the same files: rows, gathers and
float32 batches across shard boundaries, and memory that stays bounded by the batch on shards
larger than a budget set here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoencoders.data import shards
from autoencoders.errors import CorruptFileError

REPO = Path(__file__).resolve().parents[1]


def write_split(directory: Path, images: np.ndarray, rows_per_shard: int) -> list[Path]:
    """``images`` as a split of shards of ``rows_per_shard`` rows, with labels."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = shards.ShardWriter(directory, "train", images.shape[1:])
    for start in range(0, len(images), rows_per_shard):
        block = images[start : start + rows_per_shard]
        labels = np.arange(start, start + len(block)) % 7
        writer.write_shard(block, labels, [f"{i}.png" for i in range(start, start + len(block))])
    writer.close()
    return shards.shard_paths(directory, "train")


@pytest.fixture
def split(tmp_path) -> tuple[Path, np.ndarray]:
    images = np.random.default_rng(0).integers(0, 256, (53, 5, 6, 3), dtype=np.uint8)
    write_split(tmp_path / "split", images, rows_per_shard=10)
    return tmp_path / "split", images


def _reference(directory: Path) -> np.ndarray:
    return np.concatenate([np.load(path) for path in shards.shard_paths(directory, "train")])


def test_rows_take_and_floats_equal_numpy_on_the_same_files(split):
    directory, images = split
    reference = _reference(directory)
    np.testing.assert_array_equal(reference, images)
    source = shards.ShardedSplit(directory, "train", batch_size=8)
    assert len(source) == 53 and len(source.shards) == 6
    np.testing.assert_array_equal(source.rows(7, 34), reference[7:34])  # three shards
    np.testing.assert_array_equal(source.rows(50, 99), reference[50:])  # clipped
    indices = np.random.default_rng(1).permutation(53)[:31]
    np.testing.assert_array_equal(source.take(indices), reference[indices])
    buffer = np.full((40, 5, 6, 3), 7, np.uint8)
    taken = source.take(indices, out=buffer)
    assert np.shares_memory(taken, buffer) and len(taken) == 31
    np.testing.assert_array_equal(buffer[:31], reference[indices])
    floats = reference.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(source.floats(3, 48), floats[3:48])
    np.testing.assert_array_equal(source.batch(6), floats[48:])
    np.testing.assert_array_equal(source.to_array(), floats)
    # x / 255 rounded to the nearest float32, as to_unit_float (x * float32(1 / 255) is not)
    exact = (np.arange(256) / 255).astype(np.float32)
    np.testing.assert_array_equal(shards.unit_float(np.arange(256, dtype=np.uint8)), exact)


def test_iter_batches_in_order_and_shuffled_equal_numpy(split):
    directory, _ = split
    reference = _reference(directory).astype(np.float32) / np.float32(255)
    labels = np.load(directory / "train-labels.npy")
    batches = list(shards.iter_batches(directory, "train", 8, with_labels=True))
    assert [len(x) for x, _ in batches] == [8] * 6 + [5]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), reference)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)
    order = np.random.default_rng(4).permutation(53)
    shuffled = list(
        shards.iter_batches(directory, "train", 8, shuffle=True, seed=4, with_labels=True)
    )
    np.testing.assert_array_equal(np.concatenate([x for x, _ in shuffled]), reference[order])
    np.testing.assert_array_equal(np.concatenate([y for _, y in shuffled]), labels[order])
    kept = list(shards.iter_batches(directory, "train", 8, shuffle=True, drop_remainder=True))
    assert [len(x) for x in kept] == [8] * 6


def test_a_shard_cut_short_after_it_was_opened_is_named(split):
    directory, _ = split
    source = shards.ShardedSplit(directory, "train")
    path = directory / "train-00002.npy"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="train-00002.npy is unreadable"):
        source.take([25])
    with pytest.raises(CorruptFileError, match="train-00002.npy is unreadable"):
        shards.ShardedSplit(directory, "train")


MEASURE = """
import resource, sys
import numpy as np
from autoencoders.data import images, shards
shards.SHARD_BYTES = 8 << 20  # the writer's buffer: one shard of the output
images.GATHER_ROWS = 256  # rows preprocess gathers at a time: 3 MiB
directory, out = sys.argv[1], sys.argv[2]
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
source = shards.ShardedSplit(directory, "train")
source.take([0]); source.rows(0, 1); source.floats(0, 1)  # warm: imports, first buffers
start = peak()
for _ in shards.iter_batches(directory, "train", 64, shuffle=True): pass
for _ in shards.iter_batches(directory, "train", 64): pass
passes = peak() - start
images.preprocess_shards(directory, out, val_fraction=0.1, test_fraction=0.1, seed=0)
print(passes, peak() - start)
"""


def test_passes_and_preprocess_stay_within_a_memory_budget_below_the_split(tmp_path):
    # 96 MiB of shards, a budget of 32 MiB: a batch of 64 float32 images is 3 MiB; preprocess
    # holds the writer's one shard (8 MiB here) and a gather of GATHER_ROWS rows (3 MiB here)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (8192, 64, 64, 3), dtype=np.uint8)
    write_split(tmp_path / "raw", images, rows_per_shard=2048)
    (tmp_path / "raw" / "source.json").write_text('{"source": "images", "class_names": []}')
    del images
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "raw"), str(tmp_path / "out")],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    passes, total = map(float, result.stdout.split())
    assert passes < 32, f"two passes over 96 MiB of shards grew the peak RSS by {passes} MiB"
    assert total < 32, f"preprocess of 96 MiB of shards grew the peak RSS by {total} MiB"
