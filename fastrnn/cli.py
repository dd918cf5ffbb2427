"""The `fastrnn` command line: convert, info, predict, demo, bench.

Exit status: 0 success; 1 ``demo`` found a mismatch against PyTorch; 2 a usage error or a
model / input problem, reported as ``fastrnn: error: ...`` on stderr (no traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

if TYPE_CHECKING:
    import numpy as np

    from .runtime import Model

EPILOG = """\
examples:
  fastrnn convert model.keras model.fastrnn
  fastrnn convert weights.pt model.fastrnn --arch arch.json
  fastrnn convert model.keras model-int8.fastrnn --weights int8     # or bf16; default: as the source (f32)
  fastrnn info                        # version, ISA, BLAS, threads (--json for JSON)
  fastrnn info model.fastrnn          # layers, shapes, parameter count
  fastrnn predict model.fastrnn x.npy -o y.npy
  fastrnn demo

MODEL / SRC is any file fastrnn.load() reads, told by its content: .fastrnn, Keras .keras / .h5,
PyTorch .pt / .pth (a state dict needs --arch).
"""

PREDICT_EPILOG = """\
INPUT formats:
  .npy   the array as is: (batch, time, features) floats, or (batch, time) integer ids for a
         model that starts with an Embedding
  .npz   the first array in the archive, or the one named by --key
  .csv   comma-separated numbers (one header line is skipped if it is not numeric).
         Feature models: ONE sequence, a row per time step and a column per feature; a batch
         axis of 1 is added, so the output has batch 1.
         Id models (first layer Embedding): a batch, one sequence of ids per row.
The output is written with -o (.npy; .npz for a model with several outputs: one array per output
name, e.g. logits / h / c) or printed.
"""


class _UsageError(Exception):
    """A problem with the command line or an input file: message + exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in fastrnn's one format: ``fastrnn: error: ...`` on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog[len("fastrnn"):].strip()
        hint = f"fastrnn {sub} --help" if sub else "fastrnn --help"
        self.exit(2, f"fastrnn: error: {(sub + ': ') if sub else ''}{message} (see {hint})\n{self.format_usage()}")


def _arch(value: str) -> Any:
    """--arch: inline JSON (starts with { or [), a JSON file, or else a plain name passed on as is
    (e.g. ``lstm`` for a single-RNN PyTorch state dict; the file reader decides)."""
    text, where = value, "--arch"
    if not value.lstrip().startswith(("{", "[")):
        if not os.path.isfile(value):
            if value.lower().endswith(".json") or os.sep in value:
                raise _UsageError(f"--arch {value!r}: no such file (give a JSON file or an inline JSON string)")
            return value
        with open(value, encoding="utf-8") as f:
            text = f.read()
        where = f"--arch {value}"
    try:
        return json.loads(text)
    except ValueError as e:
        raise _UsageError(f"{where}: not valid JSON ({e})") from None


# reader options the CLI passes on (flag -> fastrnn.load keyword): the ones the readers' refusals ask for
_READER_FLAGS = {"arch": ("--arch", "architecture"), "state_key": ("--state-key", "key"),
                 "graph_output": ("--graph-output", "output")}


def _load(path: str, args: argparse.Namespace, weights: str | None = None) -> Model:
    """``fastrnn.load(path, ...)`` with the reader options given as flags (--arch, --state-key,
    --graph-output); an option the file's reader does not take is a usage error naming the flag."""
    import fastrnn
    from .errors import UnsupportedOptionError

    kw: dict[str, Any] = {"weights": weights} if weights else {}
    given = [(flag, key, getattr(args, dest)) for dest, (flag, key) in _READER_FLAGS.items()
             if getattr(args, dest, None) is not None]
    for flag, key, value in given:
        kw[key] = _arch(value) if key == "architecture" else value
    try:
        return fastrnn.load(path, **kw)
    except UnsupportedOptionError as e:  # a reader that does not take one of them
        refused = getattr(e, "options", ())
        flags = " / ".join(flag for flag, key, _ in given if key in refused)
        raise _UsageError(f"{flags or 'an option'} does not apply to {path} ({e})") from None


# --------------------------------------------------------------------------------- info
def describe(model: Model, path: str | None = None) -> dict[str, Any]:
    """A JSON-able description of a model: layers, shapes, parameters (and the file, when given)."""
    from . import info
    from .spec import RecurrentSpec

    spec = model.spec
    _, tensors = spec.to_core()
    seq, feats = True, spec.input_features
    first: Any = spec.layers[0]  # an EmbeddingSpec when the model takes ids
    if spec.takes_ids:
        inp = f"(batch, time) int ids < {first.embeddings.shape[0]}"
    else:
        inp = f"(batch, time, {feats}) float"
    rows: list[dict[str, Any]] = []
    total, nbytes = 0, 0
    layer: Any  # one of the spec.LayerSpec classes, told apart by kind
    for i, layer in enumerate(spec.layers):
        mine = [(k, t) for k, t in tensors.items() if k.startswith(f"layers.{i}.")]
        params = sum(int(t.size) for k, t in mine if not k.endswith("_scale"))  # int8 row scales: not parameters
        total += params
        nbytes += sum(int(t.nbytes) for _, t in mine)
        row: dict[str, Any] = {"name": layer.name, "kind": layer.kind, "units": None, "direction": None, "params": params}
        outs = 1
        if layer.kind == "embedding":
            feats = int(first.embeddings.shape[1])
            row["units"] = feats
            row["vocab"] = int(first.embeddings.shape[0])
            row["mask_zero"] = bool(layer.mask_zero)
        elif isinstance(layer, RecurrentSpec):
            row.update(units=layer.units, direction=layer.direction, activation=layer.activation,
                       return_sequences=layer.return_sequences, mask_mode=layer.mask_mode, precision=layer.precision)
            if layer.kind != "simple_rnn":
                row["recurrent_activation"] = layer.recurrent_activation
            if layer.kind == "gru":
                row["reset_after"] = layer.reset_after
            if layer.proj_size:
                row["proj_size"] = layer.proj_size
            if layer.gate_activations is not None:  # they replace activation / recurrent_activation
                row.pop("recurrent_activation", None)
                row["activation"] = None
                row["gate_activations"] = layer.gate_activations
            for opt, on in (("clip", layer.clip), ("input_forget", layer.input_forget),
                            ("peepholes", any(w.peephole is not None for w in layer.weights)),
                            ("default_initial_state", any(w.h0 is not None or w.c0 is not None for w in layer.weights))):
                if on:
                    row[opt] = on
            if layer.direction == "bidirectional":
                row["merge_mode"] = layer.merge_mode
                outs = 2 if layer.merge_mode == "none" else 1
            feats, seq = layer.output_size, layer.return_sequences
        elif layer.kind == "dense":
            feats = int(layer.weight.shape[0])
            row.update(units=feats, activation=layer.activation)
        elif layer.kind == "activation":
            row["activation"] = layer.activation
        elif layer.kind == "last_step":
            seq = False
        elif layer.kind == "masking":
            row["mask_value"] = layer.mask_value
        shape = f"(batch, time, {feats})" if seq else f"(batch, {feats})"
        row["output"] = shape if outs == 1 else f"2 x {shape}"
        rows.append(row)
    d: dict[str, Any] = {}
    if path is not None:
        d["file"] = os.fspath(path)
        d["file_size"] = os.path.getsize(path)
    inf = info()
    d.update(source=spec.source or None, input=inp, output=rows[-1]["output"], layers=rows, parameters=total,
             weights=spec.precision, weight_bytes=nbytes, metadata=spec.metadata, isa=inf["isa"], num_threads=inf["num_threads"], fastrnn=inf["version"])
    return d


def _print_description(d: dict[str, Any], out: Callable[[str], object] = print) -> None:
    if "file" in d:
        out(f"model:      {d['file']} ({d['file_size']:,} bytes)")
    out(f"source:     {d['source'] or '?'}")
    out(f"input:      {d['input']}")
    out(f"output:     {d['output']}")
    cols = ("#", "name", "kind", "units", "direction", "output", "params")
    table = [cols]
    for i, r in enumerate(d["layers"]):
        kind = r["kind"] + (f" ({r['activation']})" if r.get("activation") and r["kind"] in ("dense", "activation")
                            else "") + (f" [{r['precision']}]" if r.get("precision") else "")
        direction = r["direction"] or "-"
        if r.get("merge_mode"):
            direction += f" ({r['merge_mode']})"
        table.append((str(i), r["name"], kind, "-" if r["units"] is None else str(r["units"]), direction,
                      r["output"], f"{r['params']:,}"))
    widths = [max(len(row[c]) for row in table) for c in range(len(cols))]
    out("layers:")
    for row in table:
        out("  " + "  ".join(v.rjust(w) if c in (0, 3, 6) else v.ljust(w)
                             for c, (v, w) in enumerate(zip(row, widths))).rstrip())
    out(f"parameters: {d['parameters']:,}")
    out(f"weights:    {d['weights']} (recurrent layers; {d['weight_bytes']:,} bytes of tensors)")
    out(f"isa:        {d['isa']} ({d['num_threads']} threads), fastrnn {d['fastrnn']}")


