"""bf16 and int8 recurrent weights (issue 13): the conversion (against torch's bfloat16 and per-channel
qint8), the spec and file format (v1 / v2, hostile v2 files), the API and CLI, ONNX DynamicQuantizeLSTM
kept int8, and the core's results on every ISA against an independent float64 numpy reference run on the
dequantized weights, against float32 and against torch."""
import json
import os
import warnings

import numpy as np
import pytest

import fastrnn
import reference
from conftest import require
from fastrnn import quantize as Q
from fastrnn import spec as S
from fastrnn.errors import ArgumentError, ArgumentTypeError, FastRNNError, ModelFormatError
from fastrnn.io.native import dumps_spec, load_spec, loads_spec, save_spec
from test_kernels import rnn_spec
from test_native_io import FIXTURE_DIR, MF, _lm, _read_raw, _write

REDUCED = ("bf16", "int8")


# --------------------------------------------------------------------------------- bfloat16
def _special_floats():
    f = np.float32
    vals = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.finfo(f).max, -np.finfo(f).max, np.finfo(f).tiny,
            np.finfo(f).tiny / 3, 1e-40, 3.0e38, 65504.0, 1 / 3, 2 / 3]
    # exact halfway cases between two bfloat16 values (ties to even, both parities) and their neighbours
    halfway = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x3F808001, 0x3F807FFF, 0x7F7F8000], np.uint32)
    return np.concatenate([np.array(vals, f), halfway.view(f)])


def test_bf16_rounds_to_nearest_even_as_torch():
    torch = require("torch")
    rng = np.random.default_rng(0)
    x = np.concatenate([_special_floats(), rng.standard_normal(10000).astype(np.float32) * 10.0 ** rng.integers(
        -30, 30, 10000)]).astype(np.float32)
    ours = Q.to_bf16(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    back = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(Q.from_bf16(ours), back)


def test_bf16_keeps_nan_and_inf():
    bits = np.array([0x7F800001, 0xFF800001, 0x7FC00000, 0x7FFFFFFF, 0x7F800000, 0xFF800000], np.uint32)
    back = Q.from_bf16(Q.to_bf16(bits.view(np.float32)))
    assert np.isnan(back[:4]).all()  # a NaN whose payload is in the low bits stays a NaN (not inf)
    assert back[4] == np.inf and back[5] == -np.inf


# --------------------------------------------------------------------------------- int8
def test_int8_is_symmetric_per_row_as_torch_per_channel():
    """q = round(w / scale) per output row with scale = max|row| / 127: torch's per-channel qint8
    with the same scales gives the same integers; -128 never appears; the row max maps to +-127."""
    torch = require("torch")
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((37, 19)) * rng.uniform(0.01, 3, (37, 1))).astype(np.float32)
    w[5] = 0.0  # an all-zero row: scale 0, q 0
    w[6, 3] = -np.abs(w[6]).max() * 2  # the row's max is negative
    q, scale = Q.to_int8(w, "w")
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (37,)
    expected_scale = (np.abs(w).max(axis=1).astype(np.float64) / 127).astype(np.float32)
    np.testing.assert_array_equal(scale, expected_scale)
    assert scale[5] == 0 and not q[5].any()
    assert q.min() >= -127 and q[6, 3] == -127
    assert (np.abs(q).max(axis=1)[np.arange(37) != 5] == 127).all()
    rows = np.arange(37) != 5
    tq = torch.quantize_per_channel(torch.from_numpy(w[rows]), torch.from_numpy(scale[rows].astype(np.float64)),
                                    torch.zeros(int(rows.sum()), dtype=torch.int64), 0, torch.qint8)
    np.testing.assert_array_equal(q[rows], tq.int_repr().numpy())
    err = np.abs(Q.from_int8(q, scale) - w)
    assert (err <= scale[:, None] / 2 * (1 + 1e-6) + 1e-12).all()


def test_int8_refuses_non_finite_weights():
    w = np.ones((3, 4), np.float32)
    w[1, 2] = np.nan
    with pytest.raises(ModelFormatError, match="'lstm.forward.w_hh'.*NaN or inf"):
        Q.to_int8(w, "lstm.forward.w_hh")


