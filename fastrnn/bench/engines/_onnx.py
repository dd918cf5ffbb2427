"""ONNX exports of the case's torch module, shared by the ONNX Runtime and OpenVINO engines:
the whole sequence (dynamic batch and time) and one step with the state as inputs and outputs."""
from __future__ import annotations

import io
import warnings

import numpy as np

from ..models import carried


def _export(module, args, input_names, output_names, dynamic_axes=None) -> bytes:
    import torch

    buf = io.BytesIO()
    # no_grad: after an inference_mode call the module holds inference tensors the tracer rejects
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # (torch's annotation of f names paths only; a file object is documented and works)
        torch.onnx.export(module, args, buf, input_names=input_names, output_names=output_names,  # type: ignore[arg-type]
                          dynamic_axes=dynamic_axes, dynamo=False)
    return buf.getvalue()


def _wrapped(module, step):
    """torch module -> a module returning what the ONNX graph returns (the output sequence; with
    ``step``, also the new state, taking the state as inputs)."""
    import torch

    class Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = module

        def forward(self, x, *state):
            if not step:
                return self.rnn(x)[0]
            y, new = self.rnn(x, tuple(state) if len(state) > 1 else state[0])
            return (y, *new) if isinstance(new, tuple) else (y, new)

    return Seq()


def onnx_from_torch(module, features):
    """ONNX bytes of the module's output sequence (dynamic batch and time axes), legacy exporter."""
    import torch

    return _export(_wrapped(module, False), (torch.zeros(2, 3, features),), ["x"], ["y"],
                   {"x": {0: "b", 1: "t"}, "y": {0: "b", 1: "t"}})


def state_names(case) -> list:
    return ["h", "c"] if case.cell == "lstm" else ["h"]


def state_shape(case) -> tuple:
    return (case.layers, case.batch, case.hidden)


def onnx_step_from_torch(module, case):
    """ONNX bytes of one step at the case's batch: inputs x (B, 1, I) and the state (h[, c], each
    (layers, B, H)); outputs y (B, 1, H) and the new state."""
    import torch

    names = state_names(case)
    args = (torch.zeros(case.batch, 1, case.features),) + tuple(torch.zeros(*state_shape(case)) for _ in names)
    return _export(_wrapped(module, True), args, ["x"] + names, ["y"] + [n + "_out" for n in names])


def sequence_onnx(ctx) -> bytes:
    data: bytes = ctx.shared("onnx", lambda: onnx_from_torch(ctx.module, ctx.case.features))
    return data


def step_onnx(ctx) -> bytes:
    data: bytes = ctx.shared("onnx_step", lambda: onnx_step_from_torch(ctx.module, ctx.case))
    return data


def onnx_stepper(case, run):
    """A Stepper over ``run([x (B, 1, I), *state]) -> [y (B, 1, H), *new_state]``."""
    n = len(state_names(case))

    def step(x, state):
        out = run([x[:, None, :], *state])
        return out[0][:, 0], out[1:1 + n]

    return carried(step, lambda: [np.zeros(state_shape(case), np.float32) for _ in range(n)])
