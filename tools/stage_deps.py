"""Every DVC stage's code dependencies, from the import closure of its script.

    python tools/stage_deps.py            # rewrite dvc.yaml's code deps (what `make deps` runs)
    python tools/stage_deps.py --check    # exit 1 and show the difference if they are stale

A stage's code deps are exactly the project files its ``pipeline/`` script loads: the script,
every ``autoencoders`` module it imports (at the top or inside a function), theirs, and each
package ``__init__`` on the way; a package that loads its modules by name
(``importlib.import_module(f"autoencoders.pkg.{name}")``) counts as importing all of them. An
edit of any other file then re-runs no stage, and an edit of one of them re-runs exactly the
stages that load it. Only the ``- pipeline/...`` and ``- src/...`` lines of each ``deps:`` list
are rewritten; data deps, comments and the rest of dvc.yaml stay as they are.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "autoencoders"
STAGE_LINE = re.compile(r"^  (\w+):\s*$")  # a stage under `stages:`
SCRIPT = re.compile(r"\bpython (pipeline/\w+\.py)\b")
CODE_DEP = re.compile(r"^(\s*)- (pipeline/|src/)\S*\s*$")


def module_file(module: str, src: Path) -> Path | None:
    """The file of a project module or package (None: not the project's)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _dynamic_packages(node: ast.AST) -> set[str]:
    """Packages whose modules ``importlib.import_module(f"pkg.{name}")`` loads by name."""
    found = set()
    for call in ast.walk(node):
        if not (isinstance(call, ast.Call) and call.args):
            continue
        function = call.func
        name = getattr(function, "attr", getattr(function, "id", ""))
        if name != "import_module":
            continue
        first = call.args[0]
        if isinstance(first, ast.JoinedStr) and first.values:
            head = first.values[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                found.add(head.value.rstrip("."))
    return found


def imported_modules(path: Path, src: Path) -> set[str]:
    """Every module a file imports anywhere (top level and inside functions)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # `from autoencoders import tracking`: a module, or a name of the package
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    for package in _dynamic_packages(tree):
        folder = src.joinpath(*package.split("."))
        if folder.is_dir():
            found.update(f"{package}.{module.stem}" for module in folder.glob("*.py"))
    return found


def import_closure(script: Path, src: Path | None = None) -> set[Path]:
    """The project files a script loads: its imports, theirs, and each package's __init__."""
    src = src or REPO / "src"
    files, queue = set(), [script]
    while queue:
        path = queue.pop()
        for module in imported_modules(path, src):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, a.b.c
                found = module_file(".".join(parts[:depth]), src)
                if found is not None and found not in files:
                    files.add(found)
                    queue.append(found)
    return files


def code_deps(script: str, repo: Path = REPO) -> list[str]:
    """The sorted repo-relative code deps of ``pipeline/<stage>.py``: itself and its closure."""
    closure = import_closure(repo / script, repo / "src")
    return [script] + sorted(path.relative_to(repo).as_posix() for path in closure)


def rewrite(text: str, repo: Path = REPO) -> str:
    """dvc.yaml's text with every stage's code deps replaced by its generated list."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    script = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if STAGE_LINE.match(line):
            script = None
        match = SCRIPT.search(line) if line.lstrip().startswith("cmd:") else None
        if match:
            script = match.group(1)
        out.append(line)
        index += 1
        if line.strip() != "deps:":
            continue
        if script is None:
            raise SystemExit(f"dvc.yaml line {index}: a deps list before its stage's cmd")
        indent = len(line) - len(line.lstrip()) + 2
        kept = []
        while index < len(lines):
            item = lines[index]
            stripped = item.strip()
            inside = stripped.startswith("- ") or stripped.startswith("#") or not stripped
            if not inside or (stripped and len(item) - len(item.lstrip()) < indent):
                break
            if not CODE_DEP.match(item):
                kept.append(item)
            index += 1
        out += [" " * indent + f"- {dep}\n" for dep in code_deps(script, repo)]
        out += kept
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report a stale dvc.yaml")
    parser.add_argument("--dvc-yaml", type=Path, default=REPO / "dvc.yaml")
    args = parser.parse_args(argv)
    text = args.dvc_yaml.read_text()
    generated = rewrite(text, args.dvc_yaml.resolve().parent)
    if generated == text:
        print(f"{args.dvc_yaml}: every stage's code deps match its import closure")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            text.splitlines(), generated.splitlines(), "dvc.yaml", "generated", lineterm=""
        )
        print("\n".join(diff))
        print("dvc.yaml's code deps are stale: run `make deps`", file=sys.stderr)
        return 1
    args.dvc_yaml.write_text(generated)
    print(f"{args.dvc_yaml}: code deps rewritten from the import closures (git diff shows them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
