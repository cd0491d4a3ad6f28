"""MLflow set-up and the few logging helpers every stage shares.

The backend is a SQLite file ``mlflow.db`` at the repository root unless ``MLFLOW_TRACKING_URI``
says otherwise: a team points it at one shared ``mlflow server`` (``http://host:5000``, started by
``make server``: PostgreSQL backend store, artifacts served through the server). One experiment
(``autoencoders``) holds every run. Each run carries the tags ``variant``, ``git_commit``,
``data_checksum`` and ``dvc_stage``. The final training run of a variant is recorded in
``models/<variant>/run.json`` so that evaluate, export and cluster log into it after it has
finished, by its id, without re-opening it (its duration is the training's). They look it up
(``finished_run``) before they write anything: a run the store lacks stops them with one line
(``MissingRunError``) and their previous outputs stay as they were. It logs the training and
validation splits as its datasets, with the data checksum as digest.

A server or database that cannot be used stops the stage with one line naming it (password
masked) and the fix (``ServiceError``), before the stage writes anything.
The team's server and the UI are ``autoencoders.services.tracking_server``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from autoencoders import errors, fileio, paths

EXPERIMENT = "autoencoders"
DEFAULT_DB = paths.MLFLOW_DB
CONNECT_TIMEOUT_S = 5
# MLflow stores a dataset digest of at most 36 characters.
DATASET_DIGEST_CHARS = 36
RETRAIN = "re-run training (dvc repro --force train@<variant>)"


class ServiceError(SystemExit):
    """A database, tracking server or DVC remote that cannot be used: one line, exit code 1.

    A ``SystemExit`` on purpose: every stage and ``make`` target then stops with this one line
    (URL with its password masked, and the fix), no traceback, before it writes any output.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class MissingRunError(errors.UserError, LookupError):
    """``run.json`` names a run this tracking store does not hold: an expected failure, one line
    naming the fix (``errors.cli``), raised before a stage writes any output."""


