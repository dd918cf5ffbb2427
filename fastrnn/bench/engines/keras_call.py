"""Keras 3 eager call: ``model(x, training=False)`` (TensorFlow backend; weights copied from torch)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..models import Context, Stepper
from ._keras import sequence_model, step_stepper

ORDER = 20
REQUIRES = ("torch", "tensorflow", "keras")


def _run(model: Any) -> Callable[[Any], Any]:
    return lambda x: model(x, training=False)


def sequence(ctx: Context) -> Callable[[np.ndarray], Any]:
    run = _run(sequence_model(ctx))
    return lambda x: np.asarray(run(x))


def step(ctx: Context) -> Stepper:
    return step_stepper(ctx, _run)
