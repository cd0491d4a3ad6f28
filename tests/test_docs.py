"""The docs quote the generated reports; they do not copy figures that rot.

Pages checked: README.md, ARCHITECTURE.md and docs/*.md, except docs/experiments.md, the dated
log where measurement history lives.

A *figure* is a number with three or more significant digits (0.971, 1,661, 27.7, 0.00254,
0.920; not 0.9, 10, 5000 or 70,000: an integer's trailing zeros do not count, a decimal's do)
in a page's prose. Not figures, and so not checked (the only exemptions):

- anything inside a fenced code block or an inline code span (commands, settings, output);
- dates (2026-12-07) and years (a bare integer from 1990 to 2099);
- versions: a dotted run of three or more numbers (3.67.1), or a number right after a tool's
  name (``Python 3.11``, see VERSION_PREFIX);
- a port (a number right after ``port`` or ``:``);
- a number glued to a name or a size: preceded by a letter or underscore (float32, x86, SHA-256)
  or written as dimensions (28x28, 64x64x3);
- a chain of three or more integers joined by hyphens: a layer design (784-500-500-2000);
- an integer power of two from 128 up (128, 256, 1,024): sizes and batch settings;
- the few constants of the world in CONSTANTS, each with its reason.

Rule 1: a line holding a figure names a generated file, a path ``reports/...`` or
``metrics/...`` (a glob such as ``metrics/cluster/*.json`` names every file it matches) that is
committed, i.e. present in the working tree.

Rule 2: every figure on such a line matches a value of one of the files the line names: some
number in the file, rounded to the figure's decimal places, gives the figure (JSON files are
read as numbers and the numbers inside their strings; markdown and CSV as text). A figure that
comes from nowhere, or that contradicts the file, fails with both named.

Rule 3: no page, docs/experiments.md included, cites an issue number (``issue 23``, ``#22``),
in prose or code: readers cannot see the issues.
"""

from __future__ import annotations

import decimal
import glob
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "docs" / "experiments.md"
GENERATED_SUFFIXES = {".json", ".md", ".csv"}

# Constants of the world that are not measurements, with why each is one.
CONSTANTS = {
    "784": "the pixels of a 28x28 image",
    "1,797": "the images in scikit-learn's bundled 8x8 digits",
    "255": "the largest uint8 value, by which pixels are scaled",
}
VERSION_PREFIX = re.compile(
    r"(?:Python|MLflow|DVC|TensorFlow|Keras|CUDA|cuDNN|ONNX Runtime|onnxruntime(?:-gpu)?|ray)"
    r"(?:\[[\w,]+\])?(?:\s+|==)$",
    re.IGNORECASE,
)
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?")
FILE_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
GENERATED_PATH = re.compile(r"(?<![\w/.-])((?:reports|metrics)/[\w.*/<>-]*[\w*>])")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
DOTTED = re.compile(r"\d+(?:\.\d+){2,}")
HYPHEN_CHAIN = re.compile(r"(?<![\w.])\d+(?:-\d+){2,}(?![\w.])")
INLINE_CODE = re.compile(r"`[^`]*`")
ISSUE = re.compile(r"\bissues?\s+#?\d+|(?<![\w/&])#\d+\b", re.IGNORECASE)


def pages() -> list[Path]:
    """Every page the rules cover."""
    found = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [page for page in found if page.exists() and page != HISTORY]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def significant_digits(number: str) -> int:
    """Significant digits of a number as written: 0.920 -> 3, 1,661 -> 4, 5000 -> 1."""
    mantissa = re.split(r"[eE]", number.lstrip("+-"))[0].replace(",", "")
    if "." in mantissa:
        return len(mantissa.replace(".", "").lstrip("0"))
    return len(mantissa.lstrip("0").rstrip("0"))