def mask(url: str) -> str:
    """``scheme://user:***@host/...``: a URL fit for logs and errors (no password)."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:  # unparsable: keep only what follows the credentials
        return url.rsplit("@", 1)[-1]


def _database_problem(error: BaseException, url: str) -> tuple[str, str]:
    """(what went wrong, how to fix it) for a failed database connection, in one line each."""
    text = " ".join(str(getattr(error, "orig", None) or error).split())
    password = urllib.parse.urlsplit(url).password
    if password:
        text = text.replace(password, "***")
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return "wrong user or password", "correct the user and password in the URL (or ~/.pgpass)"
    if "does not exist" in lowered:
        database = urllib.parse.urlsplit(url).path.lstrip("/")
        return text.split(":")[-1].strip() or f"database {database} does not exist", (
            f"create it (createdb {database}) or correct the database name in the URL"
        )
    if "refused" in lowered or "timeout" in lowered or "timed out" in lowered:
        return "no database server answers there", (
            "start PostgreSQL on that host or correct its host and port in the URL"
        )
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return "unknown host", "correct the host name in the URL"
    return text[:300], "check that the server runs and the URL is right"


def check_database(url: str, what: str, setting: str) -> None:
    """Connect once to an RDB URL (PostgreSQL, MySQL); raise ServiceError naming the fix.

    ``what`` names the store ("Optuna storage"), ``setting`` where its URL comes from.
    SQLite URLs are not checked (a local file).
    """
    if url.startswith("sqlite"):
        return
    import sqlalchemy
    from sqlalchemy import pool

    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=pool.NullPool)
    except Exception as error:  # bad dialect or driver: ArgumentError, NoSuchModuleError
        raise ServiceError(
            f"{what} {mask(url)} is not a usable database URL ({error}): fix {setting}."
        ) from None
    try:
        with engine.connect():
            pass
    except Exception as error:
        problem, fix = _database_problem(error, url)
        raise ServiceError(f"{what} {mask(url)}: {problem}; {fix} ({setting}).") from None
    finally:
        engine.dispose()


def check_tracking(uri: str | None = None) -> None:
    """Make sure the tracking store answers (HTTP ``/health`` of a server, or its database)."""
    uri = uri or tracking_uri()
    setting = "MLFLOW_TRACKING_URI"
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(
                f"{uri.rstrip('/')}/health", timeout=CONNECT_TIMEOUT_S
            ) as response:
                if response.status == 200:
                    return
                problem = f"HTTP {response.status} on /health"
        except urllib.error.HTTPError as error:
            problem = f"HTTP {error.code} on /health: not an MLflow server"
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            problem = f"unreachable ({' '.join(str(reason).split())})"
        raise ServiceError(
            f"MLflow tracking server {mask(uri)} {problem}: start it (`make server` on that "
            f"machine) or correct {setting}."
        )
    if "://" in uri and not uri.startswith(("sqlite", "file")):
        check_database(uri, "MLflow tracking store", setting)
    if uri.startswith("sqlite:///"):
        relocate_artifacts(Path(uri.removeprefix("sqlite:///")))


def relocate_artifacts(database: Path) -> int:
    """Point a moved SQLite store at the ``mlartifacts/`` beside it; return the rows rewritten.

    MLflow records each artifact location as an absolute path (``file:///old/mlartifacts/...``
    in experiments, runs, logged models and model versions), so a copied or moved workspace
    would write its runs into, and serve its models from, the original's folder, and fail once
    that is gone. When the store's locations under an ``mlartifacts/`` are not the one beside
    it, every text column that names the old folder is rewritten, in one transaction."""
    import sqlite3

    if not database.is_file():
        return 0
    here = database.resolve().parent / paths.MLARTIFACTS
    marker = f"/{paths.MLARTIFACTS}"
    with contextlib.closing(sqlite3.connect(database, timeout=60)) as store:
        try:
            locations = store.execute("SELECT artifact_location FROM experiments").fetchall()
        except sqlite3.OperationalError:  # not (yet) an MLflow store
            return 0
        olds = {
            location[len("file://") : location.index(marker) + len(marker)]
            for (location,) in locations
            if (location or "").startswith("file:///") and marker in location
        } - {here.as_posix()}
        rewritten = 0
        with store:  # one transaction: all of it or nothing
            for old in sorted(olds):
                forms = [(Path(old).as_uri(), here.as_uri()), (old, here.as_posix())]
                store.create_function("relocated", 1, functools.partial(_relocated, forms=forms))
                for table, column in _text_columns(store):
                    rewritten += store.execute(
                        f'UPDATE "{table}" SET "{column}" = relocated("{column}") '
                        f'WHERE instr("{column}", ?) > 0 OR instr("{column}", ?) > 0',
                        (forms[0][0], forms[1][0]),
                    ).rowcount
    if rewritten:
        print(f"[tracking] {database} was moved: {rewritten} artifact locations now in {here}")
    return rewritten


def _relocated(value: str, forms: list[tuple[str, str]]) -> str:
    """``value`` with each old form (URI, path) replaced by its new one, never twice."""
    for index, (before, _) in enumerate(forms):
        value = value.replace(before, f"\0{index}\0")
    for index, (_, after) in enumerate(forms):
        value = value.replace(f"\0{index}\0", after)
    return value


def _text_columns(store: Any) -> list[tuple[str, str]]:
    """(table, column) for every text column of the SQLite database ``store``."""
    tables = [
        name for (name,) in store.execute("SELECT name FROM sqlite_master WHERE type='table'")
    ]
    return [
        (table, column[1])
        for table in tables
        for column in store.execute(f'PRAGMA table_info("{table}")')
        if any(kind in (column[2] or "").upper() for kind in ("CHAR", "TEXT", "CLOB"))
    ]


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else SQLite ``mlflow.db`` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_DB).resolve()}"


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends (main thread only): MLflow creates a new store's tables
    in several steps, and a KeyboardInterrupt between two of them leaves a database every later
    run refuses ("table ... already exists")."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    heard: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: heard.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if heard and callable(previous):
        previous(signal.SIGINT, None)


def setup(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the tracking URI and the pipeline's experiment; return its id."""
    with _sigint_deferred():
        return _setup(experiment)


