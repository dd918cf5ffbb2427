"""ONNX exports of the case's torch module, shared by the ONNX Runtime and OpenVINO engines:
the whole sequence (dynamic batch and time) and one step with the state as inputs and outputs."""
from __future__ import annotations

import io
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from ..cases import Case
from ..models import Context, Stepper, carried


def _export(module: Any, args: tuple[Any, ...], input_names: list[str], output_names: list[str],
            dynamic_axes: dict[str, dict[int, str]] | None = None) -> bytes:
    import torch

    buf = io.BytesIO()
    # no_grad: after an inference_mode call the module holds inference tensors the tracer rejects
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # (torch's annotation of f names paths only; a file object is documented and works)
        torch.onnx.export(module, args, buf, input_names=input_names, output_names=output_names,  # type: ignore[arg-type]
                          dynamic_axes=dynamic_axes, dynamo=False)
    return buf.getvalue()


def _wrapped(module: Any, step: bool) -> Any:
    """torch module -> a module returning what the ONNX graph returns (the output sequence; with
    ``step``, also the new state, taking the state as inputs)."""
    import torch

    class Seq(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = module

        def forward(self, x: Any, *state: Any) -> Any:
            if not step:
                return self.rnn(x)[0]
            y, new = self.rnn(x, tuple(state) if len(state) > 1 else state[0])
            return (y, *new) if isinstance(new, tuple) else (y, new)

    return Seq()


def onnx_from_torch(module: Any, features: int) -> bytes:
    """ONNX bytes of the module's output sequence (dynamic batch and time axes), legacy exporter."""
    import torch

    return _export(_wrapped(module, False), (torch.zeros(2, 3, features),), ["x"], ["y"],
                   {"x": {0: "b", 1: "t"}, "y": {0: "b", 1: "t"}})


def state_names(case: Case) -> list[str]:
    return ["h", "c"] if case.cell == "lstm" else ["h"]


def state_shape(case: Case) -> tuple[int, int, int]:
    return (case.layers, case.batch, case.hidden)


def onnx_step_from_torch(module: Any, case: Case) -> bytes:
    """ONNX bytes of one step at the case's batch: inputs x (B, 1, I) and the state (h[, c], each
    (layers, B, H)); outputs y (B, 1, H) and the new state."""
    import torch

    names = state_names(case)
    args = (torch.zeros(case.batch, 1, case.features),) + tuple(torch.zeros(*state_shape(case)) for _ in names)
    return _export(_wrapped(module, True), args, ["x"] + names, ["y"] + [n + "_out" for n in names])


def sequence_onnx(ctx: Context) -> bytes:
    data: bytes = ctx.shared("onnx", lambda: onnx_from_torch(ctx.module, ctx.case.features))
    return data


def step_onnx(ctx: Context) -> bytes:
    data: bytes = ctx.shared("onnx_step", lambda: onnx_step_from_torch(ctx.module, ctx.case))
    return data


def onnx_stepper(case: Case, run: Callable[[list[np.ndarray]], Sequence[Any]]) -> Stepper:
    """A Stepper over ``run([x (B, 1, I), *state]) -> [y (B, 1, H), *new_state]``."""
    n = len(state_names(case))

    def step(x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, Any]:
        out = run([x[:, None, :], *state])
        return out[0][:, 0], out[1:1 + n]

    return carried(step, lambda: [np.zeros(state_shape(case), np.float32) for _ in range(n)])
