"""Sphinx configuration of the fastrnn documentation site.

Build (warnings are errors):  bash .ci/docs.sh   (or: sphinx-build -W --keep-going -b html docs build/docs)

Pages are Markdown (MyST); the API reference is autodoc over the package's reStructuredText docstrings.
autodoc imports fastrnn, so the build uses the fastrnn installed in the running Python (the core must be
built).  The CLI page runs ``python -m fastrnn <command> --help`` at build time (the ``fastrnn-help``
directive below), so the options shown are always the installed CLI's own.
"""
from __future__ import annotations

import os
import subprocess
import sys

from docutils import nodes
from docutils.parsers.rst import Directive

import fastrnn

project = "fastrnn"
author = "the fastrnn authors"
copyright = "the fastrnn authors, Apache-2.0"  # noqa: A001 (Sphinx's name)
version = release = fastrnn.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"fastrnn {release}"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

# code blocks: "python" (run by tests/test_docs_examples.py), "console" ($ fastrnn ... lines run there too)
pygments_style = "friendly"


def _help(argv):
    env = dict(os.environ, COLUMNS="100")
    out = subprocess.run([sys.executable, "-m", "fastrnn", *argv, "--help"], capture_output=True, text=True,
                         env=env, cwd=os.path.dirname(os.path.abspath(__file__)), timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"fastrnn {' '.join(argv)} --help exited {out.returncode}: {out.stderr}")
    return out.stdout


class FastrnnHelp(Directive):
    """``fastrnn-help`` directive: the literal output of ``fastrnn [COMMAND] --help``."""

    optional_arguments = 1
    has_content = False

    def run(self):
        argv = self.arguments[0].split() if self.arguments else []
        text = _help(argv)
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("fastrnn-help", FastrnnHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