@pytest.mark.parametrize("value,want", [("f32", "f32"), ("float32", "f32"), ("BF16", "bf16"), ("bfloat16", "bf16"),
                                        (" int8 ", "int8")])
def test_precision_names_and_aliases(value, want):
    assert Q.precision_arg(value, "x") == want


@pytest.mark.parametrize("value,err", [("int4", ArgumentError), ("fp16", ArgumentError), ("", ArgumentError),
                                       (8, ArgumentTypeError), (None, ArgumentTypeError)])
def test_bad_precision_names_the_argument(value, err):
    with pytest.raises(err, match="my_arg"):
        Q.precision_arg(value, "my_arg")


# --------------------------------------------------------------------------------- the spec
def _dequantized(spec):
    """The float32 spec with the weights a reduced spec stands for (what the reference runs)."""
    return Q.convert_spec(spec, "f32")


@pytest.mark.parametrize("precision", REDUCED)
def test_convert_spec_stores_the_reduced_form(precision):
    spec = rnn_spec("lstm", 5, 12, proj=4, direction="bidirectional", seed=3)
    before = {k: v.copy() for k, v in spec.to_core()[1].items()}
    red = Q.convert_spec(spec, precision)
    assert red.precision == precision and spec.precision == "f32"
    assert all(np.array_equal(v, before[k]) for k, v in spec.to_core()[1].items())  # the source is unchanged
    header, tensors = red.to_core()
    assert header["format"] == 2 and all(l["precision"] == precision for l in header["layers"])
    for d in ("forward", "backward"):
        for t in ("w_ih", "w_hh", "w_hr"):
            key = f"layers.0.{d}.{t}"
            assert tensors[key].dtype == Q.stored_dtype(precision) and tensors[key].shape == before[key].shape
            assert (f"layers.0.{d}.{t}_scale" in tensors) == (precision == "int8")
            if precision == "bf16":
                np.testing.assert_array_equal(tensors[key], Q.to_bf16(before[key]))
        for t in ("b_ih", "b_hh"):
            assert np.array_equal(tensors[f"layers.0.{d}.{t}"], before[f"layers.0.{d}.{t}"])


def test_float32_header_is_format_1_without_precision():
    header, _ = rnn_spec("gru", 3, 4).to_core()
    assert header["format"] == 1 and "precision" not in header["layers"][0]


def test_reconverting_goes_through_the_stored_form():
    spec = rnn_spec("gru", 6, 10, seed=7)
    b = Q.convert_spec(spec, "bf16")
    i8 = Q.convert_spec(b, "int8")
    w_b = Q.from_bf16(b.layers[0].weights[0].w_hh)
    q, s = Q.to_int8(w_b)  # bf16 -> int8 quantizes the bf16 values
    np.testing.assert_array_equal(i8.layers[0].weights[0].w_hh, q)
    np.testing.assert_array_equal(i8.layers[0].weights[0].w_hh_scale, s)
    back = Q.convert_spec(i8, "bf16")  # int8 -> bf16: allowed, from q * scale
    np.testing.assert_array_equal(back.layers[0].weights[0].w_hh, Q.to_bf16(Q.from_int8(q, s)))
    f = Q.convert_spec(b, "f32")  # -> f32: the dequantized values, exactly
    np.testing.assert_array_equal(f.layers[0].weights[0].w_hh, w_b)
    assert Q.convert_spec(b, "bf16").layers[0] is b.layers[0]


def _bad_layer(precision, **change):
    spec = Q.convert_spec(rnn_spec("lstm", 3, 4, seed=1), precision)
    w = spec.layers[0].weights[0]
    for k, v in change.items():
        setattr(w, k, v(getattr(w, k)) if callable(v) else v)
    return spec


