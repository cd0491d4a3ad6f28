"""`make ui` in a real headless browser: the link it prints opens the training runs.

Starts the command `make ui` runs (``python -m autoencoders.services.tracking_server ui``) on a
free port of
127.0.0.1 against a real SQLite tracking store holding a finished ``<variant>-train`` run for each
of params.yaml's variants, then loads the printed link in Debian's chromium (headless) and reads
the rendered page. The screenshot is kept in ``test-artifacts/mlflow_ui_runs.png`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from autoencoders import config, tracking

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def store(tmp_path, monkeypatch) -> tuple[str, str, list[str]]:
    """(tracking URI, experiment id, variants): one finished training run per variant."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    variants = list(config.load_params(REPO / "params.yaml")["variants"])
    experiment_id = tracking.setup()
    for index, variant in enumerate(variants):
        tags = {**tracking.standard_tags(variant, f"train@{variant}", "0" * 64), "kind": "final"}
        with mlflow.start_run(run_name=f"{variant}-train", tags=tags):
            mlflow.log_metric("best_val_loss", 0.01 * (index + 1))
            images = np.full((4, 8, 8, 1), index / 10, dtype=np.float32)
            card = {"source": "digits", "checksum": f"{index:064d}"}
            mlflow.log_input(tracking.dataset(images, split="train", card=card), "training")
    # A search run too: the runs table must list the training runs among the others.
    with mlflow.start_run(run_name="dense-search", tags={"kind": "search"}):
        pass
    return uri, experiment_id, variants


def _wait_for_health(
    base: str, process: subprocess.Popen, log: Path, timeout_s: float = 240
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the UI exited ({process.returncode}): {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no MLflow UI on {base} after {timeout_s} s: {log.read_text()[-3000:]}")


def _chromium(*arguments: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        "--virtual-time-budget=30000",  # the single-page app fetches and renders the runs
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_make_ui_link_opens_the_training_runs_in_a_browser(store, tmp_path):
    if CHROMIUM is None:
        message = "chromium not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):  # CI must run it: a missing browser is a failure there
            pytest.fail(message)
        pytest.skip(message)
    uri, experiment_id, variants = store
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "ui.log"  # a file, not a pipe: the server's log never blocks it
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autoencoders.services.tracking_server",
                "ui",
                "--uri",
                uri,
                "--port",
                str(port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # mlflow ui starts its server as a child: stop the group
        )
    try:
        _wait_for_health(base, process, log)
        expected = f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"
        assert log.read_text().splitlines()[0] == f"MLflow UI, training runs: {expected}"

        page = _chromium("--dump-dom", expected)
        assert page.returncode == 0, page.stderr[-2000:]
        dom = page.stdout
        missing = [v for v in variants if f"{v}-train" not in dom]
        assert not missing, f"runs table lacks {missing}; page:\n{dom[-3000:]}"
        assert "dense-search" in dom
        assert dom.count("digits-train") >= len(variants)  # the Dataset column

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "mlflow_ui_runs.png"
        screenshot.unlink(missing_ok=True)
        shot = _chromium(f"--screenshot={screenshot}", expected)
        assert shot.returncode == 0, shot.stderr[-2000:]
        image = screenshot.read_bytes()
        assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 20_000
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