def decimal_places(number: str) -> int:
    mantissa = re.split(r"[eE]", number)[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def _blank(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda match: " " * len(match.group()), text)


def figures(line: str) -> list[str]:
    """The figures of one prose line, as written (see the module docstring)."""
    text = line.replace("**", "")
    for pattern in (INLINE_CODE, DATE, DOTTED, HYPHEN_CHAIN):
        text = _blank(text, pattern)
    found = []
    for match in NUMBER.finditer(text):
        number, before, after = match.group(), text[: match.start()], text[match.end() :]
        if re.match(r"x\d", after) or re.search(r"\dx$", before):
            continue  # dimensions: 28x28, 64x64x3
        if re.search(r"[A-Za-z_]-$", before) or re.search(r"(?:\bport\s+|:)$", before):
            continue  # SHA-256, AVX-512; a port
        if VERSION_PREFIX.search(before):
            continue  # Python 3.11, MLflow 3.17
        plain = number.lstrip("+-")
        if plain in CONSTANTS or re.fullmatch(r"(?:199\d|20\d\d)", plain):
            continue
        if re.fullmatch(r"[\d,]+", plain) and _power_of_two(int(plain.replace(",", ""))):
            continue
        if significant_digits(number) >= 3:
            found.append(plain)
    return found


def _power_of_two(value: int) -> bool:
    return value >= 128 and value & (value - 1) == 0


def named_files(line: str) -> tuple[list[str], list[Path]]:
    """The generated paths a line names, and the committed files they resolve to."""
    names = GENERATED_PATH.findall(line)
    files: list[Path] = []
    for name in names:
        files += [Path(path) for path in sorted(glob.glob(str(ROOT / name)))]
    return names, [path for path in files if path.is_file()]


def _numbers_in(value: object) -> list[str]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [repr(value)]
    if isinstance(value, str):
        return FILE_NUMBER.findall(value)
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers_in(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers_in(item)]
    return []


_VALUES: dict[Path, list[decimal.Decimal]] = {}


def file_values(path: Path) -> list[decimal.Decimal]:
    """Every number a generated file holds (JSON parsed; markdown and CSV as text)."""
    if path not in _VALUES:
        text = path.read_text(encoding="utf-8")
        raw = _numbers_in(json.loads(text)) if path.suffix == ".json" else []
        raw += FILE_NUMBER.findall(text) + re.findall(r"\d+(?:\.\d+)?", text)
        values = set()
        for number in raw:
            try:
                values.add(abs(decimal.Decimal(number.replace(",", ""))))
            except decimal.InvalidOperation:
                continue
        _VALUES[path] = sorted(values)
    return _VALUES[path]


def rounds_to(value: decimal.Decimal, figure: str) -> bool:
    """Whether ``value`` rounded to ``figure``'s decimal places is ``figure`` (half up or half
    even: the file's writer may have used either)."""
    target = abs(decimal.Decimal(figure.replace(",", "")))
    places = decimal.Decimal(1).scaleb(-decimal_places(figure))
    if "e" in figure.lower():
        return value == target or f"{float(value):.{len(figure)}g}" == f"{float(target):g}"
    return any(
        value.quantize(places, rounding=mode) == target
        for mode in (decimal.ROUND_HALF_UP, decimal.ROUND_HALF_EVEN)
    )


def check_page(path: Path) -> list[str]:
    """Every rule broken on one page, one message each."""
    return check_text(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def check_text(text: str, relative: str) -> list[str]:
    """Every rule broken in one page's text, one message each, located as ``relative:line``."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in ISSUE.finditer(line):
            problems.append(f"{relative}:{number}: cites an issue number ({match.group()!r})")
    for number, line in prose_lines(text):
        found = figures(line)
        if not found:
            continue
        where = f"{relative}:{number}"
        names, files = named_files(line)
        files = [file for file in files if file.suffix in GENERATED_SUFFIXES]
        if not files:
            named = f"names {names} but none is a committed file" if names else "names no file"
            problems.append(
                f"{where}: figures {found} {named} under reports/ or metrics/; quote a committed "
                "generated file on the same line or move the figures to docs/experiments.md"
            )
            continue
        for figure in found:
            if not any(rounds_to(v, figure) for file in files for v in file_values(file)):
                shown = ", ".join(str(file.relative_to(ROOT)) for file in files)
                problems.append(f"{where}: {figure} is not a value of {shown}")
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_figures_quote_a_generated_file_and_agree_with_it(page: Path) -> None:
    problems = [p for p in check_page(page) if "cites an issue number" not in p]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", [*pages(), HISTORY], ids=lambda page: str(page.relative_to(ROOT)))
def test_no_issue_numbers(page: Path) -> None:
    relative = page.relative_to(ROOT)
    lines = page.read_text(encoding="utf-8").splitlines()
    problems = [
        f"{relative}:{number}: cites an issue number ({match.group()!r})"
        for number, line in enumerate(lines, start=1)
        for match in ISSUE.finditer(line)
    ]
    assert not problems, "\n".join(problems)


def test_the_history_is_a_dated_log() -> None:
    headings = re.findall(r"^## (.*)$", HISTORY.read_text(encoding="utf-8"), re.MULTILINE)
    assert headings, "docs/experiments.md has no sections"
    undated = [heading for heading in headings if not DATE.match(heading)]
    assert not undated, f"sections of docs/experiments.md not headed by a date: {undated}"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("head accuracy 0.971", ["0.971"]),
        ("1,661 MB and 27.7 s at 0.00254", ["1,661", "27.7", "0.00254"]),
        ("0.9 of 10 on 70,000 images, port 5001, on 2026-12-07 in 2018", []),
        ("`0.929` in code, SHA-256, float32, 28x28, 784-500-500-2000, 3.67.1", []),
        ("Python 3.11 and 1.44x and 0.920", ["1.44", "0.920"]),
        ("a range 4,350-7,340 images/s", ["4,350", "7,340"]),
    ],
)
def test_what_counts_as_a_figure(line: str, expected: list[str]) -> None:
    assert figures(line) == expected


def test_a_contradiction_fails_and_a_quote_passes() -> None:
    # conv's head accuracy is 0.9294 in its metrics file: 0.929 quotes it, 0.920 contradicts it.
    conv = ROOT / "metrics" / "cluster" / "conv.json"
    value = decimal.Decimal(repr(json.loads(conv.read_text())["head_accuracy"]))
    quoted = f"{value.quantize(decimal.Decimal('0.001'), rounding=decimal.ROUND_HALF_UP)}"
    wrong = str(decimal.Decimal(quoted) - decimal.Decimal("0.009"))
    text = (
        f"head accuracy {quoted} (`metrics/cluster/conv.json`)\n"
        f"head accuracy {wrong} (`metrics/cluster/conv.json`)\n"
        "head accuracy 0.987 in the last run\n"
        "see issue 23 and #22\n"
    )
    problems = check_text(text, "probe.md")
    assert [p.split(": ", 1)[0] for p in problems] == [
        "probe.md:4",
        "probe.md:4",
        "probe.md:2",
        "probe.md:3",
    ]
    assert f"{wrong} is not a value of metrics/cluster/conv.json" in problems[2]
