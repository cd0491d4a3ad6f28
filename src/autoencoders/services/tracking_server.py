"""The team's MLflow tracking server (``make server``) and the UI link (``make ui``).

    python -m autoencoders.services.tracking_server server --backend-store URL --artifacts DIR
    python -m autoencoders.services.tracking_server ui [--port P]   # prints the runs' link
    python -m autoencoders.services.tracking_server check           # the store answers

A server or database that cannot be used stops with one line naming it (password masked) and the
fix (``tracking.ServiceError``), before anything starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from autoencoders import errors, tracking

# The MLflow 3 UI's "Model training" view of an experiment (its default is GenAI).
WORKFLOW_TYPE = "machine_learning"


def ui_url(base: str, experiment_id: str | None) -> str:
    """The MLflow UI link that opens on the experiment's training runs.

    MLflow 3's UI shows an experiment as GenAI (traces) or "Model training" (runs) by the URL's
    ``workflowType``, else by the browser's last choice, defaulting to GenAI.
    """
    base = base.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?workflowType={WORKFLOW_TYPE}"
    return f"{base}/#/experiments/{experiment_id}?workflowType={WORKFLOW_TYPE}"


def experiment_id(uri: str, experiment: str = tracking.EXPERIMENT) -> str | None:
    """The id of ``experiment`` in the tracking store at ``uri``, or None (no run yet)."""
    import mlflow

    found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    return None if found is None else found.experiment_id


def ui_command(backend_store: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line of ``make ui`` (a local store: SQLite or a database)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow) if mlflow.exists() else "mlflow",
        "ui",
        "--backend-store-uri",
        backend_store,
        "--host",
        host,
        "--port",
        str(port),
    ]


def ui(uri: str, host: str, port: int) -> None:
    """``make ui``: print the link to the training runs, then run ``mlflow ui`` on ``uri``.

    A tracking server (``http://...``) has its own UI: print its link and start nothing.
    """
    tracking.check_tracking(uri)
    found = experiment_id(uri)
    note = "" if found else f" (no experiment {tracking.EXPERIMENT!r} yet: run `make repro` first)"
    if uri.startswith(("http://", "https://")):
        print(
            f"MLflow UI (the team's server): {ui_url(tracking.mask(uri), found)}{note}", flush=True
        )
        return
    print(f"MLflow UI, training runs: {ui_url(f'http://{host}:{port}', found)}{note}", flush=True)
    command = ui_command(uri, host, port)
    os.execvp(command[0], command)


def server_command(
    backend_store: str,
    artifacts: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    allowed_hosts: str = "",
) -> list[str]:
    """The ``mlflow server`` command line of ``make server``: a shared tracking server whose
    clients reach the artifact store through it (``--serve-artifacts``)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow) if mlflow.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        backend_store,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if allowed_hosts:
        # MLflow accepts Host headers of localhost and private IPs only, unless told otherwise.
        command += ["--allowed-hosts", allowed_hosts]
    return command


def serve(
    backend_store: str, artifacts: str, host: str, port: int, allowed_hosts: str = ""
) -> None:
    """Check the backend store, then replace this process by ``mlflow server``."""
    tracking.check_database(backend_store, "MLflow backend store", "BACKEND_STORE")
    if "://" not in artifacts:
        path = Path(artifacts).expanduser().resolve()
        if not path.parent.is_dir():
            raise tracking.ServiceError(
                f"artifact store {path}: its parent directory does not exist; create it or set "
                "ARTIFACTS to a directory, s3://bucket/prefix or gs://bucket/prefix."
            )
        path.mkdir(exist_ok=True)
        artifacts = str(path)
    command = server_command(backend_store, artifacts, host, port, allowed_hosts)
    print(
        f"[server] MLflow on http://{host}:{port} (backend {tracking.mask(backend_store)}, "
        f"artifacts {artifacts}); clients: export MLFLOW_TRACKING_URI=http://<this host>:{port}",
        flush=True,
    )
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="make server: a shared MLflow tracking server")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="check the backend store, run mlflow server")
    server.add_argument("--backend-store", required=True, help="postgresql+psycopg://... URL")
    server.add_argument("--artifacts", required=True, help="a directory, s3:// or gs:// URL")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--allowed-hosts", default="", help="Host headers beyond private IPs")
    show = commands.add_parser("ui", help="print the training runs' link, run mlflow ui")
    show.add_argument("--uri", default=None, help="default: MLFLOW_TRACKING_URI or mlflow.db")
    show.add_argument("--host", default="127.0.0.1")
    show.add_argument("--port", type=int, default=5000)
    check = commands.add_parser("check", help="check that MLFLOW_TRACKING_URI answers")
    check.add_argument("--uri", default=None)
    args = parser.parse_args(argv)
    if args.command == "server":
        serve(args.backend_store, args.artifacts, args.host, args.port, args.allowed_hosts)
    elif args.command == "ui":
        ui(args.uri or tracking.tracking_uri(), args.host, args.port)
    else:
        tracking.check_tracking(args.uri)
        print(
            f"MLflow tracking store {tracking.mask(args.uri or tracking.tracking_uri())} answers."
        )


if __name__ == "__main__":
    errors.cli(main, program="python -m autoencoders.services.tracking_server")
