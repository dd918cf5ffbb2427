#!/usr/bin/env bash
# Types: `mypy --strict fastrnn`, every module strict (settings: pyproject.toml [tool.mypy]; its overrides
# relax only third-party modules without type information).  tests/test_stub.py keeps fastrnn/_core.pyi
# in step with the bindings.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
"$py" -m mypy --version > /dev/null 2>&1 || { echo "ERROR: mypy is missing (pip install \".[test]\" installs it)"; exit 1; }
"$py" -m mypy --strict fastrnn