@pytest.mark.parametrize("precision,change,match", [
    ("f32", {"w_ih": lambda a: Q.to_bf16(a)}, r"'lstm_0.forward.w_ih' holds uint16"),
    ("f32", {"w_hh_scale": np.ones(16, np.float32)}, r"'lstm_0.forward.w_hh_scale' given"),
    ("bf16", {"w_hh": lambda a: Q.from_bf16(a)}, r"'lstm_0.forward.w_hh' must be uint16"),
    ("bf16", {"w_ih": lambda a: a[:, :2]}, r"'lstm_0.forward.w_ih': expected shape \(16, 3\)"),
    ("int8", {"w_ih": lambda a: a.astype(np.int16)}, r"'lstm_0.forward.w_ih' must be int8"),
    ("int8", {"w_hh": lambda a: np.full_like(a, -128)}, r"'lstm_0.forward.w_hh' holds -128"),
    ("int8", {"w_hh_scale": None}, r"'lstm_0.forward.w_hh_scale'.* is missing"),
    ("int8", {"w_ih_scale": lambda s: -s}, r"'lstm_0.forward.w_ih_scale' must hold finite scales >= 0"),
    ("int8", {"w_ih_scale": lambda s: np.where(s > 0, np.inf, s).astype(np.float32)}, "finite scales"),
    ("int8", {"w_ih_scale": lambda s: s[:3]}, r"'lstm_0.forward.w_ih_scale': expected shape \(16,\)"),
    ("int8", {"w_ih_scale": lambda s: s.astype(np.int32)}, "must be float32 row scales"),
])
def test_validation_names_the_layer_and_tensor(precision, change, match):
    with pytest.raises(ModelFormatError, match=match) as info:
        _bad_layer(precision, **change).validate()
    assert "layer 'lstm_0'" in str(info.value)


def test_bad_precision_in_a_spec():
    spec = rnn_spec("gru", 3, 4)
    spec.layers[0].precision = "fp8"
    with pytest.raises(ModelFormatError, match="precision 'fp8' not in"):
        spec.validate()


def test_from_core_checks_precision_against_the_format():
    header, tensors = Q.convert_spec(rnn_spec("gru", 3, 4), "bf16").to_core()
    h = json.loads(json.dumps(header))
    h["format"] = 1
    with pytest.raises(ModelFormatError, match="precision 'bf16' needs model format 2"):
        S.ModelSpec.from_core(h, tensors)
    h = json.loads(json.dumps(header))
    del h["layers"][0]["precision"]
    with pytest.raises(ModelFormatError, match="missing 'precision'"):
        S.ModelSpec.from_core(h, tensors)


# --------------------------------------------------------------------------------- files
@pytest.mark.parametrize("make", MF.FIXTURES, ids=[m.__name__ for m in MF.FIXTURES])
def test_float32_files_stay_version_1_byte_for_byte(make):
    """An all-float32 model is written as version 1, byte for byte what the v1 writer wrote (the
    committed v1 fixtures): every older fastrnn reads it."""
    spec, _, _ = make(np.random.default_rng(1000 + MF.FIXTURES.index(make)))
    with open(os.path.join(FIXTURE_DIR, "v1", f"{make.__name__}.fastrnn"), "rb") as f:
        assert dumps_spec(spec) == f.read()


@pytest.mark.parametrize("precision", REDUCED)
def test_reduced_file_round_trip(tmp_path, precision):
    spec = Q.convert_spec(rnn_spec("lstm", 5, 12, proj=4, direction="bidirectional", seed=3), precision)
    path = tmp_path / "m.fastrnn"
    save_spec(spec, path)
    raw, n, header = _read_raw(path)
    assert header["__metadata__"]["fastrnn_format_version"] == "2"
    dtypes = {k: v["dtype"] for k, v in header.items() if not k.startswith("__")}
    want = {"bf16": "BF16", "int8": "I8"}[precision]
    assert {k for k, d in dtypes.items() if d == want} == {f"layers.0.{d}.{t}" for d in ("forward", "backward")
                                                           for t in ("w_ih", "w_hh", "w_hr")}
    assert all(d == "F32" for k, d in dtypes.items() if d != want)
    for mmap in (False, True):
        back = load_spec(path, mmap=mmap)
        h0, t0 = spec.to_core()
        h1, t1 = back.to_core()
        assert h1 == json.loads(json.dumps(h0)) and t0.keys() == t1.keys()
        for k in t0:
            assert t1[k].dtype == t0[k].dtype and np.array_equal(t0[k], t1[k]), k
    assert loads_spec(dumps_spec(spec)).precision == precision


