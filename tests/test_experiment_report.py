"""``make quickstart``'s closing figures (autoencoders.reporting.experiment): read from the
experiment's own git commit, each named, the reconstruction judged against the report's bar."""

from __future__ import annotations

import json
import subprocess

from autoencoders.reporting import experiment
from autoencoders.reporting.summary import PCA_RATIO_BAR


def test_the_reconstruction_verdict_is_the_ratio_against_the_bar():
    losing = experiment.reconstruction_line(
        {"mse": 0.0178, "pca_mse": 0.002548, "pca_n_components": 32}
    )
    assert "6.99x PCA's (FAIL: the report's bar is <= 0.7x)" in losing
    assert "reports/summary.md" in losing  # where the full pipeline's figures are
    winning = experiment.reconstruction_line({"mse": 0.01, "pca_mse": 0.02, "pca_n_components": 8})
    assert "0.50x PCA's (PASS" in winning and "\n" not in winning
    at_bar = experiment.reconstruction_line(
        {"mse": PCA_RATIO_BAR * 0.5, "pca_mse": 0.5, "pca_n_components": 2}
    )
    assert "(PASS" in at_bar


def test_the_figures_come_from_the_experiments_commit(tmp_path, monkeypatch):
    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "test@example.com")
    git("config", "user.name", "test")
    (tmp_path / "metrics" / "cluster").mkdir(parents=True)
    (tmp_path / "metrics" / "dense.json").write_text(json.dumps(
        {"mse": 0.04, "pca_mse": 0.05, "pca_n_components": 32, "n_test": 359, "latent_dim": 32,
         "cluster_accuracy": 0.5, "probe_accuracy": 0.9}))  # fmt: skip
    (tmp_path / "metrics" / "cluster" / "dense.json").write_text(json.dumps(
        {"head_accuracy": 0.75, "head_inductive_accuracy": 0.7}))  # fmt: skip
    git("add", ".")
    git("commit", "-q", "-m", "experiment")
    commit = git("rev-parse", "HEAD")
    git("update-ref", "refs/exps/ab/cdef/quickstart-1", commit)
    (tmp_path / "metrics" / "dense.json").write_text("{}")  # the workspace's own, not shown
    monkeypatch.chdir(tmp_path)
    assert experiment.experiment_commit("quickstart-1") == commit
    lines = experiment.report_lines("quickstart-1", "dense", commit)
    assert lines[0].endswith("scored on its 359 test images (code of 32):")
    assert "0.80x PCA's (FAIL" in lines[1]
    assert "  accuracy, k-means on the codes: 0.500" in lines
    assert "  accuracy, the head fitted on training codes, applied to test codes: 0.700" in lines
    assert lines[-1].endswith("dvc exp show --only-changed --md")
    assert not [line for line in lines if "ONNX" in line]  # no export metrics in this commit
