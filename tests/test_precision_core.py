"""bf16 / int8 recurrent weights in the C++ core, on every ISA this CPU runs (the ``isa`` fixture).

Models are built straight from ``_core.Model(header, tensors)`` with weights quantized here in
numpy, and compared against an independent numpy reference of the SAME quantized math (float64):

- bf16: weights are bf16 bit patterns (round to nearest even of the float32); products use the
  float32 activations as they are: y = x W_bf16^T.
- int8: symmetric per-row weights q_w in [-127, 127] with scales s_w; every product's activation
  row (each input row x[b, t], each h_prev row per step, the LSTM projection input, GRU reset-before
  r*h) is quantized dynamically: a = max|x|, q = clip(rint(x * (M / a)), -M, M) in float32,
  s = a / M; y = (q_x q_w^T) s_x s_w, with M = 127, or 63 on x86 CPUs without VNNI (7 bits: the
  range reduction; ``_core.int8_activation_max()``).

and, with looser bounds, against the float32 model.  Malformed tensors must raise
ModelFormatError naming the layer and the tensor.
"""
import numpy as np
import pytest

import fastrnn
from fastrnn.errors import ModelFormatError

GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}


def _core():
    return fastrnn._load_core()


# --------------------------------------------------------------------------- quantizers (numpy)
def to_bf16(w):
    """float32 -> bf16 bit patterns (uint16), round to nearest even."""
    u = np.ascontiguousarray(w, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(b):
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def to_int8(w):
    """Per output row: scale = max|w| / 127, q = rint(w / scale)."""
    w = np.asarray(w, np.float32)
    s = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(s == 0, np.float32(1), s)
    return np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8), s


XQ_MAX = fastrnn._load_core().int8_activation_max()  # 63 or 127 (cpu/kernels.h int8_xmax)


def quant_rows(x):
    """The core's dynamic activation quantization (matmul.h quantize_rows), float32 arithmetic."""
    x = np.asarray(x, np.float32)
    a = np.abs(x).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.float32(XQ_MAX) / a
        q = np.clip(np.rint(x * inv[:, None]), -XQ_MAX, XQ_MAX)
    q = np.where(a[:, None] == 0, 0, q)
    return q.astype(np.float64), (a / np.float32(XQ_MAX)).astype(np.float64)


# --------------------------------------------------------------------------- models
def make_weights(kind, I, H, proj=0, dirs=1, seed=0, scale=None):
    rng = np.random.default_rng(seed)
    G, P = GATES[kind], proj or H
    scale = 2.0 / np.sqrt(I + P) if scale is None else scale  # gates of order 1: neither linear nor saturated
    out = []
    for _ in range(dirs):
        w = {"w_ih": rng.standard_normal((G * H, I)) * scale, "w_hh": rng.standard_normal((G * H, P)) * scale,
             "b_ih": rng.standard_normal(G * H) * scale, "b_hh": rng.standard_normal(G * H) * scale}
        if proj:
            w["w_hr"] = rng.standard_normal((P, H)) * scale
        out.append({k: v.astype(np.float32) for k, v in w.items()})
    return out


def build(kind, I, H, weights, precision, *, proj=0, direction="forward", reset_after=True, fmt=2,
          return_sequences=True):
    """(header, tensors) for one recurrent layer; the matrices stored in `precision`."""
    tensors, refs = {}, {}
    for d, w in enumerate(weights):
        dn = ("forward", "backward")[d]
        for name, v in w.items():
            key = f"l0.{dn}.{name}"
            refs[f"{dn}.{name}"] = key
            if name.startswith("w_") and precision == "bf16":
                tensors[key] = to_bf16(v)
            elif name.startswith("w_") and precision == "int8":
                tensors[key], tensors[key + "_scale"] = to_int8(v)
                refs[f"{dn}.{name}_scale"] = key + "_scale"
            else:
                tensors[key] = v
    layer = dict(kind=kind, name="rnn0", input_size=I, units=H, proj_size=proj, activation="tanh",
                 recurrent_activation="sigmoid", reset_after=reset_after, direction=direction, merge_mode="concat",
                 return_sequences=return_sequences, mask_mode="zero", precision=precision, tensors=refs)
    return {"format": fmt, "layers": [layer]}, tensors


