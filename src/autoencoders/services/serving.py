"""MLflow's model server for a registered encoder or scorer (``make serve``), and the
``champion`` alias (``make promote``).

    python -m autoencoders.services.serving serve --variant conv [--version N | --alias champion]
        [--role encoder|scorer] [--host 127.0.0.1] [--port 5001]
    python -m autoencoders.services.serving promote --variant conv [--version N]

Every export registers a new version of ``<v>-encoder``, every anomaly stage one of
``<v>-scorer``, and points their alias ``candidate`` at it (``autoencoders.registry``).
``promote`` moves ``champion`` to the encoder's candidate (or to ``--version``) and the
scorer's to the version fitted beside that encoder (the scorer's ``encoder_version`` tag).
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
from typing import Any

from autoencoders import errors, registry, tracking
from autoencoders.registry import (
    CANDIDATE,
    CHAMPION,
    ROLES,
    RegistryError,
    model_name,
)

DEFAULT_PORT = 5001


def _client() -> Any:
    """A client of the tracking store (``MLFLOW_TRACKING_URI``, else ./mlflow.db), which is
    also the registry; MLflow's process-wide URIs are left as they are."""
    import mlflow

    uri = tracking.tracking_uri()
    database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if database is not None and not database.is_file():  # MLflow would create an empty one
        raise RegistryError(
            f"no MLflow store at {database}: run the pipeline (make repro) here first, or set "
            "MLFLOW_TRACKING_URI to the store that holds the registry."
        )
    tracking.check_tracking(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def versions(client: Any, name: str) -> dict[str, Any]:
    """``name``'s model versions by number (as strings), oldest first; a model the registry
    lacks is a RegistryError naming the store and the fix."""
    found = client.search_model_versions(f"name='{name}'")
    if not found:
        variant, role = name.rsplit("-", 1)
        stage = "anomaly" if role == "scorer" else "export"
        raise RegistryError(
            f"no registered model {name!r} in {tracking.mask(tracking.tracking_uri())}: the "
            f"{stage}@{variant} stage registers it (make repro), or set "
            "MLFLOW_TRACKING_URI to the store that holds it (a team's server)."
        )
    return {str(v.version): v for v in sorted(found, key=lambda v: int(v.version))}


def aliases(client: Any, name: str) -> dict[str, str]:
    """``name``'s aliases: {alias: version number as a string} (stores differ in the type)."""
    found = client.get_registered_model(name).aliases
    return {alias: str(number) for alias, number in found.items()}


def resolve(
    client: Any, name: str, version: str | None = None, alias: str | None = None
) -> tuple[str, str]:
    """(the ``models:/`` URI, its version number): ``alias`` (``models:/name@alias``),
    ``version``, or else the ``champion`` (the ``candidate`` when none was promoted, with a
    warning on stderr). The newest version is never served by default: an experiment may have
    registered it."""
    if version is not None and alias is not None:
        raise RegistryError("give VERSION or ALIAS, not both.")
    known = versions(client, name)
    if alias is None and version is None:
        named = aliases(client, name)
        if CHAMPION not in named and CANDIDATE not in named:
            raise RegistryError(
                f"{name} has neither {CHAMPION!r} nor {CANDIDATE!r} (versions: "
                f"{', '.join(known)}): give VERSION=n, or promote one (make promote)."
            )
        alias = CHAMPION if CHAMPION in named else CANDIDATE
        if alias == CANDIDATE:
            print(
                f"[serve] warning: {name} has no {CHAMPION!r} yet; serving its {CANDIDATE!r} "
                f"(version {named[CANDIDATE]}); `make promote` makes it the champion.",
                file=sys.stderr,
                flush=True,
            )
    if alias is not None:
        named = aliases(client, name)
        if alias not in named:
            held = ", ".join(f"{a} -> {v}" for a, v in sorted(named.items())) or "none"
            raise RegistryError(
                f"{name} has no alias {alias!r} (its aliases: {held}); `make promote` sets "
                f"{CHAMPION!r}, each export sets {CANDIDATE!r}."
            )
        return f"models:/{name}@{alias}", named[alias]
    if str(version) not in known:
        raise RegistryError(f"{name} has no version {version} (versions: {', '.join(known)}).")
    return f"models:/{name}/{version}", str(version)


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
    metadata = info.metadata or {}
    if "input_name" in metadata:
        return metadata["input_name"], [int(size) for size in metadata["input_shape"]]
    (spec,) = info.signature.inputs.inputs
    return spec.name, list(spec.shape)


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
    client = _client()
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


def promote(variant: str, version: str | None = None) -> list[str]:
    """Move ``champion`` of ``<variant>-encoder`` to its candidate (or ``version``), and of
    ``<variant>-scorer`` to the scorer version exported with that encoder; returns (and
    prints) one line per model: which version the alias moved from and to."""
    client = _client()
    name = model_name(variant, "encoder")
    if version is None:
        versions(client, name)  # the model exists
        named = aliases(client, name)
        if CANDIDATE not in named:
            raise RegistryError(
                f"{name} has no {CANDIDATE!r} version (re-run its export, or give VERSION=n)."
            )
        version = named[CANDIDATE]
    _, target = resolve(client, name, str(version))
    lines = [_move_champion(client, name, target)]
    scorer = model_name(variant, "scorer")
    if not client.search_registered_models(f"name='{scorer}'"):
        lines.append(f"{scorer}: not registered (the variant has no scorer)")
    else:
        paired = [
            number
            for number, found in versions(client, scorer).items()
            if found.tags.get(registry.ENCODER_VERSION_TAG) == target
        ]
        if paired:
            lines.append(_move_champion(client, scorer, paired[-1]))
        else:
            lines.append(f"{scorer}: no version was exported with {name} {target}; unchanged")
    for line in lines:
        print(f"[promote] {line}", flush=True)
    return lines


def _move_champion(client: Any, name: str, target: str) -> str:
    previous = aliases(client, name).get(CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, target)
    was = "unset" if previous is None else f"version {previous}"
    return f"{name}: {CHAMPION} {was} -> version {target}"


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
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.variant, args.role, args.version, args.alias, args.host, args.port)
    else:
        promote(args.variant, args.version)


if __name__ == "__main__":
    errors.cli(main, program="python -m autoencoders.services.serving")
