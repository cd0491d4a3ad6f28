"""The docs' shell commands run as written from a fresh clone.

Pages checked: README.md, ARCHITECTURE.md and docs/*.md, except docs/experiments.md (the dated
log). Every fenced block labelled bash, sh, shell, zsh or console is read as shell: in a console
block only the lines after ``$ `` (the rest is output); ``\\`` continues a line; ``&&``, ``||``,
``|`` and ``;`` separate commands; ``#`` starts a comment; leading ``NAME=value`` words are the
environment. Nothing is run but ``--help``, once per command (cached); each command must name:

- ``make T [VAR=value]``: a target the Makefile defines, variables the Makefile reads;
- ``python -m M [sub] --opt``: a module of this project (``src/``, without importing it) or one
  the interpreter finds; for the project's modules, its subcommand and every option in its
  ``--help``; ``python path.py --opt``: an existing file, the options in its ``--help``;
- ``dvc sub [subsub] --opt``: a real DVC command and options (``dvc ... --help``), the stages
  named by ``repro``, ``exp run``, ``pull``, ``push``, ``fetch``, ``status``, ``checkout`` in
  dvc.yaml, and the keys set by ``-S`` in params.yaml;
- ``git checkout -- paths``: paths that exist;
- ``mlflow sub``: a subcommand of ``mlflow --help``.

Commands quoted in prose (an inline code span starting with make, python, dvc or mlflow) get the
same checks, all but the activation rule: blocks are what a reader pastes.

A bare ``python``/``dvc``/``mlflow``/``pip``/``ray``... (installed in ``.venv``, not on a fresh
machine's PATH) appears only on a page that states the activation line, ACTIVATION, above its
first such block; ``.venv/bin/dvc`` needs none. A page that runs ``dvc exp run`` in the workspace
(no ``--temp``/``--queue``) shows the way back (``dvc checkout``). Placeholders (``<variant>``,
``...``) are skipped word by word, ``[--opt]`` is read as ``--opt``. Commands of other tools are
listed in UNCHECKED, each with why; a command of none of these kinds fails (a typo such as
``mkae``). Unlabelled blocks whose lines start with a command fail: they would escape all this.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "docs" / "experiments.md"
SHELL_LANGUAGES = {"bash", "sh", "shell", "zsh", "console"}
ACTIVATION = "source .venv/bin/activate"
VENV_BIN = ".venv/bin/"
# Installed in .venv by `make venv`: bare, they need the activation line.
ENVIRONMENT = set(
    "python python3 dvc mlflow pip pip3 ray pytest ruff optuna optuna-dashboard".split()
) | {"autoencoders"}
# Commands the docs may use whose arguments are not checked, and why.
UNCHECKED = {
    "sudo": "PostgreSQL's createuser/createdb on the server machine (docs/team.md)",
    "sed": "edits a file the page names; its own syntax",
    "export": "a shell builtin setting the environment",
    "source": "the activation line itself",
    "curl": "an HTTP client talking to a server the page started",
    "pip": "installs into the active environment (the activation rule applies)",
    "ray": "Ray's cluster CLI, for other machines; a job's command after `--` is checked",
}
OPERATORS = {"&&", "||", "|", ";", "&"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
# <variant>, ..., and a capitalised word standing for a value (--out DIR, repro STAGE, HEAD:6379).
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|…|^[A-Z][A-Z0-9_]*(?::\d+)?$")
INLINE_CODE = re.compile(r"`([^`\s][^`]*)`")
INLINE_PROGRAMS = {"make", "python", "python3", "dvc", "mlflow"}
# DVC commands whose positionals are stages (or paths): repro, exp run, pull ...
DVC_TARGET_COMMANDS = {"repro", "exp run", "experiments run", "pull", "push", "fetch", "status"}
DVC_TARGET_COMMANDS.add("checkout")


@dataclass(frozen=True)
class Command:
    """One command of a docs page: where it is and its words (env assignments dropped)."""

    page: Path
    line: int
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {' '.join(self.words)}"

    @property
    def name(self) -> str:
        """The program, without a leading .venv/bin/."""
        return self.words[0].removeprefix(VENV_BIN)

    @property
    def bare(self) -> bool:
        return self.name in ENVIRONMENT and not self.words[0].startswith(VENV_BIN)


def pages() -> list[Path]:
    """Every page the checks cover."""
    found = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [page for page in found if page.exists() and page != HISTORY]


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, line number of the opening fence, lines) of every fenced block."""
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            if current is None:
                current = (stripped[3:].strip().split(" ")[0].lower(), number, [])
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current[2].append(line)
    return blocks