def core_model(*args, **kw):
    header, tensors = build(*args, **kw)
    return _core().Model(header, tensors)


# --------------------------------------------------------------------------- numpy reference
def matrices(w, precision):
    """Each weight as the float64 matrix the quantized product uses (and its int8 parts)."""
    out = {}
    for name, v in w.items():
        if not name.startswith("w_") or precision == "f32":
            out[name] = v.astype(np.float64)
        elif precision == "bf16":
            out[name] = from_bf16(to_bf16(v))
        else:
            out[name] = to_int8(v)
    return out


def mm(x, m, precision):
    """x (rows, K) times W^T in the given precision (float64 result)."""
    if precision != "int8":
        return np.asarray(x, np.float64) @ m.T
    q, s = m
    qx, sx = quant_rows(x)
    return (qx @ q.T.astype(np.float64)) * sx[:, None] * s.astype(np.float64)[None, :]


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def ref_direction(kind, H, w, x, lengths, backward, precision, reset_after):
    B, T, _ = x.shape
    P = w["w_hr"].shape[0] if "w_hr" in w else H
    m = matrices(w, precision)
    b_ih, b_hh = w["b_ih"].astype(np.float64), w["b_hh"].astype(np.float64)
    h, c = np.zeros((B, P)), np.zeros((B, H))
    ys = np.zeros((B, T, P))
    for t in (range(T - 1, -1, -1) if backward else range(T)):
        gi = mm(x[:, t], m["w_ih"], precision) + b_ih
        if kind == "lstm":
            g = gi + mm(h, m["w_hh"], precision) + b_hh
            i, f, gg, o = (g[:, k * H:(k + 1) * H] for k in range(4))
            c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
            h_new = sigmoid(o) * np.tanh(c_new)
            if "w_hr" in w:
                h_new = mm(h_new, m["w_hr"], precision)
        elif kind == "gru":
            if reset_after:
                gh = mm(h, m["w_hh"], precision) + b_hh
                r = sigmoid(gi[:, :H] + gh[:, :H])
                z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
                n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            else:
                w_rz = m["w_hh"] if precision != "int8" else m["w_hh"]
                if precision == "int8":
                    q, s = m["w_hh"]
                    rz_m, n_m = (q[:2 * H], s[:2 * H]), (q[2 * H:], s[2 * H:])
                else:
                    rz_m, n_m = w_rz[:2 * H], w_rz[2 * H:]
                gh = mm(h, rz_m, precision) + b_hh[:2 * H]
                r = sigmoid(gi[:, :H] + gh[:, :H])
                z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
                n = np.tanh(gi[:, 2 * H:] + mm(r * h, n_m, precision) + b_hh[2 * H:])
            h_new, c_new = (1 - z) * n + z * h, c
        else:
            h_new, c_new = np.tanh(gi + mm(h, m["w_hh"], precision) + b_hh), c
        v = (t < lengths)[:, None]
        h, c = np.where(v, h_new, h), np.where(v, c_new, c)
        ys[:, t] = np.where(v, h_new, 0.0)
    return ys


def reference(kind, H, weights, x, precision, lengths=None, reset_after=True):
    lengths = np.full(x.shape[0], x.shape[1]) if lengths is None else np.asarray(lengths)
    outs = [ref_direction(kind, H, w, x, lengths, d == 1, precision, reset_after) for d, w in enumerate(weights)]
    return np.concatenate(outs, axis=-1)


# --------------------------------------------------------------------------- cases
# (name, kind, I, H, proj, directions, reset_after, B, T, with lengths)
CASES = [
    ("lstm_b1", "lstm", 16, 32, 0, 1, True, 1, 12, False),
    ("lstm_odd", "lstm", 13, 37, 0, 1, True, 3, 9, False),
    ("lstm_proj", "lstm", 10, 24, 7, 1, True, 2, 8, False),
    ("lstm_bidir_len", "lstm", 9, 21, 0, 2, True, 4, 10, True),
    ("gru_after", "gru", 12, 33, 0, 1, True, 1, 11, False),
    ("gru_before", "gru", 12, 33, 0, 1, False, 5, 7, False),
    ("gru_bidir_len", "gru", 70, 19, 0, 2, True, 3, 9, True),
    ("rnn", "simple_rnn", 65, 67, 0, 1, True, 2, 10, False),
    ("rnn_b1_wide", "simple_rnn", 130, 129, 0, 1, True, 1, 6, False),
]
# Against the reference of the same quantized math (float64): bf16 differs only by float32
# rounding; int8 can differ when a float32 rounding moves an activation across a quantization
# step (one step of one element), hence the wider bound.  Against float32: the quantization error
# (int8 up to 0.10 here, on the chaotic SimpleRNN cases with 7-bit activations; 0.08 with 8 bits).
TIGHT = {"bf16": 2e-5, "int8": 1e-3}
LOOSE = {"bf16": 3e-2, "int8": 1.5e-1}


def run_case(case, precision, seed=0):
    name, kind, I, H, proj, nd, ra, B, T, with_len = case
    weights = make_weights(kind, I, H, proj, nd, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B) if with_len else None
    m = core_model(kind, I, H, weights, precision, proj=proj, direction="bidirectional" if nd == 2 else "forward",
                   reset_after=ra)
    got = m.predict(x, lengths=lengths)
    return got, weights, x, lengths


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_quantized_reference(case, precision, isa):
    got, weights, x, lengths = run_case(case, precision)
    kind, H, ra = case[1], case[3], case[6]
    exact = reference(kind, H, weights, x, precision, lengths, ra)
    f32 = reference(kind, H, weights, x, "f32", lengths, ra)
    err_q = np.abs(got - exact).max()
    err_f = np.abs(got - f32).max()
    assert err_q <= TIGHT[precision], f"{case[0]} {precision} on {isa}: {err_q} from the quantized reference"
    assert err_f <= LOOSE[precision], f"{case[0]} {precision} on {isa}: {err_f} from float32"
    # the reference models the quantization: the core is far closer to it than to float32
    assert err_q < err_f / 4, (err_q, err_f)


