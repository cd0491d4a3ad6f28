"""dvc.yaml against the code: every stage's deps cover what its script imports, and every
parameter it names exists in params.yaml. Hand-kept dependency lists drift as code moves, and
DVC then keeps outputs that the changed code would make differently."""

from __future__ import annotations

import ast
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


def module_file(module: str) -> Path | None:
    """The file of an ``autoencoders`` module or package (None: not the project's)."""
    if module != "autoencoders" and not module.startswith("autoencoders."):
        return None
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports anywhere (top level, inside functions: lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # `from autoencoders import tracking`: a module, or a name of the package
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def import_closure(script: Path) -> set[Path]:
    """The project files a script loads: its imports, theirs, and each package's __init__."""
    files, queue = set(), [script]
    while queue:
        path = queue.pop()
        for module in imported_modules(path):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, a.b.c
                found = module_file(".".join(parts[:depth]))
                if found is not None and found not in files:
                    files.add(found)
                    queue.append(found)
    return files


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


STAGES = stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_the_import_closure_of_the_stage_script(name):
    stage = STAGES[name]
    match = re.match(r"python (pipeline/\w+\.py)", stage["cmd"])
    assert match, f"{name}: {stage['cmd']!r} does not run a pipeline/ script"
    script = REPO / match.group(1)
    deps = [str(dep) for dep in stage["deps"]]
    assert match.group(1) in deps
    missing = sorted(
        path.relative_to(REPO).as_posix()
        for path in import_closure(script)
        if not covered(path, deps)
    )
    assert not missing, f"{name} imports files its deps do not list: {missing}"


def test_the_closure_follows_lazy_imports_and_packages():
    # pipeline/train.py imports the training loop only inside main (after choosing Keras'
    # backend): still a dependency, and so is every package __init__ on the way.
    closure = {p.relative_to(REPO).as_posix() for p in import_closure(REPO / "pipeline/train.py")}
    assert "src/autoencoders/training/loop.py" in closure
    assert "src/autoencoders/training/__init__.py" in closure
    assert "src/autoencoders/__init__.py" in closure  # every import of the package runs it


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
