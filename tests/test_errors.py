"""Bad input gets a clear fastrnn error that is also the matching built-in; never a crash."""
import os

import numpy as np
import pytest

import fastrnn
from fastrnn import spec as S
from fastrnn.errors import (ArgumentError, ArgumentTypeError, FastRNNError, ModelFormatError, ShapeError,
                            UnsupportedLayerError)
from test_kernels import rnn_spec


@pytest.fixture(scope="module")
def lstm():
    return fastrnn.Model(rnn_spec("lstm", 3, 4, direction="bidirectional"))


@pytest.fixture(scope="module")
def embed_gru():
    rng = np.random.default_rng(0)
    gru = rnn_spec("gru", 5, 6).layers[0]
    layers = [S.EmbeddingSpec(name="emb", embeddings=rng.standard_normal((10, 5)), mask_zero=True), gru]
    return fastrnn.Model(S.ModelSpec(layers=layers))


def test_error_classes_derive_from_builtins():
    assert issubclass(ShapeError, ValueError) and issubclass(ShapeError, FastRNNError)
    assert issubclass(ModelFormatError, ValueError)
    assert issubclass(UnsupportedLayerError, NotImplementedError)
    assert issubclass(fastrnn.CoreNotBuiltError, ImportError)


@pytest.mark.parametrize("x,match", [
    (np.zeros((2, 3), np.float32), r"expected shape \(batch, time, 3\), got \(2, 3\).*x\[None\]"),
    (np.zeros((2, 3, 4, 5), np.float32), r"expected shape \(batch, time, 3\), got \(2, 3, 4, 5\)"),
    (np.zeros((2, 3, 5), np.float32), r"expects 3 features, got shape \(2, 3, 5\)"),
    (np.array([[["a", "b", "c"]]]), r"numeric array, got dtype <U1"),
    ([[[1, 2, 3], [1, 2]]], r"rectangular"),
    (np.zeros((2, 0, 3), np.float32), r"time axis is empty"),
    (np.zeros((1, 2, 3), np.complex64), r"complex"),
])
def test_bad_float_input(lstm, x, match):
    with pytest.raises(ShapeError, match=match):
        lstm.predict(x)


def test_any_float_dtype_and_nested_lists_accepted(lstm):
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    ref = lstm.predict(x.astype(np.float32))
    for variant in (x, x.astype(np.float16).astype(np.float64), x.tolist(), np.asfortranarray(x), x[:, ::1, :]):
        got = lstm.predict(variant)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, lstm.predict(np.asarray(variant, np.float32)), atol=0)
    np.testing.assert_allclose(lstm.predict(x.tolist()), ref, atol=0)


@pytest.mark.parametrize("ids,match", [
    (np.array([[1, 2, 10]]), r"layer 'emb' \(embedding\): id 10 is outside \[0, 10\)"),
    (np.array([[1, -1]]), r"id -1 is outside"),
    (np.array([[1.5, 2.0]]), r"ids must be integers"),
    (np.array([["a"]]), r"expects integer ids"),
    (np.array([1, 2, 3]), r"ids must have shape \(batch, time\)"),
])
def test_bad_ids(embed_gru, ids, match):
    with pytest.raises(ShapeError, match=match):
        embed_gru.predict(ids)


def test_integral_float_ids_are_accepted(embed_gru):
    ids = np.array([[1, 2, 3, 0]])
    np.testing.assert_array_equal(embed_gru.predict(ids.astype(np.float64)), embed_gru.predict(ids))


@pytest.mark.parametrize("lengths,match", [
    ([3], r"lengths: expected shape \(2,\), got \(1,\)"),
    ([3, 5], r"values must be in \[0, 4\]"),
    ([-1, 2], r"values must be in \[0, 4\]"),
    ([1.5, 2], r"expected integers"),
    (["a", "b"], r"expected integers"),
])
def test_bad_lengths(lstm, lengths, match):
    with pytest.raises(ShapeError, match=match):
        lstm.predict(np.zeros((2, 4, 3), np.float32), lengths=lengths)