def test_safetensors_reads_the_reduced_tensors(tmp_path):
    torch = require("torch")
    require("safetensors")
    from safetensors import safe_open

    spec = Q.convert_spec(rnn_spec("gru", 3, 8, seed=2), "bf16")
    path = tmp_path / "m.fastrnn"
    save_spec(spec, path)
    _, tensors = spec.to_core()
    with safe_open(str(path), framework="pt") as f:
        w = f.get_tensor("layers.0.forward.w_hh")
        assert w.dtype == torch.bfloat16
        np.testing.assert_array_equal(w.view(torch.int16).numpy().view(np.uint16), tensors["layers.0.forward.w_hh"])
    spec8 = Q.convert_spec(spec, "int8")
    save_spec(spec8, path)
    with safe_open(str(path), framework="np") as f:
        np.testing.assert_array_equal(f.get_tensor("layers.0.forward.w_ih"), spec8.to_core()[1]["layers.0.forward.w_ih"])
        assert f.get_tensor("layers.0.forward.w_ih").dtype == np.int8


def test_an_older_reader_refuses_v2_with_the_upgrade_message(tmp_path, monkeypatch):
    """A v1-only fastrnn (FILE_FORMAT_VERSION 1) says "upgrade" for a v2 file and still reads f32 files."""
    from fastrnn.io import native

    red, f32 = tmp_path / "r.fastrnn", tmp_path / "f.fastrnn"
    save_spec(Q.convert_spec(rnn_spec("lstm", 3, 4), "int8"), red)
    save_spec(rnn_spec("lstm", 3, 4), f32)
    monkeypatch.setattr(native, "FILE_FORMAT_VERSION", 1)
    with pytest.raises(ModelFormatError, match=r"newer fastrnn \(format version 2.*upgrade fastrnn"):
        load_spec(red)
    assert load_spec(f32).precision == "f32"


