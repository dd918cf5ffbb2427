"""The `fastrnn` command line: `fastrnn demo`, `fastrnn bench`, `fastrnn info`."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fastrnn", description="Fast CPU inference for recurrent networks")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run a small LSTM, check it against PyTorch if installed, time it")
    d.add_argument("--steps", type=int, default=50)
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--repeat", type=int, default=20)
    sub.add_parser("info", help="version, ISA, BLAS, threads")
    b = sub.add_parser("bench", help="time named cases side by side with the installed frameworks")
    b.add_argument("cases", nargs="*", help="case names (default: all)")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--min-time", type=float, default=0.5, help="seconds per engine per case")
    b.add_argument("--json", default=None, help="write the rows to this file")
    args = p.parse_args(argv)
    import fastrnn

    try:
        if args.cmd == "demo":
            from .demo import run

            return run(steps=args.steps, threads=args.threads, repeat=args.repeat)
        if args.cmd == "bench":
            from .bench import run as bench

            rows = bench(args.cases or None, threads=args.threads, min_time=args.min_time)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=2)
            return 0
        if args.cmd == "info":
            print(json.dumps(fastrnn.info(), indent=2))
            return 0
    except fastrnn.FastRNNError as e:
        print(f"fastrnn: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