@pytest.mark.parametrize("state,match", [
    ((np.zeros((2, 2, 4)),), r"expected \(h, c\), got 1 array"),
    ((np.zeros((1, 2, 4)), np.zeros((2, 2, 4))), r"h must have shape \(2, 2, 4\)"),
    ((np.zeros((2, 2, 4)), np.zeros((2, 3, 4))), r"c must have shape \(2, 2, 4\)"),
    ([None, None, None], r"expected \(h, c\), got 3 array"),
    ((None, np.zeros((2, 2, 4))), r"h is None \(pass None for the whole entry"),
])
def test_bad_initial_state(lstm, state, match):
    with pytest.raises(ShapeError, match=match):
        lstm.predict(np.zeros((2, 4, 3), np.float32), initial_state=state)


def test_bad_spec_weight_shape():
    spec = rnn_spec("gru", 3, 4)
    spec.layers[0].weights[0].w_hh = np.zeros((12, 5))
    with pytest.raises(ModelFormatError, match=r"gru_0.forward.w_hh': expected shape \(12, 4\), got \(12, 5\)"):
        fastrnn.Model(spec)


def test_unsupported_activation():
    spec = rnn_spec("lstm", 3, 4, act="swishy")
    with pytest.raises(UnsupportedLayerError, match=r"layer 'lstm_0' \(lstm\): activation 'swishy' is not supported"):
        fastrnn.Model(spec)


def test_core_refuses_header_missing_keys():
    header, tensors = rnn_spec("lstm", 3, 4).to_core()
    del header["layers"][0]["units"]
    with pytest.raises(ModelFormatError, match=r"layer 'lstm_0' \(lstm\): missing 'units'"):
        fastrnn._load_core().Model(header, tensors)


def test_core_refuses_wrong_tensor_shape():
    header, tensors = rnn_spec("lstm", 3, 4).to_core()
    key = header["layers"][0]["tensors"]["forward.w_hh"]
    tensors[key] = np.zeros((16, 3), np.float32)
    with pytest.raises(ModelFormatError, match=r"has shape \(16,3,\) but \(16,4,\) is required"):
        fastrnn._load_core().Model(header, tensors)


def test_gru_reset_before_refuses_recurrent_bias():
    spec = rnn_spec("gru", 3, 4, reset_after=False)
    spec.layers[0].weights[0].b_hh = np.ones(12)
    with pytest.raises(ModelFormatError, match="reset_after=False takes a single"):
        fastrnn.Model(spec)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: fastrnn.set_num_threads(0), ArgumentError, r"set_num_threads: n must be >= 1, got 0"),
    (lambda: fastrnn.set_num_threads(-1), ArgumentError, r"must be >= 1, got -1"),
    (lambda: fastrnn.set_num_threads(2 ** 31), ArgumentError, r"2,147,483,648 threads is more than .* at most \d+"),
    (lambda: fastrnn.set_num_threads(2 ** 64), ArgumentError, r"threads is more than"),
    (lambda: fastrnn.set_num_threads(2.0), ArgumentTypeError, r"set_num_threads: n must be an int, got float"),
    (lambda: fastrnn.set_num_threads(True), ArgumentTypeError, r"got a bool"),
    (lambda: fastrnn.set_num_threads("2"), ArgumentTypeError, r"must be an int, got str"),
    (lambda: fastrnn.set_isa("neon"), ArgumentError, r"set_isa: ISA 'neon' is not available here \(available: generic"),
    (lambda: fastrnn.set_isa("sse9"), ArgumentError, r"not available"),
    (lambda: fastrnn.set_isa(3), ArgumentTypeError, r"set_isa: isa must be a str, got int"),
], ids=["threads-0", "threads-neg", "threads-2**31", "threads-2**64", "threads-float", "threads-bool", "threads-str",
        "isa-neon", "isa-sse9", "isa-int"])
def test_set_num_threads_and_isa_validation(call, exc, match):
    """Issue 12.12: a FastRNNError that is also the built-in (ValueError / TypeError), naming the
    argument; never a bare ValueError, a pybind11 TypeError or an UnsupportedLayerError."""
    n = fastrnn.get_num_threads()
    with pytest.raises(exc, match=match) as info:
        call()
    assert isinstance(info.value, FastRNNError) and fastrnn.get_num_threads() == n
    assert isinstance(info.value, ValueError if exc is ArgumentError else TypeError)