def command_lines(language: str, start: int, lines: list[str]) -> list[tuple[int, str]]:
    """(line number, logical line) of a shell block: continuations joined, console output out."""
    found, pending, first = [], None, 0
    for offset, raw in enumerate(lines, start=1):
        if pending is None:
            if language == "console":
                if not raw.startswith("$ "):
                    continue
                raw = raw[2:]
            if not raw.strip():
                continue
            pending, first = "", start + offset
        text = raw.rstrip()
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        found.append((first, pending + text))
        pending = None
    if pending:
        found.append((first, pending))
    return found


def unbracket(word: str) -> str:
    """``[--maps]`` -> ``--maps``: an optional part of a synopsis is checked like the rest."""
    if word.startswith("["):
        word = word[1:]
        return word[:-1] if word.endswith("]") else word
    return word[:-1] if word.endswith("]") and "[" not in word else word


def split_commands(line: str) -> list[list[str]]:
    """The commands of one logical shell line, each its words without env assignments."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, words = [], []
    for word in lexer:
        if word in OPERATORS:
            commands.append(words)
            words = []
        else:
            words.append(unbracket(word))
    commands.append(words)
    result = []
    for words in commands:
        while words and ENV_ASSIGNMENT.match(words[0]):
            words = words[1:]
        words = [word for word in words if word]
        if words:
            result.append(words)
    return result


def page_commands(page: Path, text: str) -> list[Command]:
    """Every command of a page's shell blocks; a Ray job's command after ``--`` too."""
    found = []
    for language, start, lines in fenced_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        for number, line in command_lines(language, start, lines):
            for words in split_commands(line):
                found.append(Command(page, number, tuple(words)))
                if words[0] == "ray" and "--" in words:
                    inner = words[words.index("--") + 1 :]
                    while inner and ENV_ASSIGNMENT.match(inner[0]):
                        inner = inner[1:]
                    if inner:
                        found.append(Command(page, number, tuple(inner)))
    return found


def inline_commands(page: Path, text: str) -> list[Command]:
    """Commands quoted in prose (`make ui`, `python -m ...`): the same checks but activation."""
    prose, fenced = [], False
    for line in text.splitlines():
        if line.strip().startswith(("```", "~~~")):
            fenced = not fenced
            line = ""
        prose.append("" if fenced else line)
    joined, found = "\n".join(prose), []
    for match in INLINE_CODE.finditer(joined):
        span = match.group(1).replace("\n", " ")
        if span.split()[0].removeprefix(VENV_BIN) not in INLINE_PROGRAMS:
            continue
        number = joined.count("\n", 0, match.start()) + 1
        found += [Command(page, number, tuple(words)) for words in split_commands(span)]
    return found


@functools.cache
def all_commands() -> tuple[Command, ...]:
    """Every command of every page: its shell blocks' and its prose's."""
    found = []
    for page in pages():
        text = page.read_text("utf-8")
        found += page_commands(page, text) + inline_commands(page, text)
    return tuple(found)


def placeholder(word: str) -> bool:
    return bool(PLACEHOLDER.search(word))


# --- help texts, one process per command, cached -------------------------------------------


def executable(name: str) -> str:
    """The project's .venv/bin/<name>, else what PATH (or this interpreter) gives."""
    local = ROOT / VENV_BIN / name
    if local.exists():
        return str(local)
    if name == "python":
        return sys.executable
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (make venv)")
    return found