def _hostile_v2_cases():
    def first(h, dtype):
        return next(k for k, v in h.items() if not k.startswith("__") and v["dtype"] == dtype)

    def spec_meta(h, fn):
        s = json.loads(h["__metadata__"]["spec"])
        fn(s)
        h["__metadata__"]["spec"] = json.dumps(s)

    def retype(h, name, dtype, size):  # keep the byte count: [n] elements of the new size
        b, e = h[name]["data_offsets"]
        h[name]["dtype"], h[name]["shape"] = dtype, [(e - b) // size]

    return {
        "i8-in-a-v1-file": (lambda h: h["__metadata__"].__setitem__("fastrnn_format_version", "1"),
                            "dtype 'I8' is not supported"),
        "bf16-size-mismatch": (lambda h: h[first(h, "I8")].__setitem__("dtype", "BF16"), r"needs \d+ bytes"),
        "f16-tensor": (lambda h: h[first(h, "I8")].__setitem__("dtype", "F16"), "dtype 'F16' is not supported"),
        "i8-bias": (lambda h: retype(h, "layers.0.forward.b_ih", "I8", 1), "'forward.b_ih' holds int8"),
        "bf16-scale": (lambda h: retype(h, "layers.0.forward.w_hh_scale", "BF16", 2), "'forward.w_hh_scale' holds"),
        "i8-dense": (lambda h: retype(h, "layers.1.weight", "I8", 1), "'weight' holds int8"),
        "f32-layer-i8-weights": (lambda h: spec_meta(h, lambda s: s["layers"][0].__setitem__("precision", "f32")),
                                 "'forward.w_ih' holds int8"),
        "bf16-layer-i8-weights": (lambda h: spec_meta(h, lambda s: s["layers"][0].__setitem__("precision", "bf16")),
                                  "must be uint16"),
        "unknown-precision": (lambda h: spec_meta(h, lambda s: s["layers"][0].__setitem__("precision", "int4")),
                              "precision 'int4' not in"),
        "precision-not-a-string": (lambda h: spec_meta(h, lambda s: s["layers"][0].__setitem__("precision", 8)),
                                   "'precision' must be str"),
        "missing-precision": (lambda h: spec_meta(h, lambda s: s["layers"][0].pop("precision")), "missing 'precision'"),
        "missing-scale": (lambda h: spec_meta(h, lambda s: s["layers"][0]["tensors"].pop("forward.w_hh_scale")),
                          "w_hh_scale'.* is missing|not used by any layer"),
    }


HOSTILE_V2 = _hostile_v2_cases()


@pytest.mark.parametrize("case", list(HOSTILE_V2))
def test_hostile_v2_file_is_refused(tmp_path, case):
    path = tmp_path / "bad.fastrnn"
    spec = S.ModelSpec(layers=[rnn_spec("lstm", 3, 4).layers[0],
                               S.DenseSpec(name="head", weight=np.ones((2, 4), np.float32))], input_features=3)
    save_spec(Q.convert_spec(spec, "int8"), path)
    raw, n, header = _read_raw(path)
    make, match = HOSTILE_V2[case]
    make(header)
    _write(path, header, raw[8 + n:])
    with pytest.raises(FastRNNError, match=match) as info:
        load_spec(path)
    assert str(path) in str(info.value) and isinstance(info.value, ModelFormatError)


def test_negative_int8_and_bad_scales_in_a_file(tmp_path):
    """Values only the data section holds: -128 and a negative scale are refused on load."""
    spec = Q.convert_spec(rnn_spec("lstm", 3, 4), "int8")
    path = tmp_path / "m.fastrnn"
    for key, value, match in (("layers.0.forward.w_ih", np.int8(-128), "holds -128"),
                              ("layers.0.forward.w_hh_scale", np.float32(-1), "finite scales >= 0"),
                              ("layers.0.forward.w_hh_scale", np.float32(np.nan), "finite scales >= 0")):
        save_spec(spec, path)
        raw, n, header = _read_raw(path)
        b, _ = header[key]["data_offsets"]
        data = bytearray(raw[8 + n:])
        data[b:b + value.nbytes] = value.tobytes()
        _write(path, header, bytes(data))
        with pytest.raises(ModelFormatError, match=match):
            load_spec(path)


@pytest.mark.parametrize("precision", REDUCED)
def test_budget_admits_real_reduced_models_without_the_allowance(tmp_path, monkeypatch, precision):
    """A reduced file is smaller, and the core keeps only the reduced copy (rows padded to 64
    elements): real models still fit in 4 x the file size with no fixed allowance."""
    from fastrnn.io import budget, native

    monkeypatch.setattr(native, "LoadBudget", lambda origin, size: budget.LoadBudget(origin, size, allowance=0))
    for name, spec in (("lm", _lm(5000, 64, 256)), ("regression", rnn_spec("gru", 300, 512)),
                       ("narrow", rnn_spec("lstm", 1, 64))):
        save_spec(Q.convert_spec(spec, precision), tmp_path / f"{name}.fastrnn")
        assert load_spec(tmp_path / f"{name}.fastrnn").precision == precision


def test_budget_charges_the_padded_rows_of_reduced_matrices(tmp_path):
    """An int8 LSTM with one input and proj_size 1: its [4H, 1] matrices take 64 bytes per row in the
    core (rows padded to 64 elements): a 38 MB file would cost 304 MB (and 38 MB read), more than 4 x 38 MB + 64 MB; refused before any
    allocation, naming the layer."""
    H = 1 << 19
    w = S.DirectionWeights(np.zeros((4 * H, 1), np.int8), np.zeros((4 * H, 1), np.int8), np.zeros(4 * H, np.float32),
                           np.zeros(4 * H, np.float32), np.zeros((1, H), np.int8), np.zeros(4 * H, np.float32),
                           np.zeros(4 * H, np.float32), np.zeros(1, np.float32))
    spec = S.ModelSpec(layers=[S.RecurrentSpec(kind="lstm", name="narrow", input_size=1, units=H, proj_size=1,
                                               weights=[w], precision="int8")], input_features=1)
    path = tmp_path / "narrow.fastrnn"
    save_spec(spec, path)
    assert os.path.getsize(path) < 40 << 20
    # w_ih, w_hh [4H, 1] int8: 4H rows of 64 bytes; w_hr [1, H] int8: 4 rows (the row count padded to 4);
    # b_ih, b_hh, w_ih_scale, w_hh_scale: float32 [4H] copies; w_hr_scale: one float32
    need = 2 * 4 * H * 64 + 4 * H + 4 * (4 * 4 * H) + 4
    with pytest.raises(ModelFormatError, match=rf"layer 0 \(lstm: the weights the core builds\) would need {need:,} bytes"):
        load_spec(path)


# --------------------------------------------------------------------------------- API and CLI
def test_load_weights_argument_errors(tmp_path):
    path = tmp_path / "m.fastrnn"
    save_spec(rnn_spec("lstm", 3, 4), path)
    with pytest.raises(ArgumentError, match="load: weights must be one of f32, bf16, int8"):
        fastrnn.load(path, weights="int4")
    with pytest.raises(ArgumentTypeError, match="load: weights must be a str"):
        fastrnn.load(path, weights=8)
    model = fastrnn.load(path)
    assert model.precision == "f32" and "weights=f32" in repr(model)
    with pytest.raises(ArgumentError, match="with_weights: precision"):
        model.with_weights("half")
    assert model.with_weights("float32") is model


def test_cli_convert_weights_and_info(tmp_path, capsys):
    from fastrnn.cli import main

    src = os.path.join(FIXTURE_DIR, "v1", "lstm_proj_masking.fastrnn")
    for w, size_ratio in (("bf16", 0.5), ("int8", 0.25)):
        dst = tmp_path / f"m_{w}.fastrnn"
        assert main(["convert", src, str(dst), "--weights", w]) == 0
        assert f"{w} recurrent weights" in capsys.readouterr().out
        spec = load_spec(dst)
        assert spec.precision == w
        _, src_t = load_spec(src).to_core()
        _, t = spec.to_core()
        key = "layers.1.forward.w_hh"
        assert t[key].nbytes == src_t[key].nbytes * size_ratio
        assert main(["info", str(dst), "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["weights"] == w and d["layers"][1]["precision"] == w
        assert d["parameters"] == sum(int(a.size) for k, a in src_t.items())  # scales are not parameters
        assert main(["info", str(dst)]) == 0
        out = capsys.readouterr().out
        assert f"lstm [{w}]" in out and f"weights:    {w}" in out
    assert main(["convert", src, str(tmp_path / "f.fastrnn")]) == 0  # default: as the source
    assert load_spec(tmp_path / "f.fastrnn").precision == "f32"
    with pytest.raises(SystemExit) as e:
        main(["convert", src, str(tmp_path / "x.fastrnn"), "--weights", "int4"])
    assert e.value.code == 2
    assert "--weights must be one of f32, bf16, int8" in capsys.readouterr().err


# --------------------------------------------------------------------------------- ONNX DynamicQuantizeLSTM
def test_onnx_dynamic_quantize_lstm_keeps_its_int8_weights(tmp_path):
    """weights="int8": the int8 rows of quantize_dynamic's DynamicQuantizeLSTM are kept as they are
    (per tensor and per channel: q * scale equals the dequantized float weights exactly); rows whose
    q - zero_point leaves [-127, 127] are requantized per row from their dequantized values."""
    torch = require("torch")
    require("onnxruntime")
    import onnx
    from onnx import numpy_helper

    from fastrnn.converters.onnx import spec_from_onnx_file
    from test_onnx import _export, _torch_modules, quantize_lstm_int8

    nn, Out, _, _ = _torch_modules()
    torch.manual_seed(0)
    src = tmp_path / "f.onnx"
    onnx.save(_export(Out(nn.LSTM(4, 8, bidirectional=True, batch_first=True)), np.zeros((2, 5, 4), np.float32), True),
              str(src))
    for per_channel in (False, True):
        q = tmp_path / f"q{int(per_channel)}.onnx"
        quantize_lstm_int8(src, q, per_channel)
        f32 = spec_from_onnx_file(str(q))
        i8 = spec_from_onnx_file(str(q), weights="int8")
        assert f32.precision == "f32" and i8.precision == "int8"
        for wf, wq in zip(f32.layers[0].weights, i8.layers[0].weights):
            for t in ("w_ih", "w_hh"):
                np.testing.assert_array_equal(Q.from_int8(getattr(wq, t), getattr(wq, f"{t}_scale")), getattr(wf, t))
    # a zero point of 20: rows reaching q - 20 < -127 are requantized, the others kept
    m = onnx.load(str(q))
    node = next(n for n in m.graph.node if n.op_type == "DynamicQuantizeLSTM")
    inits = {t.name: t for t in m.graph.initializer}
    zp = inits[node.input[11]]  # R_zero_point
    zp.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(zp).shape, 20, np.int8), zp.name))
    odd = tmp_path / "zp.onnx"
    onnx.save(m, str(odd))
    f32 = spec_from_onnx_file(str(odd))
    i8 = spec_from_onnx_file(str(odd), weights="int8")
    kept = requant = 0
    for wf, wq in zip(f32.layers[0].weights, i8.layers[0].weights):
        deq = Q.from_int8(wq.w_hh, wq.w_hh_scale)
        rq, rs = Q.to_int8(wf.w_hh)
        for r in range(wf.w_hh.shape[0]):
            if np.array_equal(deq[r], wf.w_hh[r]):
                kept += 1
            else:  # not representable as it was: per-row requantization of the dequantized row
                requant += 1
                np.testing.assert_array_equal(wq.w_hh[r], rq[r])
                assert wq.w_hh_scale[r] == rs[r]
    assert kept and requant, (kept, requant)
    # the whole model through load(): predict runs int8, within the int8 error of the float32 load
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    a, b = fastrnn.load(str(q), weights="int8"), fastrnn.load(str(q))
    assert a.precision == "int8" and b.precision == "f32"
    assert np.abs(a.predict(x) - b.predict(x)).max() < 0.05


