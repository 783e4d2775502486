"""Every code block of README.md runs as written, so the README cannot rot.

How the blocks run:

- A block is a fenced code block (```` ```lang ````). Executed languages: ``python``; ``bash``, ``sh``,
  ``shell`` (the block is one script run with ``bash -euo pipefail``, traced with ``-x`` so that a
  failure shows its command); ``console`` (lines starting with ``$ `` are the commands, run the same
  way; other lines are shown output and are ignored).
  A block with any other tag, or none, fails :func:`test_every_block_is_executed`: nothing in the
  README slips through unexecuted.
- All blocks run in README order in ONE fresh working directory, so a block may use the *files* an
  earlier block wrote (``my.key`` from the quickstart's ``wmark keygen my.key``, ``story.txt``,
  ``marked/``), never its variables: every python block runs in a fresh interpreter
  (``sys.executable``), every shell block in a fresh ``bash``. Each block must therefore do its own
  imports.
- Environment: the folder of ``sys.executable`` (the venv's ``bin``, where ``wmark`` is) first on
  ``PATH``; ``WMARK_SHARED_DATA`` = the shared data folder (fixture ``shared_data`` of
  ``tests/conftest.py``: every block skips with its reason where that folder is absent);
  ``MPLBACKEND=Agg``; ``TQDM_DISABLE=1``; ``OMP_NUM_THREADS=1`` unless already set (one torch thread
  per block: on a shared 2-core machine, spinning OpenMP threads competing with other jobs made the
  blocks up to 20x slower; the commands are unchanged).
- The one exception to "runs as written": a shell line ``make TARGET ...`` is not executed
  (``make demo`` takes ~12 minutes and ``make test`` would run this test inside itself); instead
  :func:`test_make_lines_are_makefile_targets` checks that each TARGET is a target of the Makefile.
- A python block importing ``transformers`` or ``ray`` (the ``hf`` / ``ray`` / ``dev`` extras) is skipped, with that
  reason, where transformers is not installed.
- Each block is its own test (id: index, language, README line, first telling line), so a failure names the block and its
  README line. Running one block alone (``-k``) first runs the blocks before it (results are cached
  for the session); where an earlier block failed, later ones are skipped naming it.
- A block that runs past ``BLOCK_TIMEOUT_S`` fails: slow examples do not belong in the README (full
  benchmark commands live in ``bench/README.md``). Blocks listed in ``SLOW_BLOCKS`` (none today)
  would carry the ``slow`` marker.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"

PYTHON_LANGS = {"python"}
SHELL_LANGS = {"bash", "sh", "shell"}
CONSOLE_LANGS = {"console"}
EXECUTED_LANGS = PYTHON_LANGS | SHELL_LANGS | CONSOLE_LANGS

#: seconds one block may take (2 CPU cores); the README's examples need well under a minute each
BLOCK_TIMEOUT_S = 240
#: first lines of blocks that are unavoidably slow (> ~60 s): they get the ``slow`` marker
SLOW_BLOCKS: set[str] = set()
#: a shell line that runs a Makefile target: checked against the Makefile, not executed
MAKE_LINE = re.compile(r"^\s*make\s+(?P<target>[A-Za-z0-9_.-]+)(?P<rest>.*)$")
#: optional modules: a python block importing one is skipped where it is not installed
OPTIONAL_MODULES = ("transformers", "ray")


@dataclass(frozen=True)
class Block:
    index: int
    lang: str
    code: str
    line: int  # 1-based README line of the opening fence

    @property
    def first_line(self) -> str:
        return next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")

    @property
    def test_id(self) -> str:
        """``NN-lang-Lline-words``: index, language, README line and the first telling line (for python
        the first line that is not an import)."""
        lines = [ln.strip() for ln in self.code.splitlines() if ln.strip()]
        if self.lang in PYTHON_LANGS:
            lines = [ln for ln in lines if not re.match(r"(import|from)\s", ln)] or lines
        slug = re.sub(r"[^A-Za-z0-9._=-]+", "-", lines[0] if lines else "")[:40].strip("-")
        return f"{self.index:02d}-{self.lang or 'untagged'}-L{self.line}-{slug}"


def parse_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text (```` ``` ```` or ``~~~`` fences, any indent)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})(.*)$", lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = re.match(r"^\s*(`{3,}|~{3,})\s*$", lines[i])
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        else:
            raise ValueError(f"README.md line {start + 1}: code block never closed")
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(len(blocks), lang, "\n".join(body) + "\n", start + 1))
        i += 1
    return blocks


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in BLOCKS if b.lang in EXECUTED_LANGS]


def makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in MAKEFILE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.$() -]+?)\s*:(?!=)", line)
        if m and not line.startswith("\t"):
            targets.update(m.group(1).split())
    return targets


def shell_script(block: Block) -> tuple[str, list[str]]:
    """(script for bash, make targets it names): ``make`` lines become no-ops checked elsewhere;
    for ``console`` blocks only the ``$ `` lines are kept."""
    lines = block.code.splitlines()
    if block.lang in CONSOLE_LANGS:
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    out, targets = [], []
    for ln in lines:
        m = MAKE_LINE.match(ln)
        if m:
            targets.append(m.group("target"))
            out.append(f": 'make {m.group('target')}: checked against the Makefile, not run'")
        else:
            out.append(ln)
    return "\n".join(out) + "\n", targets


@dataclass
class Outcome:
    status: str  # "passed" / "failed" / "skipped"
    message: str = ""
    seconds: float = 0.0


class ReadmeSession:
    """Runs the README's blocks in order in one working directory, each at most once."""

    def __init__(self, workdir: Path, scripts: Path, env: dict[str, str]) -> None:
        self.workdir, self.scripts, self.env = workdir, scripts, env
        self.outcomes: dict[int, Outcome] = {}

    def run_through(self, block: Block) -> Outcome:
        for b in RUNNABLE:
            if b.index not in self.outcomes:
                failed = [o for i, o in self.outcomes.items() if o.status == "failed"]
                if failed:
                    first = min(i for i, o in self.outcomes.items() if o.status == "failed")
                    self.outcomes[b.index] = Outcome(
                        "skipped", f"an earlier README block failed: block {first} "
                                   f"(README line {BLOCKS[first].line})")
                else:
                    self.outcomes[b.index] = self._run(b)
            if b.index == block.index:
                break
        return self.outcomes[block.index]

    def _run(self, block: Block) -> Outcome:
        if block.lang in PYTHON_LANGS:
            for mod in OPTIONAL_MODULES:
                if re.search(rf"^\s*(from|import)\s+{mod}\b", block.code, re.M) and \
                        importlib.util.find_spec(mod) is None:
                    return Outcome("skipped", f"README block needs {mod!r}, not installed (extra 'dev', 'hf' or 'ray')")
            path = self.scripts / f"block_{block.index:02d}.py"
            path.write_text(block.code, encoding="utf-8")
            cmd = [sys.executable, str(path)]
        else:
            script, _ = shell_script(block)
            path = self.scripts / f"block_{block.index:02d}.sh"
            path.write_text(script, encoding="utf-8")
            cmd = ["bash", "-x", "-euo", "pipefail", str(path)]  # -x: stderr names the failing command
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=self.workdir, env=self.env, capture_output=True, text=True,
                                  timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            return Outcome("failed", f"README block {block.index} (line {block.line}) ran past "
                                     f"{BLOCK_TIMEOUT_S} s; too slow for the README\n{_tail(exc.stdout, exc.stderr)}",
                           time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            return Outcome("failed", f"README block {block.index} ({block.lang}, README line {block.line}, "
                                     f"first line {block.first_line!r}) exited {proc.returncode} after "
                                     f"{seconds:.0f} s\n{_tail(proc.stdout, proc.stderr)}", seconds)
        return Outcome("passed", f"{seconds:.1f} s", seconds)


def _tail(stdout, stderr, n: int = 4000) -> str:
    def text(x) -> str:
        return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")

    return f"--- stdout (tail) ---\n{text(stdout)[-n:]}\n--- stderr (tail) ---\n{text(stderr)[-n:]}"


@pytest.fixture(scope="session")
def readme_session(shared_data: Path, tmp_path_factory) -> ReadmeSession:
    bindir = Path(sys.executable).parent
    if not (bindir / "wmark").exists():
        pytest.skip(f"no `wmark` console script beside {sys.executable} (install with `make test`)")
    env = dict(os.environ)
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", WMARK_SHARED_DATA=str(shared_data),
               MPLBACKEND="Agg", TQDM_DISABLE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("PYTHONPATH", None)
    workdir = tmp_path_factory.mktemp("readme-work")
    scripts = tmp_path_factory.mktemp("readme-blocks")
    return ReadmeSession(workdir, scripts, env)


def _params():
    for b in RUNNABLE:
        marks = [pytest.mark.slow] if b.first_line in SLOW_BLOCKS else []
        yield pytest.param(b, id=b.test_id, marks=marks)


@pytest.mark.parametrize("block", list(_params()))
def test_readme_block(block: Block, readme_session: ReadmeSession) -> None:
    outcome = readme_session.run_through(block)
    if outcome.status == "skipped":
        pytest.skip(outcome.message)
    if outcome.status == "failed":
        pytest.fail(outcome.message, pytrace=False)


def test_readme_has_blocks() -> None:
    assert len(RUNNABLE) >= 5, "README.md should show runnable examples"


def test_every_block_is_executed() -> None:
    """A code block whose language the extractor does not run would escape the test: refuse it."""
    bad = [f"line {b.line}: ```{b.lang or '(no language tag)'}" for b in BLOCKS if b.lang not in EXECUTED_LANGS]
    assert not bad, (f"README.md has code blocks this test does not execute (use one of "
                     f"{sorted(EXECUTED_LANGS)}): {bad}")


def test_make_lines_are_makefile_targets() -> None:
    targets = makefile_targets()
    named = [(b, t) for b in RUNNABLE if b.lang not in PYTHON_LANGS for t in shell_script(b)[1]]
    missing = [f"line {b.line}: make {t}" for b, t in named if t not in targets]
    assert not missing, f"README.md runs make targets the Makefile lacks ({sorted(targets)}): {missing}"
    for b in RUNNABLE:
        for ln in b.code.splitlines():
            if MAKE_LINE.match(ln):
                assert not ln.rstrip().endswith("\\"), f"README line {b.line}: a make line cannot continue"


def test_examples_never_write_committed_results() -> None:
    """README examples write only fresh folders of the working directory (runs/..., marked/, ...)."""
    for b in RUNNABLE:
        for word in ("bench/results", "--overwrite", "--update-results"):
            assert word not in b.code, f"README block at line {b.line} uses {word!r}"


def test_quickstart_comes_first() -> None:
    headings = [ln for ln in README.read_text(encoding="utf-8").splitlines() if ln.startswith("## ")]
    assert headings and headings[0].strip() == "## Quickstart", headings[:3]


def test_parse_blocks() -> None:
    text = "x\n```bash\necho 1\n```\n\n~~~~python\nprint(1)\n~~~~\n```\nplain\n```\n"
    blocks = parse_blocks(text)
    assert [(b.lang, b.code, b.line) for b in blocks] == [
        ("bash", "echo 1\n", 2), ("python", "print(1)\n", 6), ("", "plain\n", 9)]
    script, targets = shell_script(Block(0, "bash", "make demo  # all\nwmark --help\n", 1))
    assert targets == ["demo"] and script.splitlines() == [script.splitlines()[0], "wmark --help"]
    assert script.startswith(": ")  # a no-op
    console, _ = shell_script(Block(0, "console", "$ wmark --version\nwmark 0.1.0\n", 1))
    assert console == "wmark --version\n"
