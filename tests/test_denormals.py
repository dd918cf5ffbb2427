"""Denormals: the core flushes subnormal floats to zero while it computes (FTZ/DAZ on x86, FPCR.FZ
on aarch64), on every thread that computes, and restores the caller's setting afterwards.

A state that decays towards zero walks into the subnormal range (below 1.18e-38), where cores
take a slow path on every operation; the flushed values are far below the 1e-5 agreement with
the frameworks.  Speed: benchmarks/denormal_bench.py (not a timed unit test)."""
import numpy as np
import pytest

import fastrnn
from fastrnn import spec as S
from conftest import assert_close, require
import reference


def decaying_rnn(H=16, I=3, factor=0.5):
    """h_t = factor * h_{t-1} + W x_t (linear SimpleRNN): after an impulse the state halves every
    step, through the subnormal range (t > 126) down to zero."""
    rng = np.random.default_rng(0)
    w = S.DirectionWeights(rng.standard_normal((H, I)), factor * np.eye(H), np.zeros(H), np.zeros(H), None)
    layer = S.RecurrentSpec(kind="simple_rnn", name="rnn", input_size=I, units=H, weights=[w], activation="linear")
    return S.ModelSpec(layers=[layer], input_features=I, source="test")


def decaying_lstm(H=24, I=3):
    """LSTM whose input gate is shut (bias -100: sigmoid ~ 4e-44) and forget gate at 0.5 (bias 0,
    no weights): c halves every step into the subnormal range; h = o * tanh(c) follows it."""
    rng = np.random.default_rng(1)
    G = 4
    w_ih = np.zeros((G * H, I))
    w_ih[3 * H:] = rng.standard_normal((H, I)) * 0.1  # output gate sees the input
    b = np.zeros(G * H)
    b[:H] = -100.0  # input gate shut
    w = S.DirectionWeights(w_ih, np.zeros((G * H, H)), b, np.zeros(G * H), None)
    layer = S.RecurrentSpec(kind="lstm", name="lstm", input_size=I, units=H, weights=[w])
    return S.ModelSpec(layers=[layer], input_features=I, source="test")


def impulse(B, T, I, seed=0):
    x = np.zeros((B, T, I), np.float32)
    x[:, 0] = np.random.default_rng(seed).standard_normal((B, I)) * 3
    return x


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B,H", [(1, 256), (5, 64)], ids=["b1-split", "b5-slices"])
def test_state_decaying_into_subnormals_matches_reference(B, H, threads, isa):
    """Also on the pool's threads: batch slices (B=5) and the batch-1 hidden split (H=256)."""
    prev = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(threads)
        spec = decaying_rnn(H=H)
        x = impulse(B, 300, 3)
        y = fastrnn.Model(spec).predict(x)
        expected = reference.run_spec(spec, x)
        subnormal = (np.abs(expected) < np.finfo(np.float32).tiny) & (expected != 0)
        assert subnormal[:, 140].all()  # the state does pass through the subnormal range
        assert_close(y, expected.astype(np.float32))
        assert (y[subnormal] == 0).all()  # flushed to zero, not computed on the slow path
        assert np.isfinite(y).all()
    finally:
        fastrnn.set_num_threads(prev)


def test_lstm_cell_state_decaying_into_subnormals_matches_torch():
    torch = require("torch")
    spec = decaying_lstm()
    m = torch.nn.LSTM(3, 24, batch_first=True)
    w = spec.layers[0].weights[0]
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.from_numpy(np.asarray(w.w_ih, np.float32)))
        m.weight_hh_l0.copy_(torch.from_numpy(np.asarray(w.w_hh, np.float32)))
        m.bias_ih_l0.copy_(torch.from_numpy(np.asarray(w.b_ih, np.float32)))
        m.bias_hh_l0.copy_(torch.from_numpy(np.asarray(w.b_hh, np.float32)))
    x = impulse(2, 250, 3, seed=2)
    with torch.no_grad():
        expected, (h_n, c_n) = m(torch.from_numpy(x))
    y, st = fastrnn.Model(spec).predict(x, return_state=True)
    assert_close(y, expected.numpy())
    assert_close(st[0][1], c_n.numpy())
    assert_close(reference.run_spec(spec, x).astype(np.float32), y)


def test_callers_floating_point_environment_is_restored():
    """The flush is for the core's compute only: afterwards Python/numpy on the calling thread
    still produce subnormals (FTZ off), as before the call."""
    tiny = np.float32(1e-38)
    assert tiny * np.float32(0.01) != 0  # subnormal result: FTZ off here
    model = fastrnn.Model(decaying_rnn())
    model.predict(impulse(1, 200, 3))
    s = model.stream(batch_size=1)
    s.step(np.ones((1, 3), np.float32))
    assert tiny * np.float32(0.01) != 0