# --------------------------------------------------------------------------------- predict
def _read_input(path: str, key: str | None, takes_ids: bool) -> Any:
    import numpy as np

    if not os.path.exists(path):
        raise _UsageError(f"{path}: no such input file")
    with open(path, "rb") as f:
        magic = f.read(6)
    try:
        if magic == b"\x93NUMPY":
            return np.load(path, allow_pickle=False)
        if magic[:4] == b"PK\x03\x04":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if not names:
                    raise _UsageError(f"{path}: the .npz archive holds no array")
                name = key if key is not None else names[0]
                if name not in names:
                    raise _UsageError(f"{path}: no array {name!r} (arrays: {', '.join(names)})")
                return z[name]
    except ValueError as e:  # e.g. an object array (would need pickle)
        raise _UsageError(f"{path}: cannot read the array ({e})") from None
    if not path.lower().endswith((".csv", ".txt")):
        raise _UsageError(f"{path}: unknown input format; give a .npy, .npz or .csv file")
    arr = _read_csv(path)
    if takes_ids:  # a batch of id sequences, one per row
        if not np.all(arr == np.round(arr)):
            raise _UsageError(f"{path}: the model takes integer ids but the CSV holds non-integers")
        return arr.astype(np.int64)
    return arr[None].astype(np.float32)  # one sequence: (time, features) -> (1, time, features)


def _read_csv(path: str) -> np.ndarray:
    """Comma-separated numbers, one row per line; a first line that is not numeric is a header.
    Errors name the file and its line number (1-based, as an editor shows it)."""
    import numpy as np

    rows, width, first = [], None, True
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                cells = [c.strip() for c in line.rstrip("\r\n").split(",")]
                try:
                    row = [float(c) for c in cells]
                except ValueError:
                    if first:  # a header line
                        first = False
                        continue
                    bad = next(c for c in cells if not _is_number(c))
                    raise _UsageError(f"{path}:{lineno}: {bad!r} is not a number") from None
                first = False
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    raise _UsageError(f"{path}:{lineno}: {len(row)} values, but the rows above have {width}")
                rows.append(row)
    except UnicodeDecodeError as e:
        raise _UsageError(f"{path}: not a text CSV file ({e})") from None
    if not rows:
        raise _UsageError(f"{path}: the CSV holds no numbers")
    return np.asarray(rows, dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


OUTPUT_SUFFIXES = (".npy", ".npz", ".csv")


def _check_output(path: str | None) -> None:
    if path is not None and not path.lower().endswith(OUTPUT_SUFFIXES):
        raise _UsageError(f"-o {path}: unknown output format; give a .npy, .npz or .csv file name")


def _write_csv(path: str, arrays: Sequence[np.ndarray]) -> None:
    """2-D outputs (batch, features): a row per batch row; 3-D (batch, time, features): a row per
    (batch, time) pair with those two indices first.  A header names the columns."""
    import numpy as np

    y = arrays[0]  # (one output: _predict refuses .csv for several)
    feats = [f"y{i}" for i in range(y.shape[-1])]
    if y.ndim == 2:
        header, table = feats, y
    else:
        b, t = np.meshgrid(np.arange(y.shape[0]), np.arange(y.shape[1]), indexing="ij")
        header = ["batch", "time"] + feats
        table = np.concatenate([b.reshape(-1, 1), t.reshape(-1, 1), y.reshape(-1, y.shape[-1])], axis=1)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(header) + "\n")
        for row in table:
            f.write(",".join(repr(float(v)) if j >= len(header) - len(feats) else str(int(v))
                             for j, v in enumerate(row)) + "\n")


