"""ONNX Runtime: an InferenceSession of the torch.onnx export (CPU provider, intra-op threads =
the case's, inter-op 1); steps run the one-step model with the state as inputs."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..models import Context, Stepper
from ._onnx import onnx_stepper, sequence_onnx, state_names, step_onnx

ORDER = 50
REQUIRES = ("torch", "onnx", "onnxruntime")


def _session(ctx: Context, model_bytes: bytes) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = ctx.threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def sequence(ctx: Context) -> Callable[[np.ndarray], Any]:
    sess = _session(ctx, sequence_onnx(ctx))
    return lambda x: sess.run(None, {"x": x})[0]


def step(ctx: Context) -> Stepper:
    sess = _session(ctx, step_onnx(ctx))
    names = ["x"] + state_names(ctx.case)
    return onnx_stepper(ctx.case, lambda ins: sess.run(None, dict(zip(names, ins))))
