"""Re-run a DVC stage in a scratch copy and compare its outputs with the workspace's, byte by byte.

    make verify-unchanged STAGE=train@conv            # compare only
    make verify-unchanged STAGE=train@conv COMMIT=1   # and `dvc commit` the stage when identical

For an edit that should change no output (a rename, a moved function, a docstring), this proves
it before `dvc commit` records the new code in dvc.lock, so the lock still describes results the
pipeline produced, and the stages after it (whose deps are this stage's outputs) stay valid.
The workspace is not touched until the outputs are shown identical: the stage runs in
``.dvc-scratch/<stage>/``, a copy of the tracked files, the stage's data deps and the MLflow
store, with MLflow pointed at the copy's store.

``run.json`` (the MLflow run a stage logged into) differs on every run by design and is not
compared. The copy's MLflow store keeps the experiment's artifact location, so the scratch run's
artifacts land beside the workspace's (an extra run the workspace's store does not list).
Exit status 0: identical; 1: outputs differ (each listed); 2: the stage failed or could not be
set up.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRATCH = REPO / ".dvc-scratch"
# Written anew on every run by design (a new MLflow run id): not evidence of a changed result.
VOLATILE = {"run.json"}
STORES = ("mlflow.db", "mlartifacts", "tuning/optuna.db")


def stage_io(name: str) -> tuple[str, list[str], list[str]]:
    """(cmd, data deps, outputs) of a stage, as DVC resolves them (foreach expanded)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        stages = repo.stage.collect(name)
        if len(stages) != 1:
            raise SystemExit(f"verify-unchanged: {name!r} names {len(stages)} stages, not one")
        stage = stages[0]
        deps = [str(dep.def_path) for dep in stage.deps]
        outs = [str(out.def_path) for out in stage.outs]
        return str(stage.cmd), deps, outs


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    return [path for path in listed.split("\0") if path]


def copy_into(scratch: Path, paths: list[str]) -> None:
    for relative in paths:
        source = REPO / relative
        target = scratch / relative
        if not source.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
        else:
            shutil.copy2(source, target)


def differing(workspace: Path, scratch: Path) -> list[str]:
    """Output files that differ between the two trees (missing on either side included)."""
    if workspace.is_file() or scratch.is_file():
        same = workspace.is_file() and scratch.is_file() and filecmp.cmp(workspace, scratch, False)
        return [] if same or workspace.name in VOLATILE else [str(workspace.relative_to(REPO))]
    names = {p.relative_to(workspace) for p in workspace.rglob("*") if p.is_file()}
    names |= {p.relative_to(scratch) for p in scratch.rglob("*") if p.is_file()}
    found = []
    for name in sorted(names):
        if name.name in VOLATILE:
            continue
        left, right = workspace / name, scratch / name
        if not (left.is_file() and right.is_file() and filecmp.cmp(left, right, shallow=False)):
            found.append(str(left.relative_to(REPO)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="a stage name as dvc.yaml spells it, e.g. train@conv")
    parser.add_argument("--commit", action="store_true", help="dvc commit it when identical")
    args = parser.parse_args(argv)
    cmd, deps, outs = stage_io(args.stage)
    missing = [out for out in outs if not (REPO / out).exists()]
    if missing:
        print(f"verify-unchanged: no output to compare yet {missing}: `dvc repro {args.stage}`")
        return 2
    scratch = SCRATCH / args.stage.replace("@", "-")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    copy_into(scratch, tracked_files())
    copy_into(scratch, [dep for dep in deps if not (scratch / dep).exists()] + list(STORES))
    for out in outs:  # the stage must make its outputs itself
        target = scratch / out
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    environment = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{scratch / 'mlflow.db'}")
    print(f"verify-unchanged: {args.stage} in {scratch.relative_to(REPO)}: {cmd}", flush=True)
    if subprocess.run(cmd, shell=True, cwd=scratch, env=environment).returncode != 0:
        print(f"verify-unchanged: {args.stage} failed in the scratch copy (above)")
        return 2
    changed = [name for out in outs for name in differing(REPO / out, scratch / out)]
    if changed:
        print(f"verify-unchanged: {args.stage}'s outputs differ: " + ", ".join(changed))
        print(f"  re-run it for real (`dvc repro {args.stage}`) and commit what it makes")
        return 1
    shutil.rmtree(scratch)
    print(f"verify-unchanged: {args.stage}'s outputs are identical ({', '.join(outs)})")
    if args.commit:
        subprocess.run(["dvc", "commit", "--force", args.stage], cwd=REPO, check=True)
        print(f"verify-unchanged: dvc.lock records {args.stage} with today's code")
    else:
        print(f"  record it: dvc commit {args.stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