# --------------------------------------------------------------------------------- the core, every ISA
CELLS = [("lstm", {}), ("lstm", {"proj": 5}), ("gru", {}), ("gru", {"reset_after": False}),
         ("simple_rnn", {"act": "relu"}), ("simple_rnn", {})]
# Bounds against the float64 reference on the *dequantized* weights (so they measure the core's
# arithmetic, not the weight rounding), relative to the output's range (max(1, max |reference|)).
# bf16: the weights are exact (measured 1e-6 on AVX2 and generic, which widen them to float32); a bf16
# dot product (vdpbf16ps) also rounds x and h to bf16 (relative 2^-9).  int8: x and h are quantized
# per row per step (half a step = 1/254 of the row's max |x|, twice that where the CPU reduces the
# range to 7 bits: x86 without VNNI), which the reference does not do: measured up to 0.069
# (SimpleRNN tanh), 0.047 (GRU), 0.033 (LSTM) with 8 bits and 0.146 (SimpleRNN tanh) with 7, random
# inputs of std 1 and weights of std 0.3, on AVX2 and generic.
CORE_ATOL = {"bf16": 1e-2, "int8": 0.1 if fastrnn._load_core().int8_activation_max() == 127 else 0.2}


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("kind,kw", CELLS, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items()) or 'default'}"
                                              for k, kw in CELLS])
