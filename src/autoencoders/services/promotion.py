"""``make promote``: move the ``champion`` alias to a candidate, once it compares well.

Over a champion the two encoder versions are compared first, one printed line per criterion:
the input contract (name, shape, dtype, scaling), the data checksum of the runs that produced
them, and their validation loss (``best_val_loss``, at most ``VAL_LOSS_TOLERANCE`` worse); a
failed criterion refuses the move unless ``force`` (``FORCE=1``) overrides it. The moved
versions are tagged ``promoted_from``, ``promoted_at``, ``promoted_by``, ``promotion_forced``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import getpass
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from autoencoders import registry
from autoencoders.registry import CANDIDATE, CHAMPION, RegistryError, model_name
from autoencoders.services import registered
from autoencoders.services.registered import aliases, input_contract, resolve, versions

# How much higher (relative) the candidate's best_val_loss may be than the champion's: the same
# configuration retrained with another seed, or on another machine's float summation order,
# moves it by a few percent without the model being worse; more than that is a regression to
# look at before serving it (or to override with --force).
VAL_LOSS_TOLERANCE = 0.05
PROMOTION_TAGS = ("promoted_from", "promoted_at", "promoted_by", "promotion_forced")


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
    checks.append(_loss_check(champion["best_val_loss"], candidate["best_val_loss"], tolerance))
    return checks


def _loss_check(old: float | None, new: float | None, tolerance: float) -> Check:
    """The validation-loss criterion: at most ``tolerance`` (relative) above the champion's."""
    limit = f"at most {tolerance:.0%} above"
    if old is None:
        shown = "not recorded" if new is None else f"{new:.6g}"
        return Check("best_val_loss", "not recorded", f"{shown} (not compared)", True)
    if new is None:
        return Check(
            "best_val_loss",
            f"{old:.6g}",
            f"not recorded ({limit} wanted)",
            False,
            "best_val_loss not recorded for the candidate",
        )
    change = new / old - 1 if old else (0.0 if new == old else float("inf"))
    ok = new <= old * (1 + tolerance)
    return Check(
        "best_val_loss",
        f"{old:.6g}",
        f"{new:.6g} ({change:+.1%}, {limit})",
        ok,
        "" if ok else f"best_val_loss {change:+.1%} (tolerance {tolerance:.0%})",
    )


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
    client = registered.client()
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
    again = f"make promote VARIANT={variant}{f' VERSION={target}' if given else ''} FORCE=1"
    forced = _gate(client, name, target, force, again)
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


def _gate(client: Any, name: str, target: str, force: bool, again: str) -> bool:
    """Compare ``target`` with the current champion, printing each criterion; a failed one is
    a RegistryError naming it and ``again`` (the forcing command) unless ``force``. Returns
    whether ``force`` overrode a failed criterion."""
    previous = aliases(client, name).get(CHAMPION)
    if previous is None:
        print(
            f"[promote] {name} has no {CHAMPION} yet: version {target} is promoted without "
            "comparison",
            flush=True,
        )
        return False
    print(f"[promote] {name} champion version {previous} vs version {target}:", flush=True)
    checks = compare(version_record(client, name, previous), version_record(client, name, target))
    for check in checks:
        print(f"[promote]   {check.line()}", flush=True)
    failed = [check.failure for check in checks if not check.ok]
    if failed and not force:
        raise RegistryError(
            f"{name} version {target} not promoted over version {previous}: "
            f"{'; '.join(failed)} (comparison above); to promote it anyway: {again} (--force)."
        )
    if failed:
        print(f"[promote] --force overrides: {'; '.join(failed)}", flush=True)
    return bool(failed)


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