def test_core_refuses_zero_sized_weights():
    """Issue 12.5: the C++ model build refuses a zero-sized Embedding or Dense weight by itself
    (a last line of defence behind spec validation; under UBSan it memcpy'd to a null pointer)."""
    rng = np.random.default_rng(0)
    spec = S.ModelSpec(layers=[S.EmbeddingSpec(name="e", embeddings=rng.standard_normal((4, 3))),
                               S.DenseSpec(name="fc", weight=rng.standard_normal((5, 3)))])
    for key, shape, match in (("layers.0.embeddings", (1, 0), r"layer 'e' \(embedding\): table \(1, 0\) has a zero-sized"),
                              ("layers.1.weight", (5, 0), r"layer 'fc' \(dense\): weight \(5, 0\) has a zero-sized")):
        header, tensors = spec.to_core()
        tensors[key] = np.zeros(shape, np.float32)
        with pytest.raises(ModelFormatError, match=match):
            fastrnn._load_core().Model(header, tensors)


@pytest.mark.parametrize("field,value,match", [
    ("name", "\ud800", r"layer 0 \(gru\): name '\\ud800' is not valid Unicode"),
    ("name", 7, r"layer 0 \(gru\): name must be a string, got int"),
    ("source", "x\udfff", r"model source 'x\\udfff' is not valid Unicode"),
    ("metadata", {"vocab": ["a", "\ud83d"]}, r"metadata\['vocab'\]\[1\]: string '\\ud83d' is not valid Unicode"),
    ("metadata", [1, 2], r"model metadata must be a dict, got list"),
    ("metadata", {"layer_metadata": [{"stateful": True}]}, r"'layer_metadata' must map layer names to objects, got a list"),
    ("metadata", {"layer_metadata": {"gru_0": {"stateful": True, "batch_size": [2]}}},
     r"of layer 'gru_0': 'batch_size' must be an int in \[1, 65536\]"),
    ("metadata", {"layer_metadata": {"gru_0": {"stateful": True, "batch_size": 10 ** 9}}}, r"'batch_size' must be an int"),
    ("metadata", {"layer_metadata": {"gru_0": {"stateful": 1}}}, r"'stateful' must be true or false"),
])
def test_spec_validation_of_names_and_metadata(field, value, match):
    """Issues 12.11 / 12.14: names and metadata are checked when the model is built (from any
    source), with a message naming the layer; before, a lone surrogate reached the core
    (": 'name' has the wrong type") and bad layer_metadata broke stream() / stateful later."""
    spec = rnn_spec("gru", 3, 4)
    if field == "name":
        spec.layers[0].name = value
    else:
        setattr(spec, field, value)
    with pytest.raises(ModelFormatError, match=match):
        fastrnn.Model(spec)


def test_model_takes_only_a_spec():
    with pytest.raises(TypeError, match="ModelSpec"):
        fastrnn.Model("model.keras")


@pytest.mark.parametrize("name", ["gru", "lstm", "model", "w.pt"])
def test_file_errors_names_the_file_whatever_it_is_called(tmp_path, name):
    """Review 2026-12-05, section 9: a message that holds the file's basename as a word ("gru") is still
    prefixed with the path; one that holds the whole path is left as it is."""
    from fastrnn.errors import ConversionError, file_errors

    path = str(tmp_path / name)
    with pytest.raises(ConversionError) as e:
        with file_errors(path):
            raise ConversionError(f"architecture[0] ({name}, key ''): the architecture says GRU")
    assert str(e.value).startswith(f"{path}: architecture[0] ({name}, key '')"), str(e.value)
    with pytest.raises(ConversionError) as e:
        with file_errors(path):
            raise ConversionError(f"{path}: holds 2 dicts of tensors")
    assert str(e.value) == f"{path}: holds 2 dicts of tensors"


def test_a_real_file_named_like_a_layer_is_named(tmp_path):
    """The same end to end: an LSTM state dict in a file called ``gru``, loaded as a GRU."""
    from fastrnn.errors import ConversionError

    rng = np.random.default_rng(0)
    sd = {"weight_ih_l0": rng.standard_normal((8, 2)).astype(np.float32),
          "weight_hh_l0": rng.standard_normal((8, 2)).astype(np.float32)}
    path = str(tmp_path / "gru")
    np.savez(path + ".npz", **sd)
    os.rename(path + ".npz", path)
    with pytest.raises(ConversionError) as e:
        fastrnn.load(path, architecture=[{"type": "gru", "key": ""}])
    assert str(e.value).startswith(f"{path}: architecture[0] (gru"), str(e.value)