def _setup(experiment: str) -> str:
    import mlflow

    uri = tracking_uri()
    check_tracking(uri)
    mlflow.set_tracking_uri(uri)
    artifact_root = None
    if uri.startswith("sqlite:///"):
        # Keep artifacts beside the database, not in the current directory's ./mlruns.
        artifact_root = Path(uri.removeprefix("sqlite:///")).resolve().parent / paths.MLARTIFACTS
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = mlflow.create_experiment(
                experiment, artifact_location=artifact_root.as_uri() if artifact_root else None
            )
        except mlflow.exceptions.MlflowException:
            # Another machine (or worker) created it a moment ago: use that one.
            found = mlflow.get_experiment_by_name(experiment)
            if found is None:
                raise
            experiment_id = found.experiment_id
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    """The current commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def standard_tags(variant: str, stage: str, data_checksum: str) -> dict[str, str]:
    """The tags every run carries."""
    return {
        "variant": variant,
        "git_commit": git_commit(),
        "data_checksum": data_checksum,
        "dvc_stage": stage,
    }


def write_run_ref(path: str | Path, run_id: str, experiment_id: str, **extra: Any) -> None:
    """Record which MLflow run a model belongs to (``models/<variant>/run.json``), with
    ``extra`` facts of this run (timings). Differs on every run: ``.dvcignore`` keeps every
    ``run.json`` out of the hashes DVC records in dvc.lock."""
    fileio.write_json(
        path,
        {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "tracking_uri": tracking_uri(),
            **extra,
        },
    )


def finished_run(run_ref_path: str | Path) -> str:
    """The id of the training run named in ``run.json``, for a later stage to log into.

    The run stays finished: callers log with ``run_id=`` (``mlflow.log_metrics(...,
    run_id=run_id)``, ``MlflowClient``), never by re-opening it, so its start and end times keep
    measuring training alone (``mlflow.start_run(run_id=...)`` would set its end to the last
    stage's). Stages call it before they write any output. If the run is missing from this
    tracking store (the store was deleted or ``MLFLOW_TRACKING_URI`` changed), a
    ``MissingRunError`` says to re-run training; a SQLite store that does not exist is not
    created on the way, nor an experiment in a store that lacks the run.
    """
    run_id = _run_id(run_ref_path)
    uri = tracking_uri()
    missing = MissingRunError(
        f"MLflow run {run_id} from {run_ref_path} is not in {mask(uri)}: {RETRAIN} or point "
        "MLFLOW_TRACKING_URI at the store it was logged to."
    )
    database = uri.removeprefix("sqlite:///").split("?")[0]
    if uri.startswith("sqlite:///") and not Path(database).exists():
        raise missing
    import mlflow

    check_tracking(uri)
    try:
        mlflow.MlflowClient(uri).get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        raise missing from error
    setup()
    return run_id


def logged_run(run_ref_path: str | Path) -> str | None:
    """``finished_run(run_ref_path)``, or None when there is no ``run.json`` (nothing to log
    into: a model trained outside the pipeline, the raw-pixel anchor)."""
    return finished_run(run_ref_path) if Path(run_ref_path).exists() else None


def _run_id(run_ref_path: str | Path) -> str:
    """The ``run_id`` of a ``run.json`` (``write_run_ref``); a file without one is corrupt."""
    if not Path(run_ref_path).exists():
        raise FileNotFoundError(
            f"{run_ref_path} not found: train the variant first (dvc repro train@<variant>)."
        )
    reference = fileio.read_json(run_ref_path, fix=RETRAIN)
    run_id = reference.get("run_id") if isinstance(reference, Mapping) else None
    if not isinstance(run_id, str) or not run_id:
        raise errors.corrupt(run_ref_path, "no run_id", RETRAIN)
    return run_id


def log_file_as(path: str | Path, name: str, *, artifact_path: str, run_id: str) -> None:
    """Log the file ``path`` into run ``run_id`` as ``<artifact_path>/<name>``.

    MLflow names an artifact after its file; a temporary copy gives it another name
    (metrics/conv.json is logged as evaluation/metrics.json).
    """
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / name
        copy.write_text(Path(path).read_text())
        mlflow.log_artifact(str(copy), artifact_path=artifact_path, run_id=run_id)


def dataset(x: Any, *, split: str, card: Mapping[str, Any]) -> Any:
    """The processed ``split`` (``train``, ``val``) as an MLflow dataset for ``mlflow.log_input``.

    Its digest is the pipeline's data checksum (``card.json``'s ``checksum`` over all splits),
    cut to the 36 characters MLflow stores; the full SHA-256 is the run's ``data_checksum`` tag.
    Its source is the split's path in the repository (``data/processed/<split>.npz``, DVC's).
    """
    import mlflow

    with warnings.catch_warnings():
        # MLflow registers its local-file source twice and says so on every relative path.
        warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
        return mlflow.data.from_numpy(
            x,
            source=(paths.PROCESSED / f"{split}.npz").as_posix(),
            name=f"{card.get('source', 'data')}-{split}",
            digest=str(card["checksum"])[:DATASET_DIGEST_CHARS],
        )
