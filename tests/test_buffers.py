"""predict's buffers: the input is read in place (never written, whatever the first layer), and the
returned array takes over the core's output buffer instead of a copy.  An output array must then
own its values for as long as it lives: later calls, other models and the garbage collector must
never write into an array already returned.  Oracle: the numpy reference (tests/reference.py)."""
import gc

import numpy as np
import pytest

import fastrnn
from fastrnn import spec as S
from conftest import assert_close
import reference


def _lstm(name, I, H, seed, return_sequences=True):
    rng = np.random.default_rng(seed)
    # weights of scale 1 / sqrt(fan-in): a stable recurrence (float32 rounding does not grow over T)
    w = S.DirectionWeights(rng.standard_normal((4 * H, I)) / np.sqrt(I), rng.standard_normal((4 * H, H)) / np.sqrt(H),
                           rng.standard_normal(4 * H) * 0.1, rng.standard_normal(4 * H) * 0.1, None)
    return S.RecurrentSpec(kind="lstm", name=name, input_size=I, units=H, weights=[w],
                           return_sequences=return_sequences)


def _spec(head, I=6, H=24):
    """A first layer that writes its input in place (masking, activation) or reads it (lstm, dense)."""
    rng = np.random.default_rng(3)
    first = {"lstm": [],
             "masking": [S.MaskingSpec("m", 0.0)],
             "activation": [S.ActivationSpec("a", "tanh")],
             "dense": [S.DenseSpec("d", rng.standard_normal((I, I)) * 0.5, rng.standard_normal(I) * 0.1, "relu")]}
    return S.ModelSpec(layers=first[head] + [_lstm("lstm", I, H, seed=1)], input_features=I, source="test")


@pytest.mark.parametrize("head", ["lstm", "masking", "activation", "dense"])
def test_input_is_never_written(head):
    spec = _spec(head)
    x = np.random.default_rng(0).standard_normal((5, 9, 6)).astype(np.float32)
    x[1, 3:] = 0.0  # masked steps for the masking head (it zeroes masked steps of its own copy)
    x[2, :, 0] = -3.0
    before = x.copy()
    y = fastrnn.Model(spec).predict(x)
    np.testing.assert_array_equal(x, before)
    assert_close(y, reference.run_spec(spec, before).astype(np.float32))


def test_pass_through_model_returns_a_copy_of_its_input():
    """Nothing but a masking layer: no layer writes, the output must still not be the caller's array."""
    spec = S.ModelSpec(layers=[S.MaskingSpec("m", 0.5)], input_features=3, source="test")
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    y = fastrnn.Model(spec).predict(x)
    assert not np.shares_memory(x, y)
    y[...] = 7.0
    assert np.all(x != 7.0)


@pytest.mark.parametrize("B,T,H", [(1, 3, 8), (64, 40, 128)], ids=["small", "block-cache-sized"])
def test_returned_arrays_keep_their_values(B, T, H):
    """Outputs of many calls kept at once, of two models, a deleted model, garbage collection between:
    each still equals its reference, none shares memory with another."""
    I = 6
    specs = [S.ModelSpec(layers=[_lstm("l", I, H, seed=s)], input_features=I, source="test") for s in (1, 2)]
    models = [fastrnn.Model(s) for s in specs]
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((B, T, I)).astype(np.float32) for _ in range(4)]
    kept = []
    for i, x in enumerate(xs):
        for m, s in zip(models, specs):
            kept.append((m.predict(x), s, x))
        if i == 1:
            del models[1]
            models.append(fastrnn.Model(specs[1]))
        gc.collect()
    for m in models:  # calls whose outputs are dropped at once: their buffers go back for reuse
        for x in xs:
            m.predict(x)
    for i, (y, s, x) in enumerate(kept):
        assert y.shape == (B, T, H) and y.dtype == np.float32 and y.flags.c_contiguous and y.flags.writeable
        assert_close(y, reference.run_spec(s, x).astype(np.float32))
        for z, _, _ in kept[:i]:
            assert not np.shares_memory(y, z)


def test_writing_an_output_changes_no_later_call():
    spec = S.ModelSpec(layers=[_lstm("l", 6, 128, seed=1)], input_features=6, source="test")
    m = fastrnn.Model(spec)
    x = np.random.default_rng(2).standard_normal((64, 40, 6)).astype(np.float32)
    expected = reference.run_spec(spec, x).astype(np.float32)
    for _ in range(3):
        y = m.predict(x)
        assert_close(y, expected)
        y[...] = np.nan  # then dropped: its buffer is reused by the next call, which must overwrite all of it
        del y
