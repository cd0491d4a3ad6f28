"""A folder of image files as the data source: index, pre-scan, decode, shards and reader, on
folders generated here (PNG, JPEG, BMP; grey, RGB, RGBA; bad files of each kind)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoencoders import config, data, imagefiles
from autoencoders.data import folders, images, samples, shards
from autoencoders.errors import CorruptFileError

REPO = Path(__file__).resolve().parents[1]
SIZE = (12, 16)  # (height, width) the tests resize to


def _save(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def _pixels(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def make_tree(root: Path, seed: int = 0) -> Path:
    """Three classes: PNG of mixed sizes, JPEG, and a grey + RGBA + RGB mix (PNG, BMP); a file at
    the root, a text file and hidden files inside the classes, a hidden folder."""
    rng = np.random.default_rng(seed)
    for index in range(6):
        _save(root / "apples" / f"a{index}.png", _pixels(rng, 20 + 3 * index, 30 - index, 3))
    for index in range(5):
        _save(root / "berries" / f"b{index}.jpg", _pixels(rng, 24, 24, 3), quality=95)
    _save(root / "grapes" / "grey.png", _pixels(rng, 18, 22, 1))
    _save(root / "grapes" / "alpha.png", _pixels(rng, 16, 16, 4))
    _save(root / "grapes" / "plain.bmp", _pixels(rng, 25, 14, 3))
    _save(root / "grapes" / "deeper" / "nested.png", _pixels(rng, 12, 16, 3))
    _save(root / "top.png", _pixels(rng, 10, 10, 3))  # at the root: not in any class
    (root / "README.txt").write_text("about these images\n")
    (root / "apples" / "info.txt").write_text("not an image\n")
    (root / "apples" / ".DS_Store").write_bytes(b"\0\1")
    (root / "berries" / "._b0.jpg").write_bytes(b"AppleDouble")  # macOS: not a JPEG
    _save(root / ".cache" / "hidden.png", _pixels(rng, 10, 10, 3))
    return root


def params(path: Path, **overrides) -> folders.FolderParams:
    settings = {"path": str(path), "image_size": list(SIZE), **overrides}
    return config.from_mapping(folders.FolderParams, settings, "data")


def fetch(tree: Path, raw: Path, workers: int = 1, **overrides) -> dict:
    return images.fetch_images(params(tree, **overrides), raw, workers=workers)


def _pillow(path: Path, mode: str, resample=Image.Resampling.BILINEAR) -> np.ndarray:
    with Image.open(path) as image:
        converted = image.convert(mode)
        return np.asarray(converted.resize((SIZE[1], SIZE[0]), resample))


def test_index_sorts_classes_and_passes_over_root_files_hidden_and_non_images(tmp_path):
    index = folders.index_tree(make_tree(tmp_path / "tree"), "inferred")
    assert index.class_names == ["apples", "berries", "grapes"]
    pairs = index.splits["train"]
    assert [label for _, label in pairs] == [0] * 6 + [1] * 5 + [2] * 4
    assert [path for path, _ in pairs][-4:] == [
        "grapes/alpha.png", "grapes/deeper/nested.png", "grapes/grey.png", "grapes/plain.bmp",
    ]  # fmt: skip
    assert set(index.ignored) == {
        "README.txt", "top.png", "apples/.DS_Store", "apples/info.txt", "berries/._b0.jpg",
    }  # fmt: skip
    assert index.empty == [] and list(index.splits) == ["train"]


@pytest.mark.parametrize(
    ("color_mode", "mode"), [("rgb", "RGB"), ("grayscale", "L"), ("rgba", "RGBA")]
)
def test_decoded_pixels_equal_pillow_for_every_file_and_colour_mode(tmp_path, color_mode, mode):
    tree = make_tree(tmp_path / "tree")
    record = fetch(tree, tmp_path / "raw", color_mode=color_mode)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    assert record["image_shape"] == [*SIZE, channels] and record["counts"] == {"train": 15}
    raw = shards.ShardedSplit(tmp_path / "raw", "train")
    decoded = raw.take(np.arange(len(raw)))
    assert decoded.dtype == np.uint8 and decoded.shape == (15, *SIZE, channels)
    for row, relative in enumerate(raw.files()):
        expected = _pillow(tree / relative, mode).reshape(*SIZE, channels)
        np.testing.assert_array_equal(decoded[row], expected, err_msg=relative)
    np.testing.assert_array_equal(raw.labels, [0] * 6 + [1] * 5 + [2] * 4)
    assert record["class_names"] == ["apples", "berries", "grapes"]
    assert record["ignored"]["count"] == 5


def test_crop_and_pad_keep_the_aspect_ratio_and_nearest_is_honoured(tmp_path):
    tree = tmp_path / "tree"
    wide = _pixels(np.random.default_rng(1), 24, 64, 3)  # (h, w): wider than 12x16's 3:4
    _save(tree / "only" / "wide.png", wide)
    fetch(tree, tmp_path / "crop", crop_to_aspect_ratio=True, interpolation="nearest")
    cropped = shards.ShardedSplit(tmp_path / "crop", "train").take([0])[0]
    # the centred 32x24 window (w x h) of a 64x24 image, resized by Pillow
    window = Image.fromarray(wide).crop((16, 0, 48, 24))
    expected = window.resize((16, 12), Image.Resampling.NEAREST)
    np.testing.assert_array_equal(cropped, np.asarray(expected))
    fetch(tree, tmp_path / "pad", pad_to_aspect_ratio=True)
    padded = shards.ShardedSplit(tmp_path / "pad", "train").take([0])[0]
    canvas = np.zeros((48, 64, 3), np.uint8)  # 64 wide -> 48 high at 3:4, image centred
    canvas[12:36] = wide
    expected = Image.fromarray(canvas).resize((16, 12), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(padded, np.asarray(expected))
    assert padded[:2].max() == 0 and padded[-2:].max() == 0  # the zero bands survive the resize


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("x.gif", {}),
        ("x.webp", {"lossless": True}),
        ("x.tif", {}),
        ("x.tiff", {"compression": "tiff_lzw"}),
        ("x.ppm", {}),
        ("x.jpeg", {}),
    ],
)
def test_every_listed_format_passes_the_pre_scan_and_decodes_as_pillow_does(
    tmp_path, name, options
):
    path = _save(
        tmp_path / "tree" / "c" / name, _pixels(np.random.default_rng(6), 20, 26, 3), **options
    )
    assert imagefiles.check_file(tmp_path / "tree", f"c/{name}", SIZE, crop=False) is None
    fetch(tmp_path / "tree", tmp_path / "raw")
    decoded = shards.ShardedSplit(tmp_path / "raw", "train").take([0])[0]
    np.testing.assert_array_equal(decoded, _pillow(path, "RGB"))


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 30000]], np.uint16).repeat(12, 0).repeat(4, 1)
    _save(tmp_path / "tree" / "deep" / "x.png", values)
    fetch(tmp_path / "tree", tmp_path / "raw", color_mode="grayscale", image_size=[12, 16])
    row = shards.ShardedSplit(tmp_path / "raw", "train").take([0])[0, 0, ::4, 0]
    assert row.tolist() == [0, 100, 255, round(30000 / 257)]


def test_labels_null_reads_every_image_below_the_path(tmp_path):
    rng = np.random.default_rng(2)
    tree = tmp_path / "tree"
    for relative in ("root.png", "a/one.jpg", "a/b/two.png", "a/b/c/three.bmp", "z.png"):
        _save(tree / relative, _pixels(rng, 14, 18, 3))
    (tree / "a" / "notes.md").write_text("ignored")
    record = fetch(tree, tmp_path / "raw", labels=None)
    assert record["counts"] == {"train": 5} and record["class_names"] == []
    raw = shards.ShardedSplit(tmp_path / "raw", "train")
    assert raw.labels is None and not (tmp_path / "raw" / "train-labels.npy").exists()
    assert raw.files() == ["a/b/c/three.bmp", "a/b/two.png", "a/one.jpg", "root.png", "z.png"]
    card = data.preprocess(tmp_path / "raw", tmp_path / "out", 0.2, seed=0, test_fraction=0.2)
    assert card["counts"] == {"train": 3, "val": 1, "test": 1} and card["num_classes"] == 0
    assert card["class_histogram"] == {"train": None, "val": None, "test": None}
    assert data.load_split(tmp_path / "out", "train")[1] is None


def test_train_and_test_sub_trees_are_kept_as_the_test_split(tmp_path):
    rng = np.random.default_rng(3)
    for split, count in (("train", 10), ("test", 3)):
        for name in ("cats", "dogs"):
            for index in range(count):
                _save(tmp_path / "tree" / split / name / f"{index}.png", _pixels(rng, 12, 16, 3))
    record = fetch(tmp_path / "tree", tmp_path / "raw")
    assert record["counts"] == {"train": 20, "test": 6}
    card = data.preprocess(tmp_path / "raw", tmp_path / "out", 0.1, seed=0)
    assert card["counts"] == {"train": 18, "val": 2, "test": 6}
    assert card["class_histogram"]["test"] == [3, 3] and card["class_names"] == ["cats", "dogs"]
    assert card["test_split"] == "the folder's test/ sub-tree"
    assert shards.ShardedSplit(tmp_path / "out", "test").files()[0] == "test/cats/0.png"


def test_normal_classes_on_shards_keep_the_rows_the_npz_path_keeps(tmp_path):
    """The same images as shards and as an npz: data.normal_classes keeps the same train and
    val rows and sets the same other validation images aside as val_anomalies."""
    rng = np.random.default_rng(8)
    for name, count in (("ants", 12), ("bees", 9), ("wasps", 7)):
        for index in range(count):
            _save(tmp_path / "tree" / name / f"{index}.png", _pixels(rng, 10, 10, 3))
    fetch(tmp_path / "tree", tmp_path / "raw")
    plain = data.preprocess(tmp_path / "raw", tmp_path / "plain", 0.25, seed=1)
    card = data.preprocess(tmp_path / "raw", tmp_path / "out", 0.25, seed=1, normal_classes=[1])
    assert card["normal_classes"] == [1] and "normal_classes" not in plain
    splits = {name: data.load_split(tmp_path / "plain", name) for name in data.SPLITS}
    reference = data.classes.split_normal(splits, [1])  # the npz path's filter
    for name in ("train", "val", "test"):
        x, y = data.load_split(tmp_path / "out", name)
        np.testing.assert_array_equal(x, reference[name][0])
        np.testing.assert_array_equal(y, reference[name][1])
    x, y = data.load_val_anomalies(tmp_path / "out")
    np.testing.assert_array_equal(x, reference["val_anomalies"][0])
    assert set(y.tolist()) == {0, 2} and len(y) + card["counts"]["val"] == plain["counts"]["val"]
    assert card["counts"]["val_anomalies"] == len(y)
    assert list(card["split_sha256"]) == ["train", "val", "test", "val_anomalies"]
    assert data.load_val_anomalies(tmp_path / "plain") is None
    with pytest.raises(config.ConfigError, match=r"names class\(es\) \[7\]"):
        data.preprocess(tmp_path / "raw", tmp_path / "bad", 0.25, seed=1, normal_classes=[7])
    assert not (tmp_path / "bad").exists()


def _contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_fetch_and_splits_are_identical_across_runs_and_worker_counts(tmp_path):
    tree = make_tree(tmp_path / "tree")
    for extra in range(60):  # more than one chunk, so two workers share the work
        _save(
            tree / "apples" / f"x{extra:02d}.png", _pixels(np.random.default_rng(extra), 9, 9, 3)
        )
    fetch(tree, tmp_path / "raw1", workers=1)
    fetch(tree, tmp_path / "raw2", workers=2)
    assert _contents(tmp_path / "raw1") == _contents(tmp_path / "raw2")
    first = data.preprocess(tmp_path / "raw1", tmp_path / "a", 0.2, seed=5, test_fraction=0.2)
    again = data.preprocess(tmp_path / "raw2", tmp_path / "b", 0.2, seed=5, test_fraction=0.2)
    other = data.preprocess(tmp_path / "raw1", tmp_path / "c", 0.2, seed=6, test_fraction=0.2)
    assert _contents(tmp_path / "a") == _contents(tmp_path / "b")
    assert first["checksum"] == again["checksum"] != other["checksum"]
    # stratified: a fifth of each class is test, a fifth of the rest validation
    assert first["class_histogram"]["test"] == [13, 1, 1]
    assert sum(first["counts"].values()) == 75
    rows = np.concatenate([data.load_split(tmp_path / "a", s)[0] for s in data.SPLITS])
    raw = shards.ShardedSplit(tmp_path / "raw1", "train").to_array()
    assert sorted(map(bytes, rows)) == sorted(map(bytes, raw))  # every image in one split


def make_bad_tree(root: Path) -> Path:
    """A good class, plus one bad file of each kind and an empty class folder."""
    rng = np.random.default_rng(4)
    for index in range(4):
        _save(root / "good" / f"{index}.png", _pixels(rng, 20, 20, 3))
    corrupt = _save(root / "mixed" / "corrupt.png", _pixels(rng, 20, 20, 3)).read_bytes()
    middle = len(corrupt) // 2
    (root / "mixed" / "corrupt.png").write_bytes(
        corrupt[:middle] + bytes([corrupt[middle] ^ 0xFF]) + corrupt[middle + 1 :]
    )
    whole = _save(root / "mixed" / "cut.jpg", _pixels(rng, 40, 40, 3)).read_bytes()
    (root / "mixed" / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    (root / "mixed" / "renamed.png").write_text("a text file with an image's name\n")
    _save(root / "mixed" / "really-png.jpg", _pixels(rng, 20, 20, 3), format="PNG")
    _save(root / "mixed" / "fine.png", _pixels(rng, 20, 20, 3))
    (root / "empty").mkdir()
    return root


BAD = {
    "empty/": "empty class folder",
    "mixed/corrupt.png": "corrupt",
    "mixed/cut.jpg": "truncated",
    "mixed/really-png.jpg": "its content is PNG, its extension says JPEG",
    "mixed/renamed.png": "not an image Pillow can read",
}


def test_bad_files_fail_the_fetch_in_one_line_and_keep_the_previous_output(tmp_path):
    good = make_tree(tmp_path / "good")
    fetch(good, tmp_path / "raw")
    before = _contents(tmp_path / "raw")
    with pytest.raises(data.DataError) as raised:
        fetch(make_bad_tree(tmp_path / "bad"), tmp_path / "raw")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("5 bad image files in ")
    # the first three in file order, then a count; reasons from the pre-scan, not the decode
    assert "mixed/corrupt.png (corrupt" in message and "mixed/cut.jpg (truncated" in message
    assert "mixed/really-png.jpg (its content is PNG" in message and "and 2 more" in message
    assert "data.on_bad_file: skip" in message
    assert _contents(tmp_path / "raw") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "raw"]


def test_bad_files_are_found_the_same_by_one_thread_or_two(tmp_path):
    """More than two chunks, so both threads meet files; the same message as one thread's,
    and the same shards when skipping."""
    tree = make_bad_tree(tmp_path / "tree")
    for extra in range(150):
        _save(
            tree / "good" / f"x{extra:03d}.png", _pixels(np.random.default_rng(extra), 20, 20, 3)
        )
    messages = []
    for workers in (1, 2):
        with pytest.raises(data.DataError) as raised:
            fetch(tree, tmp_path / "raw", workers=workers)
        messages.append(str(raised.value))
        fetch(tree, tmp_path / f"skip{workers}", workers=workers, on_bad_file="skip")
    assert messages[0] == messages[1] and messages[0].startswith("5 bad image files in ")
    assert _contents(tmp_path / "skip1") == _contents(tmp_path / "skip2")
    assert not (tmp_path / "raw").exists()


def test_on_bad_file_skip_leaves_them_out_and_lists_each_in_the_card(tmp_path):
    fetch(make_bad_tree(tmp_path / "tree"), tmp_path / "raw", on_bad_file="skip")
    card = data.preprocess(tmp_path / "raw", tmp_path / "out", 0.2, seed=0, test_fraction=0.2)
    skipped = {entry["path"]: entry["reason"] for entry in card["skipped"]}
    assert sorted(skipped) == sorted(BAD)
    for path, reason in BAD.items():
        assert reason in skipped[path], (path, skipped[path])
    assert card["class_names"] == ["good", "mixed"]  # the empty folder is no class
    assert sum(card["counts"].values()) == 5
    kept = [f for s in data.SPLITS for f in shards.ShardedSplit(tmp_path / "out", s).files()]
    assert sorted(kept) == [
        "good/0.png",
        "good/1.png",
        "good/2.png",
        "good/3.png",
        "mixed/fine.png",
    ]


def test_an_image_too_small_to_crop_is_a_bad_file(tmp_path):
    rng = np.random.default_rng(5)
    _save(tmp_path / "tree" / "c" / "big.png", _pixels(rng, 30, 40, 3))
    _save(tmp_path / "tree" / "c" / "small.png", _pixels(rng, 11, 40, 3))  # 11 < 12 rows
    with pytest.raises(data.DataError, match=r"c/small.png \(40x11 is too small for a 16x12"):
        fetch(tmp_path / "tree", tmp_path / "raw", crop_to_aspect_ratio=True)
    record = fetch(tmp_path / "tree", tmp_path / "raw")  # resized, not cropped: fine
    assert record["counts"] == {"train": 2}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"image_size": [0, 64]}, "data.image_size must be [height, width], two positive"),
        ({"image_size": [64]}, "data.image_size must be [height, width]"),
        ({"color_mode": "cmyk"}, "data.color_mode must be one of ['grayscale', 'rgb', 'rgba']"),
        ({"interpolation": "cubic"}, "data.interpolation must be one of ['nearest'"),
        ({"labels": "folders"}, "data.labels must be one of ['inferred']"),
        ({"on_bad_file": "ignore"}, "data.on_bad_file must be one of ['fail', 'skip']"),
        ({"test_fraction": 1.5}, "data.test_fraction must lie strictly between 0 and 1"),
        ({"colour_mode": "rgb"}, "data: unknown key(s) ['colour_mode']"),
        ({"path": None}, "data.path is not set"),
        ({"crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, "data.crop_to_aspect"),
    ],
)
def test_bad_image_params_fail_in_one_line_naming_the_key(settings, message):
    section = {"source": "images", "path": "somewhere", **settings}
    with pytest.raises(config.ConfigError) as raised:
        config.from_mapping(data.DataParams, section, "data")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_fetch_stage_names_the_key_and_a_missing_folder(tmp_path):
    def stage(data_section: dict) -> str:
        (tmp_path / "params.yaml").write_text(json.dumps({"data": data_section}))
        result = subprocess.run(
            [sys.executable, str(REPO / "pipeline" / "fetch.py")],
            cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 1
        return result.stderr.strip()

    line = stage({"source": "images", "path": "x", "image_size": [0, 64]})
    assert line.startswith("fetch: error: data.image_size must be") and "\n" not in line
    line = stage({"source": "images", "path": str(tmp_path / "absent")})
    absent = tmp_path / "absent"
    assert line == f"fetch: error: data.path {absent} is not a directory: point it at your images."


def test_shards_checksums_and_the_memmap_reader_agree_with_the_decoded_arrays(
    tmp_path, monkeypatch
):
    tree = make_tree(tmp_path / "tree")
    monkeypatch.setattr(shards, "SHARD_BYTES", 4 * SIZE[0] * SIZE[1] * 3)  # 4 images a shard
    fetch(tree, tmp_path / "raw")
    card = data.preprocess(tmp_path / "raw", tmp_path / "out", 0.2, seed=1, test_fraction=0.2)
    out = tmp_path / "out"
    assert card["counts"] == {"train": 9, "val": 3, "test": 3}
    names = [p.name for p in shards.shard_paths(out, "train")]
    assert names == ["train-00000.npy", "train-00001.npy", "train-00002.npy"]
    for name, sha in card["shards"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha
    shards.verify(out, card["shards"])
    mapped = np.load(out / "train-00000.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.uint8 and len(mapped) == 4
    split = shards.ShardedSplit(out, "train", batch_size=3)
    x, y = data.load_split(out, "train")
    assert len(split) == 9 and split.shape == (9, *SIZE, 3) == x.shape and x.dtype == np.float32
    np.testing.assert_array_equal(split.labels, y)
    assert split.num_batches == 3
    np.testing.assert_array_equal(np.concatenate([split.batch(i) for i in range(3)]), x)
    np.testing.assert_array_equal(x, split.take(np.arange(9)) / np.float32(255))
    batches = list(data.iter_batches(out, "train", batch_size=4))  # across shard boundaries
    assert [len(b) for b in batches] == [4, 4, 1] and all(b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), x)
    shuffled = list(data.iter_batches(out, "train", 3, shuffle=True, seed=2, with_labels=True))
    again = list(data.iter_batches(out, "train", 3, shuffle=True, seed=2, with_labels=True))
    order = np.random.default_rng(2).permutation(9)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in shuffled]), x[order])
    np.testing.assert_array_equal(np.concatenate([lab for _, lab in again]), y[order])
    assert [len(b) for b in data.iter_batches(out, "train", 4, drop_remainder=True)] == [4, 4]
    assert card["dtype"] == "uint8" and card["input_shape"] == [*SIZE, 3]
    assert card["pixel_mean"]["train"] == round(float(x.astype(np.float64).mean()), 6)
    flipped = bytearray((out / "val-00000.npy").read_bytes())
    flipped[-1] ^= 0xFF
    (out / "val-00000.npy").write_bytes(bytes(flipped))
    with pytest.raises(CorruptFileError, match="val-00000.npy is unreadable"):
        shards.verify(out, card["shards"])


def test_sample_images_are_seeded_crops_of_bundled_photographs(tmp_path):
    first = samples.write_samples(tmp_path / "a", per_class=4, size=16, seed=3)
    samples.write_samples(tmp_path / "b", per_class=4, size=16, seed=3)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    assert {"china", "flower", "astronaut", "camera"} <= set(first["classes"])
    assert sum(first["files"].values()) == 4 * len(first["classes"]) and min(
        first["files"].values()
    )
    index = folders.index_tree(tmp_path / "a", "inferred")
    assert index.class_names == first["classes"] and not index.empty
    record = fetch(tmp_path / "a", tmp_path / "raw", image_size=[16, 16])
    assert record["image_shape"] == [16, 16, 3] and record["skipped"] == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(data.DataError, match="not written by autoencoders.data.samples"):
        samples.write_samples(tmp_path / "mine", per_class=1, size=16)
    assert (tmp_path / "mine" / "photo.jpg").read_bytes() == b"x"


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_params_yaml_data_path_names_a_directory_for_dvc():
    # dvc.yaml's fetch depends on ${data.path}: a null or missing one stops every `dvc repro`.
    section = config.section(config.load_params(REPO / "params.yaml"), "data")
    settings = config.from_mapping(data.DataParams, section, "data")
    assert (REPO / settings.path).is_dir()
    assert "${data.path}" in (REPO / "dvc.yaml").read_text()


@pytest.mark.parametrize(
    "settings",
    [
        {"color_mode": "rgb"},
        {"color_mode": "grayscale", "interpolation": "lanczos", "crop_to_aspect_ratio": True},
        {"color_mode": "rgba", "pad_to_aspect_ratio": True},
    ],
)
def test_new_image_files_decode_to_the_pixels_fetch_gives_them(tmp_path, settings):
    """The input contract a data card records, applied to the same files by
    ``imagefiles.read_images`` (what the CLI, ``Encoder.read_images`` and co. call), gives
    fetch's pixels bit for bit, folder order included."""
    tree = make_tree(tmp_path / "tree")
    if settings.get("crop_to_aspect_ratio"):
        for small in ("deeper/nested.png", "plain.bmp"):  # smaller than the crop
            (tree / "grapes" / small).unlink()
    record = fetch(tree, tmp_path / "raw", **settings)
    raw = shards.ShardedSplit(tmp_path / "raw", "train")
    fetched = raw.take(np.arange(len(raw)))
    contract = imagefiles.Contract.from_record(
        imagefiles.Contract.for_source(record, record["image_shape"])
    )
    assert contract == imagefiles.Contract(SIZE, **settings)
    paths = imagefiles.image_paths([tree / name for name in ("apples", "berries", "grapes")])
    assert [path.relative_to(tree).as_posix() for path in paths] == list(raw.files())
    np.testing.assert_array_equal(imagefiles.read_images(paths, contract), fetched)
