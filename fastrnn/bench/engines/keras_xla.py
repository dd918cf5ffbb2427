"""Keras 3 model under ``tf.function(..., jit_compile=True)``: XLA-compiled in the warm-up call.
jit_compile=True is a demand, not a hint: the call fails if XLA cannot compile the model."""
import numpy as np

from ._keras import sequence_model, step_stepper, tensorflow

ORDER = 40
REQUIRES = ("torch", "tensorflow", "keras")


def sequence(ctx):
    model = sequence_model(ctx)
    fn = tensorflow(ctx.threads).function(lambda t: model(t, training=False), jit_compile=True)
    return lambda x: np.asarray(fn(x))


def step(ctx):
    def runner(model):  # the step model takes a list: x, then the state
        fn = tensorflow(ctx.threads).function(lambda *t: model(list(t), training=False), jit_compile=True)
        return lambda ins: fn(*ins)

    return step_stepper(ctx, runner)
