"""Keras 3 eager call: ``model(x, training=False)`` (TensorFlow backend; weights copied from torch)."""
import numpy as np

from ._keras import sequence_model, step_stepper

ORDER = 20
REQUIRES = ("torch", "tensorflow", "keras")


def _run(model):
    return lambda x: model(x, training=False)


def sequence(ctx):
    run = _run(sequence_model(ctx))
    return lambda x: np.asarray(run(x))


def step(ctx):
    return step_stepper(ctx, _run)
