"""Keras 3 (TensorFlow backend) copies of the case's torch module, shared by the Keras engines:
the whole sequence, and one step with the state as inputs and outputs."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator

import numpy as np

from ..cases import GATES
from ..models import Context, Stepper, carried


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence file descriptor 2 (C++ logging of TensorFlow start-up: CUDA probes on a CPU
    machine), restoring it afterwards; Python exceptions still propagate."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with _quiet_fd2():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe, while quiet (threads can still be set after it)
    return keras


_TF_THREADS: dict[str, Any] = {}


def tensorflow(threads: int) -> Any:
    """TensorFlow with `threads` intra-op threads and 1 inter-op thread (only possible before TF
    runs its first op: each thread count belongs in a fresh process)."""
    _import_keras()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        _TF_THREADS["n"] = threads
    except RuntimeError:
        cur = _TF_THREADS.get("n", tf.config.threading.get_intra_op_parallelism_threads())
        if cur != threads:
            raise RuntimeError(f"TensorFlow was initialized with intra_op threads={cur or 'default'}, not {threads}; "
                               "run each thread count in a fresh process") from None
    return tf


def _keras_weights(kind: str, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray,
                   hidden: int) -> list[np.ndarray]:
    """torch (G*H, in) matrices and (G*H,) biases -> Keras 3 [kernel, recurrent_kernel, bias]."""
    if kind == "gru":  # torch gates r, z, n -> Keras z, r, h; reset_after bias (2, 3H) = [input; recurrent]
        perm = np.r_[hidden:2 * hidden, 0:hidden, 2 * hidden:3 * hidden]
        return [w_ih[perm].T.copy(), w_hh[perm].T.copy(), np.stack([b_ih[perm], b_hh[perm]])]
    # LSTM torch i, f, g, o = Keras i, f, c, o; SimpleRNN has one gate: one summed bias
    return [w_ih.T.copy(), w_hh.T.copy(), b_ih + b_hh]


def _kind(module: Any) -> str:
    kind = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}[type(module).__name__]
    if not module.batch_first:
        raise ValueError("keras_from_torch: the torch module must be batch_first=True")
    if getattr(module, "proj_size", 0):
        raise ValueError("keras_from_torch: LSTM proj_size is not supported")
    return kind


def _layer(keras: Any, module: Any, kind: str, **kw: Any) -> Any:
    hidden = module.hidden_size
    if kind == "lstm":
        return keras.layers.LSTM(hidden, return_sequences=True, **kw)
    if kind == "gru":
        return keras.layers.GRU(hidden, return_sequences=True, reset_after=True, **kw)
    return keras.layers.SimpleRNN(hidden, activation=module.nonlinearity, return_sequences=True, **kw)


def _copy_weights(target: Any, module: Any, kind: str, i: int, sfx: str = "") -> None:
    """Layer i (direction suffix sfx) of the torch module into one Keras recurrent layer."""
    g = GATES[kind] * module.hidden_size

    def p(name: str, default_len: Any = None) -> np.ndarray:
        t = getattr(module, f"{name}_l{i}{sfx}", None)
        return np.zeros(default_len, np.float32) if t is None else t.detach().cpu().numpy().astype(np.float32)

    target.set_weights(_keras_weights(kind, p("weight_ih"), p("weight_hh"), p("bias_ih", g), p("bias_hh", g),
                                      module.hidden_size))


def keras_from_torch(module: Any) -> Any:
    """A Keras 3 model equal to a torch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (batch_first=True) with
    its weights copied: input (batch, time, features) -> the full output sequence, as torch's ``out``."""
    keras = _import_keras()
    kind = _kind(module)
    layers = [keras.layers.Bidirectional(_layer(keras, module, kind), merge_mode="concat") if module.bidirectional
              else _layer(keras, module, kind) for _ in range(module.num_layers)]
    model = keras.Sequential([keras.Input(shape=(None, module.input_size))] + layers)
    for i, lay in enumerate(layers):
        targets = [(lay.forward_layer, ""), (lay.backward_layer, "_reverse")] if module.bidirectional else [(lay, "")]
        for target, sfx in targets:
            _copy_weights(target, module, kind, i, sfx)
    return model


def keras_step_from_torch(module: Any) -> Any:
    """A Keras 3 model of one step of a one-direction torch RNN: inputs [x (B, 1, I), then per
    layer h (and c for LSTM), each (B, H)] -> [y (B, 1, H), then the new state in the same order]."""
    keras = _import_keras()
    kind = _kind(module)
    if module.bidirectional:
        raise ValueError("keras_step_from_torch: a bidirectional module has no step")
    x = keras.Input(shape=(1, module.input_size))
    inputs, states, layers, h = [x], [], [], x
    for _ in range(module.num_layers):
        st = [keras.Input(shape=(module.hidden_size,)) for _ in range(2 if kind == "lstm" else 1)]
        lay = _layer(keras, module, kind, return_state=True)
        h, *new = lay(h, initial_state=st)
        inputs += st
        states += new
        layers.append(lay)
    model = keras.Model(inputs, [h] + states)
    for i, lay in enumerate(layers):
        _copy_weights(lay, module, kind, i)
    return model


def _clear_session() -> None:
    import keras

    keras.backend.clear_session()


def sequence_model(ctx: Context) -> Any:
    """The case's Keras copy (TensorFlow threads set first), built once per case."""
    return ctx.shared("keras", lambda: (tensorflow(ctx.threads), keras_from_torch(ctx.module))[1], _clear_session)


def step_stepper(ctx: Context, runner: Callable[[Any], Callable[[Any], Any]]) -> Stepper:
    """A Stepper over the case's one-step Keras model; ``runner(model)`` gives ``run(inputs) -> outputs``."""
    model = ctx.shared("keras_step", lambda: (tensorflow(ctx.threads), keras_step_from_torch(ctx.module))[1],
                       _clear_session)
    run, c = runner(model), ctx.case
    n = len(model.inputs) - 1

    def step(x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        out = run([x[:, None, :], *state])
        return np.asarray(out[0])[:, 0], [np.asarray(s) for s in out[1:]]

    return carried(step, lambda: [np.zeros((c.batch, c.hidden), np.float32) for _ in range(n)])
