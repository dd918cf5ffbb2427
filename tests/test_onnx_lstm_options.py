"""The recurrent options the core grew for ONNX (issue 11, item 1): LSTM peepholes, ``clip``,
``input_forget``, activations with alpha / beta (per direction, LSTM g != h), constant non-zero
initial states.

Each option, over every direction and both layouts, with and without ``sequence_lens``, is checked
against onnxruntime and an independent numpy implementation of the ONNX operator equations
(:func:`onnx_rnn`, written from the operator spec), and against ``onnx.reference.ReferenceEvaluator``
where it implements the attribute: its LSTM / GRU / RNN ignore ``activations``, ``clip``,
``input_forget`` and ``sequence_lens`` ("TODO: support overridden attributes"), so it checks
peepholes, initial states, directions and layouts.  Tolerance 1e-5.  Also: the options on specs ONNX
cannot write (Keras "hold" masks and go_backwards, projections, reduced precision) against the numpy
spec reference (``tests/reference.py``), streaming equals predict, the ``.fastrnn`` round trip
(format 3; an older reader refuses it), and the spec's checks.
"""
import dataclasses
import functools

import numpy as np
import pytest

import fastrnn
import reference
from conftest import assert_close, require

onnx = require("onnx")
require("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fastrnn.converters.onnx import spec_from_onnx  # noqa: E402
from fastrnn.errors import ModelFormatError  # noqa: E402
from fastrnn.quantize import convert_spec  # noqa: E402
from fastrnn.spec import DirectionWeights, ModelSpec, RecurrentSpec  # noqa: E402
from test_onnx import fr_run, ort_run, ref_run, rnn_weights  # noqa: E402

T, N, I, H = 6, 4, 3, 5
LENS = np.array([6, 3, 1, 5], np.int32)
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


# ------------------------------------------------------------------------------ numpy reference
def _fn(name, alpha, beta):
    """ONNX's recurrent activation functions (operator spec, "Activation functions")."""
    return functools.partial(reference.onnx_function, name, alpha, beta)


def _functions(kind, attrs, nd):
    """Per direction, the node's functions, consuming activation_alpha / beta as onnxruntime does
    (in order, by the functions that take them; defaults LeakyRelu 0.01, ThresholdedRelu 1,
    HardSigmoid 0.2 / 0.5, Elu 1)."""
    names = list(attrs.get("activations", DEFAULT_ACTS[kind] * nd))
    alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
    uses = {"Affine": (1, 1), "LeakyRelu": (0.01, None), "ThresholdedRelu": (1.0, None), "ScaledTanh": (1, 1),
            "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None)}
    fns = []
    for n in names:
        da, db = uses.get(n, (None, None))
        a = (alphas.pop(0) if alphas else da) if da is not None else 0
        b = (betas.pop(0) if betas else db) if db is not None else 0
        fns.append(_fn(n, np.float64(np.float32(a)), np.float64(np.float32(b))))
    per = len(DEFAULT_ACTS[kind])
    return [fns[d * per:(d + 1) * per] for d in range(nd)]


def onnx_rnn(kind, x, W, R, B, attrs, lens=None, h0=None, c0=None, P=None):
    """Y [T, nd, N, H] and Y_h [nd, N, H] of an ONNX LSTM / GRU / RNN node, layout 0, in float64, from
    the operator spec's equations (ONNX gate orders: LSTM i o f c, GRU z r h).  sequence_lens: a row's
    steps past its length output zeros and leave its state; the reverse direction starts at its last
    valid step."""
    direction = attrs.get("direction", "forward")
    nd = 2 if direction == "bidirectional" else 1
    clip = attrs.get("clip")
    cl = (lambda v: np.clip(v, -clip, clip)) if clip is not None else (lambda v: v)
    lens = np.full(x.shape[1], x.shape[0]) if lens is None else lens
    fns = _functions(kind, attrs, nd)
    x = x.astype(np.float64)
    Y = np.zeros((x.shape[0], nd, x.shape[1], H))
    Yh = np.zeros((nd, x.shape[1], H))
    for d in range(nd):
        w, r, b = W[d].astype(np.float64), R[d].astype(np.float64), B[d].astype(np.float64)
        G = GATES[kind]
        wb, rb = b[:G * H], b[G * H:]
        rev = direction == "reverse" or d == 1
        f = fns[d]
        for n in range(x.shape[1]):
            h = np.zeros(H) if h0 is None else h0[d, n].astype(np.float64)
            c = np.zeros(H) if c0 is None else c0[d, n].astype(np.float64)
            L = int(lens[n])
            for t in (range(L - 1, -1, -1) if rev else range(L)):
                xt = x[t, n]
                if kind == "LSTM":
                    a = xt @ w.T + h @ r.T + wb + rb
                    ai, ao, af, ac = np.split(a, 4)
                    pi, po, pf = np.split(P[d].astype(np.float64), 3) if P is not None else (0, 0, 0)
                    i = f[0](cl(ai + pi * c))
                    ff = 1 - i if attrs.get("input_forget") else f[0](cl(af + pf * c))
                    c = ff * c + i * f[1](cl(ac))
                    o = f[0](cl(ao + po * c))
                    h = o * f[2](c)
                elif kind == "GRU":
                    xw = xt @ w.T + wb
                    z = f[0](cl(xw[:H] + h @ r[:H].T + rb[:H]))
                    rr = f[0](cl(xw[H:2 * H] + h @ r[H:2 * H].T + rb[H:2 * H]))
                    if attrs.get("linear_before_reset"):
                        hh = f[1](cl(xw[2 * H:] + rr * (h @ r[2 * H:].T + rb[2 * H:])))
                    else:
                        hh = f[1](cl(xw[2 * H:] + (rr * h) @ r[2 * H:].T + rb[2 * H:]))
                    h = (1 - z) * hh + z * h
                else:
                    h = f[0](cl(xt @ w.T + h @ r.T + wb + rb))
                Y[t, d, n] = h
            Yh[d, n] = h
    return Y, Yh


# ------------------------------------------------------------------------------ models
def node_model(kind, attrs, *, layout=0, lengths=False, out="Y", h0=None, c0=None, P=None, seed=1, batch=N):
    """One recurrent node; W, R, B (and h0 / c0 in the node's layout, P) as initializers; X (and
    sequence_lens) graph inputs with a fixed batch (constant initial states need one)."""
    nd = 2 if attrs.get("direction") == "bidirectional" else 1
    W, R, B = rnn_weights(np.random.default_rng(seed), kind, nd, H, I)
    a = dict(attrs, hidden_size=H)
    if layout:
        a["layout"] = layout
    tensors = {"W": W, "R": R, "B": B}
    for k, v in (("h0", h0), ("c0", c0), ("P", P)):
        if v is not None:
            tensors[k] = v if k == "P" or not layout else np.ascontiguousarray(v.transpose(1, 0, 2))
    names = ["X", "W", "R", "B", "L" if lengths else "", "h0" if h0 is not None else "",
             "c0" if c0 is not None else "", "P" if P is not None else ""]
    while not names[-1]:
        names.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if kind == "LSTM" else [])
    node = helper.make_node(kind, names, outs, name="rnn", **a)
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, batch, I] if layout == 0 else [batch, T, I])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("L", TensorProto.INT32, [batch]))
    g = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in tensors.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), (W, R, B)


