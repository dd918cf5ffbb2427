"""Weights from any container (issue 11 item 4): torch checkpoints nesting several dicts, plain
safetensors, .npz and in-memory state dicts, all through the architecture list; torch is the oracle."""
import json
import os
import zipfile

import numpy as np
import pytest

import fastrnn
from conftest import ATOL_F32, assert_close, require
from fastrnn.errors import ConversionError, FastRNNError, ModelFormatError
from fastrnn.io.detect import detect_format

ARCH = [{"type": "embedding", "key": "emb"}, {"type": "gru", "key": "enc", "bidirectional": True},
        {"type": "last_step"}, {"type": "linear", "key": "fc", "activation": "log_softmax"}]


@pytest.fixture(scope="module")
def torch():
    return require("torch")


@pytest.fixture(scope="module")
def model(torch):
    """An Embedding -> bidirectional GRU -> out[:, -1] -> Linear -> log_softmax classifier, with its
    reference output (torch's own forward)."""
    nn = torch.nn
    torch.manual_seed(11)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(13, 6)
            self.enc = nn.GRU(6, 5, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(10, 7)

        def forward(self, x):
            out, _ = self.enc(self.emb(x))
            return torch.log_softmax(self.fc(out[:, -1]), -1)

    m = M().eval()
    ids = torch.randint(0, 13, (3, 8))
    with torch.no_grad():
        want = m(ids).numpy()
    return m, ids.numpy(), want


def _np_sd(m):
    return {k: v.detach().numpy() for k, v in m.state_dict().items()}


def test_safetensors_file(torch, model, tmp_path):
    st = require("safetensors.torch")
    m, ids, want = model
    p = tmp_path / "w.safetensors"
    st.save_file(m.state_dict(), str(p), metadata={"epoch": "3"})
    assert detect_format(p) == "safetensors"
    got = fastrnn.load(p, architecture=ARCH)
    assert got.spec.metadata["container"] == "safetensors"
    assert_close(got.predict(ids), want, ATOL_F32)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_safetensors_dtypes(torch, dtype, tmp_path):
    """Every real safetensors dtype becomes float32; the oracle is torch run on the same rounded weights."""
    st = require("safetensors.torch")
    torch.manual_seed(2)
    g = torch.nn.LSTM(4, 3, batch_first=True).eval()
    dt = getattr(torch, dtype)
    with torch.no_grad():
        for p in g.parameters():
            p.copy_(p.to(dt).float())
    st.save_file({k: v.to(dt).contiguous() for k, v in g.state_dict().items()}, str(tmp_path / "l.safetensors"))
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        want = g(x)[0].numpy()
    assert_close(fastrnn.load(tmp_path / "l.safetensors").predict(x.numpy()), want, ATOL_F32)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_file(torch, model, tmp_path, compressed):
    m, ids, want = model
    sd = _np_sd(m)
    sd["fc.weight"] = np.asfortranarray(sd["fc.weight"])  # a Fortran-order member reads the same
    p = tmp_path / "w.npz"
    (np.savez_compressed if compressed else np.savez)(p, **sd)
    assert detect_format(p) == "npz"
    got = fastrnn.load(p, architecture=ARCH)
    assert got.spec.metadata["container"] == "npz"
    assert_close(got.predict(ids), want, ATOL_F32)


def test_npz_object_member_refused(tmp_path):
    """An object array needs pickle: refused without unpickling (numpy's allow_pickle=False)."""
    p = tmp_path / "o.npz"
    np.savez(p, **{"rnn.weight_ih_l0": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ModelFormatError, match=r"o\.npz.*rnn\.weight_ih_l0\.npy.*object"):
        fastrnn.load(p)


def test_npz_size_mismatch_refused(tmp_path):
    """A member whose .npy header declares more data than the member holds is refused before reading."""
    p = tmp_path / "bad.npz"
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 1000), }"
    hdr = hdr + " " * (-(10 + len(hdr) + 1) % 64) + "\n"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("w.npy", b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode() + b"\0" * 16)
    with pytest.raises(ModelFormatError, match=r"bad\.npz.*'w\.npy'.*\(1000, 1000\)"):
        fastrnn.load(p)


def test_checkpoint_nested_dicts_and_key(torch, model, tmp_path):
    """A checkpoint nesting several dicts of tensors: the error lists their dotted paths; key= names one
    (a top-level key or a dotted path); a single nested one is taken on its own."""
    m, ids, want = model
    import copy

    sd = m.state_dict()
    other = copy.deepcopy(m)  # an optimizer state of tensor dicts (optimizer.state.0...), from a copy
    opt = torch.optim.Adam(other.parameters())
    other(torch.from_numpy(ids)).sum().backward()
    opt.step()
    ckpt = {"epoch": 4, "train": {"model_state": sd, "ema": {k: v * 0 for k, v in sd.items()}},
            "optimizer": opt.state_dict()}
    p = tmp_path / "ckpt.pt"
    torch.save(ckpt, p)
    with pytest.raises(ConversionError, match=r"ckpt\.pt.*dicts of tensors \(train\.model_state, train\.ema, "
                                              r"optimizer\.state\.0.*key="):
        fastrnn.load(p, architecture=ARCH)
    assert_close(fastrnn.load(p, architecture=ARCH, key="train.model_state").predict(ids), want, ATOL_F32)
    with pytest.raises(ConversionError, match=r"ckpt\.pt.*key='train\.nope'.*no 'nope' under train"):
        fastrnn.load(p, architecture=ARCH, key="train.nope")
    with pytest.raises(ConversionError, match=r"key='epoch' holds a int, not a dict of tensors"):
        fastrnn.load(p, architecture=ARCH, key="epoch")
    torch.save({"epoch": 1, "stuff": [{"note": "x"}, {"model_state": sd}]}, tmp_path / "one.pt")
    assert_close(fastrnn.load(tmp_path / "one.pt", architecture=ARCH).predict(ids), want, ATOL_F32)
    # the same key in a safetensors file has nothing to walk: the tensors dict is the top level
    assert_close(fastrnn.from_state_dict({"ckpt": {"m": sd}}, architecture=ARCH, key="ckpt.m").predict(ids), want,
                 ATOL_F32)


