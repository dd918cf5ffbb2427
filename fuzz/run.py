"""Run one fuzz target.

    python fuzz/run.py TARGET [--runs N] [--seconds S] [--workdir DIR] [-- LIBFUZZER_ARGS...]
    python fuzz/run.py TARGET --replay FILE [FILE...]     # run given inputs once each

TARGET: native | torch_file | keras_zip | keras_isolated | predict | h5 (fuzz/fuzz_<TARGET>.py).  ``h5`` and
``keras_isolated`` always run the mutation fuzzer below (each input is parsed in a child process: no
coverage feedback to collect).

The fastrnn that is fuzzed is the one Python imports: the installed package (this script puts fuzz/,
not the checkout, on sys.path), or the checkout when none is installed or PYTHONPATH names it.  The
run stops at once (exit 2) unless that fastrnn's compiled core builds and runs a model: without it
every input would be "refused" with CoreNotBuiltError and nothing would be tested.

With atheris installed (pip install atheris) this is libFuzzer with Python coverage feedback over
fastrnn and zipfile; without it, a simple mutation fuzzer (no coverage feedback) with the same
harness, corpus and dictionary.  The seed corpus fuzz/corpus/TARGET/ is only read; new inputs go
to WORKDIR/corpus and findings to WORKDIR/artifacts/ (WORKDIR defaults to
$TMPDIR/fastrnn-fuzz/TARGET).  Exit status 0: no finding; anything else: a finding (an exception
other than FastRNNError, a crash, a hang past --timeout seconds, or running out of memory).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import os
import random
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if importlib.util.find_spec("fastrnn") is None:  # not installed: the checkout (in-place build)
    sys.path.append(os.path.dirname(HERE))

TARGETS = {"native": 65536, "torch_file": 16384, "keras_zip": 65536, "keras_isolated": 65536, "predict": 512,
           "h5": 65536}  # -> max input length
NO_COVERAGE = ("h5", "keras_isolated")  # code under test in another process: the mutation fuzzer only
SHARES = {"keras_isolated": "keras_zip"}  # targets that use another target's corpus and dictionary


def _parse(argv):
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="fuzz/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--runs", type=int, default=None, help="number of executions (default: 1000 unless --seconds)")
    ap.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--timeout", type=int, default=20, help="seconds one input may take before it counts as a hang")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--seed", type=int, default=0, help="random seed (0: libFuzzer picks one)")
    ap.add_argument("--fallback", action="store_true", help="use the simple mutation fuzzer even if atheris exists")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs once each and exit")
    a = ap.parse_args(argv)
    a.extra = extra
    if a.runs is None and a.seconds is None:
        a.runs = 1000
    a.workdir = a.workdir or os.path.join(tempfile.gettempdir(), "fastrnn-fuzz", a.target)
    return a


def _load_target(target, instrument):
    """Import fuzz/fuzz_<target>.py; with ``instrument``, under atheris's instrumentation of fastrnn,
    together with the target's ``LAZY_IMPORTS``: the fastrnn modules its code under test imports
    inside functions (only modules imported inside instrument_imports give coverage feedback)."""
    name = f"fuzz_{target}"
    if instrument:
        import atheris

        if "fastrnn" in sys.modules:  # imported before: it would run uninstrumented
            raise RuntimeError("fastrnn was imported before the fuzz target: no coverage feedback from it")
        with atheris.instrument_imports(include=["fastrnn", "zipfile", "_harness", name]):
            mod = importlib.import_module(name)
            for lazy in getattr(mod, "LAZY_IMPORTS", ()):
                importlib.import_module(lazy)
            return mod
    return importlib.import_module(name)


def _replay(mod, files):
    bad = 0
    for fn in files:
        with open(fn, "rb") as f:
            data = f.read()
        try:
            mod.test_one_input(data)
            print(f"{fn}: ok")
        except Exception:  # noqa: BLE001 - a finding
            bad += 1
            print(f"{fn}: FINDING")
            traceback.print_exc()
    return 1 if bad else 0


def _read_dict(path):
    """libFuzzer dictionary lines ``"token"`` (with \\xNN / \\" escapes) -> bytes."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or '"' not in line:
                continue
            tok = line[line.index('"') + 1:line.rindex('"')]
            out.append(tok.encode("latin-1").decode("unicode_escape").encode("latin-1"))
    return out


def _seeds(target):
    d = os.path.join(HERE, "corpus", SHARES.get(target, target))
    out = []
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, n), "rb") as f:
            out.append(f.read())
    return out or [b""]


# ------------------------------------------------------------------------------ fallback fuzzer
_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"-1", b"0", b"1",
                b"9999999999", b"1e309", b"NaN", b"null", b"true", b"[]", b"{}", b'""', b"-"]


