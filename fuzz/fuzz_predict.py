"""Fuzz the argument handling of Model.predict / Stream.step / Stream.run / Stream.state /
Stream.reset / Model.generate against a few small models (fuzz/corpus/native/, NATIVE_MODELS).

The input bytes are decoded (fuzz/_harness.py Bytes) into: a model, an operation and its
arguments: arrays of any rank / size / dtype / memory layout (C, Fortran, strided, reversed,
read-only, byte-swapped, nested lists, ragged lists, numpy scalars), lengths, initial states and
ids with edge values (NaN, inf, out-of-range, huge).  Deliberately wrong argument types (str,
dict, object) may raise TypeError; everything else must return or raise a FastRNNError.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn.errors import FastRNNError  # noqa: E402
from _harness import skip_known, CORPUS_DIR, NATIVE_MODELS, Bytes  # noqa: E402

_MODELS = []


def models():
    if not _MODELS:
        for name in NATIVE_MODELS:
            _MODELS.append(fastrnn.load(os.path.join(CORPUS_DIR, "native", name)))
    return _MODELS


class WrongType(Exception):
    """Marks an input where the harness passed a non-array type on purpose (TypeError is fine)."""


DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.uint64, np.bool_,
          np.complex64, ">f4", ">i8", "<U2", object, "datetime64[s]", "V4"]
SPECIAL = [0.0, 1.0, -1.0, 0.5, np.nan, np.inf, -np.inf, 1e30, -1e30, 2.0 ** 62, -(2.0 ** 63), 3.0, 2.0, 6.0,
           7.0, 1e-45]


class Gen:
    def __init__(self, data, model):
        self.p = Bytes(data)
        self.m = model
        self.wrong_type = False
        spec = model.spec
        self.ids = spec.takes_ids
        self.vocab = spec.layers[0].embeddings.shape[0] if self.ids else 0
        self.F = spec.input_features or 1

    def dim(self, natural):
        return self.p.pick([natural, natural, natural, 0, 1, 2, 3, 5, natural + 1, max(natural - 1, 0)])

    def values(self, n):
        p = self.p
        how = p.int(0, 3)
        if how == 0:
            return np.zeros(n)
        if how == 1:
            return np.array([p.pick(SPECIAL) for _ in range(min(n, 8))] * (n // 8 + 1))[:n] if n else np.zeros(0)
        if how == 2:
            return np.array([p.int(-2, self.vocab + 2) for _ in range(min(n, 8))] * (n // 8 + 1))[:n] if n \
                else np.zeros(0)
        raw = p.take(min(4 * n, 64))
        base = np.frombuffer(raw[:len(raw) // 4 * 4], "<f4").astype(np.float64) if len(raw) >= 4 else np.ones(1)
        return np.resize(base, n)

    def array(self, shape):
        """An array-like of (about) ``shape``: the shape, dtype and layout are fuzzed too."""
        p = self.p
        k = p.int(0, 15)
        if k == 0:  # other rank
            shape = tuple(self.dim(2) for _ in range(p.int(0, 4)))
        elif k == 1 and shape:  # one axis changed
            i = p.int(0, len(shape) - 1)
            shape = shape[:i] + (self.dim(shape[i]),) + shape[i + 1:]
        elif k == 2 and shape:  # a huge axis on an empty array
            shape = shape[:-1] + (0,) if p.bool() else (0,) + shape[1:] + (1 << 40,)
        n = int(np.prod(shape)) if shape else 1
        dt = np.float32 if p.bool() else p.pick(DTYPES)
        vals = self.values(n if n < 1 << 20 else 0)
        try:
            with np.errstate(all="ignore"):
                if n >= 1 << 20:
                    a = np.zeros(shape, dtype=np.dtype(dt))
                elif np.dtype(dt).kind in "USV":
                    a = np.array(vals.astype(str) if np.dtype(dt).kind == "U" else vals, dtype=object).astype(
                        dt if np.dtype(dt).kind == "U" else object).reshape(shape) if np.dtype(dt).kind == "U" \
                        else np.zeros(shape, dtype=dt)
                elif np.dtype(dt).kind == "M":
                    a = np.zeros(shape, dtype=dt)
                else:
                    a = vals.astype(dt).reshape(shape)
        except (ValueError, OverflowError, TypeError):
            a = np.zeros(shape, dtype=np.float32)
        layout = p.int(0, 11)
        if layout == 1:
            a = np.asfortranarray(a)
        elif layout == 2 and a.ndim:  # strided view
            big = np.repeat(a, 2, axis=-1)
            a = big[..., ::2]
        elif layout == 3 and a.ndim:
            a = a[::-1]
        elif layout == 4:
            a = a.copy()
            a.flags.writeable = False
        elif layout == 5:
            return a.tolist()
        elif layout == 6 and a.ndim >= 1 and a.shape[0] >= 2:  # ragged nested list
            lst = a.tolist()
            lst[0] = lst[0][:-1] if isinstance(lst[0], list) and lst[0] else [lst[0], lst[0]]
            return lst
        elif layout == 7 and a.ndim == 0:
            return a[()]  # numpy scalar
        elif layout == 8:
            return a[()] if a.ndim == 0 else a
        elif layout == 9:
            self.wrong_type = True
            return p.pick(["abc", {"x": 1}, object(), b"\x00\x01", 1 + 2j])
        elif layout == 10:
            return p.pick([None, 0, 1.5, True, [], ()])
        return a

    def x(self, step=False):
        B, T = self.p.pick([1, 2, 3]), self.p.pick([1, 2, 4])
        if self.ids:
            shape = (B,) if step else (B, T)
        else:
            shape = (B, self.F) if step else (B, T, self.F)
        return self.array(shape), B, T

    def state(self, B):
        rnns = self.m.spec.recurrent_layers
        out = []
        for layer in rnns:
            if self.p.int(0, 5) == 0:
                out.append(None)
                continue
            nd = layer.num_directions
            h = self.array((nd, B, layer.hidden_out))
            if layer.kind == "lstm":
                out.append((h, self.array((nd, B, layer.units))) if self.p.int(0, 7) else (h,))
            else:
                out.append(h)
        k = self.p.int(0, 7)
        if k == 0 and out:
            out = out[:-1]
        elif k == 1:
            out = out + [out[-1] if out else None]
        elif k == 2 and len(out) == 1:
            return out[0]  # the bare entry of a one-layer model
        elif k == 3:
            return tuple(out)
        return out


def _check_output(y, what):
    assert isinstance(y, np.ndarray) and y.dtype == np.float32, f"{what} returned {type(y)} {getattr(y, 'dtype', '')}"


def _run(g: Gen):
    p, m = g.p, g.m
    op = p.int(0, 5)
    if op == 0:
        x, B, T = g.x()
        lengths = None
        if p.bool():
            lengths = g.array((B,))
        init = g.state(B) if p.bool() else None
        rs = p.bool()
        y = m.predict(x, lengths=lengths, initial_state=init, return_state=rs)
        _check_output(y[0] if rs else y, "predict")
    elif op in (1, 2, 3, 4):
        B = p.pick([1, 2, 3])
        s = m.stream(p.pick([B, B, B, 0, -1, 2.0, True, np.int64(B)]))
        B = s.batch_size
        for _ in range(p.int(1, 3)):
            what = p.int(0, 4)
            if what == 0:
                x, _, _ = g.x(step=True)
                out = None
                if p.int(0, 3) == 0:
                    out = g.array((B, _out_features(m)))
                if type(x) is np.ndarray and x.ndim == 0 and os.environ.get("FASTRNN_FUZZ_SKIP_KNOWN") == "1":
                    continue  # known open finding (predict-1: segfault), skipped in exploratory runs only
                y = s.step(x, out) if out is not None else s.step(x)
                _check_output(y, "step")
            elif what == 1:
                x, _, _ = g.x()
                y = s.run(x)
                _check_output(y, "run")
            elif what == 2:
                s.state = g.state(B)
            elif what == 3:
                s.reset(g.array((p.int(0, 3),)) if p.bool() else None)
            else:
                st = s.state
                assert isinstance(st, list), type(st)
    else:
        prompt, _, _ = g.x()
        steps = p.pick([0, 1, 3, 7, -1, 2 ** 63, 2 ** 64 + 1, np.int64(2), np.uint64(3), 2.0, True])
        temp = p.pick([1.0, 0.5, 0.0, -1.0, np.nan, np.inf, 1e-45, 1e30, np.float32(2)])
        top_k = p.pick([None, 1, 2, 0, -1, 2 ** 63, 10 ** 6, np.int32(3), True])
        seed = p.pick([None, 0, 1, -1, 2 ** 64, 2 ** 100, np.uint64(2 ** 63)])
        greedy = p.bool()
        kw = {}
        if p.bool():  # the decoding options (beam search, stop ids, logits, a starting state)
            kw["beam_width"] = p.pick([1, 2, 3, 0, -1, 10 ** 6, 2.0, np.int8(2)])
            kw["stop_ids"] = p.pick([None, 0, [1, 2], [], [-1], [10 ** 6], [[1]], [1.5], np.arange(3), "1"])
            kw["length_penalty"] = p.pick([1.0, 0.0, -2.0, np.nan, np.inf, 1e300, "x"])
            kw["return_logits"] = p.pick([False, True, 1, None])
            if p.bool():
                kw["initial_state"] = g.state(p.int(1, 3))
            if p.bool():  # beam search refuses the sampling arguments: leave them at their defaults
                temp, top_k, seed, greedy = 1.0, None, None, False
        y = m.generate(prompt, steps, temperature=temp, top_k=top_k, seed=seed, greedy=greedy, **kw)
        if kw.get("return_logits") is True:
            ids, logits = y
            assert ids.dtype == np.int64 and logits.dtype == np.float32 and logits.shape[:-1] == ids.shape, y
        else:
            assert isinstance(y, np.ndarray), type(y)


_OUT = {}


def _out_features(m):
    if id(m) not in _OUT:
        _OUT[id(m)] = _out_features_uncached(m)
    return _OUT[id(m)]


def _out_features_uncached(m):
    return m.stream(1).step(np.zeros(1, np.int64) if m.spec.takes_ids else np.zeros((1, m.spec.input_features),
                                                                                     np.float32)).shape[1]


def test_one_input(data: bytes) -> None:
    ms = models()
    g = Gen(data[1:], ms[data[0] % len(ms)] if data else ms[0])
    try:
        _run(g)
    except FastRNNError:
        pass
    except TypeError as e:
        if not g.wrong_type and not skip_known(e):
            raise
    except Exception as e:  # noqa: BLE001 - a finding, unless already known and skipped on purpose
        if not skip_known(e):
            raise


TestOneInput = test_one_input

if __name__ == "__main__":
    from run import main

    sys.exit(main(["predict"] + sys.argv[1:]))
