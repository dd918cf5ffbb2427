"""Every Python example of the documentation site runs.

Each page of ``docs/`` (Markdown) is one test: its ```` ```python ```` blocks, in order, are joined into
one script and run in a fresh Python process in an empty directory (files an example writes stay
there).  ```` ```console ```` blocks whose commands (``$ ...`` lines) are all ``fastrnn ...`` run too, in
page order, as ``python -m fastrnn ...`` in the same directory (a non-zero exit fails the page); other
console blocks (``pip install ...``) are shown, not run.  The examples check themselves against the real frameworks (``np.testing.assert_allclose``
against torch / Keras / onnxruntime outputs), so a page whose numbers drift fails here.

A python block, or a console block with a ``fastrnn`` command, that cannot run (a fragment, a distributed cluster, a path to the user's own file) is marked
by an HTML comment on the line right before its fence, with the reason::

    <!-- docs-example: skip (needs a dask cluster) -->

Pages whose examples import a framework ``require`` it (a failure under FASTRNN_REQUIRE_FRAMEWORKS=1,
as in CI, else a skip).
"""
from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REQUIRE_FRAMEWORKS, child_env

DOCS = Path(__file__).resolve().parent.parent / "docs"
SKIP = re.compile(r"<!--\s*docs-example:\s*skip\s*\((?P<why>[^)]+)\)\s*-->")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
FRAMEWORKS = ("torch", "keras", "onnx", "onnxruntime", "safetensors", "h5py", "tf_keras", "dask")
TIMEOUT_S = 600


def installed(module: str) -> None:
    """conftest.require without the import (Keras takes 20 s to import; the example's process does it):
    skip locally / fail under FASTRNN_REQUIRE_FRAMEWORKS=1 when the module is missing."""
    if importlib.util.find_spec(module) is None:
        if REQUIRE_FRAMEWORKS:
            pytest.fail(f"{module} is required (FASTRNN_REQUIRE_FRAMEWORKS=1) by the docs examples but is not installed")
        pytest.skip(f"{module} not installed")


def code_blocks(text: str):
    """(language, code, skip_reason, line) of every fenced block of a Markdown page."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m["fence"], m["info"].strip(), i
        j = i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"unclosed code fence at line {start + 1}")
        prev = lines[start - 1].strip() if start else ""
        skip = SKIP.fullmatch(prev)
        lang = info.split()[0] if info else ""
        indent = len(m["indent"])
        code = "\n".join(line[indent:] for line in lines[start + 1:j])
        blocks.append((lang, code, skip["why"] if skip else None, start + 1))
        i = j + 1
    return blocks


def pages():
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def console_commands(code: str):
    """The ``$ ...`` commands of a console block, each as an argv list (shell comments dropped)."""
    return [shlex.split(line[2:], comments=True) for line in code.split("\n") if line.startswith("$ ")]


def runs_cli(code: str) -> bool:
    """True when every command of a console block is ``fastrnn ...`` (such a block is run)."""
    cmds = console_commands(code)
    return bool(cmds) and all(c and c[0] == "fastrnn" for c in cmds)


CLI_RUNNER = """
def _docs_cli(argv):  # a console block of the page: python -m fastrnn ARGS, which must exit 0
    import subprocess as _sp, sys as _sys
    _r = _sp.run([_sys.executable, "-m", "fastrnn", *argv], capture_output=True, text=True)
    print("$ fastrnn", *argv)
    print(_r.stdout[-3000:], _r.stderr[-3000:], sep="")
    if _r.returncode != 0:
        raise SystemExit(f"fastrnn {' '.join(argv)} exited {_r.returncode}")
