"""OpenVINO: the same ONNX bytes, reshaped to the case's static shapes (OpenVINO's fast path),
compiled for CPU in f32 with INFERENCE_NUM_THREADS and PERFORMANCE_HINT=LATENCY."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..models import Context, Stepper
from ._onnx import onnx_stepper, sequence_onnx, state_names, state_shape, step_onnx

ORDER = 60
REQUIRES = ("torch", "onnx", "openvino")


def _request(ctx: Context, model_bytes: bytes, shapes: Sequence[Sequence[int]]) -> Any:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(model_bytes)
    model.reshape({model.inputs[i]: ov.PartialShape(list(s)) for i, s in enumerate(shapes)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": ctx.threads,
                                                 "INFERENCE_PRECISION_HINT": "f32",
                                                 "PERFORMANCE_HINT": "LATENCY"})
    return compiled.create_infer_request()


def sequence(ctx: Context) -> Callable[[np.ndarray], Any]:
    c = ctx.case
    request = _request(ctx, sequence_onnx(ctx), [(c.batch, c.input_steps, c.features)])
    return lambda x: request.infer({0: x}, share_inputs=True)[0].copy()


def step(ctx: Context) -> Stepper:
    c = ctx.case
    n = 1 + len(state_names(c))
    request = _request(ctx, step_onnx(ctx), [(c.batch, 1, c.features)] + [state_shape(c)] * (n - 1))

    def run(ins: Sequence[np.ndarray]) -> list[np.ndarray]:
        res = request.infer(dict(enumerate(ins)), share_inputs=True)
        return [res[i].copy() for i in range(n)]

    return onnx_stepper(c, run)
