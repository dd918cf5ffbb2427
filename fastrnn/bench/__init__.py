"""`fastrnn bench`: cases timed side by side against the frameworks on the same weights.

Each case builds a PyTorch module with seeded weights (the reference for correctness) and turns
it into every engine: fastrnn (``from_torch``), torch eager, Keras 3 (``model(x)``,
``model.predict`` and an XLA-compiled ``tf.function``; weights copied from torch), ONNX Runtime
and OpenVINO (both from the same ``torch.onnx`` export).  A case is timed either as a whole
sequence per call (``predict``: the grid) or as one step per call with the state carried (the
streaming workloads: fastrnn ``Stream.step``, the torch cells, one-step ONNX / Keras models with
the state as inputs).  Every engine's output is checked against torch (untimed, max abs diff <=
``TOLERANCE``); an engine that fails to build, raises or disagrees is reported as failed for the
case, never fatal.  Engines then run in interleaved rounds (adaptive repetition: at least
``MIN_RUNS`` samples, about ``min_time`` seconds) so that machine noise hits all alike, or each in
its own fresh process (``--isolate-engines``).  All engines get the same thread count.

The report: median ms per call for each engine, the ratio engine / fastrnn (> 1: fastrnn is
faster), the fastest framework, fastrnn's GFLOP/s and fraction of the FMA peak, and whether
the performance target of the case is met (see :func:`evaluate_target`).

Modules: ``cases`` (one module per case family), ``engines`` (one module per engine), ``models``
(torch module, cells, random fastrnn model, shared per-case context), ``timing``, ``machine``,
``targets``, ``report`` (table, JSON, plot), ``runner`` (in process / fresh processes),
``stream`` (``--stream``), ``forecast``, ``cold`` (``--cold``: cold start and peak RSS).
"""
from __future__ import annotations

from .cases import (CASES, CHECK_STEPS, DEFAULT_RUN, GATES, GRID, LEGACY, QUICK, RUN_NOTES, WORKLOADS, Case, flops,
                    make_input, select_cases, step_weight_bytes)
from .engines import ENGINES, FACTORIES, FRAMEWORKS, STEP_FACTORIES, _REQUIRES, missing_modules, select_engines
from .engines._keras import keras_from_torch, keras_step_from_torch
from .engines._onnx import onnx_from_torch, onnx_step_from_torch
from .forecast import forecast_loop_fastrnn, run_forecast
from .machine import cache_read_gbps, fma_peak_per_core, machine_info, numpy_blas, versions
from .models import Context, Stepper, build_torch, random_model, torch_cells
from .report import (JSON_FORMAT, case_notes, fmt_flops, header_lines, load_runs, plot, print_run, roofline_note,
                     summary_line, table_header, table_row, to_json)
from .runner import best_of_sweeps, bench_case, build_checked, merge_engine_runs, run, run_in_subprocesses
from .stream import run_stream
from .targets import evaluate_target, summarize_case, summary
from .timing import MAX_RUNS, MIN_RUNS, PAUSE, ROUNDS, TOLERANCE, Progress, check_engine, check_stepper

__all__ = [
    "CASES", "CHECK_STEPS", "DEFAULT_RUN", "ENGINES", "FACTORIES", "FRAMEWORKS", "GATES", "GRID", "JSON_FORMAT",
    "LEGACY", "MAX_RUNS", "MIN_RUNS", "PAUSE", "QUICK", "ROUNDS", "RUN_NOTES", "STEP_FACTORIES", "TOLERANCE",
    "WORKLOADS", "Case", "Context", "Progress", "Stepper", "bench_case", "best_of_sweeps", "build_checked",
    "build_torch",
    "cache_read_gbps", "case_notes", "check_engine", "check_stepper", "evaluate_target", "flops", "fma_peak_per_core", "fmt_flops",
    "forecast_loop_fastrnn",
    "header_lines", "keras_from_torch", "keras_step_from_torch", "load_runs", "machine_info", "make_input",
    "merge_engine_runs", "missing_modules", "numpy_blas", "onnx_from_torch", "onnx_step_from_torch", "plot",
    "print_run", "random_model", "roofline_note", "run", "run_forecast", "run_in_subprocesses", "run_stream",
    "select_cases", "select_engines", "step_weight_bytes", "summarize_case", "summary", "summary_line", "table_header", "table_row", "to_json",
    "torch_cells", "versions",
]