@pytest.mark.parametrize("precision", ["f32", "bf16", "int8"])
def test_every_isa_gives_the_same_numbers(precision):
    core = _core()
    prev = fastrnn.info()["isa"]
    outs = {}
    try:
        for isa in fastrnn.info()["available_isas"]:
            fastrnn.set_isa(isa)
            for case in (CASES[1], CASES[3], CASES[5], CASES[8]):
                outs.setdefault(case[0], {})[isa] = run_case(case, precision)[0]
    finally:
        fastrnn.set_isa(prev)
    assert core.quantized_paths()
    for name, per_isa in outs.items():
        base = per_isa["generic"]
        for isa, y in per_isa.items():
            np.testing.assert_allclose(y, base, atol={"int8": 3e-4, "bf16": 5e-6, "f32": 1e-5}[precision], rtol=0,
                                       err_msg=f"{name} {precision}: {isa} vs generic")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_batch1_long_sequence_bf16_error_small(precision):
    """LSTM 32 -> 128, T = 200: stays within the bound of the issue (bf16 <= 1e-2 on [-1, 1] outputs)."""
    weights = make_weights("lstm", 32, 128, scale=0.15, seed=3)
    x = np.random.default_rng(4).standard_normal((1, 200, 32)).astype(np.float32)
    y = core_model("lstm", 32, 128, weights, precision).predict(x)
    y32 = core_model("lstm", 32, 128, weights, "f32").predict(x)
    err = np.abs(y - y32).max()
    assert err <= (1e-2 if precision == "bf16" else 5e-2), err
    exact = reference("lstm", 128, weights, x, precision)
    if precision == "bf16":
        assert np.abs(y - exact).max() <= TIGHT[precision]
    else:
        # Over 200 steps a float rounding (float32 here, float64 in the reference) eventually moves one
        # activation across a quantization step, and from there the two quantized trajectories part by
        # about one step (~1e-2; here at step 39).  Until then they agree within TIGHT, and on average
        # the core stays far closer to the quantized reference than to float32.
        first = np.abs(y - exact).max(axis=(0, 2))
        assert first[:20].max() <= TIGHT[precision], first[:20]
        assert np.abs(y - exact).mean() < np.abs(y - y32).mean() / 3


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_stream_steps_match_predict(precision):
    weights = make_weights("gru", 11, 26, seed=5)
    m = core_model("gru", 11, 26, weights, precision)
    x = np.random.default_rng(6).standard_normal((3, 8, 11)).astype(np.float32)
    y = m.predict(x)
    s = m.stream(3)
    steps = np.stack([np.array(s.step(np.ascontiguousarray(x[:, t]))) for t in range(8)], axis=1)
    np.testing.assert_allclose(steps, y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_threads_give_the_same_numbers(precision):
    core = _core()
    weights = make_weights("lstm", 20, 40, dirs=2, seed=7)
    m = core_model("lstm", 20, 40, weights, precision, direction="bidirectional")
    x = np.random.default_rng(8).standard_normal((6, 15, 20)).astype(np.float32)
    prev = core.num_threads()
    try:
        core.set_num_threads(1)
        y1 = m.predict(x)
        core.set_num_threads(2)
        y2 = m.predict(x)
    finally:
        core.set_num_threads(prev)
    np.testing.assert_array_equal(y1, y2)


def test_nan_input_propagates():
    for precision in ("bf16", "int8"):
        weights = make_weights("lstm", 8, 16)
        x = np.zeros((2, 3, 8), np.float32)
        x[0, 1, 2] = np.nan
        y = core_model("lstm", 8, 16, weights, precision).predict(x)
        assert np.isnan(y[0, 1:]).all(), precision
        assert np.isfinite(y[1]).all() and np.isfinite(y[0, 0]).all(), precision


def _expected_bytes(kind, I, H, proj, precision, reset_after=True):
    """Weights the core holds for one direction (kernels.h: rows padded to 4 (bf16) / 16 (int8),
    columns to 64)."""
    G, P = GATES[kind], proj or H
    block = 16 if precision == "int8" else 4
    qpad = lambda k: -(-k // 64) * 64  # noqa: E731
    qrows = lambda n: -(-n // block) * block  # noqa: E731
    mats = [(G * H, I), (G * H, P)] + ([(P, H)] if proj else [])
    if kind == "gru" and not reset_after:
        mats = [(G * H, I), (2 * H, P), (H, P)]
    es = 2 if precision == "bf16" else 1
    n = sum(qrows(r) * qpad(k) * es for r, k in mats)
    if precision == "int8":
        n += sum(r * 4 * 2 for r, _ in mats)  # scales and row sums
    bias = G * H + (H if kind == "gru" and reset_after else 0)
    return n + bias * 4


@pytest.mark.parametrize("kind,I,H,proj,ra", [("lstm", 128, 512, 0, True), ("gru", 40, 70, 0, False),
                                              ("lstm", 30, 50, 20, True)])
def test_only_quantized_weights_are_kept(kind, I, H, proj, ra):
    weights = make_weights(kind, I, H, proj)
    f32 = core_model(kind, I, H, weights, "f32", proj=proj, reset_after=ra).weight_bytes
    for precision in ("bf16", "int8"):
        m = core_model(kind, I, H, weights, precision, proj=proj, reset_after=ra)
        assert m.weight_bytes == _expected_bytes(kind, I, H, proj, precision, ra)
        assert m.precisions == [precision]
        if I % 64 == 0 and H % 64 == 0:  # no padding: 2x / 4x fewer bytes than the f32 weights, whose
            # core also keeps a packed copy (row-major + packed: 8 bytes per weight)
            assert m.weight_bytes < f32 / (3.9 if precision == "bf16" else 7.5), (precision, m.weight_bytes, f32)


# --------------------------------------------------------------------------- malformed input
def _bad(mutate, precision="int8", kind="lstm", fmt=2):
    weights = make_weights(kind, 6, 8)
    header, tensors = build(kind, 6, 8, weights, precision, fmt=fmt)
    mutate(header, tensors)
    return header, tensors


BAD = [
    ("bf16_as_float", "bf16", lambda h, t: t.__setitem__("l0.forward.w_hh", t["l0.forward.w_hh"].astype(np.float32)),
     "l0.forward.w_hh"),
    ("int8_as_int16", "int8", lambda h, t: t.__setitem__("l0.forward.w_ih", t["l0.forward.w_ih"].astype(np.int16)),
     "l0.forward.w_ih"),
    ("int8_shape", "int8", lambda h, t: t.__setitem__("l0.forward.w_hh", t["l0.forward.w_hh"][:, :5].copy()),
     "l0.forward.w_hh"),
    ("bf16_shape", "bf16", lambda h, t: t.__setitem__("l0.forward.w_ih", t["l0.forward.w_ih"].T.copy()),
     "l0.forward.w_ih"),
    ("int8_minus_128", "int8", lambda h, t: t["l0.forward.w_hh"].__setitem__((0, 0), -128), "l0.forward.w_hh"),
    ("scale_missing", "int8", lambda h, t: h["layers"][0]["tensors"].pop("forward.w_hh_scale"), "forward.w_hh_scale"),
    ("scale_shape", "int8", lambda h, t: t.__setitem__("l0.forward.w_ih_scale", t["l0.forward.w_ih_scale"][:-1].copy()),
     "l0.forward.w_ih_scale"),
    ("scale_dtype", "int8",
     lambda h, t: t.__setitem__("l0.forward.w_ih_scale", t["l0.forward.w_ih_scale"].astype(np.float64)),
     "l0.forward.w_ih_scale"),
    ("scale_nan", "int8", lambda h, t: t["l0.forward.w_hh_scale"].__setitem__(3, np.nan), "l0.forward.w_hh_scale"),
    ("scale_inf", "int8", lambda h, t: t["l0.forward.w_hh_scale"].__setitem__(3, np.inf), "l0.forward.w_hh_scale"),
    ("scale_negative", "int8", lambda h, t: t["l0.forward.w_ih_scale"].__setitem__(0, -0.5), "l0.forward.w_ih_scale"),
    ("precision_unknown", "int8", lambda h, t: h["layers"][0].__setitem__("precision", "fp16"), "precision"),
    ("precision_missing_v2", "int8", lambda h, t: h["layers"][0].pop("precision"), "precision"),
    ("precision_wrong_type", "bf16", lambda h, t: h["layers"][0].__setitem__("precision", 16), "precision"),
]


@pytest.mark.parametrize("name,precision,mutate,names", BAD, ids=[b[0] for b in BAD])
def test_malformed_tensors_are_format_errors(name, precision, mutate, names):
    header, tensors = _bad(mutate, precision)
    with pytest.raises(ModelFormatError) as e:
        _core().Model(header, tensors)
    msg = str(e.value)
    assert "rnn0" in msg and names in msg, msg


def test_int8_input_too_wide_for_int32_sums_is_refused():
    weights = make_weights("simple_rnn", 65537, 2)
    header, tensors = build("simple_rnn", 65537, 2, weights, "int8")
    with pytest.raises(fastrnn.UnsupportedLayerError, match="rnn0.*w_ih' has 65537 columns"):
        _core().Model(header, tensors)
    header, tensors = build("simple_rnn", 65537, 2, weights, "bf16")
    x = np.random.default_rng(0).standard_normal((1, 2, 65537)).astype(np.float32)
    np.testing.assert_allclose(_core().Model(header, tensors).predict(x),
                               reference("simple_rnn", 2, weights, x, "bf16"), atol=2e-5)


def test_v1_header_without_precision_is_float32():
    weights = make_weights("lstm", 6, 8)
    header, tensors = build("lstm", 6, 8, weights, "f32", fmt=1)
    del header["layers"][0]["precision"]
    m = _core().Model(header, tensors)
    assert m.precisions == ["f32"]
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x), reference("lstm", 8, weights, x, "f32"), atol=1e-5)


@pytest.mark.parametrize("bits", ["7", "8"])
def test_int8_activation_bits_both_ranges_match_reference(bits):
    """FASTRNN_INT8_ACT_BITS=7|8 forces the activations' range (default: 7 bits on x86 without VNNI,
    else 8): every ISA this CPU runs then matches the quantized reference of that range (on AVX2 /
    AVX-512BW: x + 64 without a sign transfer for 7 bits, vpsignb / a mask for 8).  In a child
    process: the range is read once per process."""
    import os
    import subprocess
    import sys
    code = (
        "import sys, numpy as np, fastrnn\n"
        "sys.path.insert(0, %r)\n"
        "import test_precision_core as t\n"
        "core = fastrnn._load_core()\n"
        "assert t.XQ_MAX == core.int8_activation_max() == %d, t.XQ_MAX\n"
        "assert fastrnn.info()['int8_activation_bits'] == %s\n"
        "for isa in core.available_isas():\n"
        "    fastrnn.set_isa(isa)\n"
        "    for case in t.CASES:\n"
        "        got, w, x, lens = t.run_case(case, 'int8')\n"
        "        ref = t.reference(case[1], case[3], w, x, 'int8', lens, case[6])\n"
        "        assert np.abs(got - ref).max() <= t.TIGHT['int8'], (isa, case[0], np.abs(got - ref).max())\n"
        "    print(isa, core.quantized_paths())\n" % (os.path.dirname(__file__), 63 if bits == "7" else 127, bits))
    from conftest import CHILD_CWD, child_env

    r = subprocess.run([sys.executable, "-c", code], env=child_env(FASTRNN_INT8_ACT_BITS=bits), cwd=CHILD_CWD,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout
    if "avx2" in fastrnn.info()["available_isas"] and "vnni" not in r.stdout:
        assert ("7-bit activations" in r.stdout) == (bits == "7"), r.stdout


def test_int8_activation_bits_invalid_value_is_refused():
    import subprocess
    import sys
    from conftest import CHILD_CWD, child_env

    code = ("import fastrnn\n"
            "try:\n"
            "    fastrnn._load_core().int8_activation_max()\n"
            "except fastrnn.FastRNNError as e:\n"
            "    print('refused:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], env=child_env(FASTRNN_INT8_ACT_BITS="6"), cwd=CHILD_CWD,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "FASTRNN_INT8_ACT_BITS=6" in r.stdout, r.stdout


@pytest.mark.parametrize("setting", ["default", "1"])
def test_dpbf16_path_choice_matches_reference(setting):
    """FASTRNN_BF16_DPBF16=1 selects vdpbf16ps on CPUs with AVX512_BF16 (x split in three bf16 terms:
    the float32 products, so the same tight bound as every other path), at every row count; by
    default and elsewhere shift + FMA runs.  In a child process (the choice is made once per
    process), every case of CASES (batch 1 and batched, GRU, projections, lengths)."""
    import os
    import subprocess
    import sys
    code = (
        "import sys, numpy as np, fastrnn\n"
        "sys.path.insert(0, %r)\n"
        "import test_precision_core as t\n"
        "for case in t.CASES:\n"
        "    got, w, x, lens = t.run_case(case, 'bf16')\n"
        "    ref = t.reference(case[1], case[3], w, x, 'bf16', lens, case[6])\n"
        "    assert np.abs(got - ref).max() <= t.TIGHT['bf16'], (case[0], np.abs(got - ref).max())\n"
        "print(fastrnn._load_core().quantized_paths())\n" % os.path.dirname(__file__))
    from conftest import CHILD_CWD, child_env

    env = child_env(FASTRNN_BF16_DPBF16=setting)
    if setting == "default":
        del env["FASTRNN_BF16_DPBF16"]
    # cwd outside the checkout: '' on the child's sys.path would import the source tree
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=CHILD_CWD, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    best = fastrnn.info()["available_isas"][-1]
    if best == "avx512" and " avx512_bf16" in flags and setting == "1":
        assert "vdpbf16ps" in r.stdout, r.stdout
    else:
        assert "vdpbf16ps" not in r.stdout, r.stdout