def _acts(names, alpha=(), beta=()):
    return {"activations": names, "activation_alpha": list(alpha), "activation_beta": list(beta)}


# name -> (kind, attributes, uses (peepholes, initial states)); activations per direction are doubled for
# bidirectional nodes unless "both" gives the two directions' lists
OPTIONS = {
    "lstm_peepholes": ("LSTM", {}, {"P"}),
    "lstm_clip": ("LSTM", {"clip": 0.4}, set()),
    "lstm_input_forget": ("LSTM", {"input_forget": 1}, set()),
    "lstm_activations_g_ne_h": ("LSTM", _acts(["HardSigmoid", "Affine", "ScaledTanh"], [0.3, 0.7, 1.3], [0.4, 0.1, 0.8]),
                                set()),
    "lstm_softsign_softplus_elu": ("LSTM", _acts(["Sigmoid", "Softsign", "Elu"], [0.5]), set()),
    "lstm_initial_states": ("LSTM", {}, {"h0", "c0"}),
    "lstm_everything": ("LSTM", dict(_acts(["HardSigmoid", "Tanh", "ScaledTanh"], [0.25, 1.1], [0.45, 0.9]), clip=0.8,
                                     input_forget=1), {"P", "h0", "c0"}),
    "gru_clip": ("GRU", {"clip": 0.3}, set()),
    "gru_clip_linear_before_reset": ("GRU", {"clip": 0.3, "linear_before_reset": 1}, set()),
    "gru_activations": ("GRU", _acts(["HardSigmoid", "Elu"], [0.3, 0.5], [0.45]), set()),
    "gru_initial_state": ("GRU", {"linear_before_reset": 1}, {"h0"}),
    "rnn_clip": ("RNN", {"clip": 0.2}, set()),
    "rnn_scaled_tanh": ("RNN", _acts(["ScaledTanh"], [1.5], [0.7]), set()),
    "rnn_affine": ("RNN", _acts(["Affine"], [0.6], [0.2]), set()),
    "rnn_leaky_relu": ("RNN", _acts(["LeakyRelu"], [0.1]), set()),
    "rnn_thresholded_relu": ("RNN", _acts(["ThresholdedRelu"], [0.05]), set()),
    "rnn_initial_state": ("RNN", {}, {"h0"}),
}


