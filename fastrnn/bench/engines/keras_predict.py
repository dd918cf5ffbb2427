"""Keras 3 ``model.predict(x, batch_size=B, verbose=0)``."""
from ._keras import sequence_model, step_stepper

ORDER = 30
REQUIRES = ("torch", "tensorflow", "keras")


def _runner(ctx):
    batch = ctx.case.batch
    return lambda model: lambda x: model.predict(x, batch_size=batch, verbose=0)


def sequence(ctx):
    return _runner(ctx)(sequence_model(ctx))


def step(ctx):
    return step_stepper(ctx, _runner(ctx))
