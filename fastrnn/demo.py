"""The demo behind `fastrnn demo`: a small LSTM model, checked against PyTorch when it is
installed, with time per sequence side by side (same weights, same threads)."""
from __future__ import annotations

import time
from typing import Callable, Sequence, cast

import numpy as np
import numpy.typing as npt

from .spec import DenseSpec, DirectionWeights, ModelSpec, RecurrentSpec


def demo_spec(features: int = 16, units: int = 64, outputs: int = 4, seed: int = 0) -> ModelSpec:
    """LSTM(units) -> last step -> Dense(outputs, softmax), seeded weights (PyTorch-like init)."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(units)
    u: Callable[..., np.ndarray] = lambda *shape: rng.uniform(-k, k, size=shape).astype(np.float32)  # noqa: E731
    lstm = RecurrentSpec(kind="lstm", name="lstm", input_size=features, units=units, return_sequences=False,
                         weights=[DirectionWeights(u(4 * units, features), u(4 * units, units), u(4 * units),
                                                   u(4 * units))])
    head = DenseSpec(name="head", weight=u(outputs, units), bias=u(outputs), activation="softmax")
    return ModelSpec(layers=[lstm, head], input_features=features, source="demo")


def _best(fn: Callable[[], object], repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(steps: int = 50, batches: Sequence[int] = (1, 32), repeat: int = 20, threads: int | None = None,
        out: Callable[[str], object] = print) -> int:
    import fastrnn

    if threads:
        fastrnn.set_num_threads(threads)
    spec = demo_spec()
    model = fastrnn.Model(spec)
    inf = fastrnn.info()
    out(f"fastrnn {inf['version']}  isa={inf['isa']}  threads={inf['num_threads']}  blas={inf['blas']}")
    out("model: LSTM(16 -> 64), last step, Dense(4, softmax); sequences of %d steps" % steps)
    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
        out("PyTorch is not installed: checking fastrnn against a numpy implementation (pip install torch to compare speed)")
    tmod: Callable[[np.ndarray], np.ndarray] | None = None
    if torch is not None:
        torch.set_num_threads(inf["num_threads"])
        lstm_w = cast(RecurrentSpec, spec.layers[0]).weights[0]
        head = cast(DenseSpec, spec.layers[1])
        tl = torch.nn.LSTM(16, 64, batch_first=True)
        tlin = torch.nn.Linear(64, 4)
        with torch.no_grad():
            for name, arr in (("weight_ih_l0", lstm_w.w_ih), ("weight_hh_l0", lstm_w.w_hh),
                              ("bias_ih_l0", lstm_w.b_ih), ("bias_hh_l0", lstm_w.b_hh)):
                getattr(tl, name).copy_(torch.from_numpy(arr))
            tlin.weight.copy_(torch.from_numpy(head.weight))
            tlin.bias.copy_(torch.from_numpy(head.bias))

        def torch_model(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                y, _ = tl(torch.from_numpy(x))
                probs: np.ndarray = torch.softmax(tlin(y[:, -1]), dim=-1).numpy()
                return probs

        tmod = torch_model

    rng = np.random.default_rng(1)
    status = 0
    out("columns: us/seq = microseconds per sequence (best of %d calls / batch); speedup = PyTorch time / fastrnn "
        "time (> 1: fastrnn faster); max |diff| = largest output difference against %s" %
        (repeat, "PyTorch" if tmod is not None else "a float64 numpy implementation"))
    if tmod is not None:
        out(f"{'batch':>6} {'fastrnn us/seq':>15} {'torch us/seq':>13} {'speedup':>8} {'max |diff|':>11}")
    else:
        out(f"{'batch':>6} {'fastrnn us/seq':>15} {'max |diff| vs numpy':>20}")
    for b in batches:
        x = rng.standard_normal((b, steps, 16)).astype(np.float32)
        y = model.predict(x)
        t_f = _best(lambda: model.predict(x), repeat) / b * 1e6
        if tmod is not None:
            diff = float(np.abs(y - tmod(x)).max())
            t_t = _best(lambda: tmod(x), repeat) / b * 1e6
            out(f"{b:>6} {t_f:>15.1f} {t_t:>13.1f} {t_t / t_f:>7.2f}x {diff:>11.2e}")
        else:
            diff = float(np.abs(y - numpy_reference(spec, x)).max())
            out(f"{b:>6} {t_f:>15.1f} {diff:>20.2e}")
        if diff > 1e-5:
            out("MISMATCH against " + ("PyTorch" if tmod is not None else "numpy"))
            status = 1
    return status


def numpy_reference(spec: ModelSpec, x: npt.ArrayLike) -> np.ndarray:
    """The demo model in float64 numpy, written from the LSTM equations (gate order i, f, g, o):
    i, f, o = sigmoid(.), g = tanh(.) of W_ih x_t + b_ih + W_hh h + b_hh; c = f*c + i*g; h = o*tanh(c);
    then the last h -> Dense -> softmax."""
    lstm = cast(RecurrentSpec, spec.layers[0])
    w = lstm.weights[0]
    head = cast(DenseSpec, spec.layers[1])
    x = np.asarray(x, np.float64)
    H = lstm.units
    h = np.zeros((x.shape[0], H))
    c = np.zeros_like(h)
    sig: Callable[[np.ndarray], np.ndarray] = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    for t in range(x.shape[1]):
        z = x[:, t] @ np.asarray(w.w_ih, np.float64).T + h @ np.asarray(w.w_hh, np.float64).T + w.b_ih + w.b_hh
        i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
    logits = h @ np.asarray(head.weight, np.float64).T + head.bias
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs
