#!/usr/bin/env bash
# CI: run every tutorial in examples/ with --quick (tiny training, short timing) into a temporary
# folder; fails when any example fails (a parity check above 1e-4 exits 1) or writes no PNG.
# Needs: fastrnn importable, torch, tensorflow-cpu / keras 3, matplotlib (all in ".[test]").
# JOBS examples run at a time (default: the number of CPUs, at most 4): they are mostly
# single-threaded framework imports and training, and the --quick timings are a smoke test, not
# numbers to read (run an example alone, without --quick, for those).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
jobs="${JOBS:-$(nproc 2> /dev/null || echo 2)}"
[ "$jobs" -gt 4 ] && jobs=4
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}" MPLBACKEND=Agg
mapfile -t examples < <(cd examples && ls [a-z]*.py)
echo "== examples: ${#examples[@]} scripts with --quick, $jobs at a time (output in $work)"
start=$(date +%s)

run_one() {  # name -> exit status; the log and the seconds it took go to $work
    local name="$1" t0 rc=0
    t0=$(date +%s%N)
    "$py" "examples/$name" --quick --out "$work/${name%.py}" > "$work/${name%.py}.log" 2>&1 || rc=$?
    if [ $rc -eq 0 ] && ! ls "$work/${name%.py}"/*.png > /dev/null 2>&1; then
        echo "FAIL: $name wrote no PNG" >> "$work/${name%.py}.log"
        rc=1
    fi
    echo "$rc $(( ($(date +%s%N) - t0) / 1000000 ))" > "$work/${name%.py}.status"
}

for name in "${examples[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run_one "$name" &
done
wait

status=0
for name in "${examples[@]}"; do
    read -r rc ms < "$work/${name%.py}.status"
    secs="$((ms / 1000)).$(( ms % 1000 / 100 ))"
    if [ "$rc" -eq 0 ]; then
        printf '== %-24s ok   %5s s\n' "$name" "$secs"
        grep -E '^(parity|time |  [a-z]|greedy|park|saved)' "$work/${name%.py}.log" | grep -v '^saved' | sed 's/^/   /' || true
    else
        status=1
        printf '== %-24s FAIL %5s s (exit %s); the end of its output:\n' "$name" "$secs" "$rc"
        { grep -v -E '^(I0000|WARNING: All log messages)' "$work/${name%.py}.log" || true; } | tail -n 40 | sed 's/^/   /'
    fi
done
echo "== examples: $(( $(date +%s) - start )) s in all; $([ $status -eq 0 ] && echo 'all passed' || echo 'FAILED')"
exit $status
