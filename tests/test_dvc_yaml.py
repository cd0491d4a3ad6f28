"""dvc.yaml against the code: every stage's code deps are exactly what its script imports (the
list tools/stage_deps.py generates, `make deps`), and every parameter it names exists in
params.yaml. Hand-kept dependency lists drift as code moves: DVC then keeps outputs that the
changed code would make differently, or re-runs stages that no edit touched."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def stages() -> dict[str, dict]:
    """Every stage of dvc.yaml, ``foreach`` expanded over params.yaml's variants."""
    expanded = {}
    for name, stage in DVC["stages"].items():
        if "foreach" not in stage:
            expanded[name] = stage
            continue
        assert stage["foreach"] == "${variants}", name
        for variant in PARAMS["variants"]:
            text = yaml.safe_dump(stage["do"]).replace("${key}", variant)
            expanded[f"{name}@{variant}"] = yaml.safe_load(text)
    return expanded


def _load_generator():
    """tools/stage_deps.py, the generator `make deps` runs (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("stage_deps", REPO / "tools" / "stage_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stage_deps = _load_generator()
STAGES = stages()


def _code_deps(stage: dict) -> list[str]:
    return [str(dep) for dep in stage["deps"] if str(dep).startswith(("pipeline/", "src/"))]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_are_exactly_the_import_closure_of_the_stage_script(name):
    stage = STAGES[name]
    match = re.match(r"python (pipeline/\w+\.py)", stage["cmd"])
    assert match, f"{name}: {stage['cmd']!r} does not run a pipeline/ script"
    script = REPO / match.group(1)
    listed = _code_deps(stage)
    closure = {p.relative_to(REPO).as_posix() for p in stage_deps.import_closure(script, SRC)}
    expected = {match.group(1)} | closure
    assert set(listed) == expected, (
        f"{name}: deps list {sorted(set(listed) - expected)} it does not import and lack "
        f"{sorted(expected - set(listed))} it does: run `make deps`"
    )
    assert not any(Path(REPO / dep).is_dir() for dep in listed), "a folder is no exact dep"


def test_dvc_yaml_is_what_the_generator_writes():
    text = (REPO / "dvc.yaml").read_text()
    assert stage_deps.rewrite(text, REPO) == text, "dvc.yaml's code deps are stale: make deps"


def test_the_closure_follows_lazy_imports_and_packages():
    # pipeline/train.py imports the training loop only inside main (after choosing Keras'
    # backend): still a dependency, and so is every package __init__ on the way.
    closure = {
        p.relative_to(REPO).as_posix()
        for p in stage_deps.import_closure(REPO / "pipeline/train.py", SRC)
    }
    assert "src/autoencoders/training/loop.py" in closure
    assert "src/autoencoders/training/__init__.py" in closure
    assert "src/autoencoders/__init__.py" in closure  # every import of the package runs it


def test_a_package_that_imports_its_modules_by_name_depends_on_all_of_them(tmp_path):
    package = tmp_path / "src" / "autoencoders" / "lazy"
    package.mkdir(parents=True)
    (tmp_path / "src" / "autoencoders" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "import importlib\n\ndef __getattr__(name):\n"
        "    return importlib.import_module(f'autoencoders.lazy.{name}')\n"
    )
    (package / "one.py").write_text("")
    (package / "two.py").write_text("")
    script = tmp_path / "script.py"
    script.write_text("from autoencoders import lazy\n")
    closure = {p.name for p in stage_deps.import_closure(script, tmp_path / "src")}
    assert closure == {"__init__.py", "one.py", "two.py"}


@pytest.mark.parametrize(
    ("edited", "never_invalidates"),
    [
        ("src/autoencoders/reporting/stage.py", ("tune@", "train@", "evaluate@", "export@")),
        ("src/autoencoders/evaluation/stage.py", ("tune@", "train@")),
        ("src/autoencoders/clustering/report.py", ("tune@", "train@", "evaluate@", "export@")),
        ("src/autoencoders/clustering/head.py", ("tune@", "train@", "evaluate@")),
    ],
)
def test_an_edit_of_a_later_stage_invalidates_no_earlier_stage(edited, never_invalidates):
    stale = sorted(name for name, stage in STAGES.items() if edited in _code_deps(stage))
    assert not [name for name in stale if name.startswith(never_invalidates)], stale


def _lookup(dotted: str) -> bool:
    node = PARAMS
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_parameter_a_stage_names_exists_in_params_yaml(name):
    stage = STAGES[name]
    keys = [key for entry in stage.get("params", []) for key in (
        entry if isinstance(entry, dict) else [entry])]  # fmt: skip
    missing = [key for key in keys if not _lookup(str(key))]
    interpolated = re.findall(r"\$\{([^}]+)\}", yaml.safe_dump(stage))
    missing += [key for key in interpolated if not _lookup(key)]
    assert not missing, f"{name} names parameters params.yaml lacks: {missing}"
