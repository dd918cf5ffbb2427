"""PyTorch eager under ``torch.inference_mode()``: ``module(x)``; steps: the torch cells
(``nn.LSTMCell`` / ``GRUCell`` / ``RNNCell``, one per layer, weights copied), state carried."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..models import Context, Stepper, carried, torch_cells

ORDER = 10
REQUIRES = ("torch",)


def sequence(ctx: Context) -> Callable[[np.ndarray], Any]:
    import torch

    torch.set_num_threads(ctx.threads)
    module = ctx.module

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            y: np.ndarray = module(torch.from_numpy(x))[0].numpy()
            return y

    return run


def step(ctx: Context) -> Stepper:
    import torch

    torch.set_num_threads(ctx.threads)
    cells = torch_cells(ctx.module)
    lstm = ctx.case.cell == "lstm"

    def one(x: np.ndarray, state: list[Any]) -> tuple[np.ndarray, list[Any]]:
        h = torch.from_numpy(x)
        new: list[Any] = []
        with torch.inference_mode():
            for cell, s in zip(cells, state):
                s = cell(h, s)
                new.append(s)
                h = s[0] if lstm else s
        y: np.ndarray = h.numpy()
        return y, new

    return carried(one, lambda: [None] * len(cells))