@pytest.mark.parametrize("B,T,I,H", [(1, 7, 3, 13), (3, 5, 17, 33), (11, 4, 64, 40)], ids=["b1h13", "b3h33", "b11"])
def test_reduced_matches_reference_on_every_isa(precision, kind, kw, B, T, I, H, isa):
    spec = Q.convert_spec(rnn_spec(kind, I, H, direction="bidirectional", scale=0.3, seed=B, **kw), precision)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = rng.integers(0, T + 1, size=B)
    model = fastrnn.Model(spec)
    assert model.precision == precision and model._core.precisions == [precision]
    for lens in (None, lengths):
        y, st = model.predict(x, lengths=lens, return_state=True)
        ry, rst = reference.run_spec(_dequantized(spec), x, lengths=lens, return_state=True)
        err = float(np.abs(y - ry).max())
        assert err <= CORE_ATOL[precision] * max(1.0, float(np.abs(ry).max())), f"{isa} {precision} {kind} {kw}: {err}"
        for a, b in zip(st[0] if isinstance(st[0], tuple) else (st[0],), rst[0] if isinstance(rst[0], tuple)
                        else (rst[0],)):
            assert np.abs(a - b).max() <= CORE_ATOL[precision] * max(1.0, float(np.abs(b).max()))
        if lens is not None:  # masked steps still never change the state / outputs past the length
            for r, n in enumerate(lens):
                assert not y[r, n:, :H].any()


