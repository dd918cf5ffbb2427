"""fastrnn: ``fastrnn.from_torch(module).predict(x)``; steps: ``Model.stream(B).step(x, out)``.
Without torch: the same shapes on random weights (nothing to check against)."""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..models import Context, Stepper, random_model

if TYPE_CHECKING:
    from ...runtime import Model

ORDER = 0
REQUIRES = ()


def model_for(ctx: Context) -> Model:
    """The case's fastrnn Model, with the case's thread count set."""
    import fastrnn

    fastrnn.set_num_threads(ctx.threads)
    if importlib.util.find_spec("torch") is None:
        c = ctx.case
        return random_model(c.cell, c.features, c.hidden, c.layers, c.bidirectional)
    return fastrnn.from_torch(ctx.module)


def sequence(ctx: Context) -> Callable[[np.ndarray], Any]:
    return model_for(ctx).predict


def step(ctx: Context) -> Stepper:
    stream = model_for(ctx).stream(ctx.case.batch)
    out = np.empty((ctx.case.batch, ctx.case.hidden), np.float32)
    step = stream.step  # the compiled entry point (Cython when built): no Python frame of ours in between
    return Stepper(lambda x: step(x, out), stream.reset)