def _lengths(values: Sequence[str] | None) -> list[int] | None:
    if values is None:
        return None
    out: list[int] = []
    for v in values:
        for part in v.replace(",", " ").split():
            try:
                out.append(int(part))
            except ValueError:
                raise _UsageError(f"--lengths: {part!r} is not an integer") from None
    return out


def _leaves(v: Any, group: type[tuple[Any, ...]] | type[list[Any]]) -> list[Any]:
    """The leaves of ``v`` (nested ``group`` instances), in order."""
    out: list[Any] = []
    stack: list[Any] = [v]
    while stack:
        item: Any = stack.pop()
        if isinstance(item, group):
            stack.extend(item[::-1])
        else:
            out.append(item)
    return out


def _named_outputs(model: Model, y: Any) -> tuple[list[str], list[Any]]:
    """predict's outputs as a flat list with their names: the model's output names (``spec.outputs``;
    a nested torch tuple flattened in order), ``output_<i>`` for the two of a Bidirectional
    ``merge_mode=None``, ``output`` for one."""
    flat = _leaves(y, tuple)
    spec = model.spec
    if spec.outputs is not None:
        st = spec.output_structure if spec.output_structure is not None else list(range(len(spec.outputs)))
        return [spec.outputs[i].name for i in _leaves(st, list)], flat
    return (["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]), flat


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    import fastrnn

    _check_output(args.output)
    if args.threads:
        fastrnn.set_num_threads(args.threads)
    model = _load(args.model, args)
    x = _read_input(args.input, args.key, model.spec.takes_ids)
    y = model.predict(x, lengths=_lengths(args.lengths))
    names, outs = _named_outputs(model, y)
    if args.output:
        if len(outs) != 1 and not args.output.lower().endswith(".npz"):
            raise _UsageError(f"the model has {len(outs)} outputs ({', '.join(names)}): use -o OUT.npz (one array "
                              "per output)")
        if args.output.lower().endswith(".npz"):
            arrays = {"output": y} if len(outs) == 1 and model.spec.outputs is None else dict(zip(names, outs))
            with open(args.output, "wb") as f:
                np.savez(f, **arrays)
        elif args.output.lower().endswith(".csv"):
            _write_csv(args.output, outs)
        else:
            with open(args.output, "wb") as f:
                np.save(f, outs[0])
        print(f"wrote {args.output}: " + ", ".join(f"{a.shape} {a.dtype}" for a in outs), file=sys.stderr)
        return 0
    for name, a in zip(names, outs):
        label = "output" if len(outs) == 1 else f"output {name!r}"
        print(f"{label}: shape {a.shape} {a.dtype}", file=sys.stderr)
        print(np.array2string(a, separator=", ", threshold=10000))
        if a.size > 10000:
            print("(summarized; use -o OUT.npy for the full array)", file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    model = _load(args.src, args, args.weights)
    model.save(args.dst)
    n = sum(int(t.size) for k, t in model.spec.to_core()[1].items() if not k.endswith("_scale"))
    print(f"wrote {args.dst}: {len(model.spec.layers)} layers, {n:,} parameters, {model.precision} recurrent "
          f"weights, {os.path.getsize(args.dst):,} bytes (source: {model.spec.source or '?'})")
    return 0


# --------------------------------------------------------------------------------- bench
BENCH_EPILOG = """\
examples:
  fastrnn bench                          # the grid and the named workloads, 1 thread then all cores
  fastrnn bench --quick --threads 1      # a small subset, a few minutes
  fastrnn bench 'lstm_*_b1' --engines fastrnn,torch,onnxruntime --threads 2
  fastrnn bench 'rtneural_*' dtln_step --threads 1      # named streaming workloads, one step per call
  fastrnn bench --quick --threads 1 --isolate-engines   # each engine in its own fresh process
  fastrnn bench --isolate-engines --sweeps 2            # twice, best sweep per case and engine
  fastrnn bench --json out.json --plot out.png
  fastrnn bench --plot out.png --from-json t1.json t2.json    # plot earlier results, no timing
  fastrnn bench --list
  fastrnn bench --stream                 # one streaming step, with the binding's share
  fastrnn bench --cold                   # cold start + peak RSS per engine

Grid cases: CELL_IxH_bB (cell lstm/gru/rnn, (I, H) in 8x64, 32x128, 128x512, batch 1/32/256, T=100),
lstm2_h128_bB (2-layer LSTM), bilstm_h128_bB (bidirectional LSTM).
Named workloads, one step per call with the state carried: step_lstm_8x64, step_gru_16x128,
rtneural_{lstm,gru}_{8,16,32,64} (RTNeural-compare: input = hidden, batch 1), dtln_step (2-layer
LSTM 257 -> 128), rnnt_pred_step (RNN-T prediction network, LSTM 640 -> 640), silero_step
(LSTMCell 128); and whole sequences: word_lm_b20 (PyTorch word-language-model, 2-layer LSTM 650,
batch 20, T=35).
Table: median ms per call per engine, ratio engine/fastrnn (> 1: fastrnn faster), the fastest
framework and fastrnn's ratio to it, fastrnn GFLOP/s and fraction of the FMA peak, target met.
"""


def _bench(args: argparse.Namespace) -> int:
    from . import bench as B

    def write_json(payload: Any) -> None:
        sys.stdout.flush()
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(payload, f, indent=1)
            if not os.environ.get("FASTRNN_BENCH_CHILD"):  # a child of the per-thread-count runs: quiet
                print(f"wrote {args.json}", file=sys.stderr)

    if args.threads is not None and args.threads < 1:
        raise _UsageError("--threads must be >= 1")
    if args.sweeps > 1 and (args.cold or args.stream or args.from_json or args.list):
        raise _UsageError("--sweeps repeats the table's runs: not with --cold, --stream, --from-json or --list")
    try:
        if args.list:
            for name in B.DEFAULT_RUN + [c.name for c in B.LEGACY]:
                c = B.CASES[name]
                print(f"{name:<20} {c.describe():<40} {B.fmt_flops(B.flops(c))}"
                      + ("  (quick)" if name in B.QUICK else "") + ("  (workload)" if name in B.WORKLOADS else "")
                      + ("  (legacy)" if c in B.LEGACY else ""))
            print("engines: " + ", ".join(f"{e}" + (f" (not installed: {', '.join(B.missing_modules(e))})"
                                                  if B.missing_modules(e) else "") for e in B.ENGINES))
            return 0
        if args.cold:
            try:
                from .bench.cold import run_cold
            except ImportError as e:
                print(f"fastrnn: note: bench --cold is not available here (fastrnn.bench.cold: {e})", file=sys.stderr)
                return 2
            import inspect

            accepted = inspect.signature(run_cold).parameters
            kw = {}
            if args.cases:  # one case (name) for the cold start, where run_cold takes one
                if len(args.cases) != 1 or "case" not in accepted:
                    raise _UsageError("bench --cold takes at most one case name")
                kw["case"] = args.cases[0]
            if args.engines and "engines" in accepted:
                kw["engines"] = [e.strip() for e in args.engines.split(",") if e.strip()]
            rows = run_cold(threads=args.threads or 1, out=print, **kw)
            write_json(rows)
            return 0
        if args.stream:
            rows = B.run_stream(args.cases or None, threads=args.threads or 1)
            write_json(rows)
            return 0
        if args.from_json:
            runs = B.load_runs(args.from_json)
            for i, r in enumerate(runs):
                if i:
                    print()
                B.print_run(r)
            if args.plot:
                B.plot(runs, args.plot)
                sys.stdout.flush()
                print(f"wrote {args.plot}", file=sys.stderr)
            write_json(B.to_json(runs))
            return 0
        cases = B.select_cases(args.cases, quick=args.quick)  # validate before any timing
        engines = B.select_engines(args.engines)
        if args.plot:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise _UsageError("--plot needs matplotlib: pip install 'fastrnn[plot]'") from None
        if args.threads is None or args.isolate_engines or args.sweeps > 1:
            runs = B.run_in_subprocesses(cases, thread_counts=[args.threads] if args.threads else None,
                                         min_time=args.min_time, engines=engines, isolate=args.isolate_engines,
                                         sweeps=args.sweeps)
            if args.threads is None:
                for r in runs:
                    print(B.summary_line(r))
        else:
            runs = [B.run(cases, threads=args.threads, min_time=args.min_time, engines=engines)]
        write_json(B.to_json(runs))
        if args.plot:
            B.plot(runs, args.plot)
            sys.stdout.flush()
            print(f"wrote {args.plot}", file=sys.stderr)
        return 0
    except (ValueError, RuntimeError) as e:
        raise _UsageError(f"bench: {e}") from None


# --------------------------------------------------------------------------------- main
def _positive_int(text: str) -> int:
    """--threads, --steps, --repeat, --sweeps: a positive int (fastrnn.set_num_threads checks the threads' upper bound)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _precision(text: str) -> str:
    """--weights: f32 | bf16 | int8 (or float32 / bfloat16), as fastrnn.quantize.precision_arg."""
    from .errors import ArgumentError
    from .quantize import precision_arg

    try:
        return precision_arg(text, "--weights")
    except ArgumentError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = _Parser(prog="fastrnn", description="Fast CPU inference for recurrent networks "
                                "(SimpleRNN, LSTM, GRU) trained in Keras or PyTorch.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"fastrnn {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", parser_class=_Parser)
    arch_help = ("architecture of a PyTorch state dict: a JSON file or an inline JSON string "
                 "(passed to fastrnn.load(..., architecture=...))")

    def reader_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--arch", default=None, metavar="JSON", help=arch_help)
        sp.add_argument("--state-key", default=None, metavar="KEY",
                        help="the state dict to read in a checkpoint holding several (.pt / .npz / .safetensors): "
                        "a top-level key or a dotted path, e.g. model_state or train.ema (fastrnn.load(..., key=))")
        sp.add_argument("--graph-output", default=None, metavar="NAME",
                        help="the output of an ONNX graph with several to convert, e.g. Y or Y_h "
                        "(fastrnn.load(..., output=))")

    c = sub.add_parser("convert", help="convert a Keras / PyTorch / fastrnn model file to .fastrnn",
                       description="Convert any supported model file to the native .fastrnn format "
                       "(written atomically: an existing DST is replaced only when the write succeeds).")
    c.add_argument("src", metavar="SRC", help="model file (any format fastrnn.load reads: .keras, .h5, .pt, .pth, "
                   ".onnx, .safetensors, .npz, .fastrnn)")
    c.add_argument("dst", metavar="DST", help="output .fastrnn file")
    reader_flags(c)
    c.add_argument("--weights", default=None, type=_precision, metavar="{f32,bf16,int8}",
                   help="precision of the recurrent weights in DST: f32 (exact), bf16 or int8 (symmetric per row); "
                   "default: as the source (float32 for framework models). Biases, Dense / Embedding weights, "
                   "activations and states stay float32")

    i = sub.add_parser("info", help="without MODEL: version, ISA, BLAS, threads; with MODEL: its layers",
                       description="Without MODEL: fastrnn version, kernel ISA, BLAS and threads. "
                       "With MODEL: its layers (kind, units, direction, output shape, parameters), input shape, "
                       "parameter count, file size, source framework and the ISA that will run it.")
    i.add_argument("model", nargs="?", metavar="MODEL", help="model file (any format fastrnn.load reads)")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    reader_flags(i)

    r = sub.add_parser("predict", help="run a model on an input file (.npy, .npz, .csv)",
                       description="Run MODEL on INPUT and write or print the output.",
                       epilog=PREDICT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("model", metavar="MODEL", help="model file (any format fastrnn.load reads)")
    r.add_argument("input", metavar="INPUT", help="input array: .npy, .npz or .csv (see below)")
    r.add_argument("-o", "--output", default=None, metavar="OUT", help="write the output here instead of printing "
                   "it; the format follows the suffix: .npy, .npz or .csv (a header line, then a row per batch row, "
                   "or per (batch, time) pair for sequence outputs)")
    r.add_argument("--key", default=None, help="array name inside an .npz INPUT (default: the first)")
    r.add_argument("--lengths", nargs="+", default=None, metavar="N",
                   help="valid steps per batch row, e.g. --lengths 10 7 3 or --lengths 10,7,3")
    r.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="threads (default: FASTRNN_NUM_THREADS or all cores)")
    reader_flags(r)

    d = sub.add_parser("demo", help="run a small LSTM, check it against PyTorch (or numpy), time it",
                       description="Build a small model (LSTM(16 -> 64) -> last step -> Dense(4, softmax)) with "
                       "seeded weights, check its output against PyTorch on the same weights (against an "
                       "independent numpy implementation when PyTorch is not installed), and time both at batch "
                       "1 and 32. Columns: microseconds per sequence (best of --repeat calls, divided by the "
                       "batch), speedup = PyTorch time / fastrnn time (> 1: fastrnn is faster), and the largest "
                       "absolute difference of the outputs. Exit 1 if they differ by more than 1e-5.")
    d.add_argument("--steps", type=_positive_int, default=50, metavar="T", help="time steps per sequence (default 50)")
    d.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="threads for fastrnn and PyTorch (default: FASTRNN_NUM_THREADS or all cores)")
    d.add_argument("--repeat", type=_positive_int, default=20, metavar="K",
                   help="timed calls per engine and batch; the best is shown (default 20)")

    b = sub.add_parser("bench", help="time a grid of cases and named workloads against the installed frameworks "
                       "(same weights, threads)",
                       description="Time fastrnn against PyTorch, Keras (call / predict / XLA), ONNX Runtime and "
                       "OpenVINO on the same weights and thread count: a grid of whole-sequence cases and named "
                       "real workloads (streaming steps, a language model). Every engine is checked against "
                       "PyTorch before it is timed. Without --threads, runs 1 thread and then all cores, each in a "
                       "fresh process.", epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("cases", nargs="*", metavar="CASE",
                   help="case names or glob patterns, e.g. lstm_32x128_b32 'gru_*_b1' 'rtneural_*' (default: the "
                   "grid and the named workloads)")
    b.add_argument("--threads", type=int, default=None,
                   help="threads for every engine (default: 1, then all cores, each in a fresh process)")
    b.add_argument("--engines", default=None, metavar="LIST",
                   help="comma-separated engines (default: all installed): fastrnn,torch,keras_call,"
                   "keras_predict,keras_xla,onnxruntime,openvino")
    b.add_argument("--quick", action="store_true", help="a small subset: the (32, 128) shapes at batch 1 and 32 and "
                   "a few named workloads (with CASE globs: their quick matches)")
    b.add_argument("--isolate-engines", action="store_true", help="run each engine in its own fresh process "
                   "(steadier: no other engine's threads or memory around), results merged into one table")
    b.add_argument("--sweeps", type=_positive_int, default=1, metavar="N",
                   help="run the whole benchmark N times, each in fresh processes (with --isolate-engines, the "
                   "engines' order rotated), and report per case and engine the sweep with the lowest median "
                   "(steadier tables on a shared machine; every engine alike)")
    b.add_argument("--min-time", type=float, default=0.4, metavar="S",
                   help="about this many seconds of timed calls per engine per case (at least 3 calls)")
    b.add_argument("--json", default=None, metavar="FILE", help="write everything (machine, versions, samples, "
                   "ratios, targets) to this JSON file")
    b.add_argument("--plot", default=None, metavar="PNG", help="bar chart of fastrnn's speedup per case and engine "
                   "(needs matplotlib)")
    b.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                   help="no timing: print (and with --plot, plot) the results in these --json files")
    b.add_argument("--list", action="store_true", help="list the cases and engines, then exit")
    b.add_argument("--stream", action="store_true", help="time one streaming step (CASE: step cases; default "
                   "step_lstm_8x64 step_gru_16x128) against torch cells / layer and ONNX Runtime, with the binding's "
                   "share")
    b.add_argument("--cold", action="store_true", help="cold start and peak memory per engine, in fresh processes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import fastrnn

    try:
        if args.cmd == "demo":
            from .demo import run

            return run(steps=args.steps, threads=args.threads, repeat=args.repeat)
        if args.cmd == "bench":
            return _bench(args)
        if args.cmd == "info":
            if args.model is None:
                inf = fastrnn.info()
                if args.json:
                    print(json.dumps(inf, indent=2))
                else:
                    for k, v in inf.items():
                        print(f"{k + ':':<16}{', '.join(v) if isinstance(v, list) else v}")
                return 0
            d = describe(_load(args.model, args), args.model)
            if args.json:
                print(json.dumps(d, indent=2, default=str))
            else:
                _print_description(d)
            return 0
        if args.cmd == "convert":
            return _convert(args)
        if args.cmd == "predict":
            return _predict(args)
    except (fastrnn.FastRNNError, OSError, _UsageError) as e:
        print(f"fastrnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - the CLI's exception boundary: never a traceback for bad input
        print(f"fastrnn: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
