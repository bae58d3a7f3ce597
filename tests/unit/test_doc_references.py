"""Every document a comment or docstring cites can be opened from a clone.

Comments cite the project's own documents as repository paths with an anchor
(`docs/protocol/go-e.md#nrg`, `docs/design.md#control`) and everything else by its public
source. This test reads the comments and docstrings of bridge/, tests/ and bench/ and fails on:

- a `*.md` path that is not a file of the repository (a bare file name must name one, or one of
  go-e's public API documents listed below);
- an anchor (`#nrg`, also the `#a, #b` shorthand after a path) that is neither a heading of that
  file nor an explicit `<a id="…">` in it;
- a section sign without a public specification's name and version on its line or the line
  before (`MQTT 5`, `MQTT 3.1.1`, `RFC n`, `IEC n`): a section number of a document outside
  the repository (as `design`, section 5, once was) leads nowhere.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("bridge", "tests", "bench")

# go-e's public API documents, cited by their own file names next to the repository they
# belong to (goecharger/go-eCharger-API-v1 and -v2); they are not files of this repository.
PUBLIC_FILES = frozenset(
    {
        "go-eCharger API v1 EN.md",
        "go-eCharger API v1 DE.md",
        "apikeys-en.md",
        "apikeys-de.md",
        "http-en.md",
        "mqtt-de.md",
        "mqtt-en.md",
        "cloudapi-en.md",
        "introduction-en.md",
        "modbus-en.md",
    }
)
PUBLIC_DIRS = ("API_KEYS_FIRMWARE/",)  # go-eCharger-API-v2's key exports

URL = re.compile(r"https?://\S+")
REFERENCE = re.compile(
    r"(?<![\w/.-])(?P<path>(?:[\w.-]+/)*[\w.-]+\.md)(?P<anchors>#[\w-]+(?:,\s*#[\w-]+)*)?"
)
SECTION = re.compile(r"§")
# A section sign is fine after the name of a public specification with its version, on the
# same line or the line before ("MQTT 5 Maximum Packet Size (§3.1.2.11.4)").
SPEC = re.compile(r"MQTT (3\.1\.1|5(\.0)?)\b|RFC \d+|IEC [\d-]+")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")


@cache
def tracked_files() -> frozenset[str]:
    """The files a clone has: git's list, or the tree itself outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = (".git", ".venv", "node_modules", "__pycache__")
        return frozenset(
            p.relative_to(ROOT).as_posix()
            for p in ROOT.rglob("*")
            if p.is_file() and not any(part in skip for part in p.relative_to(ROOT).parts)
        )
    return frozenset(out.splitlines())


@cache
def tracked_names() -> frozenset[str]:
    return frozenset(Path(p).name for p in tracked_files())


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@cache
def anchors(path: str) -> frozenset[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_code = False
    for line in (ROOT / path).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        found.update(EXPLICIT_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def comments_and_docstrings(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, text, the line before it in the same comment or docstring) of every
    comment and every module/class/function docstring."""
    source = path.read_text(encoding="utf-8")
    previous: tuple[int, str] = (0, "")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            number = token.start[0]
            yield number, token.string, previous[1] if previous[0] == number - 1 else ""
            previous = (number, token.string)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                first = body[0].lineno
                before = ""
                for offset, line in enumerate(body[0].value.value.splitlines()):
                    yield first + offset, line, before
                    before = line


def problems_in(line: str, before: str = "") -> list[str]:
    text = URL.sub("", line)
    for name in PUBLIC_FILES:
        text = text.replace(name, "")
    problems = []
    for match in REFERENCE.finditer(text):
        path = match.group("path")
        if path.startswith(PUBLIC_DIRS):
            continue
        if "/" in path:
            if path not in tracked_files():
                problems.append(f"{path}: no such file in the repository")
                continue
        else:
            if path not in tracked_names():
                problems.append(f"{path}: no such file in the repository (cite docs/…md#anchor)")
            continue
        for anchor in re.findall(r"#([\w-]+)", match.group("anchors") or ""):
            if anchor not in anchors(path):
                problems.append(f"{path}#{anchor}: no such heading or anchor in {path}")
    for match in SECTION.finditer(text):
        if not SPEC.search(before + " " + text[: match.start()]):
            problems.append(
                "a section number (§) of a document outside the repository; cite "
                "docs/…md#anchor or the public source"
            )
            break  # one per line is enough to find it
    return problems


def scanned_files() -> list[Path]:
    return sorted(ROOT / p for p in tracked_files() if p.endswith(".py") and p.startswith(SCANNED))


def test_every_cited_document_exists_in_the_repository() -> None:
    found = []
    for path in scanned_files():
        for number, text, before in comments_and_docstrings(path):
            for problem in problems_in(text, before):
                found.append(f"{path.relative_to(ROOT)}:{number}: {problem}")
    assert not found, "references that lead nowhere:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("# docs/protocol/go-e.md#nrg: units differ", True),
        ("# docs/protocol/go-e.md#cloud-v1, #cloud-v2", True),
        ("# docs/design.md#control", True),
        ("# bench/RESULTS.md", True),
        ("# go-eCharger-API-v2 apikeys-en.md, http-en.md", True),
        ('# goecharger/go-eCharger-API-v1, "go-eCharger API v1 EN.md"', True),
        ("# go-eCharger-API-v2 API_KEYS_FIRMWARE/apikeys_Firmware_60.4_sorted.md", True),
        ("# https://github.com/goecharger/go-eCharger-API-v2/blob/main/mqtt-de.md#topics", True),
        ("# MQTT 5 §3.8.3.1, MQTT 3.1.1 §3.1.2.9", True),
        ("# MQTT 5 Will Delay Interval (§3.1.3.2.2): a connection", True),
        ("# openWB 1.9 MQTT-EVSE inputs: plain text (§6)", False),
        ("# goe-api.md §7: never change them", False),
        ("# (openwb-protocol.md §4.4)", False),
        ("# (design §5)", False),
        ("# (style.md §9)", False),
        ("# plain text (§6)", False),
        ("# docs/protocol/go-e.md#no-such-anchor", False),
        ("# docs/protocol/go-e.md#nrg, #no-such-anchor", False),
        ("# docs/nowhere.md", False),
    ],
)
def test_the_check_tells_a_reference_that_leads_somewhere(text: str, ok: bool) -> None:
    assert (problems_in(text) == []) is ok, problems_in(text)


def test_a_specification_named_on_the_line_before_counts() -> None:
    before = "# Assistant device config … MQTT 5 Maximum Packet Size"
    assert problems_in("# (§3.1.2.11.4): the broker does not send a larger packet", before) == []
    assert problems_in("# (§3.1.2.11.4): the broker", "# the design says") != []


def test_headings_become_the_anchors_github_gives_them() -> None:
    assert slug("3. The generic MQTT namespace: the public contract") == (
        "3-the-generic-mqtt-namespace-the-public-contract"
    )
    assert slug("`nrg`: voltages, currents, powers") == "nrg-voltages-currents-powers"
    assert "nrg" in anchors("docs/protocol/go-e.md")
    assert "contract" in anchors("docs/design.md")
