#!/usr/bin/env bash
# Build the documentation site (docs/ -> build/docs/) with every Sphinx warning an error.
#   bash .ci/docs.sh               build the site (in the active virtual environment, else in a new one)
#   bash .ci/docs.sh --examples    also run every Python example of the pages (tests/test_docs_examples.py;
#                                  the normal test suite runs it too)
# The API reference imports fastrnn (autodoc), so the fastrnn of this Python must have its core built.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=0
for arg in "$@"; do
    case "$arg" in
        --examples) examples=1 ;;
        *) echo "usage: bash .ci/docs.sh [--examples]" >&2; exit 2 ;;
    esac
done
if [ -z "${VIRTUAL_ENV:-}" ]; then
    venv="${FASTRNN_DOCS_VENV:-$(mktemp -d)/venv}"
    echo "== docs: new virtual environment $venv (installs fastrnn from this checkout)"
    python3 -m venv "$venv"
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
    python -m pip install --quiet --upgrade pip
    if [ "$examples" = 1 ]; then
        python -m pip install --quiet ".[test]"     # the examples run against torch, Keras, onnxruntime...
    else
        python -m pip install --quiet .             # the site alone needs fastrnn and its core
    fi
fi
# import checks run from docs/: in the repository root, '' on sys.path would import the source tree
(cd docs && python -c "import fastrnn, fastrnn._core; print('== docs: fastrnn', fastrnn.__version__, 'from', fastrnn.__file__)") \
    || { echo "ERROR: fastrnn with a built core is not importable here: pip install . (or pip install -e .) first" >&2; exit 1; }
echo "== docs: install docs/requirements.txt"
python -m pip install --quiet -r docs/requirements.txt
out=build/docs
rm -rf "$out"
start=$(date +%s%N)
# sphinx-build (not python -m sphinx: that would put the checkout's fastrnn/ first on sys.path)
(cd docs && sphinx-build -W --keep-going -q -b html . "../$out")
end=$(date +%s%N)
pages=$(find "$out" -name '*.html' -not -path "$out/_*" -not -name genindex.html -not -name search.html \
        -not -name py-modindex.html | wc -l)
ms=$(( (end - start) / 1000000 ))
printf '== docs: built %s pages in %d.%03d s -> %s/index.html\n' "$pages" $((ms / 1000)) $((ms % 1000)) "$out"
if [ "$examples" = 1 ]; then
    echo "== docs: run every example of the pages (tests/test_docs_examples.py)"
    python -m pytest -q tests/test_docs_examples.py
fi