def _case(name, direction, rng):
    kind, attrs, uses = OPTIONS[name]
    nd = 2 if direction == "bidirectional" else 1
    a = dict(attrs, direction=direction)
    for k in ("activations", "activation_alpha", "activation_beta"):
        if k in a:
            a[k] = list(a[k]) * nd
            if not a[k]:
                del a[k]
    tensors = {"h0": rng.uniform(-0.8, 0.8, (nd, 1, H)).repeat(N, 1).astype(np.float32) if "h0" in uses else None,
               "c0": rng.uniform(-0.8, 0.8, (nd, 1, H)).repeat(N, 1).astype(np.float32) if "c0" in uses else None,
               "P": rng.uniform(-0.7, 0.7, (nd, 3 * H)).astype(np.float32) if "P" in uses else None}
    return kind, a, tensors, uses


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_option_matches_onnxruntime_and_references(name, direction, layout, rng):
    kind, attrs, tensors, uses = _case(name, direction, rng)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    xl = x if layout == 0 else np.ascontiguousarray(x.transpose(1, 0, 2))
    implemented = not set(attrs) - {"direction", "linear_before_reset"}  # what the reference evaluator runs
    for lengths in (False, True):
        for out in ("Y", "Y_h"):
            m, (W, R, B) = node_model(kind, attrs, layout=layout, lengths=lengths, out=out, **tensors)
            feed = {"X": xl, **({"L": LENS} if lengths else {})}
            y, spec = fr_run(m, xl, lengths=LENS if lengths else None)
            what = f"{name} {direction} layout {layout} {out}{' sequence_lens' if lengths else ''}"
            assert_close(y, ort_run(m, feed), what=what + " vs onnxruntime")
            Y, Yh = onnx_rnn(kind, x, W, R, B, attrs, LENS if lengths else None, tensors["h0"], tensors["c0"],
                             tensors["P"])
            ref = Y if out == "Y" else Yh
            if layout:
                ref = ref.transpose(2, 0, 1, 3) if out == "Y" else ref.transpose(1, 0, 2)
            assert_close(y, ref.astype(np.float32), what=what + " vs the numpy equations")
            if implemented and not lengths:
                assert_close(y, ref_run(m, {"X": xl}), what=what + " vs onnx.reference")
    layer = spec.recurrent_layers[0]
    assert (layer.clip is not None) == ("clip" in attrs)
    assert layer.input_forget == bool(attrs.get("input_forget"))
    assert any(w.peephole is not None for w in layer.weights) == ("P" in uses)
    assert any(w.h0 is not None for w in layer.weights) == ("h0" in uses)


def test_reference_evaluator_runs_peepholes_and_states():
    """The reference evaluator's LSTM really uses P, initial_h and initial_c (so its agreement above
    checks them): without them its output differs."""
    rng = np.random.default_rng(3)
    _, attrs, tensors, _ = _case("lstm_everything", "forward", rng)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    m, _ = node_model("LSTM", {}, **tensors)
    bare, _ = node_model("LSTM", {})
    assert np.abs(ref_run(m, {"X": x}) - ref_run(bare, {"X": x})).max() > 1e-2


def test_directions_with_different_activations_and_the_onnx_node_test(rng):
    """A bidirectional node whose directions use different functions; the ONNX backend node test
    test_lstm_with_peepholes is covered in test_onnx.py (now loaded, not refused)."""
    attrs = dict(direction="bidirectional", **_acts(["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Relu", "Softsign"],
                                                    [0.3], [0.4]))
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    m, (W, R, B) = node_model("LSTM", attrs)
    y, spec = fr_run(m, x)
    assert spec.recurrent_layers[0].gate_activations == [
        [["Sigmoid", 0.0, 0.0], ["Tanh", 0.0, 0.0], ["Tanh", 0.0, 0.0]],
        [["HardSigmoid", pytest.approx(0.3), pytest.approx(0.4)], ["Relu", 0.0, 0.0], ["Softsign", 0.0, 0.0]]]
    assert_close(y, ort_run(m, {"X": x}))
    assert_close(y, onnx_rnn("LSTM", x, W, R, B, attrs)[0].astype(np.float32))


