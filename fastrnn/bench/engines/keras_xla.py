"""Keras 3 model under ``tf.function(..., jit_compile=True)``: XLA-compiled in the warm-up call.
jit_compile=True is a demand, not a hint: the call fails if XLA cannot compile the model."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..models import Context, Stepper
from ._keras import sequence_model, step_stepper, tensorflow

ORDER = 40
REQUIRES = ("torch", "tensorflow", "keras")


def sequence(ctx: Context) -> Callable[[np.ndarray], Any]:
    model = sequence_model(ctx)
    fn = tensorflow(ctx.threads).function(lambda t: model(t, training=False), jit_compile=True)
    return lambda x: np.asarray(fn(x))


def step(ctx: Context) -> Stepper:
    def runner(model: Any) -> Callable[[Any], Any]:  # the step model takes a list: x, then the state
        fn = tensorflow(ctx.threads).function(lambda *t: model(list(t), training=False), jit_compile=True)
        return lambda ins: fn(*ins)

    return step_stepper(ctx, runner)
