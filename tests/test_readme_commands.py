"""The README's and docs' commands work as written with no venv activated: every command line
calls the project's tools through `.venv/bin/` (or `make`), and the venv's tools find the bare
`cadenza` of dvc.yaml's stage commands with a plain PATH (the .pth file `make setup` writes), as
a cron job, a DVC queue worker or a Prefect worker started outside the venv would run them.
The docs also work in a user's clone: every relative link and anchor resolves to a file and
heading of the repository, the repository paths they cite exist, and nothing points into
the `../shared/` folder that only development checkouts have."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cadenza.testing.checkout import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLAIN_PATH = "/usr/bin:/bin"  # a user's PATH, no venv on it
BIN = Path(sys.prefix) / "bin"  # the venv running the tests: `.venv/bin` under `make test`
# tools installed into the venv only: bare, they are not found (or are another install's)
VENV_TOOLS = {"cadenza", "dvc", "prefect", "python", "python3", "pip", "pytest", "ruff", "dask"}


def _plain_env(home: Path) -> dict[str, str]:
    """The environment of a shell that never activated the venv."""
    return {
        "PATH": PLAIN_PATH,
        "HOME": str(home),
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        "LANG": "C.UTF-8",
    }


def test_venv_python_puts_its_bin_first_on_a_plain_path(tmp_path):
    """Every console script of the venv (dvc, prefect, cadenza) starts this Python, so its
    children (stage commands, flow runs) find the venv's `cadenza`, and only once on PATH."""
    assert shutil.which("cadenza", path=PLAIN_PATH) is None, "cadenza on the plain PATH"
    code = "import os, shutil; print(os.environ['PATH']); print(shutil.which('cadenza'))"
    nested = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}])"
    out = subprocess.run(
        [str(BIN / "python"), "-c", nested],
        env=_plain_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    path, cadenza = out.splitlines()
    assert path == f"{BIN}{os.pathsep}{PLAIN_PATH}", "no .pth file in the venv: run `make setup`"
    assert cadenza == str(BIN / "cadenza")


def test_venv_dvc_repro_runs_a_bare_cadenza_stage_with_a_plain_path(tmp_path):
    """`.venv/bin/dvc repro`, as the README writes it, on a stage whose command is a bare
    `cadenza ...` like every stage of dvc.yaml (exit 127 before the .pth file)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    (project / "dvc.yaml").write_text(
        "stages:\n  check:\n    cmd: cadenza check --params params.yaml > checked.txt\n"
        "    deps: [params.yaml]\n    outs: [checked.txt]\n"
    )
    (project / ".dvc").mkdir()  # what `dvc init --no-scm` writes, without its start-up cost
    (project / ".dvc" / "config").write_text("[core]\n    no_scm = True\n    analytics = false\n")
    proc = subprocess.run(
        [str(BIN / "dvc"), "repro"],
        cwd=project,
        env=_plain_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (project / "checked.txt").read_text().startswith("ok: ")


def readme_commands(text: str) -> list[tuple[int, list[str]]]:
    """(line number, words) of every command of the README's fenced shell blocks (```bash,
    and `$ ` lines of plain ``` transcripts); continuation lines joined, comments dropped, and
    `a && b`, `a; b`, `a | b`, `a &` split into their commands, as the shell splits them."""
    commands: list[tuple[int, list[str]]] = []
    fence, line_no, pending = None, 0, ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = stripped[3:].strip() if fence is None else None
            continue
        if fence not in ("bash", "sh", "shell", "console", ""):
            continue
        if not pending and fence in ("", "console"):
            if not stripped.startswith("$ "):
                continue
            stripped = stripped[2:]
        pending, line_no = (f"{pending} {stripped}", line_no) if pending else (stripped, number)
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True  # words as the shell splits them, `;&|` apart
        words: list[str] = []
        for token in lexer:
            if token in (";", "&", "&&", "|", "||"):
                commands += [(line_no, words)] if words else []
                words = []
            else:
                words.append(token)
        commands += [(line_no, words)] if words else []
        pending = ""
    return commands


def program(words: list[str]) -> str:
    """The program a command runs: its first word after `VAR=value` assignments and sudo."""
    while words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]) or words[0] == "sudo"):
        words = words[1:]
    return words[0] if words else ""


def bare_tools(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every command line that calls a venv tool by its bare name."""
    return [(n, " ".join(c)) for n, c in readme_commands(text) if program(c) in VENV_TOOLS]


def test_readme_commands_call_the_venvs_tools_by_path():
    """A bare `cadenza` / `dvc` / `python` / `prefect` line fails for a user without an
    activated venv (command not found, or another install's tool): the README writes
    `.venv/bin/<tool>` (or `make`) on every command line."""
    commands = readme_commands((ROOT / "README.md").read_text())
    assert len(commands) >= 10, commands  # the parser found the README's blocks
    bare = bare_tools((ROOT / "README.md").read_text())
    assert not bare, "README lines call a venv tool without .venv/bin/: " + repr(bare)
    assert any(program(c) == ".venv/bin/dvc" for _, c in commands)


@pytest.mark.parametrize("doc", DOCS[1:], ids=lambda p: p.name)
def test_docs_commands_call_the_venvs_tools_by_path(doc: Path):
    """The same rule for every page of docs/: users copy commands from there too."""
    bare = bare_tools(doc.read_text())
    assert not bare, f"{doc.name} lines call a venv tool without .venv/bin/: {bare!r}"


def test_the_readme_check_catches_a_bare_tool():
    """The check above can fail: bare tools in blocks, continuations and chains are found."""
    text = (
        "```bash\ncadenza sweep x  # a comment\n.venv/bin/dvc exp show \\\n  --md\n"
        "cd a && PATH=x dvc repro\n```\n```\n$ python bench/x.py\nerror: out\n```\n"
        "```yaml\ncadenza: 1\n```\n"
    )
    found = [program(c) for _, c in readme_commands(text)]
    assert found == ["cadenza", ".venv/bin/dvc", "cd", "dvc", "python"]


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans, where links are links."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def links(text: str) -> list[str]:
    """The targets of the markdown links `[text](target)` of a page's prose."""
    return re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose(text))


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered `-1`, `-2`, ..."""
    slugs: set[str] = set()
    counts: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose_keep_code(text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = counts.get(slug, 0)
        slugs.add(f"{slug}-{count}" if count else slug)
        counts[slug] = count + 1
    return slugs


def prose_keep_code(text: str) -> str:
    """The text outside fenced code blocks (headings keep their inline code)."""
    return re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.DOTALL | re.MULTILINE)


def resolves(doc: Path, text: str, target: str) -> bool:
    """Whether a link of `doc` (with `text`) names a file of the repository and, with an
    `#anchor` into a markdown page, one of that page's headings."""
    path, _, anchor = target.partition("#")
    file = (doc.parent / path).resolve() if path else doc
    if path and (not file.is_relative_to(ROOT) or not file.exists()):
        return False
    if not anchor or file.suffix != ".md":
        return True
    return anchor in anchors(file.read_text() if path else text)