def test_predict_initial_state_overrides_the_default(rng):
    """A constant initial state is the default; predict(initial_state=...) replaces it (onnxruntime
    run with that state as initial_h / initial_c)."""
    _, attrs, tensors, _ = _case("lstm_initial_states", "forward", rng)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    m, _ = node_model("LSTM", attrs, **tensors)
    spec = spec_from_onnx(m)
    model = fastrnn.Model(spec)
    h, c = (rng.standard_normal((1, N, H)).astype(np.float32) for _ in range(2))
    y = model.predict(x.transpose(1, 0, 2), initial_state=(h, c))
    other, _ = node_model("LSTM", attrs, h0=h, c0=c)
    assert_close(y, ort_run(other, {"X": x})[:, 0].transpose(1, 0, 2))
    assert_close(model.predict(x.transpose(1, 0, 2)), ort_run(m, {"X": x})[:, 0].transpose(1, 0, 2))


# ------------------------------------------------------------------------------ specs ONNX cannot write
def _options_spec(kind, direction, mask_mode, rs, proj, seed):
    rng = np.random.default_rng(seed)
    G = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]
    nd = 2 if direction == "bidirectional" else 1
    P = proj or H
    u = lambda *s: rng.uniform(-0.6, 0.6, s).astype(np.float32)  # noqa: E731
    ws = [DirectionWeights(u(G * H, I), u(G * H, P), u(G * H), u(G * H) * (kind != "gru"), u(P, H) if proj else None,
                           peephole=u(3, H) if kind == "lstm" else None, h0=u(P), c0=u(H) if kind == "lstm" else None)
          for _ in range(nd)]
    fns = {"lstm": [["HardSigmoid", 0.3, 0.45], ["ScaledTanh", 1.2, 0.8], ["Softsign", 0, 0]],
           "gru": [["Sigmoid", 0, 0], ["Elu", 0.6, 0]], "simple_rnn": [["Affine", 0.8, 0.1]]}[kind]
    layer = RecurrentSpec(kind=kind, name="r", input_size=I, units=H, weights=ws, direction=direction,
                          mask_mode=mask_mode, return_sequences=rs, proj_size=proj, clip=0.7,
                          input_forget=kind == "lstm", gate_activations=[fns] * nd, reset_after=kind != "gru")
    return ModelSpec([layer], input_features=I)


@pytest.mark.parametrize("kind,proj", [("lstm", 0), ("lstm", 3), ("gru", 0), ("simple_rnn", 0)])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("mask_mode,rs", [("zero", True), ("hold", True), ("hold", False), ("zero", False)])
def test_options_on_any_spec_match_the_numpy_reference(kind, proj, direction, mask_mode, rs, rng):
    spec = _options_spec(kind, direction, mask_mode, rs, proj, 7)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    model = fastrnn.Model(spec)
    for lengths in (None, np.array([6, 3, 0, 5])):
        y, st = model.predict(x, lengths=lengths, return_state=True)
        ry, rst = reference.run_spec(spec, x, lengths=lengths, return_state=True)
        assert_close(y, ry, what=f"lengths {lengths}")
        for a, b in zip(st[0] if kind == "lstm" else (st[0],), rst[0] if kind == "lstm" else (rst[0],)):
            assert_close(a, b, what="final state")
    for precision, atol in (("bf16", 1e-2), ("int8", 3e-2)):  # the general path over reduced weights
        q = fastrnn.Model(spec).with_weights(precision)
        assert q.spec.recurrent_layers[0].has_options
        assert_close(q.predict(x), reference.run_spec(convert_spec(q.spec, "f32"), x), atol=atol, rtol=0,
                     what=precision)


# ------------------------------------------------------------------------------ streaming and files
def _options_model(rng):
    _, attrs, tensors, _ = _case("lstm_everything", "forward", rng)
    m, _ = node_model("LSTM", attrs, **tensors)
    return m, fastrnn.Model(spec_from_onnx(m))


