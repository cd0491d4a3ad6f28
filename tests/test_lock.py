"""dvc.lock against the working tree: every code and params dependency it records is what the
files hold now, so the committed results (metrics/, reports/, tuning/*/best.json) are what the
committed code and params produce, by the pipeline and not vouched for by hand.

Data deps (data/, models/, exports/) are not checked: a fresh clone has them only after `make
repro` or `make pull`. When a test below fails, docs/development.md gives the loop: re-run the
stages the change invalidates (`dvc repro STAGE`), or, for an edit that changes no output,
`make verify-unchanged STAGE=...` and then `dvc commit STAGE`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from dvc.utils.serialize import load_yaml

REPO = Path(__file__).resolve().parents[1]
# Read as DVC reads them (YAML 1.2: `1e-5` is a number, where PyYAML reads a string).
LOCK = load_yaml(REPO / "dvc.lock")["stages"]
DVC = load_yaml(REPO / "dvc.yaml")["stages"]
PARAMS = load_yaml(REPO / "params.yaml")
CODE = ("pipeline/", "src/")


def expanded_stages() -> dict[str, dict]:
    """dvc.yaml's stages, ``foreach`` expanded over params.yaml's variants."""
    stages = {}
    for name, stage in DVC.items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        for variant in PARAMS["variants"]:
            text = yaml.safe_dump(stage["do"]).replace("${key}", variant)
            stages[f"{name}@{variant}"] = yaml.safe_load(text)
    return stages


STAGES = expanded_stages()


def md5(path: Path) -> str:
    """DVC 3's hash of a file: the MD5 of its bytes."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def differences(old: object, new: object, key: str) -> dict[str, tuple[object, object]]:
    """The leaves where two params values differ, by dotted key."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = {}
        for part in sorted(set(old) | set(new), key=str):
            found.update(differences(old.get(part), new.get(part), f"{key}.{part}"))
        return found
    return {} if old == new else {key: (old, new)}


def lookup(dotted: str) -> object:
    node: object = PARAMS
    for part in dotted.split("."):
        node = node[part]  # type: ignore[index]
    return node


@pytest.mark.parametrize("name", sorted(STAGES))
def test_the_lock_records_every_stage_with_its_command_and_code_deps(name):
    assert name in LOCK, f"dvc.lock has no {name}: run `dvc repro {name}`"
    assert LOCK[name]["cmd"] == STAGES[name]["cmd"], f"{name}'s command changed since its run"
    listed = {str(dep) for dep in STAGES[name]["deps"] if str(dep).startswith(CODE)}
    recorded = {dep["path"] for dep in LOCK[name].get("deps", []) if dep["path"].startswith(CODE)}
    assert recorded == listed, (
        f"{name}: dvc.yaml lists {sorted(listed - recorded)} the lock lacks and the lock has "
        f"{sorted(recorded - listed)} dvc.yaml no longer lists: `dvc repro {name}`"
    )


@pytest.mark.parametrize("name", sorted(LOCK))
def test_every_code_dep_in_the_lock_is_the_file_in_the_tree(name):
    changed = [
        dep["path"]
        for dep in LOCK[name].get("deps", [])
        if dep["path"].startswith(CODE)
        and (not (REPO / dep["path"]).is_file() or md5(REPO / dep["path"]) != dep["md5"])
    ]
    assert not changed, (
        f"{name} ran with other code than {changed} hold now: `dvc repro {name}` (or, for an "
        f"edit that changes no output, `make verify-unchanged STAGE={name}` then `dvc commit`)"
    )


@pytest.mark.parametrize("name", sorted(LOCK))
def test_every_params_dep_in_the_lock_is_the_value_in_params_yaml(name):
    recorded = LOCK[name].get("params", {}).get("params.yaml", {})
    changed = {}
    for key, old in recorded.items():
        changed.update(differences(old, lookup(key), key))
    assert not changed, f"{name} ran with other params (lock, now): {changed}: `dvc repro {name}`"


def test_the_hash_is_dvcs_own(tmp_path):
    # DVC's hasher (dvc-data) on the same bytes, a text file with CRLF ends and one without: the
    # check above compares exactly what `dvc status` compares.
    from dvc_data.hashfile.hash import file_md5

    for content in (b"import os\r\nprint(1)\r\n", (REPO / "pipeline/train.py").read_bytes()):
        path = tmp_path / "file.py"
        path.write_bytes(content)
        assert md5(path) == file_md5(str(path))
