"""MLflow's model server for a registered encoder or scorer (``make serve``), and the
``champion`` alias (``make promote``).

    python -m autoencoders.services.serving serve --variant conv [--version N | --alias champion]
        [--role encoder|scorer] [--host 127.0.0.1] [--port 5001]
    python -m autoencoders.services.serving promote --variant conv [--version N] [--force]

Every export registers a new version of ``<v>-encoder``, every anomaly stage one of
``<v>-scorer``, and points their alias ``candidate`` at it (``autoencoders.registry``).
``promote`` moves ``champion`` to the encoder's candidate (or to ``--version``) and the
scorer's to the version fitted beside that encoder (the scorer's ``encoder_version`` tag).
Over a champion it first compares the two encoder versions and prints one line per criterion:
the input contract (name, shape, dtype, scaling), the data checksum of the runs that produced
them, and their validation loss (``best_val_loss``, at most ``VAL_LOSS_TOLERANCE`` worse); a
failed criterion refuses the move unless ``--force`` (``FORCE=1``) overrides it. The moved
versions are tagged ``promoted_from``, ``promoted_at``, ``promoted_by``, ``promotion_forced``.
``serve`` resolves the model (default: the ``champion``; where none was promoted yet, the
``candidate``, with a warning; never merely the newest), prints its URI and a curl example,
then becomes ``mlflow models serve --env-manager local`` in the current environment, bound to
127.0.0.1 unless told otherwise. An unknown model, version or alias stops it with one line.
The served models are ``autoencoders.served``'s pyfuncs: a request is checked and scaled as
``inference`` and the CLI do, and a refused one is a 400 whose message is the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import getpass
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator, Mapping
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
# How much higher (relative) the candidate's best_val_loss may be than the champion's: the same
# configuration retrained with another seed, or on another machine's float summation order,
# moves it by a few percent without the model being worse; more than that is a regression to
# look at before serving it (or to override with --force).
VAL_LOSS_TOLERANCE = 0.05
PROMOTION_TAGS = ("promoted_from", "promoted_at", "promoted_by", "promotion_forced")


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
    contract = input_contract(info.metadata, info.signature)
    return contract["name"], contract["shape"]


def input_contract(metadata: Mapping[str, Any] | None, signature: Any) -> dict[str, Any]:
    """The model's input name, shape, dtype and scaling (None where unstated): from the
    metadata ``autoencoders.served`` writes, else from the input signature (an ONNX-flavour
    model; its dtype is the tensor's, its scaling unstated)."""
    metadata = metadata or {}
    if "input_name" in metadata:
        return {
            "name": metadata["input_name"],
            "shape": [int(size) for size in metadata["input_shape"]],
            "dtype": metadata.get("input_dtype"),
            "scaling": metadata.get("input_scaling"),
        }
    if signature is None or signature.inputs is None:
        return {"name": None, "shape": None, "dtype": None, "scaling": None}
    (spec,) = signature.inputs.inputs
    dtype = getattr(spec, "type", None)
    return {
        "name": spec.name,
        "shape": list(spec.shape),
        "dtype": None if dtype is None else str(dtype),
        "scaling": None,
    }


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


@dataclasses.dataclass(frozen=True)
class Check:
    """One criterion of a promotion: the champion's value, the candidate's, and whether the
    candidate passes (``failure`` names what failed, for the refusal's one line)."""

    criterion: str
    champion: str
    candidate: str
    ok: bool
    failure: str = ""

    def line(self) -> str:
        verdict = "ok" if self.ok else "refused"
        return (
            f"{self.criterion}: champion {self.champion} | candidate {self.candidate}: {verdict}"
        )


def _contract_text(contract: Mapping[str, Any]) -> str:
    if contract["name"] is None:
        return "not stated"
    text = f"{contract['name']}{contract['shape']}"
    if contract["dtype"] is not None:
        text += f" {contract['dtype']}"
    if contract["scaling"] is not None:
        text += f" ({contract['scaling']})"
    return text


def compare(
    champion: Mapping[str, Any],
    candidate: Mapping[str, Any],
    tolerance: float = VAL_LOSS_TOLERANCE,
) -> list[Check]:
    """The promotion's criteria for two versions' records (``version_record``): the same input
    contract (name and shape; dtype and scaling where both state them), the same data checksum
    (both unrecorded counts as the same), and a validation loss at most ``tolerance``
    (relative) above the champion's (a lower loss is better; a champion without one has
    nothing to regress from, a candidate without one over a champion with one cannot show it
    does not regress)."""
    # An ONNX-flavour version states its dtype, a pyfunc its scaling: a field is compared where
    # both versions state it, the name and shape always.
    contract_ok = all(
        champion["contract"][field] == candidate["contract"][field]
        for field in champion["contract"]
        if field in ("name", "shape")
        or None not in (champion["contract"][field], candidate["contract"][field])
    )
    checks = [
        Check(
            "input contract",
            _contract_text(champion["contract"]),
            _contract_text(candidate["contract"]),
            contract_ok,
            "" if contract_ok else "input contract differs",
        )
    ]
    old, new = champion["data_checksum"], candidate["data_checksum"]
    checks.append(
        Check(
            "data checksum",
            "not recorded" if old is None else old[:12],
            "not recorded" if new is None else new[:12],
            old == new,
            "" if old == new else "data checksum differs",
        )
    )
    old, new = champion["best_val_loss"], candidate["best_val_loss"]
    limit = f"at most {tolerance:.0%} above"
    if old is None:
        shown = "not recorded" if new is None else f"{new:.6g}"
        checks.append(Check("best_val_loss", "not recorded", f"{shown} (not compared)", True))
    elif new is None:
        checks.append(
            Check(
                "best_val_loss",
                f"{old:.6g}",
                f"not recorded ({limit} wanted)",
                False,
                "best_val_loss not recorded for the candidate",
            )
        )
    else:
        change = new / old - 1 if old else (0.0 if new == old else float("inf"))
        ok = new <= old * (1 + tolerance)
        checks.append(
            Check(
                "best_val_loss",
                f"{old:.6g}",
                f"{new:.6g} ({change:+.1%}, {limit})",
                ok,
                "" if ok else f"best_val_loss {change:+.1%} (tolerance {tolerance:.0%})",
            )
        )
    return checks


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """MLflow's download progress bar off (stderr is for the one line of an error)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ[key]
        else:
            os.environ[key] = before


def version_record(client: Any, name: str, version: str) -> dict[str, Any]:
    """What a promotion compares of ``name`` ``version``: its input contract (its MLmodel's
    metadata, ``input_contract``), and the ``data_checksum`` tag and ``best_val_loss`` metric
    of the run that logged it (None where not recorded)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        with tempfile.TemporaryDirectory() as folder, _quiet_downloads():
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}/MLmodel",
                dst_path=folder,
                tracking_uri=client.tracking_uri,
                registry_uri=client.tracking_uri,
            )
            model = Model.load(path)
    except (MlflowException, OSError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RegistryError(
            f"cannot read the MLmodel of {name} version {version} to compare it: {first}"
        ) from None
    record = {
        "contract": input_contract(model.metadata, model.signature),
        "data_checksum": None,
        "best_val_loss": None,
    }
    run_id = client.get_model_version(name, version).run_id
    if run_id:
        with contextlib.suppress(MlflowException):  # a deleted run: nothing recorded
            run = client.get_run(run_id)
            record["data_checksum"] = run.data.tags.get("data_checksum")
            record["best_val_loss"] = run.data.metrics.get("best_val_loss")
    return record


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


def promote(variant: str, version: str | None = None, force: bool = False) -> list[str]:
    """Move ``champion`` of ``<variant>-encoder`` to its candidate (or ``version``), and of
    ``<variant>-scorer`` to the scorer version exported with that encoder; returns (and
    prints) one line per model: which version the alias moved from and to.

    Over a current champion the two encoder versions are compared first (``compare``, one
    printed line per criterion); a failed criterion is a RegistryError naming it and the fix,
    unless ``force``. The moved versions get the tags ``PROMOTION_TAGS``; ``promotion_forced``
    is "true" where ``force`` overrode a failed criterion."""
    client = _client()
    name = model_name(variant, "encoder")
    given = version is not None
    if version is None:
        versions(client, name)  # the model exists
        named = aliases(client, name)
        if CANDIDATE not in named:
            raise RegistryError(
                f"{name} has no {CANDIDATE!r} version (re-run its export, or give VERSION=n)."
            )
        version = named[CANDIDATE]
    _, target = resolve(client, name, str(version))
    previous = aliases(client, name).get(CHAMPION)
    forced = False
    if previous is None:
        print(
            f"[promote] {name} has no {CHAMPION} yet: version {target} is promoted without "
            "comparison",
            flush=True,
        )
    else:
        print(f"[promote] {name} champion version {previous} vs version {target}:", flush=True)
        checks = compare(
            version_record(client, name, previous), version_record(client, name, target)
        )
        for check in checks:
            print(f"[promote]   {check.line()}", flush=True)
        failed = [check.failure for check in checks if not check.ok]
        if failed and not force:
            again = (
                f"make promote VARIANT={variant}{f' VERSION={target}' if given else ''} FORCE=1"
            )
            raise RegistryError(
                f"{name} version {target} not promoted over version {previous}: "
                f"{'; '.join(failed)} (comparison above); to promote it anyway: {again} (--force)."
            )
        if failed:
            forced = True
            print(f"[promote] --force overrides: {'; '.join(failed)}", flush=True)
    lines = [_move_champion(client, name, target, forced)]
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
            lines.append(_move_champion(client, scorer, paired[-1], forced))
        else:
            lines.append(f"{scorer}: no version was exported with {name} {target}; unchanged")
    for line in lines:
        print(f"[promote] {line}", flush=True)
    return lines


def _move_champion(client: Any, name: str, target: str, forced: bool = False) -> str:
    previous = aliases(client, name).get(CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, target)
    tags = {
        "promoted_from": "none" if previous is None else previous,
        "promoted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "promoted_by": _user(),
        "promotion_forced": "true" if forced else "false",
    }
    for key in PROMOTION_TAGS:
        client.set_model_version_tag(name, target, key, tags[key])
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