@functools.cache
def help_text(argv: tuple[str, ...]) -> str:
    """``argv --help``, stdout and stderr together."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [*argv, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return done.stdout + done.stderr


OPTION_LINE = re.compile(r"^\s{2,}(-[^\s,].*?)(?:\s{2,}|$)")
CHOICES = re.compile(r"^\s+\{([\w,-]+)\}", re.MULTILINE)


def options_of(text: str) -> dict[str, bool]:
    """An argparse help's options, each with whether it takes a value."""
    options = {}
    for line in text.splitlines():
        match = OPTION_LINE.match(line)
        if match:
            for part in match.group(1).split(", "):
                name, _, metavar = part.partition(" ")
                if name.startswith("-"):
                    options[name] = bool(metavar.strip())
    return options


def subcommands_of(text: str) -> set[str]:
    """An argparse help's subcommands (``{a,b,c}``); empty when it has none."""
    match = CHOICES.search(text)
    return set(match.group(1).split(",")) if match else set()


def walk_arguments(
    command: Command, words: list[str], help_: str
) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(problems, (option, value) pairs, positionals) of words against one help text."""
    options, problems, values, positionals = options_of(help_), [], [], []
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        if placeholder(word):
            continue
        if word.startswith("-") and word != "-" and not re.match(r"^-\d", word):
            name = word.split("=", 1)[0]
            if name not in options:
                problems.append(f"{command}: {name} is not an option of its --help")
            elif options[name] and "=" not in word and position < len(words):
                values.append((name, words[position]))
                position += 1
        else:
            positionals.append(word)
    return problems, values, positionals


# --- make ------------------------------------------------------------------------------------


@functools.cache
def makefile() -> tuple[set[str], set[str]]:
    """(targets, variables) of the Makefile: rules' names, and every $(NAME) or NAME ?= set."""
    text = (ROOT / "Makefile").read_text("utf-8")
    targets = set()
    for match in re.finditer(r"^([^\s#:=$][^:=#]*?)\s*::?(?!=)", text, re.MULTILINE):
        targets.update(name for name in match.group(1).split() if not name.startswith("."))
    variables = set(re.findall(r"\$\((\w+)\)", text))
    variables |= set(re.findall(r"^(?:export\s+)?(\w+)\s*[?:+]?=", text, re.MULTILINE))
    return targets, variables


def make_problems(command: Command) -> list[str]:
    targets, variables = makefile()
    problems = []
    for word in command.words[1:]:
        if placeholder(word) or word.startswith("-"):
            continue
        if ENV_ASSIGNMENT.match(word):
            name = word.split("=", 1)[0]
            if name not in variables:
                problems.append(f"{command}: the Makefile reads no variable {name}")
        elif word not in targets:
            problems.append(f"{command}: the Makefile has no target {word!r}")
    return problems


# --- python ----------------------------------------------------------------------------------


