"""`fastrnn bench --stream`: one step of one stream from Python, with the binding's share.

The step engines of `fastrnn bench` (fastrnn ``Stream.step``, the torch cells, ONNX Runtime's
one-step model; each checked against torch first) plus diagnostics: fastrnn's step through
pybind11 instead of its thin Cython entry point, the torch layer (``nn.LSTM`` on one step with its
state) and the C++ step alone (no Python at all).  Engines run in interleaved rounds of
``number`` calls; the median per call is reported, in microseconds.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .cases import CASES, make_input, select_cases
from .engines import missing_modules
from .engines import fastrnn as fastrnn_engine
from .models import Context, Stepper, carried
from .runner import _short, build_checked
from .timing import check_stepper, burst

#: what --stream runs without case names
DEFAULT = ["step_lstm_8x64", "step_gru_16x128"]


def _pybind11_and_cpp(ctx: Context) -> tuple[Stepper, Callable[[np.ndarray, int], float]]:
    """fastrnn's step through pybind11, and the C++ step alone: seconds per step of n steps."""
    stream = fastrnn_engine.model_for(ctx).stream(ctx.case.batch)
    out = np.empty((ctx.case.batch, ctx.case.hidden), np.float32)
    core = stream._s
    return Stepper(lambda x: core.step(x, out), stream.reset), core._time_steps


def _torch_layer(ctx: Context) -> Stepper:
    import torch

    module = ctx.module

    def step(x: np.ndarray, hx: Any) -> tuple[np.ndarray, Any]:
        with torch.inference_mode():
            y, hx = module(torch.from_numpy(x)[:, None], hx)
        y0: np.ndarray = y[:, 0].numpy()
        return y0, hx

    return carried(step, lambda: None)


def stream_engines(ctx: Context, out: Callable[[str], object] = print) -> dict[str, tuple[Callable[..., Any], np.ndarray]]:
    """{column: (f, x)} for the case, every one checked against torch (one that fails is left out
    with a note), and the C++-only timer ``cpp(x, n) -> seconds per step`` under "_cpp"."""
    x = make_input(ctx.case)
    expected = ctx.reference(x)
    xs = [np.ascontiguousarray(x[:, t]) for t in range(x.shape[1])]
    eng: dict[str, tuple[Callable[..., Any], np.ndarray]] = {}
    pybind, cpp = _pybind11_and_cpp(ctx)
    for col, engine in [("fastrnn", "fastrnn"), ("fastrnn_pybind11", None), ("torch_cell", "torch"),
                        ("torch_layer", None), ("onnxruntime", "onnxruntime")]:
        try:
            if engine is not None:
                if missing_modules(engine):
                    raise ImportError(f"{', '.join(missing_modules(engine))} not installed")
                f, _, _, _ = build_checked(engine, ctx, x, expected)
            else:
                st = pybind if col == "fastrnn_pybind11" else _torch_layer(ctx)
                check_stepper(st, xs, expected)
                f = st.call
            eng[col] = (f, xs[0])
        except Exception as e:  # noqa: BLE001 - reported, never fatal
            out(f"  ({ctx.case.name}: {col} unavailable: {_short(e, 120)})")
    eng["_cpp"] = (cpp, xs[0])
    return eng


def run_stream(case_names: Sequence[str] | None = None, threads: int = 1, rounds: int = 7, number: int = 2000,
               out: Callable[[str], object] = print) -> list[dict[str, Any]]:
    """Time one step per call of each step case (default: :data:`DEFAULT`); rows of us per step."""
    import fastrnn

    names = select_cases(case_names) if case_names else list(DEFAULT)
    bad = [n for n in names if CASES[n].mode != "step"]
    if bad:
        raise ValueError(f"--stream times step cases; not step cases: {', '.join(bad)}")
    fastrnn.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    out(f"streaming: one step per call, threads={threads}; median of {rounds} rounds of {number} calls")
    for name in names:
        ctx = Context(CASES[name], threads)
        try:
            eng = stream_engines(ctx, out)
            cpp, x0 = eng.pop("_cpp")
            res: dict[str, list[float]] = {k: [] for k in eng}
            res["cpp_step_only"] = []
            for _ in range(rounds):  # interleaved rounds: noise hits every engine alike
                for k, (f, x) in eng.items():
                    res[k].append(burst(f, x, number) / number * 1e6)
                res["cpp_step_only"].append(cpp(x0, number) * 1e6)
        finally:
            ctx.close()
        med = {k: float(np.median(v)) for k, v in res.items()}
        rows.append({"case": name, **{f"{k}_us": v for k, v in med.items()}})
        base = med.get("fastrnn")
        out(f"{name:>16} | " + "  ".join(f"{k}: {v:7.2f} us" + (f" ({v / base:.1f}x)" if base else "")
                                         for k, v in med.items()))
    return rows
