"""fastrnn: ``fastrnn.from_torch(module).predict(x)``; steps: ``Model.stream(B).step(x, out)``.
Without torch: the same shapes on random weights (nothing to check against)."""
import importlib.util

import numpy as np

from ..models import Stepper, random_model

ORDER = 0
REQUIRES = ()


def model_for(ctx):
    """The case's fastrnn Model, with the case's thread count set."""
    import fastrnn

    fastrnn.set_num_threads(ctx.threads)
    if importlib.util.find_spec("torch") is None:
        c = ctx.case
        return random_model(c.cell, c.features, c.hidden, c.layers, c.bidirectional)
    return fastrnn.from_torch(ctx.module)


def sequence(ctx):
    return model_for(ctx).predict


def step(ctx):
    stream = model_for(ctx).stream(ctx.case.batch)
    out = np.empty((ctx.case.batch, ctx.case.hidden), np.float32)
    step = stream.step  # the compiled entry point (Cython when built): no Python frame of ours in between
    return Stepper(lambda x: step(x, out), stream.reset)
