#!/usr/bin/env bash
# CI: valgrind memcheck of fastrnn's C++ core (.ci/valgrind.py: the workload and the log check).
# Runs a small fastrnn-only workload (load, predict several shapes, stream, generate, bytes / file /
# pickle round trips, bad inputs) under memcheck with PYTHONMALLOC=malloc and fails on any memcheck
# error or definite leak with a frame in fastrnn's code; CPython's / numpy's own reports are listed,
# not failed on.  First a self-test: a planted leak and invalid read in a C library named like ours
# must be caught (else the filter is broken and the run fails).  Needs fastrnn importable (installed
# or built in place), numpy, valgrind (apt-get install valgrind) and a C compiler for the self-test.
# About 40-120 s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
command -v valgrind > /dev/null || { echo "valgrind is not installed (apt-get install -y valgrind)"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
repo="$(pwd)"
vg=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite
    --num-callers=40 --error-exitcode=99 --xml=yes)

run_vg() {  # run_vg XML ARGS...: valgrind exit 99 only means "reports in the log" (check decides)
    local xml="$1"; shift
    local rc=0
    # FASTRNN_BLOCK_CACHE=0: every Buffer block goes back to malloc (common.h), so memcheck sees its frees
    (cd "$work" && PYTHONMALLOC=malloc FASTRNN_BLOCK_CACHE=0 "${vg[@]}" --xml-file="$xml" "$py" "$repo/.ci/valgrind.py" "$@") || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 99 ]; then
        echo "the workload failed under valgrind (exit status $rc)"; exit 1
    fi
}

echo "== valgrind self-test: a planted leak and invalid read in a library named like ours must be caught"
mkdir -p "$work/selftest/fastrnn"
cat > "$work/selftest/leak.c" <<'C'
#include <stdlib.h>
#include <string.h>
static volatile char *keep;
void fastrnn_selftest_leak(int n) { char *p = malloc(n); memset(p, 1, n); keep = p; keep = 0; }
int fastrnn_selftest_read_past_end(int n) { char *p = malloc(n); memset(p, 2, n); int v = p[n + 1]; free(p); return v; }
C
${CC:-cc} -O0 -g -shared -fPIC -o "$work/selftest/fastrnn/libselftest.so" "$work/selftest/leak.c"
FASTRNN_VALGRIND_SELFTEST_LIB="$work/selftest/fastrnn/libselftest.so" run_vg "$work/selftest.xml" selftest-workload
if "$py" .ci/valgrind.py check "$work/selftest.xml" > "$work/selftest.log"; then
    cat "$work/selftest.log"; echo "valgrind self-test FAILED: the planted errors were not reported"; exit 1
fi
grep -q "Leak_DefinitelyLost" "$work/selftest.log" && grep -q "InvalidRead" "$work/selftest.log" \
    || { cat "$work/selftest.log"; echo "valgrind self-test FAILED: leak or invalid read missing"; exit 1; }
echo "self-test ok: the planted leak and invalid read were reported"

echo "== valgrind memcheck: fastrnn workload"
start=$(date +%s)
run_vg "$work/workload.xml" workload
"$py" .ci/valgrind.py check "$work/workload.xml"
echo "valgrind memcheck: clean ($(( $(date +%s) - start )) s)"