"""


def page_script(path: Path):
    """The runnable script of a page (None when it has no runnable block)."""
    parts = []
    for lang, code, skip, line in code_blocks(path.read_text(encoding="utf-8")):
        if skip:
            continue
        where = f"# ---- {path.relative_to(DOCS)}:{line}"
        if lang in ("python", "py"):
            parts.append(f"{where}\n{code}\n")
        elif lang == "console" and runs_cli(code):
            parts.append(where + "\n" + "".join(f"_docs_cli({c[1:]!r})\n" for c in console_commands(code)))
    return CLI_RUNNER + "\n".join(parts) if parts else None


def test_pages_exist_and_every_skip_says_why():
    assert pages(), f"no Markdown pages under {DOCS}"
    for path in pages():
        text = path.read_text(encoding="utf-8")
        for lang, code, skip, line in code_blocks(text):
            if skip is not None:
                assert lang in ("python", "py", "console"), f"{path}:{line}: a skip marker before a {lang!r} block"
                assert skip.strip(), f"{path}:{line}: a skip marker without a reason"
            elif lang == "console":  # a fastrnn command that is not run must say why
                cmds = console_commands(code)
                assert runs_cli(code) or not any(c and c[0] == "fastrnn" for c in cmds), \
                    f"{path}:{line}: a console block mixing fastrnn and other commands needs a skip marker"
        # a marker that is not right before a fence would silently run the block: refuse it
        lines = text.split("\n")
        for k, line in enumerate(lines):
            if SKIP.search(line):
                nxt = lines[k + 1] if k + 1 < len(lines) else ""
                assert FENCE.match(nxt), f"{path}:{k + 1}: the skip marker is not directly before a code fence"


def test_code_blocks_parser():
    text = "a\n```python\nx = 1\n```\n<!-- docs-example: skip (a fragment) -->\n```python\nboom(\n```\n" \
           "````md\n```python\nnot a block\n```\n````\n"
    got = code_blocks(text)
    assert [(b[0], b[1], b[2]) for b in got] == [("python", "x = 1", None), ("python", "boom(", "a fragment"),
                                                ("md", "```python\nnot a block\n```", None)]
    assert console_commands("$ fastrnn info --json   # a comment\nout\n$ fastrnn predict 'a b.npy'") == \
        [["fastrnn", "info", "--json"], ["fastrnn", "predict", "a b.npy"]]
    assert runs_cli("$ fastrnn info") and not runs_cli("$ pip install .\n$ fastrnn demo") and not runs_cli("out")


@pytest.mark.parametrize("page", [str(p.relative_to(DOCS)) for p in pages() if page_script(p) is not None])
def test_page_examples_run(page, tmp_path):
    script = page_script(DOCS / page)
    for module in FRAMEWORKS:
        if re.search(rf"^\s*(import|from)\s+{module}\b", script, re.M):
            installed(module)
    (tmp_path / "example.py").write_text(script, encoding="utf-8")
    env = child_env(MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=TIMEOUT_S)
    assert out.returncode == 0, f"the examples of docs/{page} failed:\n{out.stdout[-4000:]}\n{out.stderr[-8000:]}"


def test_cli_page_shows_every_subcommand():
    """docs/cli.md shows each subcommand's --help (captured at build time): a new one must be added there."""
    import argparse

    from fastrnn.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = [c for c in sub.choices if not re.search(rf"^```{{fastrnn-help}} {re.escape(c)}\s*$", page, re.M)]
    assert not missing, f"docs/cli.md has no ```{{fastrnn-help}} block for: {', '.join(missing)}"


def test_api_reference_names_every_public_name():
    """Every name of fastrnn.__all__ is in the API reference (docs/api/*.md, or fastrnn.errors' automodule)."""
    import fastrnn
    import fastrnn.errors

    api = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.md"))
    missing = [n for n in fastrnn.__all__ if n != "__version__" and n not in fastrnn.errors.__all__
               and not re.search(rf"\bfastrnn\.{re.escape(n)}\b", api)]
    assert not missing, f"not in docs/api/: {', '.join(missing)}"
    assert ".. automodule:: fastrnn.errors" in api
