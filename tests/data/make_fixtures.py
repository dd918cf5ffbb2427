"""Write the committed format fixtures ``tests/data/formats/v<N>/``: seeded small models, a fixed input,
and the expected output computed by the independent numpy reference (``tests/reference.py``), never
by fastrnn itself.

Fixtures are kept forever: a fastrnn that cannot read an old file with the same results is a
regression (``tests/test_native_io.py::test_format_fixture``).  Run this once per new format version;
it refuses to overwrite existing files (``--force`` to regenerate the *current* version only while
it is still unreleased)::

    PYTHONPATH=. python tests/data/make_fixtures.py              # the current version
    PYTHONPATH=. python tests/data/make_fixtures.py --version 1  # an older one, into formats/v1

Per fixture NAME: ``NAME.fastrnn`` (the model), ``NAME.input.npy`` (x or ids), optionally
``NAME.lengths.npy``, and ``NAME.expected.npy`` (float32).

Version 1: the float32 models.  Version 2 (bf16 / int8 recurrent weights): the same seeded models
with their recurrent weights quantized (``NAME_bf16``, ``NAME_int8``); the expected output is the
reference's on the *dequantized* weights, so it checks the stored weights exactly and the core's
reduced-precision arithmetic within ``ATOL[precision]`` (int8 also quantizes the activations).
Version 3 (recurrent options: clip, input_forget, gate_activations, peepholes, default initial
states): the models of ``OPTION_FIXTURES``, float32.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for reference.py

import reference  # noqa: E402
from fastrnn import spec as S  # noqa: E402
from fastrnn.io.native import FILE_FORMAT_VERSION, save_spec  # noqa: E402
from fastrnn.quantize import convert_spec  # noqa: E402


def _dirs(rng, kind, I, H, n, proj=0, zero_b_hh=False):
    G = S.GATES[kind]
    P = proj or H
    out = []
    for _ in range(n):
        out.append(S.DirectionWeights(
            rng.standard_normal((G * H, I)) * 0.5, rng.standard_normal((G * H, P)) * 0.5,
            rng.standard_normal(G * H) * 0.5, np.zeros(G * H) if zero_b_hh else rng.standard_normal(G * H) * 0.5,
            rng.standard_normal((P, H)) * 0.5 if proj else None))
    return out


def lstm_uni(rng):
    """LSTM(4 -> 6) forward, PyTorch packed-sequence semantics (lengths), then Dense(3) linear."""
    layers = [
        S.RecurrentSpec(kind="lstm", name="lstm", input_size=4, units=6, weights=_dirs(rng, "lstm", 4, 6, 1)),
        S.DenseSpec(name="head", weight=rng.standard_normal((3, 6)) * 0.5, bias=rng.standard_normal(3) * 0.5),
    ]
    spec = S.ModelSpec(layers=layers, input_features=4, source="torch", metadata={"fixture": "lstm_uni"})
    return spec, rng.standard_normal((3, 7, 4)), np.array([7, 5, 2])


def bigru_embedding_softmax(rng):
    """Embedding(20, 5, mask_zero) -> Bidirectional GRU(6, reset_after=False, hard_sigmoid, concat,
    last output, Keras "hold") -> Dense(4, softmax)."""
    layers = [
        S.EmbeddingSpec(name="emb", embeddings=rng.standard_normal((20, 5)), mask_zero=True),
        S.RecurrentSpec(kind="gru", name="bigru", input_size=5, units=6,
                        weights=_dirs(rng, "gru", 5, 6, 2, zero_b_hh=True), recurrent_activation="hard_sigmoid",
                        reset_after=False, direction="bidirectional", merge_mode="concat", return_sequences=False,
                        mask_mode="hold"),
        S.DenseSpec(name="probs", weight=rng.standard_normal((4, 12)) * 0.5, bias=rng.standard_normal(4) * 0.5,
                    activation="softmax"),
    ]
    spec = S.ModelSpec(layers=layers, source="keras", metadata={"fixture": "bigru_embedding_softmax"})
    ids = rng.integers(1, 20, size=(3, 8))
    ids[1, 5:] = 0  # padding
    ids[2, 2:] = 0
    return spec, ids, None


def simple_rnn_stack(rng):
    """SimpleRNN(3 -> 5, relu) -> SimpleRNN(5 -> 4, tanh, go_backwards, "hold") -> last step -> Dense(2, sigmoid)."""
    layers = [
        S.RecurrentSpec(kind="simple_rnn", name="rnn1", input_size=3, units=5, weights=_dirs(rng, "simple_rnn", 3, 5, 1),
                        activation="relu"),
        S.RecurrentSpec(kind="simple_rnn", name="rnn2", input_size=5, units=4, weights=_dirs(rng, "simple_rnn", 5, 4, 1),
                        direction="reverse", mask_mode="hold"),
        S.LastStepSpec(name="last"),
        S.DenseSpec(name="out", weight=rng.standard_normal((2, 4)) * 0.5, bias=rng.standard_normal(2) * 0.5,
                    activation="sigmoid"),
    ]
    spec = S.ModelSpec(layers=layers, input_features=3, source="keras", metadata={"fixture": "simple_rnn_stack"})
    return spec, rng.standard_normal((2, 6, 3)), np.array([6, 4])


def lstm_proj_masking(rng):
    """Masking(0) -> Bidirectional LSTM(3 -> 8, proj 4, ave) -> Activation(softsign)."""
    layers = [
        S.MaskingSpec(name="mask", mask_value=0.0),
        S.RecurrentSpec(kind="lstm", name="bilstm", input_size=3, units=8, proj_size=4,
                        weights=_dirs(rng, "lstm", 3, 8, 2, proj=4), direction="bidirectional", merge_mode="ave"),
        S.ActivationSpec(name="act", activation="softsign"),
    ]
    spec = S.ModelSpec(layers=layers, input_features=3, source="torch", metadata={"fixture": "lstm_proj_masking"})
    x = rng.standard_normal((2, 5, 3))
    x[0, 3:] = 0.0  # masked steps
    x[1, 1] = 0.0
    return spec, x, None


def lstm_options(rng):
    """LSTM(4 -> 6) with peepholes, clip 0.9, input_forget, ONNX functions HardSigmoid(0.3, 0.45) /
    ScaledTanh(1.2, 0.8) / Softsign, a default initial state, lengths -> Dense(3)."""
    w = _dirs(rng, "lstm", 4, 6, 1)[0]
    w.peephole, w.h0, w.c0 = rng.standard_normal((3, 6)) * 0.5, rng.standard_normal(6) * 0.5, rng.standard_normal(6) * 0.5
    layers = [
        S.RecurrentSpec(kind="lstm", name="lstm", input_size=4, units=6, weights=[w], clip=0.9, input_forget=True,
                        gate_activations=[[["HardSigmoid", 0.3, 0.45], ["ScaledTanh", 1.2, 0.8], ["Softsign", 0, 0]]]),
        S.DenseSpec(name="head", weight=rng.standard_normal((3, 6)) * 0.5, bias=rng.standard_normal(3) * 0.5),
    ]
    spec = S.ModelSpec(layers=layers, input_features=4, source="onnx", metadata={"fixture": "lstm_options"})
    return spec, rng.standard_normal((3, 7, 4)), np.array([7, 5, 2])


def gru_rnn_options(rng):
    """Bidirectional GRU(3 -> 5, reset_after, clip 0.8, per-direction functions, backward default h0)
    -> SimpleRNN(10 -> 4, reverse, "hold", Affine(0.7, 0.1)) -> last step."""
    gw = _dirs(rng, "gru", 3, 5, 2)
    gw[1].h0 = rng.standard_normal(5) * 0.5
    rw = _dirs(rng, "simple_rnn", 10, 4, 1)
    layers = [
        S.RecurrentSpec(kind="gru", name="bigru", input_size=3, units=5, weights=gw, direction="bidirectional",
                        clip=0.8, gate_activations=[[["Sigmoid", 0, 0], ["Tanh", 0, 0]],
                                                    [["HardSigmoid", 0.25, 0.5], ["Elu", 0.7, 0]]]),
        S.RecurrentSpec(kind="simple_rnn", name="rnn", input_size=10, units=4, weights=rw, direction="reverse",
                        mask_mode="hold", gate_activations=[[["Affine", 0.7, 0.1]]]),
        S.LastStepSpec(name="last"),
    ]
    spec = S.ModelSpec(layers=layers, input_features=3, source="onnx", metadata={"fixture": "gru_rnn_options"})
    return spec, rng.standard_normal((2, 6, 3)), np.array([6, 4])


FIXTURES = [lstm_uni, bigru_embedding_softmax, simple_rnn_stack, lstm_proj_masking]
OPTION_FIXTURES = [lstm_options, gru_rnn_options]  # version 3
# format version -> the precisions its fixtures hold (each applied to every model of FIXTURES; from
# version 3 to those of OPTION_FIXTURES)
VERSION_PRECISIONS = {1: ("f32",), 2: ("bf16", "int8"), 3: ("f32",)}
# test_format_fixture's tolerance against the reference on the stored (dequantized) weights, by
# the model's precision: float32 is assert_close's default; bf16 allows for kernels that round the
# activations to bf16 (vdpbf16ps; measured 6e-8 on AVX2, which widens the weights to float32); int8
# for the per-step activation quantization (measured 3.4e-3 on AVX2 and generic)
ATOL = {"bf16": 1e-2, "int8": 2e-2}


def fixture_names(version: int) -> list:
    """(name, make, precision) of the fixtures of a format version."""
    makes = OPTION_FIXTURES if version >= 3 else FIXTURES
    return [(make.__name__ + ("" if p == "f32" else f"_{p}"), make, p)
            for p in VERSION_PRECISIONS[version] for make in makes]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--force", action="store_true", help="overwrite existing files of the current version")
    p.add_argument("--version", type=int, default=FILE_FORMAT_VERSION, choices=sorted(VERSION_PRECISIONS))
    p.add_argument("--out", default=None, help="default: formats/v<VERSION>")
    args = p.parse_args(argv)
    args.out = args.out or os.path.join(HERE, "formats", f"v{args.version}")
    os.makedirs(args.out, exist_ok=True)
    for name, make, precision in fixture_names(args.version):
        target = os.path.join(args.out, f"{name}.fastrnn")
        if os.path.exists(target) and not args.force:
            print(f"{target} exists: kept (fixtures are never regenerated; --force to overwrite)")
            continue
        spec, x, lengths = make(np.random.default_rng(1000 + (FIXTURES + OPTION_FIXTURES).index(make)))
        spec = convert_spec(spec, precision)
        assert spec.format_version == args.version, (name, spec.format_version)
        x = x.astype(np.int64) if spec.takes_ids else x.astype(np.float32)
        y = reference.run_spec(convert_spec(spec, "f32"), x, lengths=lengths)  # the stored weights, dequantized
        save_spec(spec, target)
        np.save(os.path.join(args.out, f"{name}.input.npy"), x)
        if lengths is not None:
            np.save(os.path.join(args.out, f"{name}.lengths.npy"), lengths.astype(np.int64))
        np.save(os.path.join(args.out, f"{name}.expected.npy"), np.asarray(y, dtype=np.float32))
        print(f"wrote {target} ({os.path.getsize(target)} bytes), expected {np.shape(y)}")


if __name__ == "__main__":
    main()
