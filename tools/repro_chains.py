"""`make repro`: the pipeline's variant chains side by side, each with `dvc repro`.

    python tools/repro_chains.py                 # what `make repro` runs
    python tools/repro_chains.py --workers 1     # one chain at a time (still one thread each)
    python tools/repro_chains.py --variants conv,dense --workers 2

Three steps. First the stages every chain needs (fetch, preprocess): `dvc repro` on them, with
every core. Then the chains, ``--workers`` at a time (default one per usable core), longest
first by the seconds recorded in timings/: a variant's chain is all its ``kind@V`` stages
(tune, train, evaluate, export, anomaly, cluster), and a stage that needs only the first step's
outputs (cluster_pixels) is a chain of its own. Each chain is one ``dvc --wait-for-lock repro
--single-item <its stages, dependencies first>`` process whose stages run with ``--threads``
threads in every pool (``thread_environment``; not pinned to cores: XLA and TensorFlow's
graph optimiser size their own pools by the cores they see, and pinned runs gave other bytes
for JAX training and a converted decoder); its output goes to
timings/logs/<chain>.log and each stage it starts is printed. Last, plain `dvc repro` with
every core: ``dvc repro --single-item`` of the stages that need every chain (the report), which
checks none of the others again (DVC spends seconds on each stage's check). `dvc repro` alone
still runs the whole pipeline in turn.

A chain that fails stops the run: the running chains are interrupted (their finished stages
stay recorded in dvc.lock, each `dvc repro` writes a stage's entry when it ends), no chain is
started, and the failed stage's one-line error is printed; ``--keep-going`` lets the other
chains finish instead. Concurrent `dvc repro` processes are safe so: each holds DVC's repo
lock whenever it reads or writes dvc.lock and releases it only while a stage's command runs,
and ``--wait-for-lock`` makes them wait for it rather than fail; ``--single-item`` keeps a
chain from checking preprocess, which takes a write lock on data/processed that fails at once
while another chain's stage reads it (docs/performance.md).

The wall seconds of the run go beside the stages' sum in reports/timings.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from autoencoders import fileio, paths, threads
from autoencoders.reporting import timings

DVC = [shutil.which("dvc", path=Path(sys.executable).parent) or "dvc", "--wait-for-lock"]
LOGS = paths.TIMINGS / "logs"
STARTED = re.compile(r"Running stage '([^']+)'")
STAGE_ERROR = re.compile(r"^[\w@.-]+: error: ")  # autoencoders.errors.cli's one line
THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


@dataclass
class Chain:
    """One `dvc repro` over ``targets``: a variant's stages, or one independent stage."""

    name: str
    targets: list[str]
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    started: float = 0.0
    stage: str = ""
    ran: list[str] = field(default_factory=list)


def plan(variants: list[str] | None) -> tuple[list[str], list[Chain], list[str]]:
    """(first stages, chains, other stages) from DVC's own graph of dvc.yaml."""
    import networkx
    from dvc.repo import Repo

    with Repo() as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
    names = {stage: stage.addressing for stage in graph}
    by_variant: dict[str, list[str]] = {}
    depth = {names[stage]: len(networkx.descendants(graph, stage)) for stage in graph}
    first: list[str] = []
    alone: list[str] = []
    last: list[str] = []
    for stage, name in names.items():
        upstream = {names[other] for other in networkx.descendants(graph, stage)}
        downstream = {names[other] for other in networkx.ancestors(graph, stage)}
        if "@" in name:
            variant = name.split("@", 1)[1]
            if any("@" in other and not other.endswith(f"@{variant}") for other in upstream):
                raise SystemExit(f"repro_chains: {name} depends on another variant's stage")
            by_variant.setdefault(variant, []).append(name)
        elif any("@" in other for other in upstream):
            last.append(name)
        elif any("@" in other for other in downstream):
            first.append(name)
        else:
            alone.append(name)
    wanted = list(by_variant) if variants is None else variants
    unknown = sorted(set(wanted) - set(by_variant))
    if unknown:
        raise SystemExit(f"repro_chains: no stages for {unknown}; variants: {sorted(by_variant)}")
    # --single-item runs the targets in the order given: dependencies first (fewer upstream).
    chains = [Chain(variant, sorted(by_variant[variant], key=depth.get)) for variant in wanted]
    chains += [Chain(name, [name]) for name in alone if name not in first]
    return sorted(first, key=depth.get), _longest_first(chains), sorted(last, key=depth.get)


def _longest_first(chains: list[Chain]) -> list[Chain]:
    """Chains by their stages' recorded seconds, most first; never timed ones before all."""

    def recorded(chain: Chain) -> float:
        total = 0.0
        for stage in chain.targets:
            record = paths.TIMINGS / f"{stage}.json"
            if not record.exists():
                return float("inf")
            total += float(fileio.read_json(record)["seconds"])
        return total

    return sorted(chains, key=recorded, reverse=True)


