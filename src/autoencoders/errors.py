"""Expected failures end a stage or command in one line: what is wrong, where, and the fix.

A bad params.yaml value, a missing or corrupted file, an unusable URL: these are the user's to
fix, so they reach the terminal as ``<program>: error: <message>`` with exit code 1 and no
traceback. Code raises a ``UserError`` (``config.ConfigError``, ``errors.DataError``,
``CorruptFileError``, ...) whose message names the file or key and the fix; ``cli`` is the one
handler, at the boundary of every stage (``timing.run_stage``) and command line. Anything else is
a bug and keeps its traceback. ``--debug`` (or ``AUTOENCODERS_DEBUG=1``) shows the traceback of an
expected failure too.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEBUG_ENV = "AUTOENCODERS_DEBUG"
DEBUG_FLAG = "--debug"
EXIT_CODE = 1


class UserError(Exception):
    """An expected failure: the message names the file or key and how to fix it."""


class CorruptFileError(UserError, ValueError):
    """A file exists but cannot be read as what it should be (truncated, hand-edited)."""


class DataError(UserError, ValueError):
    """Bad or unavailable data; the message names the fix."""


def corrupt(path: str | Path, problem: BaseException | str, fix: str) -> CorruptFileError:
    """A CorruptFileError naming ``path``, what is wrong with it (one line) and ``fix``."""
    reason = " ".join(str(problem).split())[:200] or type(problem).__name__
    return CorruptFileError(f"{path} is unreadable ({reason}): {fix}.")


def one_line(error: BaseException) -> str:
    """The message of ``error`` on a single line (a multi-line library message is joined)."""
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return text or type(error).__name__


# What the boundary turns into one line: our own expected failures, plus the standard library's
# I/O errors (disk full, permission denied, a path that is a directory), which name their file.
EXPECTED: tuple[type[BaseException], ...] = (UserError, OSError, json.JSONDecodeError)


def debug_requested(argv: list[str] | None = None) -> bool:
    """True when ``--debug`` is among the arguments or ``AUTOENCODERS_DEBUG`` is set."""
    arguments = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in arguments or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def cli(main: Callable[[], Any], program: str | None = None) -> Any:
    """Run ``main()``; an expected failure prints one line to stderr and exits with 1.

    ``--debug`` is taken out of ``sys.argv`` before ``main`` parses it, and re-raises instead.
    """
    debug = debug_requested()
    if DEBUG_FLAG in sys.argv:
        sys.argv.remove(DEBUG_FLAG)
    program = program or Path(sys.argv[0]).name
    try:
        return main()
    except EXPECTED as error:
        if debug:
            raise
        print(f"{program}: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(EXIT_CODE) from None
