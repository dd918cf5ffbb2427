"""Kernels on every compiled ISA this CPU runs, against the independent numpy reference.

Covers: every activation (through Dense / Activation layers), each cell's fused gate kernel,
the packed small-batch recurrent kernel and the BLAS path (batch slices above and below the
crossover), SIMD tails (H not a multiple of 4/8/16), NaN/inf propagation, and that the two
public lists (spec vs core) of layer kinds and activations agree.
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import spec as S
from conftest import assert_close
import reference

ELEMENTWISE = list(S.ACTIVATIONS)


def rnn_spec(kind, I, H, *, direction="forward", merge="concat", act="tanh", ract="sigmoid", reset_after=True,
             proj=0, return_sequences=True, mask_mode="zero", seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    G = S.GATES[kind]
    P = proj or H
    dirs = []
    for _ in range(2 if direction == "bidirectional" else 1):
        dirs.append(S.DirectionWeights(
            rng.standard_normal((G * H, I)) * scale, rng.standard_normal((G * H, P)) * scale,
            rng.standard_normal(G * H) * scale,
            (rng.standard_normal(G * H) * scale) if (kind != "gru" or reset_after) else np.zeros(G * H),
            rng.standard_normal((P, H)) * scale if proj else None))
    layer = S.RecurrentSpec(kind=kind, name=f"{kind}_0", input_size=I, units=H, weights=dirs, activation=act,
                            recurrent_activation=ract, reset_after=reset_after, proj_size=proj, direction=direction,
                            merge_mode=merge, return_sequences=return_sequences, mask_mode=mask_mode)
    return S.ModelSpec(layers=[layer], input_features=I, source="test")


def test_core_vocabulary_matches_spec():
    core = fastrnn._load_core()
    assert set(core.layer_kinds()) == set(S.LAYER_KINDS)
    assert list(core.activation_names()) == list(S.ACTIVATIONS + S.AXIS_ACTIVATIONS)


def test_generic_isa_is_always_available():
    assert "generic" in fastrnn.info()["available_isas"]


@pytest.mark.parametrize("act", ELEMENTWISE + ["softmax", "log_softmax", "l2_normalize"])
@pytest.mark.parametrize("n", [1, 7, 16, 37])
def test_activation_matches_reference(act, n, isa):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 2, n)) * 4).astype(np.float32)
    x[0, 0, :2] = [-90.0, 90.0][: min(2, n)]  # exp clamps
    spec = S.ModelSpec(layers=[S.ActivationSpec(name="a", activation=act)], input_features=n)
    got = fastrnn.Model(spec).predict(x)
    with np.errstate(over="ignore"):
        expected = reference.activation(act, x.astype(np.float64))
    if act == "exponential":
        with np.errstate(over="ignore"):
            # libm exp; e^90 overflows to inf; e^-90 is subnormal, flushed to zero (FTZ while computing)
            np.testing.assert_allclose(got, expected.astype(np.float32), rtol=2e-6, atol=np.finfo(np.float32).tiny)
    else:
        assert_close(got, expected.astype(np.float32), atol=2e-6, rtol=2e-6, what=act)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "softmax"])
def test_nan_and_inf_propagate(act, isa):
    x = np.array([[[np.nan, 0.5, 1.0], [np.inf, -np.inf, 0.0]]], np.float32)
    spec = S.ModelSpec(layers=[S.ActivationSpec(name="a", activation=act)], input_features=3)
    got = fastrnn.Model(spec).predict(x)
    assert np.isnan(got[0, 0, 0])
    if act == "softmax":
        assert np.isnan(got[0]).all()
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            expected = reference.activation(act, x.astype(np.float64))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(got[finite], expected[finite], atol=1e-6)


CELLS = [
    ("simple_rnn", {}), ("simple_rnn", {"act": "relu"}),
    ("lstm", {}), ("lstm", {"act": "relu", "ract": "hard_sigmoid"}), ("lstm", {"proj": 5}),
    ("gru", {}), ("gru", {"reset_after": False}), ("gru", {"act": "softsign", "ract": "hard_sigmoid_tf2"}),
]


@pytest.mark.parametrize("kind,kw", CELLS, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items()) or 'default'}"
                                              for k, kw in CELLS])
@pytest.mark.parametrize("B,T,I,H", [(1, 1, 1, 1), (2, 9, 3, 13), (3, 5, 4, 33), (11, 4, 6, 17)],
                         ids=["b1t1h1", "b2h13", "b3h33", "b11-blas-path"])
def test_cell_matches_reference_on_every_isa(kind, kw, B, T, I, H, isa):
    spec = rnn_spec(kind, I, H, direction="bidirectional", **kw)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = rng.integers(0, T + 1, size=B)
    for lens in (None, lengths):
        y, st = fastrnn.Model(spec).predict(x, lengths=lens, return_state=True)
        ry, rst = reference.run_spec(spec, x, lengths=lens, return_state=True)
        assert_close(y, ry, what=f"{kind} output lengths={lens}")
        as_tuple = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
        assert len(as_tuple(st[0])) == len(as_tuple(rst[0])) == (2 if kind == "lstm" else 1)
        for a, b in zip(as_tuple(st[0]), as_tuple(rst[0])):
            assert_close(a, b, what=f"{kind} state")


@pytest.mark.parametrize("B", [1, 2, 7, 8, 9, 40])
def test_packed_kernel_and_blas_path_agree_with_reference(B, isa):
    """Slices of <= FASTRNN_PACKED_MAX_ROWS rows use the packed kernel, larger ones BLAS."""
    spec = rnn_spec("lstm", 5, 70, seed=3)
    x = np.random.default_rng(3).standard_normal((B, 6, 5)).astype(np.float32)
    assert_close(fastrnn.Model(spec).predict(x), reference.run_spec(spec, x))


def _isa_switch_model(kind, I, H, **kw):
    from fastrnn import spec as S

    rnn = rnn_spec(kind, I, H, scale=1 / np.sqrt(H), **kw).layers[0]
    rng = np.random.default_rng(7)
    P = kw.get("proj") or H
    dense = S.DenseSpec(name="head", weight=rng.standard_normal((3, P)) / np.sqrt(P), bias=rng.standard_normal(3),
                        activation="linear")
    return S.ModelSpec(layers=[rnn, dense], input_features=I, source="test")


@pytest.mark.parametrize("kind,kw", [("lstm", {}), ("gru", {}), ("simple_rnn", {}), ("lstm", {"proj": 7}),
                                     ("gru", {"reset_after": False})],
                         ids=["lstm", "gru", "rnn", "lstm-proj", "gru-before"])
@pytest.mark.parametrize("B", [1, 5, 40])
def test_switching_isa_mid_process_keeps_results(kind, kw, B):
    """Packed layouts belong to an ISA (panel width, unit block): a model built under one ISA and
    run under each of the others (set_isa mid-process) gives the same outputs, within 1e-6 of each
    other and 1e-5 of the numpy reference, on the one-thread, batch-1 split and streaming paths."""
    isas = fastrnn.info()["available_isas"]
    prev, threads = fastrnn.info()["isa"], fastrnn.get_num_threads()
    spec = _isa_switch_model(kind, 6, 150, **kw)
    rng = np.random.default_rng(B)
    x = rng.standard_normal((B, 9, 6)).astype(np.float32)
    expected = reference.run_spec(spec, x)
    try:
        for built_under in (isas[0], isas[-1]):
            fastrnn.set_isa(built_under)
            model = fastrnn.Model(spec)
            outs = []
            for run_under in isas[::-1] + isas:
                fastrnn.set_isa(run_under)
                for n in (1, 2):
                    fastrnn.set_num_threads(n)
                    y = model.predict(x)
                    assert_close(y, expected, what=f"built {built_under}, run {run_under}, {n} threads")
                    outs.append(y)
                s = model.stream(batch_size=B)
                ys = np.stack([s.step(x[:, t]) for t in range(x.shape[1])], axis=1)
                assert_close(ys, expected, what=f"stream built {built_under}, run {run_under}")
                outs.append(ys)
            for y in outs[1:]:
                np.testing.assert_allclose(y, outs[0], atol=1e-6, rtol=0)
    finally:
        fastrnn.set_isa(prev)
        fastrnn.set_num_threads(threads)


def test_blas_path_matches_reference():
    """FASTRNN_PACKED_MAX_ROWS=n sends every product of more than n rows to OpenBLAS (the recurrent
    step then runs sgemm and the separate gate kernels): same results, every cell, every ISA."""
    import subprocess
    import sys

    from conftest import CHILD_CWD, child_env

    code = """
import numpy as np, fastrnn, reference
from test_kernels import rnn_spec
from conftest import assert_close
for isa in fastrnn.info()["available_isas"]:
    fastrnn.set_isa(isa)
    for kind, kw in [("lstm", {}), ("lstm", {"proj": 3}), ("gru", {}), ("gru", {"reset_after": False}),
                     ("simple_rnn", {})]:
        spec = rnn_spec(kind, 5, 21, direction="bidirectional", seed=4, **kw)
        for B in (1, 3, 9):
            x = np.random.default_rng(B).standard_normal((B, 6, 5)).astype(np.float32)
            assert_close(fastrnn.Model(spec).predict(x), reference.run_spec(spec, x), what=f"{isa} {kind} {kw} B={B}")
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=CHILD_CWD, capture_output=True, text=True, timeout=300,
                       env=child_env(FASTRNN_PACKED_MAX_ROWS="0"))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