def thread_environment(count: int) -> dict[str, str]:
    """This environment with every pool a stage process uses at ``count`` threads: TensorFlow's
    op pools (variables it reads itself), OpenMP, OpenBLAS, MKL, numba, and XLA's CPU pool (JAX)
    when ``count`` is 1. Read when each library loads, so it is set before the process starts."""
    environment = dict(os.environ)
    for name in THREAD_VARIABLES:
        environment[name] = str(count)
    flags = environment.get("XLA_FLAGS", "")
    if count == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        environment["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    return environment


def create_stores() -> None:
    """Create the SQLite tracking store and study storage once, here, when they do not exist:
    two chains' first stages creating one at the same moment race on its tables."""
    from autoencoders import config, tracking

    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        print(f"[repro] creating the MLflow store {uri}", flush=True)
        tracking.setup()
    storage = str((config.load_params(paths.PARAMS).get("tune") or {}).get("storage") or "")
    if storage and "://" not in storage and not Path(storage).exists():
        import optuna

        print(f"[repro] creating the Optuna storage {storage}", flush=True)
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        optuna.storages.RDBStorage(f"sqlite:///{Path(storage).resolve()}")


def run_in_turn(targets: list[str], what: str) -> None:
    """`dvc repro targets` (options allowed) in this terminal, every core; a failure ends the
    run."""
    print(f"[repro] {what}: dvc repro {' '.join(targets)}", flush=True)
    if subprocess.run([*DVC, "repro", *targets]).returncode != 0:
        raise SystemExit(f"repro_chains: {what} failed (its error is above)")


def start(chain: Chain, environment: dict[str, str]) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    chain.log = open(LOGS / f"{chain.name}.log", "wb")  # noqa: SIM115 (closed in run_chains)
    chain.started = time.time()
    chain.process = subprocess.Popen(
        [*DVC, "repro", "--single-item", *chain.targets],
        stdout=chain.log,
        stderr=subprocess.STDOUT,
        env=environment,
        start_new_session=True,  # its own process group: interrupted as one
    )


def progress(chain: Chain) -> list[str]:
    """Stages ``chain`` has started since the last call (read from its log)."""
    text = (LOGS / f"{chain.name}.log").read_text(errors="replace")
    started = STARTED.findall(text)
    new = started[len(chain.ran) :]
    chain.ran = started
    if started:
        chain.stage = started[-1]
    return new


def failure_line(chain: Chain) -> str:
    """The failed stage's one-line error from the chain's log, else DVC's own last error."""
    lines = (LOGS / f"{chain.name}.log").read_text(errors="replace").splitlines()
    for pattern in (STAGE_ERROR, re.compile(r"^ERROR: ")):
        found = [line for line in lines if pattern.match(line)]
        if found:
            return found[-1]
    return next((line for line in reversed(lines) if line.strip()), "no output")


def interrupt(chains: list[Chain]) -> None:
    """SIGINT to each running chain's process group; wait until they end."""
    for chain in chains:
        if chain.process is not None and chain.process.poll() is None:
            os.killpg(chain.process.pid, signal.SIGINT)
    for chain in chains:
        if chain.process is not None:
            chain.process.wait()


def run_chains(chains: list[Chain], workers: int, thread_count: int, keep_going: bool) -> int:
    """Run ``chains``, ``workers`` at a time; the number of chains that failed."""
    environment = thread_environment(thread_count)
    waiting, running, failed, done = list(chains), [], [], 0
    began = time.time()

    def say(chain: Chain, text: str) -> None:
        print(f"[repro +{time.time() - began:5.0f} s] {chain.name:<12} {text}", flush=True)

    while waiting or running:
        while waiting and len(running) < workers and not (failed and not keep_going):
            chain = waiting.pop(0)
            start(chain, environment)
            running.append(chain)
        time.sleep(0.5)
        for chain in list(running):
            for stage in progress(chain):
                say(chain, f"{stage} ({len(running)} running, {done}/{len(chains)} done)")
            if chain.process is None or chain.process.poll() is None:
                continue
            running.remove(chain)
            assert chain.log is not None
            chain.log.close()
            if chain.process.returncode == 0:
                done += 1
                ran = ", ".join(chain.ran) or "nothing changed"
                say(chain, f"done in {time.time() - chain.started:.0f} s (ran: {ran})")
                continue
            failed.append(chain)
            say(chain, f"FAILED at {chain.stage or 'its start'}: {failure_line(chain)}")
            say(chain, f"its whole output: {LOGS / chain.name}.log")
            if not keep_going:
                waiting.clear()
                interrupt(running)
                for other in running:
                    say(other, f"interrupted at {other.stage or 'its start'}")
                running.clear()
    return len(failed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="chains at once; 0: one a core")
    parser.add_argument("--threads", type=int, default=1, help="threads of each chain's stages")
    parser.add_argument("--variants", help="comma-separated; default: every variant")
    parser.add_argument("--keep-going", action="store_true", help="a failure stops no chain")
    args = parser.parse_args(argv)
    workers = args.workers or threads.usable_cores()
    started = time.time()
    facts = {"workers": workers, "threads": args.threads}
    timings.record_run(started, finished=False, **facts)
    first, chains, last = plan(args.variants.split(",") if args.variants else None)
    if first:
        run_in_turn(first, "first")
    create_stores()
    print(
        f"[repro] {len(chains)} chains, {workers} at a time, {args.threads} thread(s) each; "
        f"logs in {LOGS}/",
        flush=True,
    )
    failures = run_chains(chains, workers, args.threads, args.keep_going)
    if failures:
        raise SystemExit(f"repro_chains: {failures} chain(s) failed; finished stages are kept")
    if args.variants:
        print(f"[repro] --variants: {', '.join(last)} left out (they need every variant)")
    elif last:  # every other stage is up to date now: check none of them again (seconds each)
        run_in_turn(["--single-item", *last], "last")
    wall = timings.record_run(started, finished=True, **facts)
    summary = timings.add_wall(paths.REPORTS / "timings.json", wall)
    print(f"[repro] wall {wall:.0f} s; {summary}", flush=True)


if __name__ == "__main__":
    main()