def test_stream_of_a_peephole_lstm_equals_predict_and_onnxruntime(rng):
    m, model = _options_model(rng)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    full = model.predict(x)
    assert_close(full, ort_run(m, {"X": np.ascontiguousarray(x.transpose(1, 0, 2))})[:, 0].transpose(1, 0, 2))
    s = model.stream(N)
    for _ in range(2):  # reset() returns to the default initial state
        steps = np.stack([s.step(x[:, t]) for t in range(T)], axis=1)
        assert_close(steps, full, what="Stream.step")
        s.reset()
    assert_close(np.concatenate([s.run(x[:, :2]), s.run(x[:, 2:])], axis=1), full, what="Stream.run")
    s.reset([1])
    assert_close(np.stack([s.step(x[:, t]) for t in range(T)], axis=1)[1], full[1], what="reset one row")


def test_fastrnn_file_round_trip_and_format_version(rng, tmp_path, monkeypatch):
    from fastrnn.io import native

    m, model = _options_model(rng)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    path = tmp_path / "opts.fastrnn"
    model.save(path)
    back = fastrnn.load(path)
    layer = back.spec.recurrent_layers[0]
    assert back.spec.format_version == 3 and layer.has_options
    assert layer.clip == pytest.approx(0.8) and layer.input_forget
    assert_close(back.predict(x), model.predict(x))
    from fastrnn.cli import describe  # `fastrnn info` shows the options

    row = describe(back, str(path))["layers"][0]
    assert row["gate_activations"] == layer.gate_activations and row["activation"] is None
    assert (row["clip"], row["input_forget"], row["peepholes"], row["default_initial_state"]) == (layer.clip, True, True, True)
    assert_close(back.predict(x), ort_run(m, {"X": np.ascontiguousarray(x.transpose(1, 0, 2))})[:, 0].transpose(1, 0, 2))
    # a model without options still writes version 1 (older fastrnn reads it); a version-2 reader refuses 3
    plain, _ = node_model("LSTM", {})
    p1 = tmp_path / "plain.fastrnn"
    fastrnn.Model(spec_from_onnx(plain)).save(p1)
    assert '"fastrnn_format_version":"1"' in p1.read_bytes()[:4096].decode("utf-8", "replace")
    monkeypatch.setattr(native, "FILE_FORMAT_VERSION", 2)
    with pytest.raises(ModelFormatError, match=r"newer fastrnn \(format version 3.*upgrade fastrnn"):
        fastrnn.load(path)
    fastrnn.load(p1)


def _lstm_spec(**kw):
    rng = np.random.default_rng(0)
    w = DirectionWeights(*(rng.standard_normal(s).astype(np.float32) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))))
    return RecurrentSpec(kind="lstm", name="l", input_size=I, units=H, weights=[w], **kw)


@pytest.mark.parametrize("change,match", [
    (dict(clip=-1.0), "clip must be None or a finite number >= 0"),
    (dict(clip=float("nan")), "clip must be None or a finite number >= 0"),
    (dict(gate_activations=[[["Sigmoid", 0, 0], ["Tanh", 0, 0]]]), r"1 list\(s\) \(one per direction\) of 3"),
    (dict(gate_activations=[[["Sigmoid", 0, 0], ["Gelu", 0, 0], ["Tanh", 0, 0]]]), "is not \\[name, alpha, beta\\]"),
    (dict(gate_activations=[[["Sigmoid", 0, 0]] * 3], activation="relu"), "leave those at their defaults"),
])
def test_spec_checks_the_options(change, match):
    with pytest.raises(ModelFormatError, match=match):
        ModelSpec([_lstm_spec(**change)], input_features=I).validate()


def test_spec_checks_option_tensors_and_kinds():
    spec = _lstm_spec()
    spec.weights[0].peephole = np.zeros((2, H), np.float32)
    with pytest.raises(ModelFormatError, match="peephole"):
        ModelSpec([spec], input_features=I).validate()
    rng = np.random.default_rng(0)
    w = DirectionWeights(*(rng.standard_normal(s).astype(np.float32) for s in ((3 * H, I), (3 * H, H), (3 * H,), (3 * H,))))
    gru = RecurrentSpec(kind="gru", name="g", input_size=I, units=H, weights=[w], input_forget=True)
    with pytest.raises(ModelFormatError, match="input_forget is only valid for lstm"):
        ModelSpec([gru], input_features=I).validate()
    gru = dataclasses.replace(gru, input_forget=False, weights=[dataclasses.replace(w, c0=np.zeros(H, np.float32))])
    with pytest.raises(ModelFormatError, match="peephole / c0 are only valid for lstm"):
        ModelSpec([gru], input_features=I).validate()
