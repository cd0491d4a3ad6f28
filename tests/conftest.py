"""Shared fixtures: small real datasets (bundled, offline) and a processed data directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Before numpy loads: `autoencoders.runtime` pins numpy's and OpenBLAS's CPU dispatch (read once,
# at numpy's first import), so this process computes as the stages and their subprocesses do.
import autoencoders.runtime  # noqa: E402, F401, I001

import numpy as np
import pytest

from autoencoders import data
from autoencoders.data import sources


def _small_splits(source: str, per_split: int) -> dict[str, np.ndarray]:
    arrays = sources.make_source_arrays(source)
    x = data.to_unit_float(arrays["x_train"])
    y = arrays["y_train"]
    order = np.random.default_rng(0).permutation(len(x))
    train, val = order[:per_split], order[per_split : 2 * per_split]
    x_test = data.to_unit_float(arrays["x_test"])[:per_split]
    return {
        "x_train": x[train],
        "y_train": y[train],
        "x_val": x[val],
        "y_val": y[val],
        "x_test": x_test,
        "y_test": arrays["y_test"][:per_split],
    }


@pytest.fixture(scope="session")
def mnist_small() -> dict[str, np.ndarray]:
    """300 train / 300 val / 300 test real MNIST digits (mnist5k), float32 NHWC in [0, 1]."""
    return _small_splits("mnist5k", 300)


@pytest.fixture(scope="session")
def digits_small() -> dict[str, np.ndarray]:
    """300 / 300 / 300 of scikit-learn's 8x8 digits, float32 (N, 8, 8, 1) in [0, 1]."""
    return _small_splits("digits", 300)


@pytest.fixture(scope="session")
def processed_dir(tmp_path_factory) -> str:
    """The real fetch + preprocess output for mnist5k (4,000 train+val, 1,000 test)."""
    root = tmp_path_factory.mktemp("mnist5k")
    data.fetch("mnist5k", root / "raw")
    data.preprocess(root / "raw", root / "processed", val_fraction=0.1, seed=0)
    return str(root / "processed")


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@contextlib.contextmanager
def start_postgres() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 for the block; yields its SQLAlchemy URL.

    Uses the Debian ``postgresql`` package (``.ci/run`` installs it when missing); the cluster
    lives in a temporary directory owned by the ``postgres`` user, with trust authentication.
    """
    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError(
            "PostgreSQL server binaries not installed (apt-get install postgresql)"
        )
    # Not under pytest's tmp dir: its 0700 parents would lock the postgres user out.
    root = Path(tempfile.mkdtemp(prefix="autoencoders-pg-"))
    cluster = root / "cluster"
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(cluster), "-A", "trust", "-U", "optuna"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-w", "-l",
            # Every worker process, trial and MLflow client holds its own pooled connections.
            str(root / "server.log"), "-o",
            f"-h 127.0.0.1 -p {port} -k {root} -c max_connections=400", "start",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    try:
        subprocess.run(
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "optuna",
                "studies",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg://optuna@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the test session (``start_postgres``), stopped after."""
    if _postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    with start_postgres() as url:
        yield url