def test_from_state_dict_numpy_and_torch(torch, model):
    m, ids, want = model
    assert_close(fastrnn.from_state_dict(_np_sd(m), architecture=ARCH).predict(ids), want, ATOL_F32)
    assert_close(fastrnn.from_state_dict(m.state_dict(), architecture=json.dumps(ARCH)).predict(ids), want, ATOL_F32)
    bf = {k: v.to(torch.bfloat16) for k, v in m.state_dict().items()}  # torch-only dtype: widened
    assert fastrnn.from_state_dict(bf, architecture=ARCH).spec.layers[0].embeddings.dtype == np.float32
    extra = dict(_np_sd(m), **{"head.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ConversionError, match="head.weight.*strict=False"):
        fastrnn.from_state_dict(extra, architecture=ARCH)
    assert_close(fastrnn.from_state_dict(extra, architecture=ARCH, strict=False).predict(ids), want, ATOL_F32)
    with pytest.raises(TypeError, match="from_state_dict takes a dict"):
        fastrnn.from_state_dict([1, 2])


def test_from_state_dict_without_torch_import(tmp_path):
    """A numpy state dict needs no torch: fastrnn.from_state_dict in a child process that never imports it."""
    import subprocess
    import sys

    from conftest import CHILD_CWD, child_env

    code = ("import sys, numpy as np, fastrnn\n"
            "r = np.random.default_rng(0)\n"
            "sd = {k: r.standard_normal(s).astype('f4') for k, s in [('weight_ih_l0', (12, 3)), "
            "('weight_hh_l0', (12, 4)), ('bias_ih_l0', (12,)), ('bias_hh_l0', (12,))]}\n"
            "m = fastrnn.from_state_dict(sd, architecture='gru')\n"
            "print(m.predict(np.zeros((1, 2, 3), 'f4')).shape, 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), cwd=CHILD_CWD,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(1,", "2,", "4)", "False"]


def test_plain_safetensors_errors_name_file(tmp_path):
    """A plain safetensors file with bad content: a FastRNNError naming the file (the native checks)."""
    st = require("safetensors.numpy")
    p = tmp_path / "c.safetensors"
    st.save_file({"a": np.zeros(3, np.complex64)}, str(p))
    with pytest.raises(ModelFormatError, match=r"c\.safetensors.*dtype 'C64' is not supported"):
        fastrnn.load(p)
    st.save_file({"x.weight_ih_l0": np.zeros((4, 2), np.float32)}, str(p))
    with pytest.raises(FastRNNError, match=r"c\.safetensors.*incomplete recurrent parameters"):
        fastrnn.load(p)


def test_fastrnn_file_still_native(tmp_path):
    """A .fastrnn file (safetensors layout with fastrnn metadata) is still detected as fastrnn, whatever its name."""
    m = fastrnn.from_state_dict({"weight_ih_l0": np.ones((12, 3), np.float32), "weight_hh_l0": np.ones((12, 4),
                                 np.float32)}, architecture="gru")
    m.save(tmp_path / "m.fastrnn")
    os.rename(tmp_path / "m.fastrnn", tmp_path / "m.bin")
    assert detect_format(tmp_path / "m.bin") == "fastrnn"


def test_lstm_cell_in_safetensors_streams(torch, tmp_path):
    """The issue's case: an LSTMCell's weights in a plain safetensors file, loaded with a cell entry;
    stream().step is one cell call (from a state set through stream.state), predict the cell stepped."""
    st = require("safetensors.torch")
    torch.manual_seed(12)
    cell = torch.nn.LSTMCell(3, 4)
    st.save_file({f"cell.{k}": v for k, v in cell.state_dict().items()}, str(tmp_path / "cell.safetensors"))
    m = fastrnn.load(tmp_path / "cell.safetensors", architecture=[{"type": "lstm_cell", "key": "cell"}])
    x = torch.randn(2, 5, 3)
    h0, c0 = torch.randn(2, 4), torch.randn(2, 4)
    s = m.stream(batch_size=2)
    s.state = (h0.numpy()[None], c0.numpy()[None])
    h, c, outs = h0, c0, []
    with torch.no_grad():
        for t in range(5):
            h, c = cell(x[:, t], (h, c))
            assert_close(s.step(x[:, t].numpy()), h.numpy(), ATOL_F32)
            outs.append(h.numpy())
    assert_close(s.state[0][1][0], c.numpy(), ATOL_F32)
    got = m.predict(x.numpy(), initial_state=(h0.numpy()[None], c0.numpy()[None]))
    assert_close(got, np.stack(outs, 1), ATOL_F32)
