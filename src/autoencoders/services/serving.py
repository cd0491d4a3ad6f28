"""MLflow's model server for a registered encoder or scorer (``make serve``), and the
``champion`` alias (``make promote``).

    python -m autoencoders.services.serving serve --variant conv [--version N | --alias champion]
        [--role encoder|scorer] [--host 127.0.0.1] [--port 5001]
    python -m autoencoders.services.serving promote --variant conv [--version N] [--force]

Every export registers a new version of ``<v>-encoder``, every anomaly stage one of
``<v>-scorer``, and points their alias ``candidate`` at it (``autoencoders.registry``).
``promote`` moves ``champion`` to the encoder's candidate (or to ``--version``) and the
scorer's to the version fitted beside that encoder (the scorer's ``encoder_version`` tag),
after comparing them (``services.promotion``; the registry's lookups: ``services.registered``).
``serve`` resolves the model (default: the ``champion``; where none was promoted yet, the
``candidate``, with a warning; never merely the newest), prints its URI and a curl example,
then becomes ``mlflow models serve --env-manager local`` in the current environment, bound to
127.0.0.1 unless told otherwise. An unknown model, version or alias stops it with one line.
The served models are ``autoencoders.served``'s pyfuncs: a request is checked and scaled as
``inference`` and the CLI do, and a refused one is a 400 whose message is the reason.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from autoencoders import errors
from autoencoders.registry import CANDIDATE, CHAMPION, ROLES, model_name
from autoencoders.services import registered
from autoencoders.services.promotion import promote
from autoencoders.services.registered import input_contract, resolve

DEFAULT_PORT = 5001


def serve_command(uri: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> list[str]:
    """The ``mlflow models serve`` command line: this environment's packages, no new one."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow) if mlflow.exists() else "mlflow",
        "models",
        "serve",
        "--model-uri",
        uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
    ]


def input_shape(uri: str) -> tuple[str, list[int]]:
    """The served model's input name and shape (-1 for the batch): from its metadata (the
    pyfunc of ``autoencoders.served``, whose signature states the outputs only), else from the
    input signature (a version logged as an ONNX-flavour model)."""
    import mlflow

    info = mlflow.models.get_model_info(uri)
    contract = input_contract(info.metadata, info.signature)
    return contract["name"], contract["shape"]


def curl_example(host: str, port: int, input_name: str, shape: list[int]) -> str:
    """A ready-to-paste shell line: one all-zero image in the ``inputs`` form, POSTed."""
    image = "0.0"
    for size in reversed(shape[1:]):
        image = f"[{image}] * {size}"
    payload = f'import json; print(json.dumps({{"inputs": {{"{input_name}": [{image}]}}}}))'
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/invocations"
    return (
        f"python3 -c {shlex.quote(payload)} | curl -s {url} "
        "-H 'Content-Type: application/json' --data @-"
    )


def serve(
    variant: str,
    role: str = "encoder",
    version: str | None = None,
    alias: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> None:
    """Resolve the model, print its URI and a curl example, then become ``mlflow models
    serve`` on ``host:port``."""
    import mlflow

    name = model_name(variant, role)
    client = registered.client()
    uri, number = resolve(client, name, version, alias)
    # This process becomes the server: the store it resolved is the one the server reads.
    os.environ["MLFLOW_TRACKING_URI"] = client.tracking_uri
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_registry_uri(client.tracking_uri)
    input_name, shape = input_shape(uri)
    print(f"[serve] {uri} (version {number}) on http://{host}:{port}/invocations", flush=True)
    print(f"[serve] try: {curl_example(host, port, input_name, shape)}", flush=True)
    command = serve_command(uri, host, port)
    # mlflow's CLI starts `uvicorn` by name: this environment's, even when it is not activated.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="make serve / make promote: the MLflow registry")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="mlflow models serve a registered encoder or scorer")
    run.add_argument("--variant", required=True)
    run.add_argument("--role", default="encoder", choices=ROLES)
    run.add_argument("--version", default=None, help=f"default: the {CHAMPION}, else {CANDIDATE}")
    run.add_argument("--alias", default=None, help=f"{CHAMPION}, {CANDIDATE}, ...")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=DEFAULT_PORT)
    move = commands.add_parser("promote", help=f"move {CHAMPION} to the {CANDIDATE} (or VERSION)")
    move.add_argument("--variant", required=True)
    move.add_argument("--version", default=None, help=f"the encoder's; default its {CANDIDATE}")
    move.add_argument(
        "--force",
        action="store_true",
        help="promote even where the input contract, data checksum or validation loss differ",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.variant, args.role, args.version, args.alias, args.host, args.port)
    else:
        promote(args.variant, args.version, args.force)


if __name__ == "__main__":
    errors.cli(main, program="python -m autoencoders.services.serving")
