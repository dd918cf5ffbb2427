#!/usr/bin/env bash
# CI: a short fuzz run of every target (fuzz/README.md); fails on any finding.
# Needs: fastrnn importable (installed or built in place), h5py, and atheris (pip install atheris;
# without it fuzz/run.py falls back to a simple mutation fuzzer).  About 110-130 s on 2 cores.
# fuzz/run.py stops at once (exit 2) when the fastrnn it imports cannot build a model (no compiled core).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
work="$(mktemp -d)"
# (the clean-up must not decide the status: a CI run once ended with status 1 right after every target
# had printed "no finding", with nothing on stderr; the status below is the targets')
trap 'rm -rf "$work" || true' EXIT
unset FASTRNN_FUZZ_SKIP_KNOWN   # CI: known open findings fail too
status=0
# target:executions[:seconds] (seconds cap, default 30).  h5 and keras_isolated: whole HDF5 files / the
# keras_zip inputs through the isolated reader, one Python process per execution (~1-3 executions/s):
# bounded by time.  Every target first runs its whole seed corpus, the hostile-* seeds of
# tests/hostile_*.py included (fuzz/make_corpus.py hostile).
for spec in native:40000 torch_file:8000 keras_zip:8000 predict:20000 keras_isolated:40:20 h5:120:35; do
    target="${spec%%:*}"; rest="${spec#*:}"; runs="${rest%%:*}"; secs=30
    [ "$rest" != "$runs" ] && secs="${rest#*:}"
    echo "== fuzz $target ($runs executions, at most $secs s)"
    if ! "$py" fuzz/run.py "$target" --runs "$runs" --seconds "$secs" --seed 1 --workdir "$work/$target" > "$work/$target.log" 2>&1; then
        status=1
        echo "FINDING in $target:"
        grep -v '^#' "$work/$target.log" | tail -n 60
        ls "$work/$target/artifacts" 2>/dev/null | sed 's/^/  artifact: /'
    else
        grep -E '^(Done|stat::number_of_executed_units|stats:)' "$work/$target.log" || tail -n 3 "$work/$target.log"
    fi
done
echo "== fuzz: every target run, status $status"
exit "$status"