def project_module(module: str) -> Path | None:
    """The file `python -m module` runs for a module of src/, found without importing it."""
    base = ROOT / "src" / Path(*module.split("."))
    for candidate in (base / "__main__.py", base.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def python_problems(command: Command) -> list[str]:
    words = list(command.words[1:])
    python = executable("python")
    if not words or "-c" in words:
        return []
    if words[0] == "-m":
        if len(words) < 2:
            return [f"{command}: -m names no module"]
        module, arguments = words[1], words[2:]
        if module.split(".")[0] != "autoencoders":
            if importlib.util.find_spec(module) is None:
                return [f"{command}: no module {module}"]
            return []
        if project_module(module) is None:
            return [f"{command}: src/ has no module {module} (nor its __main__.py)"]
        argv = (python, "-m", module)
    else:
        script, arguments = words[0], words[1:]
        if not (ROOT / script).is_file():
            return [f"{command}: no file {script}"]
        if not any(word.startswith("-") for word in arguments):
            return []
        argv = (python, script)
    help_ = help_text(argv)
    choices = subcommands_of(help_)
    if choices:
        chosen = next((word for word in arguments if not word.startswith("-")), None)
        if chosen is None or placeholder(chosen):
            return []
        if chosen not in choices:
            return [f"{command}: {chosen!r} is not one of its subcommands {sorted(choices)}"]
        arguments = arguments[arguments.index(chosen) + 1 :]
        help_ = help_text((*argv, chosen))
    return walk_arguments(command, arguments, help_)[0]


# --- dvc ---------------------------------------------------------------------------------------


@functools.cache
def dvc_commands() -> set[str]:
    """DVC's commands and their aliases, from ``dvc --help``."""
    text = help_text((executable("dvc"),))
    section = text.split("Available Commands:", 1)[-1]
    found = set()
    for match in re.finditer(r"^\s{4}([a-z][\w-]*)(?: \(([\w-]+)\))?", section, re.MULTILINE):
        found.update(name for name in match.groups() if name)
    return found


@functools.cache
def stages() -> set[str]:
    """dvc.yaml's stages, foreach ones as name@key for every key of params.yaml."""
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text("utf-8"))["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text("utf-8"))
    names = set()
    for name, stage in pipeline.items():
        names.add(name)
        if "foreach" in stage:
            match = re.fullmatch(r"\$\{(\w+)\}", str(stage["foreach"]))
            keys = params[match.group(1)] if match else stage["foreach"]
            names.update(f"{name}@{key}" for key in keys)
    return names


def param_exists(key: str) -> bool:
    """A dotted params.yaml key (``variants.conv.train.epochs``)."""
    node = yaml.safe_load((ROOT / "params.yaml").read_text("utf-8"))
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def dvc_problems(command: Command) -> list[str]:
    dvc = executable("dvc")
    words = [word for word in command.words[1:] if word not in {"-q", "-v"}]
    if not words or placeholder(words[0]):
        return []
    if words[0] not in dvc_commands():
        return [f"{command}: {words[0]!r} is not a DVC command (dvc --help)"]
    path, arguments = [words[0]], words[1:]
    help_ = help_text((dvc, *path))
    choices = subcommands_of(help_)
    if choices:
        if not arguments or arguments[0] not in choices:
            return [f"{command}: dvc {words[0]} takes one of {sorted(choices)}"]
        path.append(arguments.pop(0))
        help_ = help_text((dvc, *path))
    problems, values, positionals = walk_arguments(command, arguments, help_)
    for option, value in values:
        if option in {"-S", "--set-param"} and not placeholder(value):
            key = value.split("=", 1)[0].split(":")[-1]
            if not param_exists(key):
                problems.append(f"{command}: params.yaml has no key {key}")
    if " ".join(path) in DVC_TARGET_COMMANDS:
        for target in positionals:
            if "/" not in target and not placeholder(target) and target not in stages():
                problems.append(f"{command}: dvc.yaml has no stage {target}")
    return problems


def git_problems(command: Command) -> list[str]:
    words = list(command.words[1:])
    if words[:1] != ["checkout"] or "--" not in words:
        return []
    paths = words[words.index("--") + 1 :]
    return [f"{command}: no path {path}" for path in paths if not (ROOT / path).exists()]


@functools.cache
def mlflow_commands() -> set[str]:
    text = help_text((executable("mlflow"),))
    section = text.split("Commands:", 1)[-1]
    return set(re.findall(r"^\s{2}([a-z][\w-]*)\s", section, re.MULTILINE))


def mlflow_problems(command: Command) -> list[str]:
    words = [word for word in command.words[1:] if not word.startswith("-")]
    if words and not placeholder(words[0]) and words[0] not in mlflow_commands():
        return [f"{command}: {words[0]!r} is not an mlflow command"]
    return []


CHECKERS = {
    "make": make_problems,
    "python": python_problems,
    "python3": python_problems,
    "dvc": dvc_problems,
    "git": git_problems,
    "mlflow": mlflow_problems,
}


def problems_of(commands: tuple[Command, ...] | list[Command]) -> list[str]:
    """What is wrong with each command: unknown programs included."""
    problems = []
    for command in commands:
        checker = CHECKERS.get(command.name)
        if checker is not None:
            problems += checker(command)
        elif command.name not in UNCHECKED and not placeholder(command.name):
            problems.append(f"{command}: {command.name!r} is a command no check knows")
    return problems


def activation_problems(page: Path, text: str) -> list[str]:
    """Bare environment commands above (or without) the page's activation line."""
    stated = next(
        (n for n, line in enumerate(text.splitlines(), start=1) if ACTIVATION in line), None
    )
    return [
        f"{command}: bare {command.name}, but the page states no `{ACTIVATION}` above it"
        for command in page_commands(page, text)
        if command.bare and (stated is None or stated > command.line)
    ]


# --- the tests ---------------------------------------------------------------------------------


def test_the_docs_have_shell_blocks_to_check():
    """The extractor finds the walk-throughs' commands (an empty list would pass anything)."""
    names = {command.name for command in all_commands()}
    assert {"make", "python", "dvc"} <= names, names


def test_shell_blocks_say_their_language():
    """An unlabelled block of commands escapes every check below: label it ```bash."""
    problems = []
    for page in pages():
        for language, start, lines in fenced_blocks(page.read_text("utf-8")):
            first_words = {line.split()[0] for line in lines if line.split()}
            if not language and first_words & (ENVIRONMENT | {"make", "git", "sudo"}):
                problems.append(f"{page.relative_to(ROOT)}:{start}: unlabelled shell block")
    assert not problems, "\n".join(problems)


def test_bare_commands_follow_the_activation_line():
    problems = []
    for page in pages():
        problems += activation_problems(page, page.read_text("utf-8"))
    assert not problems, "\n".join(problems)


def test_every_command_names_what_exists():
    """make targets and variables, modules, subcommands, options, stages, params, paths."""
    problems = problems_of(all_commands())
    assert not problems, "\n".join(problems)


def test_workspace_experiments_show_the_way_back():
    """``dvc exp run`` without --temp/--queue rewrites params.yaml, dvc.lock and outputs."""
    problems = []
    for page in pages():
        commands = page_commands(page, page.read_text("utf-8"))
        dvc = [command.words[1:] for command in commands if command.name == "dvc"]
        in_workspace = [
            words
            for words in dvc
            if words[:2] in (("exp", "run"), ("experiments", "run"))
            and not {"--temp", "--queue", "--run-all"} & set(words)
        ]
        if in_workspace and ("checkout",) not in {words[:1] for words in dvc}:
            problems.append(f"{page.relative_to(ROOT)}: dvc exp run in the workspace, no way back")
    assert not problems, "\n".join(problems)


SAMPLE = """\
# A page

```console
$ FOO=1 make no-such-target && make test ARGS=-x  # comment
output line, not a command
$ dvc exp run -S train.epochs=1 \\
    --no-such-flag export@conv
```

```bash
python -m autoencoders encode --model <dir> --no-such-option
python -m autoencoders.no_such_module
make serve VARIANT=conv NO_SUCH_VARIABLE=1 | cat
```

source .venv/bin/activate; in prose `make no-such-inline` and `dvc repro STAGE`.

```bash
dvc exp run -S no.such.key=1 no_such_stage@conv
```
"""


def test_the_checks_catch_wrong_targets_options_stages_and_activation():
    """The checks fail where they should: a sample page with one mistake of each kind."""
    page = ROOT / "docs" / "sample.md"
    commands = page_commands(page, SAMPLE)
    inline = inline_commands(page, SAMPLE)
    assert [str(command) for command in inline] == [
        "docs/sample.md:16: make no-such-inline",
        "docs/sample.md:16: dvc repro STAGE",
    ]
    assert [(command.line, command.words[:2]) for command in commands] == [
        (4, ("make", "no-such-target")),
        (4, ("make", "test")),
        (6, ("dvc", "exp")),
        (11, ("python", "-m")),
        (12, ("python", "-m")),
        (13, ("make", "serve")),
        (13, ("cat",)),
        (19, ("dvc", "exp")),
    ]
    problems = "\n".join(problems_of(commands + inline))
    for expected in (
        "no target 'no-such-target'",
        "no target 'no-such-inline'",
        "--no-such-flag is not an option",
        "--no-such-option is not an option",
        "no module autoencoders.no_such_module",
        "no variable NO_SUCH_VARIABLE",
        "'cat' is a command no check knows",
        "params.yaml has no key no.such.key",
        "dvc.yaml has no stage no_such_stage@conv",
    ):
        assert expected in problems, (expected, problems)
    for fine in (
        "target 'test'",
        "--model is",
        "key train.epochs",
        "stage export@",
        "variable VARIANT",
        "STAGE",
    ):
        assert fine not in problems, (fine, problems)
    bare = activation_problems(page, SAMPLE)
    assert [problem.split(":")[1] for problem in bare] == ["6", "11", "12"]