@pytest.mark.parametrize("precision", REDUCED)
def test_fast_path_and_fallbacks_agree(precision):
    """Every ISA of this CPU gives the same numbers within float rounding for one reduced model
    (the fast kernel and its fallbacks)."""
    spec = Q.convert_spec(rnn_spec("lstm", 32, 64, seed=9, scale=0.2), precision)
    x = np.random.default_rng(9).standard_normal((2, 20, 32)).astype(np.float32)
    prev = fastrnn.info()["isa"]
    outs = {}
    try:
        for isa in fastrnn.info()["available_isas"]:
            fastrnn.set_isa(isa)
            outs[isa] = fastrnn.Model(spec).predict(x)
    finally:
        fastrnn.set_isa(prev)
    ref = reference.run_spec(_dequantized(spec), x)
    for isa, y in outs.items():
        assert np.abs(y - ref).max() <= CORE_ATOL[precision], isa
    base = next(iter(outs.values()))
    for isa, y in outs.items():
        assert np.abs(y - base).max() <= CORE_ATOL[precision], isa


def test_bf16_within_target_of_float32_at_t100():
    """The issue's bound: bf16 max abs error <= 1e-2 on outputs in [-1, 1] at T = 100 (LSTM 128 -> 512,
    PyTorch's default init), against the float32 model."""
    torch = require("torch")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(128, 512, batch_first=True).eval()
    x = np.random.default_rng(0).standard_normal((1, 100, 128)).astype(np.float32)
    f32 = fastrnn.from_torch(lstm)
    with torch.no_grad():
        yt = lstm(torch.from_numpy(x))[0].numpy()
    for precision, bound in (("bf16", 1e-2), ("int8", 5e-2)):
        y = f32.with_weights(precision).predict(x)
        err = float(np.abs(y - f32.predict(x)).max())
        assert err <= bound, (precision, err)
        assert float(np.abs(y - yt).max()) <= bound + 1e-5


def test_int8_beats_torch_quantize_dynamic_against_float():
    """Per-row int8 weights are at least as close to float32 as torch's per-tensor qint8 LSTM
    (torch.ao.quantization.quantize_dynamic) on the same weights."""
    torch = require("torch")
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(64, 128, batch_first=True).eval()
    x = np.random.default_rng(1).standard_normal((4, 50, 64)).astype(np.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yt = lstm(torch.from_numpy(x))[0].numpy()
        tq = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lstm), {torch.nn.LSTM}, dtype=torch.qint8)
        ytq = tq(torch.from_numpy(x))[0].numpy()
    ours = fastrnn.load(lstm, weights="int8")
    assert ours.precision == "int8"
    err, terr = float(np.abs(ours.predict(x) - yt).max()), float(np.abs(ytq - yt).max())
    assert err <= max(terr * 1.5, 1e-2), (err, terr)


@pytest.mark.parametrize("precision", REDUCED)
def test_stream_and_generate_run_reduced(precision):
    """Streaming steps equal predict on a reduced model (same kernels), and a saved file loads back
    to the same outputs."""
    spec = Q.convert_spec(rnn_spec("gru", 6, 20, seed=4), precision)
    model = fastrnn.Model(spec)
    x = np.random.default_rng(4).standard_normal((2, 9, 6)).astype(np.float32)
    y = model.predict(x)
    s = model.stream(2)
    steps = np.stack([s.step(x[:, t]).copy() for t in range(9)], axis=1)
    assert np.abs(steps - y).max() <= 1e-5
    back = fastrnn.Model.from_bytes(model.to_bytes())
    assert back.precision == precision and np.array_equal(back.predict(x), y)
