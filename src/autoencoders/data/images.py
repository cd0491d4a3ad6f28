"""The ``images`` source from folder to splits, decoded once and never held whole in memory.

``fetch_images``: index the folder (``folders.index_tree``), then read, check
(``imagefiles.inspect``: headers, PNG CRCs, JPEG end markers) and decode every file once, in
threads over every core, straight into blocks of one shard's rows, written to ``data/raw/``
uint8 shards (``train``, and ``test`` for a tree with ``train/`` and ``test/``) with
``source.json``. A bad file fails the stage naming how many and the first few (from then on the
files are only checked, not decoded, and nothing is left written), or is skipped and listed
(``on_bad_file``). ``preprocess_shards``: seeded, class-stratified test (unless the tree had
one) and validation splits, gathered from the raw shards chunk by chunk into
``data/processed/{train,val,test}-NNNNN.npy`` with labels, file lists and ``card.json`` (and
``val_anomalies`` with ``data.normal_classes``).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from autoencoders import fileio, imagefiles
from autoencoders.data import classes, decoding, folders, shards
from autoencoders.errors import DataError
from autoencoders.threads import usable_cores

GATHER_ROWS = 4096  # rows copied from the raw shards at a time by preprocess

SHOWN_BAD_FILES = 3


def bad_files_message(root: Path, bad: dict[str, str]) -> str:
    shown = "; ".join(f"{path} ({reason})" for path, reason in list(bad.items())[:SHOWN_BAD_FILES])
    more = f"; and {len(bad) - SHOWN_BAD_FILES} more" if len(bad) > SHOWN_BAD_FILES else ""
    return (
        f"{len(bad)} bad image files in {root}: {shown}{more}. Fix or remove them, or set "
        "data.on_bad_file: skip to leave them out (the data card lists each)."
    )


def _relabel(index: folders.Index, bad: dict[str, str]) -> tuple[np.ndarray | None, list[str]]:
    """(old label -> new label over the classes that still hold a good image, their names)."""
    if not index.class_names:
        return None, []
    present = sorted(
        {label for pairs in index.splits.values() for path, label in pairs if path not in bad}
    )
    relabel = np.full(len(index.class_names), -1, np.int64)
    relabel[present] = np.arange(len(present))
    return relabel, [index.class_names[old] for old in present]


class _Decoder:
    """What every block of a fetch shares: the folder, the settings, the thread pool, the
    flag that turns decoding into checking once a bad file will fail the stage."""

    def __init__(self, root: Path, params: folders.FolderParams, executor, progress) -> None:
        self.root, self.executor, self.progress = root, executor, progress
        self.settings = {
            "image_size": params.image_size,
            "color_mode": params.color_mode,
            "interpolation": params.interpolation,
            "crop_to_aspect_ratio": params.crop_to_aspect_ratio,
            "pad_to_aspect_ratio": params.pad_to_aspect_ratio,
        }
        self.fail_fast = params.on_bad_file == "fail"
        self.check_only = threading.Event()
        self.with_labels = params.labels is not None

    def block(self, out: np.ndarray, relatives: list[str]) -> list[str | None]:
        return decoding.decode_block(
            out, relatives, self.root, self.settings, self.check_only, self.fail_fast,
            self.executor, self.progress,
        )  # fmt: skip

    def submit(self, function, *arguments):
        """``function(*arguments)`` on the pool (a shard write beside the next block's decode),
        or at once without one; a future-like with ``result()`` either way."""
        if self.executor is not None:
            return self.executor.submit(function, *arguments)
        function(*arguments)
        return _Done()


class _Done:
    def result(self) -> None:
        return None


def _decode_split(decoder: _Decoder, pairs, writer: shards.ShardWriter) -> dict[str, str]:
    """Decode ``pairs`` block by block (one shard's rows each, two blocks alternating so that
    one is written while the next decodes) into ``writer``; return the bad files."""
    rows = writer.rows_per_shard
    buffers: list[np.ndarray] = []
    failures: dict[str, str] = {}
    pending = _Done()
    try:
        for number, start in enumerate(range(0, len(pairs), rows)):
            block = pairs[start : start + rows]
            if len(buffers) < 2:
                shape = (min(rows, len(pairs) - start), *writer.image_shape)
                buffers.append(np.empty(shape, np.uint8))
            out = buffers[number % 2]
            reasons = decoder.block(out, [path for path, _ in block])
            failures.update({path: r for (path, _), r in zip(block, reasons, strict=True) if r})
            if decoder.check_only.is_set():
                continue  # the stage fails once every file is checked: nothing more is written
            good = [row for row, reason in enumerate(reasons) if reason is None]
            images = out[: len(block)] if len(good) == len(block) else out[good]
            labels = np.array([block[row][1] for row in good]) if decoder.with_labels else None
            pending.result()  # the previous block is on disk: its buffer is free for the next
            files = [block[row][0] for row in good]
            pending = decoder.submit(writer.write_shard, images, labels, files)
    finally:
        pending.result()  # never leave a write running into a staging folder being removed
    return failures


def fetch_images(
    params: folders.FolderParams, raw_dir: str | Path, workers: int | None = None
) -> dict[str, Any]:
    """Decode the folder ``params.path`` once into ``raw_dir``'s uint8 shards + source.json;
    return the record (without seconds: it must hash the same on every fetch)."""
    root = params.check_path()
    index = folders.index_tree(root, params.labels)
    workers = usable_cores() if workers is None else workers
    total = sum(len(pairs) for pairs in index.splits.values())
    channels = imagefiles.COLOR_MODES[params.color_mode][1]
    with contextlib.ExitStack() as stack:
        executor = None
        if workers > 1 and total > decoding.CHUNK_FILES:
            executor = stack.enter_context(decoding.make_executor(workers))
        progress = stack.enter_context(
            tqdm(
                total=total,
                desc="  decode",
                unit="img",
                file=sys.stderr,
                mininterval=0.5,
                disable=total < 1000,
            )  # fmt: skip
        )
        decoder = _Decoder(root, params, executor, progress)
        if index.empty and decoder.fail_fast:
            decoder.check_only.set()  # an empty class folder fails the stage: check, no decode
        with fileio.atomic_directory(raw_dir) as staging:
            writers, bad = {}, {}
            for split, pairs in index.splits.items():
                writers[split] = shards.ShardWriter(staging, split, (*params.image_size, channels))
                bad.update(_decode_split(decoder, pairs, writers[split]))
            bad.update({folder: "empty class folder: no image files" for folder in index.empty})
            if bad and decoder.fail_fast:
                raise DataError(bad_files_message(root, bad))
            relabel, class_names = _relabel(index, bad)
            written = {split: writer.close(relabel) for split, writer in writers.items()}
            record = _source_record(params, index, class_names, written, bad)
            fileio.write_json(staging / "source.json", record)
    if bad or index.ignored:
        print(
            f"[fetch] images: {len(bad)} bad files skipped, {len(index.ignored)} other files "
            f"ignored (see {Path(raw_dir) / 'source.json'})",
            flush=True,
        )
    return record


def _source_record(params, index, class_names, written, bad) -> dict[str, Any]:
    checksums = {name: sha for split in written.values() for name, sha in split["files"].items()}
    channels = imagefiles.COLOR_MODES[params.color_mode][1]
    return {
        "source": "images",
        "mirror": "local folder",
        "path": params.path,
        "labels": params.labels,
        "color_mode": params.color_mode,
        "image_size": list(params.image_size),
        "interpolation": params.interpolation,
        "crop_to_aspect_ratio": params.crop_to_aspect_ratio,
        "pad_to_aspect_ratio": params.pad_to_aspect_ratio,
        "on_bad_file": params.on_bad_file,
        "class_names": class_names,
        "counts": {split: result["count"] for split, result in written.items()},
        "image_shape": [*params.image_size, channels],
        "skipped": [{"path": path, "reason": reason} for path, reason in sorted(bad.items())],
        "ignored": {"count": len(index.ignored), "first": index.ignored[:10]},
        "files_sha256": checksums,
        "dataset_sha256": shards.split_digest(checksums),
    }


def holdout(
    labels: np.ndarray | None, count: int, fraction: float, seed: int, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) sorted indices of ``count`` rows: a seeded ``fraction`` of each class
    (of all rows without labels) held out."""
    rng = np.random.default_rng(seed)
    if labels is None:
        groups = [np.arange(count)]
    else:
        groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    held = np.sort(
        np.concatenate([rng.permutation(g)[: round(len(g) * fraction)] for g in groups])
    ).astype(np.int64)
    kept = np.setdiff1d(np.arange(count), held)
    if len(held) == 0 or len(kept) == 0:
        raise DataError(
            f"data.{key} {fraction} leaves an empty split of {count} images; pick a fraction "
            "such as 0.1 or add images."
        )
    return kept, held


def _write_split(source: shards.ShardedSplit, rows: np.ndarray, staging: Path, name: str):
    """Copy ``rows`` of ``source`` into split ``name``; return (writer record, pixel mean)."""
    writer = shards.ShardWriter(staging, name, source.shape[1:])
    files = source.files()
    total = 0
    for start in range(0, len(rows), GATHER_ROWS):
        chunk = rows[start : start + GATHER_ROWS]
        images = source.take(chunk)
        total += int(images.sum(dtype=np.uint64))
        labels = None if source.labels is None else source.labels[chunk]
        writer.add(images, labels, [files[i] for i in chunk])
    result = writer.close()
    mean = total / (255.0 * len(rows) * int(np.prod(source.shape[1:])))
    return result, round(mean, 6)


def preprocess_shards(
    raw_dir: str | Path, processed_dir: str | Path, val_fraction: float, test_fraction: float,
    seed: int, normal_classes: tuple[int, ...] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The processed splits of a sharded ``data/raw`` and the data card; return the card.
    With ``normal_classes`` train and val keep those classes (``classes.normal_rows``), the
    rest of val is the ``val_anomalies`` split and the card names them, as for npz data."""
    raw_dir = Path(raw_dir)
    source = fileio.read_json(raw_dir / "source.json")
    pool = shards.ShardedSplit(raw_dir, "train")
    if shards.holds_shards(raw_dir, "test"):
        test_source = shards.ShardedSplit(raw_dir, "test")
        test = (test_source, np.arange(len(test_source)))
        kept, test_split = np.arange(len(pool)), "the folder's test/ sub-tree"
    else:
        kept, held = holdout(pool.labels, len(pool), test_fraction, seed + 1, "test_fraction")
        test, test_split = (pool, held), f"held out: test_fraction {test_fraction}, stratified"
    kept_labels = None if pool.labels is None else pool.labels[kept]
    train, val = holdout(kept_labels, len(kept), val_fraction, seed, "val_fraction")
    plan = {"train": (pool, kept[train]), "val": (pool, kept[val]), "test": test}
    if normal_classes is not None:
        plan = _normal_plan(plan, normal_classes)
    with fileio.atomic_directory(processed_dir) as staging:
        results, means = {}, {}
        for name, (split_source, rows) in plan.items():
            results[name], means[name] = _write_split(split_source, rows, staging, name)
        card = _card(source, plan, results, means, val_fraction, test_fraction, seed)
        card["test_split"] = test_split
        if normal_classes is not None:
            card["normal_classes"] = list(normal_classes)
        fileio.write_json(staging / "card.json", card)
    return card


def _normal_plan(plan: dict[str, Any], normal_classes: tuple[int, ...]) -> dict[str, Any]:
    """``plan`` with train and val cut to ``normal_classes``, the rest of val as val_anomalies."""
    (pool, train_rows), (_, val_rows) = plan["train"], plan["val"]
    labels = {"train": None, "val": None}
    if pool.labels is not None:
        labels = {"train": pool.labels[train_rows], "val": pool.labels[val_rows]}
    masks = classes.normal_rows(labels, normal_classes)
    return {
        "train": (pool, train_rows[masks["train"]]),
        "val": (pool, val_rows[masks["val"]]),
        "test": plan["test"],
        classes.VAL_ANOMALIES: (pool, val_rows[~masks["val"]]),
    }


def _card(source, plan, results, means, val_fraction, test_fraction, seed) -> dict[str, Any]:
    class_names = source.get("class_names") or []
    histogram = {}
    for name, (split_source, rows) in plan.items():
        labels = None if split_source.labels is None else split_source.labels[rows]
        histogram[name] = (
            None if labels is None else np.bincount(labels, minlength=len(class_names)).tolist()
        )
    split_sha256 = {name: shards.split_digest(results[name]["files"]) for name in plan}
    return {
        "source": source["source"],
        "mirror": source.get("mirror"),
        "path": source.get("path"),
        "raw_sha256": source.get("dataset_sha256"),
        "input_shape": list(plan["train"][0].shape[1:]),
        "dtype": "uint8",
        "format": "shards",
        "scaling": "pixel / 255 when read: float32 in [0, 1]",
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "counts": {name: results[name]["count"] for name in plan},
        "num_classes": len(class_names),
        "class_names": class_names,
        "class_histogram": histogram,
        "pixel_mean": means,
        "split_sha256": split_sha256,
        "shards": {n: sha for name in plan for n, sha in results[name]["files"].items()},
        "checksum": hashlib.sha256("".join(split_sha256.values()).encode()).hexdigest(),
        "skipped": source.get("skipped", []),
        "ignored": source.get("ignored"),
        "input_contract": imagefiles.Contract.for_source(source, list(plan["train"][0].shape[1:])),
    }
