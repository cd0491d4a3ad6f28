"""Stage I/O is declared once: ``autoencoders.paths`` holds every repository-relative path, it
agrees with dvc.yaml's outs, and no other module of the library spells such a path."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from autoencoders import paths

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "src" / "autoencoders"
TOP = r"(data|models|exports|scorers|metrics|plots|reports|tuning|timings|mlartifacts)"
# A string naming a file or folder under one of the pipeline's top folders, or a project file.
PATH_LITERAL = re.compile(rf"^{TOP}/|^(params\.yaml|mlflow\.db|dvc\.yaml|dvc\.lock)$")
# Path("models"): a top folder on its own.
TOP_FOLDER = re.compile(rf"^{TOP}$")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        if isinstance(node, kinds) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def path_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every repository-relative path a module's code spells (docstrings and
    comments aside: they describe the layout, they do not decide it)."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if PATH_LITERAL.match(node.value):
                found.append((node.lineno, node.value))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Path":
            for argument in node.args:
                if isinstance(argument, ast.Constant) and TOP_FOLDER.match(str(argument.value)):
                    found.append((node.lineno, argument.value))
    return sorted(set(found))


def test_no_library_module_but_paths_spells_a_repository_path():
    found = {
        f"{path.relative_to(REPO)}:{line}": text
        for path in sorted(LIBRARY.rglob("*.py"))
        if path.name != "paths.py"
        for line, text in path_literals(path.read_text())
    }
    assert not found, f"use autoencoders.paths instead: {found}"


def test_the_check_finds_what_it_looks_for():
    code = (
        '"""Writes metrics/x.json."""\n'
        'A = "data/processed"\n'
        'B = Path("models") / name\n'
        'C = f"tuning/{name}/best.json"\n'
        'D = {"data": 1, "metrics": 2}\n'  # dict keys, not paths
        'E = Path(folder) / "metrics"\n'  # relative to a folder it was given
    )
    assert path_literals(code) == [(2, "data/processed"), (3, "models"), (4, "tuning/")]


def _stage(name: str, variant: str | None = None) -> dict:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    stage = stages[name]
    if variant is None:
        return stage
    return yaml.safe_load(yaml.safe_dump(stage["do"]).replace("${key}", variant))


def _outs(stage: dict) -> set[str]:
    entries = list(stage.get("outs", [])) + list(stage.get("plots", []))
    entries += list(stage.get("metrics", []))
    return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries}


@pytest.mark.parametrize("variant", sorted(yaml.safe_load((REPO / "params.yaml").read_text())[
    "variants"]))  # fmt: skip
def test_dvc_yaml_declares_the_outputs_paths_names(variant):
    expected = {
        "tune": {paths.best(variant)},
        "train": {paths.model(variant)},
        "evaluate": {paths.metrics(variant), paths.plots(variant)},
        "export": {paths.export(variant), paths.export_metrics(variant)},
        "anomaly": {paths.scorer(variant), paths.anomaly_metrics(variant)},
        "cluster": {
            paths.cluster_metrics(variant),
            paths.cluster_plots(variant),
            paths.clusterer(variant),
        },
    }
    for name, outputs in expected.items():
        declared = _outs(_stage(name, variant))
        assert declared == {path.as_posix() for path in outputs}, f"{name}@{variant}"


def test_the_data_and_report_stages_too():
    assert _outs(_stage("fetch")) == {paths.RAW.as_posix()}
    assert _outs(_stage("preprocess")) == {paths.PROCESSED.as_posix()}
    assert _outs(_stage("cluster_pixels")) == {
        paths.cluster_metrics(paths.PIXELS).as_posix(),
        paths.cluster_plots(paths.PIXELS).as_posix(),
    }
    report = _outs(_stage("report"))
    assert paths.report_metrics().as_posix() in report
    assert all(out.startswith(paths.REPORTS.as_posix() + "/") for out in report)


def test_the_report_declares_every_file_it_reads():
    # write_report reads paths.outputs(V) of every variant: each must lie under a report dep,
    # or DVC keeps a report of files that have since changed.
    deps = [str(dep) for dep in _stage("report")["deps"]]
    for field, path in vars(paths.outputs("conv")).items():
        covered = [dep for dep in deps if path.as_posix().startswith(dep.rstrip("/") + "/")]
        assert covered, f"report reads {field} ({path}) but its deps do not cover it"
