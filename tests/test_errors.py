"""Bad input gets a clear fastrnn error that is also the matching built-in; never a crash."""
import numpy as np
import pytest

import fastrnn
from fastrnn import spec as S
from fastrnn.errors import FastRNNError, ModelFormatError, ShapeError, UnsupportedLayerError
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


def test_set_num_threads_and_isa_validation():
    with pytest.raises(ValueError):
        fastrnn.set_num_threads(0)
    with pytest.raises(UnsupportedLayerError, match="not available"):
        fastrnn.set_isa("sse9")


def test_model_takes_only_a_spec():
    with pytest.raises(TypeError, match="ModelSpec"):
        fastrnn.Model("model.keras")
