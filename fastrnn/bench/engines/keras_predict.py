"""Keras 3 ``model.predict(x, batch_size=B, verbose=0)``."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..models import Context, Stepper
from ._keras import sequence_model, step_stepper

ORDER = 30
REQUIRES = ("torch", "tensorflow", "keras")


def _runner(ctx: Context) -> Callable[[Any], Callable[[Any], Any]]:
    batch = ctx.case.batch
    return lambda model: lambda x: model.predict(x, batch_size=batch, verbose=0)


def sequence(ctx: Context) -> Callable[[np.ndarray], Any]:
    return _runner(ctx)(sequence_model(ctx))


def step(ctx: Context) -> Stepper:
    return step_stepper(ctx, _runner(ctx))