def broken_links(doc: Path, text: str) -> list[str]:
    """The relative links of `doc` (with `text`) that do not resolve; https:, mailto: and other
    links with a scheme are left to the web."""
    targets = [t for t in links(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return [t for t in targets if not resolves(doc, text, t)]


SHARED = re.compile(
    r"(?<![\w.])(?:\.\./)+shared\b|/work/shared\b|\bshared/(?:datasets|seeds|reference|tools)\b"
)
CITED = re.compile(r"(?<![\w./-])(?:tests|bench|src|pipeline)/[\w./-]*\w")
# a file a page tells the reader to create (docs/extending.md's worked examples): "the new
# file `src/cadenza/models/bigram.py`"; it exists only in the reader's clone, once written
NEW_FILE = re.compile(r"\bnew file `([^`]+)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_links_resolve_in_a_users_clone(doc: Path):
    """A link into `../shared/` (development checkouts only) or to a missing file or heading
    is dead in a user's clone; the tests, benchmarks, modules and flow files a page cites
    (`tests/...`, `bench/...`, `src/...`, `pipeline/...`) exist."""
    text = doc.read_text()
    assert not SHARED.findall(text), f"{doc.name} points into ../shared: {SHARED.findall(text)}"
    assert not broken_links(doc, text), f"{doc.name}: broken links {broken_links(doc, text)}"
    missing = sorted(set(CITED.findall(text)) - set(NEW_FILE.findall(text)))
    missing = [p for p in missing if not (ROOT / p).exists()]
    assert not missing, f"{doc.name} cites files that do not exist: {missing}"


def test_the_docs_checks_catch_dead_links(tmp_path):
    """The checks above can fail: a missing file, a missing heading and a `../shared` path are
    found; links inside code, external links and good anchors are not flagged."""
    page = ROOT / "docs" / "page.md"  # never written: only its folder matters
    text = (
        "# A page\n\n## Two `code` words\n\n[ok](#two-code-words) [up](../README.md#cadenza) "
        "[web](https://example.org/x) `[code](nowhere.md)`\n"
        "[gone](missing.md) [anchor](#nowhere) [up2](../README.md#no-such-heading)\n"
        "```bash\n[block](nowhere.md)\n```\nsee ../shared/datasets/maestro\n"
    )
    assert broken_links(page, text) == ["missing.md", "#nowhere", "../README.md#no-such-heading"]
    assert SHARED.findall(text) == ["../shared"]
    assert anchors("# A\n## A\n## B: `c`, d!\n") == {"a", "a-1", "b-c-d"}
    cited = "`src/cadenza/gone.py` (pipeline/flow.py), tests/x.py bench/bl/ https://h.org/src/y"
    assert NEW_FILE.findall("the new file `src/cadenza/metrics/x.py`") == [
        "src/cadenza/metrics/x.py"
    ]
    assert CITED.findall(cited) == [
        "src/cadenza/gone.py",
        "pipeline/flow.py",
        "tests/x.py",
        "bench/bl",
    ]
