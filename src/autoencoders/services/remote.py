"""The DVC remote of the pipeline: data, models and exports shared between clones.

    python -m autoencoders.services.remote push [--url URL]    # make push [DVC_REMOTE=URL]
    python -m autoencoders.services.remote pull [--url URL]    # make pull [DVC_REMOTE=URL]

``.dvc/config`` names a default remote ``shared``: the directory ``autoencoders-dvc-remote``
beside the repository (outside it). ``--url`` (``DVC_REMOTE``) points ``shared`` elsewhere for
this clone, remembered in the untracked ``.dvc/config.local``: a path (``/mnt/shared/dvc``) or
``s3://bucket/prefix`` (``pip install 'dvc[s3]'``), ``gs://`` (``dvc[gs]``) and so on.
A remote that cannot be used stops with one line naming it and the fix, before DVC touches
anything (``tracking.ServiceError``).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from autoencoders import errors
from autoencoders.tracking import ServiceError, mask

REMOTE = "shared"
# URL scheme -> (DVC plugin module, pip extra)
PLUGINS = {
    "s3": ("dvc_s3", "dvc[s3]"),
    "gs": ("dvc_gs", "dvc[gs]"),
    "azure": ("dvc_azure", "dvc[azure]"),
    "ssh": ("dvc_ssh", "dvc[ssh]"),
}


def _dvc() -> str:
    found = Path(sys.executable).with_name("dvc")
    return str(found) if found.exists() else (shutil.which("dvc") or "dvc")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_dvc(), *args], capture_output=True, text=True)


def configure(url: str) -> None:
    """Point this clone's ``shared`` remote at ``url`` (``.dvc/config.local``, untracked)."""
    result = _run("remote", "modify", "--local", REMOTE, "url", url)
    if result.returncode != 0:
        raise ServiceError(f"could not set the DVC remote to {mask(url)}: {result.stderr.strip()}")


def current_url() -> str:
    """The URL of the ``shared`` remote as DVC resolves it (local config included)."""
    result = _run("remote", "list")
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == REMOTE:
            return fields[1]
    raise ServiceError(
        f"no DVC remote named {REMOTE!r} in .dvc/config: run from the repository root, or set "
        "DVC_REMOTE=/path/or/s3://bucket/prefix."
    )


def check(url: str, action: str) -> str:
    """Raise ServiceError unless ``url`` can be used to ``push`` or ``pull``; return it."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme and scheme != "file":
        module, extra = PLUGINS.get(scheme, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            raise ServiceError(
                f"DVC remote {mask(url)} needs the {extra} extra: pip install '{extra}' "
                "(in .venv), or set DVC_REMOTE to a directory."
            )
        return url
    path = Path(url.removeprefix("file://"))
    if path.is_dir():
        return url
    if path.exists():
        raise ServiceError(f"DVC remote {url} is a file, not a directory: set DVC_REMOTE=<dir>.")
    if action == "push" and path.parent.is_dir():
        path.mkdir()  # a first push creates the remote's own directory, nothing above it
        return url
    fix = (
        f"create {path.parent} or set DVC_REMOTE to an existing directory or s3://bucket/prefix"
        if action == "push"
        else "set DVC_REMOTE to the team's remote (a directory or s3://bucket/prefix), or run "
        "`make push` in a clone that has the outputs first"
    )
    raise ServiceError(f"DVC remote {url} does not exist: {fix}.")


def transfer(action: str, url: str | None = None, targets: list[str] | None = None) -> int:
    """``dvc push`` / ``dvc pull`` to or from the shared remote; return DVC's exit code."""
    if url:
        if "://" not in url:
            url = str(Path(url).expanduser().resolve())
        resolved = check(url, action)  # before the clone's config is touched
        configure(url)
    else:
        resolved = check(current_url(), action)
    print(f"[{action}] DVC remote {REMOTE}: {mask(resolved)}", flush=True)
    return subprocess.run([_dvc(), action, "-r", REMOTE, *(targets or [])]).returncode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="make push / make pull: the DVC remote")
    parser.add_argument("action", choices=["push", "pull"])
    parser.add_argument("--url", default="", help="DVC_REMOTE: a directory or s3://... URL")
    parser.add_argument("targets", nargs="*", help="stages or outputs (default: all)")
    args = parser.parse_intermixed_args(argv)  # targets may follow --url
    sys.exit(transfer(args.action, args.url or None, args.targets))


if __name__ == "__main__":
    errors.cli(main, program="python -m autoencoders.services.remote")