def test_from_state_dict_refuses_a_cycle_and_keeps_shared_arrays():
    """Review 2026-12-05, section 12: a dict that holds itself made from_state_dict recurse until a
    RecursionError escaped; it is a ConversionError naming where.  A shared (not cyclic) reference is
    fine: an LSTM state dict whose dict also appears under a second key loads."""
    from fastrnn.errors import ConversionError

    d = {}
    d["a"] = d
    with pytest.raises(ConversionError, match="holds itself"):
        fastrnn.from_state_dict(d)
    lst = []
    lst.append(lst)
    with pytest.raises(ConversionError, match="holds itself"):
        fastrnn.from_state_dict({"x": lst})
    deep = cur = {}
    for _ in range(100_000):
        cur["k"] = cur = {}
    with pytest.raises(ConversionError, match="nested too deeply"):
        fastrnn.from_state_dict(deep)
    rng = np.random.default_rng(1)
    sd = {"weight_ih_l0": rng.standard_normal((8, 2)).astype(np.float32),
          "weight_hh_l0": rng.standard_normal((8, 2)).astype(np.float32)}
    m = fastrnn.from_state_dict({"model": sd, "ema": sd}, key="model")
    assert [l.kind for l in m.spec.layers] == ["lstm"]


def test_file_api_arguments_raise_fastrnn_errors(tmp_path):
    """Review 2026-12-05, section 12: load(3), save_spec(3, p), save_spec(spec, 3), loads_spec("abc") raised a
    plain TypeError and load_spec('/missing') a plain FileNotFoundError; each is a FastRNNError that is
    also the built-in a caller may catch."""
    from fastrnn.errors import ModelFileNotFoundError
    from fastrnn.io.native import load_spec, loads_spec, save_spec

    spec = rnn_spec("lstm", 3, 4)
    for call in (lambda: fastrnn.load(3), lambda: save_spec(3, str(tmp_path / "a.fastrnn")),
                 lambda: save_spec(spec, 3), lambda: loads_spec("abc"), lambda: load_spec(3)):
        with pytest.raises(ArgumentTypeError):
            call()
    with pytest.raises(ModelFileNotFoundError) as e:
        load_spec(str(tmp_path / "missing.fastrnn"))
    assert isinstance(e.value, FileNotFoundError) and "missing.fastrnn" in str(e.value)
    save_spec(spec, tmp_path / "ok.fastrnn")
    assert [l.kind for l in load_spec(tmp_path / "ok.fastrnn").layers] == ["lstm"]


def test_an_option_a_reader_does_not_take_is_one_error_class(tmp_path):
    """Review 2026-12-05, section 7: an option the format does not take was an UnsupportedLayerError for
    .fastrnn / ONNX files and objects, an ArgumentTypeError for torch / npz / safetensors files; it is one
    class for all (both of those, so that either except clause keeps working), naming the file."""
    from fastrnn.errors import UnsupportedOptionError
    from fastrnn.io.native import save_spec

    rng = np.random.default_rng(3)
    sd = {"weight_ih_l0": rng.standard_normal((8, 2)).astype(np.float32),
          "weight_hh_l0": rng.standard_normal((8, 2)).astype(np.float32)}
    np.savez(tmp_path / "w.npz", **sd)
    import pickle
    import zipfile

    with zipfile.ZipFile(tmp_path / "w.pt", "w") as z:  # a torch.save-like archive of an empty dict
        z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
    save_spec(rnn_spec("lstm", 3, 4), tmp_path / "m.fastrnn")
    (tmp_path / "g.onnx").write_bytes(b"\x08\x07\x12\x00")
    model = fastrnn.Model(rnn_spec("lstm", 3, 4))
    for target, opts in [(tmp_path / "m.fastrnn", {"architecture": "lstm"}), (tmp_path / "g.onnx", {"strict": 1}),
                         (tmp_path / "w.npz", {"output": "y"}), (tmp_path / "w.pt", {"foo": 1}),
                         (model, {"strict": 1})]:
        with pytest.raises(UnsupportedOptionError) as e:
            fastrnn.load(str(target) if not isinstance(target, fastrnn.Model) else target, **opts)
        assert isinstance(e.value, UnsupportedLayerError) and isinstance(e.value, TypeError)
        where = "load()" if isinstance(target, fastrnn.Model) else str(target)
        assert str(e.value).startswith(f"{where}: option(s) {next(iter(opts))} do not apply to "), str(e.value)