def _mutate(data: bytes, rnd: random.Random, tokens, pool, max_len) -> bytes:
    d = bytearray(data)
    for _ in range(rnd.choice((1, 1, 2, 3, 4, 8))):
        op = rnd.randrange(8)
        pos = rnd.randrange(len(d) + 1)
        if op == 0 and d:
            d[min(pos, len(d) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1 and d:
            d[min(pos, len(d) - 1)] = rnd.randrange(256)
        elif op == 2 and d:
            del d[pos:pos + rnd.randint(1, 16)]
        elif op == 3:
            d[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif op == 4 and tokens:
            t = rnd.choice(tokens)
            if rnd.random() < 0.5:
                d[pos:pos] = t
            else:
                d[pos:pos + len(t)] = t
        elif op == 5:
            t = rnd.choice(_INTERESTING)
            d[pos:pos + rnd.randint(0, len(t))] = t
        elif op == 6 and d:  # copy a chunk within
            a = rnd.randrange(len(d))
            chunk = d[a:a + rnd.randint(1, 32)]
            d[pos:pos] = chunk
        elif op == 7:  # splice with another input
            other = rnd.choice(pool)
            if other:
                a = rnd.randrange(len(other))
                d[pos:] = other[a:]
    return bytes(d[:max_len])


class _Hang(Exception):
    pass


def _fallback(mod, a):
    os.makedirs(os.path.join(a.workdir, "artifacts"), exist_ok=True)
    rnd = random.Random(a.seed or None)
    pool = _seeds(a.target)
    tokens = _read_dict(os.path.join(HERE, "dicts", f"{SHARES.get(a.target, a.target)}.dict"))
    current = os.path.join(a.workdir, "current-input")  # what was running if the process dies

    def alarm(*_):
        raise _Hang()

    signal.signal(signal.SIGALRM, alarm)
    t0, n = time.monotonic(), 0
    print(f"fallback fuzzer (no coverage feedback): {len(pool)} seeds, {len(tokens)} dictionary tokens; "
          f"a crash leaves its input in {current}", flush=True)
    while True:
        if a.runs is not None and n >= a.runs:
            break
        if a.seconds is not None and time.monotonic() - t0 >= a.seconds:
            break
        data = pool[n] if n < len(pool) else _mutate(rnd.choice(pool), rnd, tokens, pool, TARGETS[a.target])
        with open(current, "wb") as f:
            f.write(data)
        n += 1
        signal.alarm(a.timeout)
        try:
            mod.test_one_input(data)
        except Exception as e:  # noqa: BLE001 - a finding
            signal.alarm(0)
            kind = "timeout" if isinstance(e, _Hang) else "crash"
            art = os.path.join(a.workdir, "artifacts", f"{kind}-{hashlib.sha1(data).hexdigest()}")
            with open(art, "wb") as f:
                f.write(data)
            traceback.print_exc()
            print(f"FINDING after {n} executions; input saved to {art}", flush=True)
            _print_stats(mod)
            return 1
        finally:
            signal.alarm(0)
        if n % 1000 == 0:
            print(f"#{n} {n / (time.monotonic() - t0):.0f} exec/s", flush=True)
    print(f"Done {n} runs in {time.monotonic() - t0:.0f} second(s), no finding", flush=True)
    _print_stats(mod)
    return 0


def _print_stats(mod):
    stats = getattr(mod, "STATS", None)
    if stats:
        print("stats: " + ", ".join(f"{k}={v}" for k, v in stats.items()), flush=True)


# ------------------------------------------------------------------------------ atheris
def _atheris(mod, a):
    import atheris

    corpus = os.path.join(a.workdir, "corpus")
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(os.path.join(a.workdir, "artifacts"), exist_ok=True)
    args = [sys.argv[0], f"-max_len={TARGETS[a.target]}", f"-timeout={a.timeout}", "-rss_limit_mb=4096",
            f"-artifact_prefix={os.path.join(a.workdir, 'artifacts')}/", "-print_final_stats=1"]
    if a.runs is not None:
        args.append(f"-runs={a.runs}")
    if a.seconds is not None:
        args.append(f"-max_total_time={max(1, int(a.seconds))}")
    if a.seed:
        args.append(f"-seed={a.seed}")
    source = SHARES.get(a.target, a.target)
    dic = os.path.join(HERE, "dicts", f"{source}.dict")
    if os.path.exists(dic):
        args.append(f"-dict={dic}")
    args += a.extra + [corpus, os.path.join(HERE, "corpus", source)]
    atheris.Setup(args, mod.test_one_input)
    atheris.Fuzz()  # exits the process: 0 when the runs / time are used up without a finding
    return 0


def main(argv=None):
    a = _parse(sys.argv[1:] if argv is None else argv)
    try:
        import atheris  # noqa: F401

        have_atheris = not a.fallback and a.target not in NO_COVERAGE
    except ImportError:
        have_atheris = False
    mod = _load_target(a.target, instrument=have_atheris and not a.replay)
    from _harness import require_core  # after the target: fastrnn is imported (and instrumented) there

    try:
        where = require_core()
    except SystemExit as e:  # no working core: every input would be "refused", nothing tested
        print(e, file=sys.stderr, flush=True)
        return 2
    print(f"fuzz {a.target}: fastrnn from {where}", flush=True)
    if a.replay:
        return _replay(mod, a.replay)
    if have_atheris:
        return _atheris(mod, a)
    return _fallback(mod, a)


if __name__ == "__main__":
    sys.exit(main())
