"""Sweep the moment a kill -9 hits a whole ``make tune``, and check the crash-safety guarantee.

    python tests/killpoints/sweep.py --backend postgresql --first 1 --last 61 [--resume]

For each N the tiny search of tests/test_team.py (dense on digits, 4 trials, 2 workers) runs with
``tests/killpoints/sitecustomize.py`` on its path, which kills the whole process group right
before the N-th Optuna storage write (61 in a search that is not killed). Then the search's
recovery runs (``--resume``: the whole resumed search, as the test does) and the guarantee is
checked: no trial or MLflow run left RUNNING, every trial running at the kill failed with its
parameters queued again, and (``--resume``) exactly 4 trials counted. Prints one JSON row per N:
the write the kill came before, the trial states before and after, and OK or what broke.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import optuna  # noqa: E402

import conftest  # noqa: E402
import test_team  # noqa: E402
from autoencoders import data, tuning  # noqa: E402

N_TRIALS = 4


def killed_search(root: Path, processed: Path, storage: str, at: int, seed: int) -> dict:
    """Run the search with a kill before write ``at``; return what the checks need."""
    clone = test_team.search_clone(
        root, processed, test_team.tiny_params(storage, seed, N_TRIALS, tune_epochs=2)
    )
    local = not storage.startswith("postgresql")
    url = tuning.storage_url(str(clone / storage) if local else storage)
    tracking_uri = f"sqlite:///{clone / 'mlflow.db'}"
    env = test_team.clone_env(clone, tracking_uri)
    counter = root / "writes.log"
    first_env = {
        **env,
        "PYTHONPATH": f"{HERE}{os.pathsep}{env['PYTHONPATH']}",
        "KILLPOINT_COUNTER": str(counter),
        "KILLPOINT_AT": str(at),
    }
    command = test_team.tune_command(storage, N_TRIALS, workers=2)
    with (root / "first.log").open("w") as log:
        first = subprocess.run(
            command, cwd=clone, env=first_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, timeout=600,
        )  # fmt: skip
    writes = counter.read_text().splitlines() if counter.exists() else []
    return {
        "clone": clone, "url": url, "env": env, "command": command, "tracking_uri": tracking_uri,
        "returncode": first.returncode, "writes": writes, "name": test_team.study_name(clone),
    }  # fmt: skip


def check(run: dict, resume: bool) -> tuple[str, dict, dict]:
    """(verdict, states before, states after) of the guarantee after recovery or a resume."""
    try:
        study = optuna.load_study(study_name=run["name"], storage=run["url"])
    except KeyError:
        return "OK (no study yet)", {}, {}
    before = test_team.states(study)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    problems = []
    if resume:
        resumed = subprocess.run(
            run["command"], cwd=run["clone"], env=run["env"], capture_output=True, text=True
        )
        if resumed.returncode != 0:
            problems.append(f"resume exit {resumed.returncode}: {resumed.stderr[-300:]}")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = run["tracking_uri"]
        tuning.recovery.recover(study, verbose=False)
    study = optuna.load_study(study_name=run["name"], storage=run["url"])
    after = test_team.states(study)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if after.get("RUNNING", 0):
        problems.append(f"{after['RUNNING']} RUNNING")
    for trial in running:
        if trials[trial.number].state.name != "FAIL":
            problems.append(f"trial {trial.number} {trials[trial.number].state.name}")
        retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == trial.number]
        if len(retries) != 1:
            problems.append(f"trial {trial.number}: {len(retries)} retries")
    left = test_team.running_runs(run["tracking_uri"])
    if left:
        problems.append(f"{len(left)} MLflow run(s) RUNNING")
    counted = after.get("COMPLETE", 0) + after.get("PRUNED", 0)
    if resume and counted != N_TRIALS:
        problems.append(f"{counted} counted")
    return ("; ".join(problems) or "OK"), before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--last", type=int, default=60)
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="resume the search (slower)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--work", type=Path, help="keep the clones here (default: a temp dir)")
    args = parser.parse_args()
    rows = []
    with contextlib.ExitStack() as stack:
        work = args.work or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="kill-sweep-"))
        )
        data.fetch("digits", work / "raw")
        data.preprocess(work / "raw", work / "processed", val_fraction=0.1, seed=0)
        storage = (
            stack.enter_context(conftest.start_postgres())
            if args.backend == "postgresql"
            else "tuning/optuna.db"
        )
        for at in range(args.first, args.last + 1, args.step):
            run = killed_search(work / f"at{at}", work / "processed", storage, at, seed=at)
            killed = run["returncode"] < 0
            died_before = run["writes"][-1].split(" ", 2)[2] if killed else "(finished)"
            verdict, before, after = check(run, args.resume)
            row = {"at": at, "before_write": died_before, "before": before, "after": after,
                   "verdict": verdict}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            if run["returncode"] >= 0:
                print(f"# the search finished after {len(run['writes'])} writes", flush=True)
                break
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    broken = Counter(r["verdict"] != "OK" for r in rows)[True]
    print(f"# {len(rows)} kill points, {broken} broke the guarantee")


if __name__ == "__main__":
    main()
