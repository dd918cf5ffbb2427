"""Keras 3 model under ``tf.function(..., jit_compile=True)``: XLA-compiled in the warm-up call.
jit_compile=True is a demand, not a hint: the call fails if XLA cannot compile the model."""
import numpy as np

from ._keras import sequence_model, step_stepper, tensorflow

ORDER = 40
REQUIRES = ("torch", "tensorflow", "keras")


def _runner(ctx):
    def runner(model):
        fn = tensorflow(ctx.threads).function(lambda *t: model(list(t) if len(t) > 1 else t[0], training=False),
                                              jit_compile=True)
        return lambda x: fn(*x) if isinstance(x, list) else fn(x)

    return runner


def sequence(ctx):
    run = _runner(ctx)(sequence_model(ctx))
    return lambda x: np.asarray(run(x))


def step(ctx):
    return step_stepper(ctx, _runner(ctx))
