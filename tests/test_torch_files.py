"""fastrnn.io.torch_file: torch.save files read WITHOUT torch, checked against torch itself.

A module fixture trains a few tutorial-style models briefly, saves them (zip and legacy formats,
odd dtypes, strided views, a simulated CUDA location, checkpoints, hostile files), then loads
everything in ONE subprocess in which importing torch is blocked; each test checks its entry.
"""
import copy
import json
import os
import pickle
import subprocess
import sys
import uuid
import zipfile

import numpy as np
import pytest

from conftest import ATOL_F32, assert_close, require, child_env, CHILD_CWD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import importlib.abc, json, sys, traceback
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
import numpy as np
import fastrnn
from fastrnn.io.torch_file import read_torch_file, spec_from_torch_file
cases = json.load(open(sys.argv[1]))
out = {}
arrays = {}
for c in cases:
    r = {}
    try:
        if c["kind"] == "read":
            obj = read_torch_file(c["file"])
            todo = [(c["id"] + "/" + str(k), v) for k, v in obj.items()]
            while todo:  # nested dicts / lists: keys joined with '.'
                k, v = todo.pop()
                if isinstance(v, dict):
                    todo += [(f"{k}.{kk}", vv) for kk, vv in v.items()]
                elif isinstance(v, (list, tuple)):
                    todo += [(f"{k}.{i}", vv) for i, vv in enumerate(v)]
                elif isinstance(v, np.ndarray):
                    arrays[k] = v
            r["ok"] = True
        else:
            spec = spec_from_torch_file(c["file"], **c.get("options", {}))
            r["layers"] = [[l.name, l.kind] for l in spec.layers]
            if c.get("x"):
                x = np.load(c["x"])
                arrays[c["id"]] = fastrnn.Model(spec).predict(x)
            r["ok"] = True
    except Exception as e:
        r = {"ok": False, "error": type(e).__name__, "message": str(e),
             "bases": [b.__name__ for b in type(e).__mro__]}
    out[c["id"]] = r
out["__torch_imported__"] = "torch" in sys.modules
np.savez(sys.argv[2], **arrays)
json.dump(out, open(sys.argv[3], "w"))
'''


def _train(torch, model, x, y, loss_fn, steps=5):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return model.eval(), opt


def _models(torch):
    nn = torch.nn

    class CharGRU(nn.Module):
        def __init__(self, vocab=30):
            super().__init__()
            self.embed = nn.Embedding(vocab, 16)
            self.gru = nn.GRU(16, 32, num_layers=2, batch_first=True)
            self.fc = nn.Linear(32, vocab)

        def forward(self, x):
            out, _ = self.gru(self.embed(x))
            return self.fc(out)

    class StockLSTM(nn.Module):  # 20 x 5 -> 1 via h_n[-1]
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(5, 32, batch_first=True)
            self.fc = nn.Linear(32, 1)

        def forward(self, x):
            _, (h, c) = self.lstm(x)
            return self.fc(h[-1])

    class StockLastStep(StockLSTM):
        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1, :])

    class BiClassifier(nn.Module):  # fc(h_n[-1]): the BACKWARD direction of the last layer
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 12)
            self.rnn = nn.LSTM(12, 16, num_layers=2, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            _, (h, _) = self.rnn(self.emb(x))
            return self.fc(h[-1])

    class BiCat(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(6, 10, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(20, 3)

        def forward(self, x):
            _, h = self.rnn(x)
            return torch.softmax(self.fc(torch.cat((h[-2], h[-1]), dim=1)), dim=-1)

    class BiLast(nn.Module):  # out[:, -1] of a bidirectional LSTM, then softmax
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 10, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(20, 3)

        def forward(self, x):
            out, _ = self.lstm(x)
            return torch.softmax(self.fc(out[:, -1, :]), dim=1)

    return dict(CharGRU=CharGRU, StockLSTM=StockLSTM, StockLastStep=StockLastStep, BiClassifier=BiClassifier,
                BiCat=BiCat, BiLast=BiLast)


ARCH = {
    "CharGRU": [{"type": "embedding", "key": "embed"}, {"type": "gru", "key": "gru", "num_layers": 2},
                {"type": "linear", "key": "fc"}],
    "StockLSTM": [{"type": "lstm", "key": "lstm"}, "h_n[-1]", {"type": "linear", "key": "fc"}],
    "StockLastStep": [{"type": "lstm", "key": "lstm"}, {"type": "last_step"}, {"type": "linear", "key": "fc"}],
    "BiClassifier": [{"type": "embedding", "key": "emb"},
                     {"type": "lstm", "key": "rnn", "num_layers": 2, "bidirectional": True},
                     {"type": "h_n_last"}, {"type": "linear", "key": "fc"}],
    "BiCat": [{"type": "gru", "key": "rnn", "bidirectional": True}, "h_n_cat",
              {"type": "linear", "key": "fc", "activation": "softmax"}],
    "BiLast": json.dumps([{"type": "lstm", "key": "lstm"}, "out[:, -1]", {"type": "linear", "key": "fc"},
                          {"type": "softmax"}]),
}


def _hostile_zip(path, payload: bytes, name="archive"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", payload)
        z.writestr(f"{name}/byteorder", "little")
        z.writestr(f"{name}/version", "3\n")


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    torch = require("torch")
    nn = torch.nn
    d = tmp_path_factory.mktemp("torch_files")
    rng = np.random.default_rng(0)
    cases, expected, extra = [], {}, {}

    def add(cid, file, x=None, **options):
        c = {"id": cid, "kind": "spec", "file": str(file), "options": options}
        if x is not None:
            np.save(d / f"{cid}.npy", x)
            c["x"] = str(d / f"{cid}.npy")
        cases.append(c)

    def run(model, x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    # ---- tutorial models, briefly trained, zip + legacy
    makers = _models(torch)
    inputs = {
        "CharGRU": lambda: rng.integers(0, 30, size=(4, 12)),
        "StockLSTM": lambda: rng.standard_normal((6, 20, 5)).astype(np.float32),
        "StockLastStep": lambda: rng.standard_normal((6, 20, 5)).astype(np.float32),
        "BiClassifier": lambda: rng.integers(0, 50, size=(5, 9)),
        "BiCat": lambda: rng.standard_normal((5, 7, 6)).astype(np.float32),
        "BiLast": lambda: rng.standard_normal((5, 7, 6)).astype(np.float32),
    }
    live = {}
    for i, (name, make) in enumerate(makers.items()):
        torch.manual_seed(i)
        m = make()
        x = inputs[name]()
        xt = torch.from_numpy(x)
        with torch.no_grad():
            y0 = m(xt)
        if name == "CharGRU":
            tgt = torch.from_numpy(rng.integers(0, 30, size=x.shape))
            _train(torch, m, xt, tgt, lambda o, t: nn.functional.cross_entropy(o.reshape(-1, 30), t.reshape(-1)))
        else:
            _train(torch, m, xt, torch.randn_like(y0), nn.functional.mse_loss)
        live[name] = (m, x)
        expected[name] = run(m, x)
        torch.save(m.state_dict(), d / f"{name}.pt")
        torch.save(m.state_dict(), d / f"{name}_legacy.pt", _use_new_zipfile_serialization=False)
        add(name, d / f"{name}.pt", x, architecture=ARCH[name])
        add(name + "_legacy", d / f"{name}_legacy.pt", x, architecture=ARCH[name])
        expected[name + "_legacy"] = expected[name]
    # a training checkpoint (wrapped state dict, optimizer state, DataParallel prefix)
    m, x = live["StockLSTM"]
    opt = torch.optim.Adam(m.parameters())
    ckpt = {"epoch": 3, "model_state_dict": {"module." + k: v for k, v in m.state_dict().items()},
            "optimizer_state_dict": opt.state_dict(), "loss": 0.5}
    torch.save(ckpt, d / "ckpt.pt")
    add("ckpt", d / "ckpt.pt", x, architecture=ARCH["StockLSTM"])
    expected["ckpt"] = expected["StockLSTM"]
    # a fuller checkpoint (Adam state after steps, a scheduler, nested config, the RNG state, shared tensors):
    # the pickle pre-scan (nesting depth, BUILD targets, memo) must pass what torch.save writes
    m2 = copy.deepcopy(m)
    opt2 = torch.optim.Adam(m2.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt2, step_size=2)
    for _ in range(2):
        opt2.zero_grad()
        m2(torch.from_numpy(x)).pow(2).mean().backward()
        opt2.step()
        sched.step()
    shared = torch.arange(6.0)
    deep = {"model": m2.state_dict(), "optimizer": opt2.state_dict(), "scheduler": sched.state_dict(),
            "config": {"a": {"b": {"c": [1, (2.5, "x"), {"d": None, "e": [shared, shared[2:]]}]}}},
            "rng": torch.get_rng_state(), "epoch": 7}
    for fmt in ("zip", "legacy"):
        torch.save(deep, d / f"ckpt_deep_{fmt}.pt", _use_new_zipfile_serialization=(fmt == "zip"))
        add(f"ckpt_deep_{fmt}", d / f"ckpt_deep_{fmt}.pt", x, architecture=ARCH["StockLSTM"])
        cases.append({"id": f"ckpt_deep_{fmt}_read", "kind": "read", "file": str(d / f"ckpt_deep_{fmt}.pt")})
        expected[f"ckpt_deep_{fmt}"] = run(m2, x)
    extra["ckpt_deep"] = {"model." + k: v.numpy() for k, v in m2.state_dict().items()}
    extra["ckpt_deep"].update({f"optimizer.state.0.{k}": v.numpy() for k, v in opt2.state_dict()["state"][0].items()})
    extra["ckpt_deep"].update({"config.a.b.c.2.e.1": shared[2:].numpy(), "rng": deep["rng"].numpy()})

    # ---- bare recurrent modules: architecture inferred
    torch.manual_seed(10)
    for name, mod, arch in [("bare_gru", nn.GRU(4, 7, num_layers=2, bidirectional=True, batch_first=True), None),
                            ("bare_lstm_proj", nn.LSTM(4, 8, proj_size=3, batch_first=True), None),
                            ("bare_rnn_relu", nn.RNN(4, 6, nonlinearity="relu", batch_first=True), "rnn_relu")]:
        x = rng.standard_normal((3, 8, 4)).astype(np.float32)
        with torch.no_grad():
            expected[name] = mod(torch.from_numpy(x))[0].numpy()
        torch.save(mod.state_dict(), d / f"{name}.pt", _use_new_zipfile_serialization=(name != "bare_gru"))
        add(name, d / f"{name}.pt", x, **({"architecture": arch} if arch else {}))
    add("bare_rnn_no_arch", d / "bare_rnn_relu.pt")  # nonlinearity unknown -> error

    # ---- dtypes: the expectation is the torch module with weights rounded through that dtype
    for dt in ("float64", "float16", "bfloat16"):
        torch.manual_seed(11)
        mod = nn.LSTM(5, 9, batch_first=True)
        sd = {k: v.to(getattr(torch, dt)) for k, v in mod.state_dict().items()}
        mod.load_state_dict({k: v.float() for k, v in sd.items()})
        x = rng.standard_normal((2, 6, 5)).astype(np.float32)
        with torch.no_grad():
            expected[f"dtype_{dt}"] = mod(torch.from_numpy(x))[0].numpy()
        for fmt in ("zip", "legacy"):
            torch.save(sd, d / f"{dt}_{fmt}.pt", _use_new_zipfile_serialization=(fmt == "zip"))
            add(f"dtype_{dt}_{fmt}", d / f"{dt}_{fmt}.pt", x)
            expected[f"dtype_{dt}_{fmt}"] = expected[f"dtype_{dt}"]

    # ---- strided views and shared storages
    torch.manual_seed(12)
    mod = nn.GRU(5, 6, batch_first=True)
    sd = {k: v.clone() for k, v in mod.state_dict().items()}
    sd["weight_ih_l0"] = sd["weight_ih_l0"].t().contiguous().t()  # non-contiguous, same values
    big = torch.randn(3, 18)
    sd["bias_ih_l0"] = big[1]                                      # a row of a shared storage (offset 18)
    sd["bias_hh_l0"] = big[2, ::1]
    mod.load_state_dict(sd)
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    with torch.no_grad():
        expected["views"] = mod(torch.from_numpy(x))[0].numpy()
    for fmt in ("zip", "legacy"):
        torch.save(sd, d / f"views_{fmt}.pt", _use_new_zipfile_serialization=(fmt == "zip"))
        add(f"views_{fmt}", d / f"views_{fmt}.pt", x)
        expected[f"views_{fmt}"] = expected["views"]
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    views = {"t": base.t(), "step": base[1:5, ::3], "col": base[:, 7], "whole": base, "empty": base[:0],
             "i64": torch.arange(5), "half_t": base.half().t(), "bf16": base.bfloat16()[2:4, 1::2],
             "expand": base[2, 3:6].expand(4, 3), "expand0": base[1, 2:3].expand(5, 2, 3)}  # zero strides
    for fmt in ("zip", "legacy"):
        torch.save(views, d / f"rawviews_{fmt}.pt", _use_new_zipfile_serialization=(fmt == "zip"))
        cases.append({"id": f"rawviews_{fmt}", "kind": "read", "file": str(d / f"rawviews_{fmt}.pt")})
    extra["rawviews"] = {k: v.float().numpy() if v.dtype in (torch.float16, torch.bfloat16) else v.numpy()
                         for k, v in views.items()}

    # ---- saved "on CUDA": the location tag written by torch.save is forced to 'cuda:0'
    import torch.serialization as ser
    m, x = live["StockLSTM"]
    orig = ser.location_tag
    ser.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(m.state_dict(), d / "cuda.pt")
        torch.save(m.state_dict(), d / "cuda_legacy.pt", _use_new_zipfile_serialization=False)
    finally:
        ser.location_tag = orig
    assert b"cuda:0" in zipfile.ZipFile(d / "cuda.pt").read("cuda/data.pkl")
    for cid in ("cuda", "cuda_legacy"):
        add(cid, d / f"{cid}.pt", x, architecture=ARCH["StockLSTM"])
        expected[cid] = expected["StockLSTM"]

    # ---- refused / hostile / broken files
    marker = f"/tmp/pwned_{uuid.uuid4().hex}"
    extra["marker"] = marker
    _hostile_zip(d / "evil_system.pt", pickle.dumps({"w": _Evil(os.system, f"touch {marker}")}, protocol=2))
    _hostile_zip(d / "evil_eval.pt", pickle.dumps(_Evil(eval, f"open({marker!r}, 'w')"), protocol=2))
    with open(d / "evil_legacy.pt", "wb") as f:  # legacy layout, payload in the object pickle
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        pickle.dump(_Evil(os.system, f"touch {marker}"), f, protocol=2)
    with open(d / "evil_magic.pt", "wb") as f:  # the payload is the very first pickle
        pickle.dump(_Evil(os.system, f"touch {marker}"), f, protocol=2)
    add("evil_system", d / "evil_system.pt")
    add("evil_eval", d / "evil_eval.pt")
    add("evil_legacy", d / "evil_legacy.pt")
    add("evil_magic", d / "evil_magic.pt")
    torch.save(live["StockLSTM"][0].lstm, d / "whole_module.pt")
    add("whole_module", d / "whole_module.pt")
    good = (d / "StockLSTM.pt").read_bytes()
    (d / "trunc_zip.pt").write_bytes(good[: len(good) // 2])
    add("trunc_zip", d / "trunc_zip.pt", architecture=ARCH["StockLSTM"])
    good_l = (d / "StockLSTM_legacy.pt").read_bytes()
    (d / "trunc_legacy.pt").write_bytes(good_l[:-100])
    add("trunc_legacy", d / "trunc_legacy.pt", architecture=ARCH["StockLSTM"])
    (d / "trunc_legacy_pickle.pt").write_bytes(good_l[:200])
    add("trunc_legacy_pickle", d / "trunc_legacy_pickle.pt", architecture=ARCH["StockLSTM"])
    with zipfile.ZipFile(d / "StockLSTM.pt") as zin, zipfile.ZipFile(d / "short_storage.pt", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data/0"):
                data = data[: len(data) // 2]
            zout.writestr(info, data)
    add("short_storage", d / "short_storage.pt", architecture=ARCH["StockLSTM"])
    torch.save({"w": torch.zeros(4)}, d / "small.pt")  # claims more elements than its storage holds
    with zipfile.ZipFile(d / "small.pt") as zin, zipfile.ZipFile(d / "view_oob.pt", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"K\x04\x85", b"K\x09\x85", 1)  # size (4,) -> (9,)
                assert b"K\x09\x85" in data
            zout.writestr(info, data)
    cases.append({"id": "view_oob", "kind": "read", "file": str(d / "view_oob.pt")})
    add("wrong_arch", d / "CharGRU.pt", architecture=ARCH["StockLSTM"])
    add("leftover", d / "CharGRU.pt", architecture=ARCH["CharGRU"][:2])
    add("bi_h_n_last_no_linear", d / "BiClassifier.pt", architecture=ARCH["BiClassifier"][:3], strict=False)
    add("ambiguous", d / "CharGRU.pt")

    man = d / "manifest.json"
    man.write_text(json.dumps(cases))
    env_ = child_env()
    r = subprocess.run([sys.executable, "-c", CHILD, str(man), str(d / "out.npz"), str(d / "out.json")],
                       cwd=CHILD_CWD, env=env_, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads((d / "out.json").read_text())
    arrays = dict(np.load(d / "out.npz"))
    return dict(torch=torch, results=results, arrays=arrays, expected=expected, extra=extra, live=live)


def _ok(env, cid):
    r = env["results"][cid]
    assert r["ok"], f"{cid}: {r.get('error')}: {r.get('message')}"
    return r


def test_torch_never_imported(env):
    assert env["results"]["__torch_imported__"] is False


MODEL_CASES = [n + s for n in ARCH for s in ("", "_legacy")] + ["ckpt", "cuda", "cuda_legacy"]


@pytest.mark.parametrize("cid", MODEL_CASES)
def test_models_match_torch(env, cid):
    _ok(env, cid)
    assert_close(env["arrays"][cid], env["expected"][cid], atol=ATOL_F32, what=cid)


def test_bidirectional_h_n_last_is_backward(env):
    layers = _ok(env, "BiClassifier")["layers"]
    assert [k for _, k in layers] == ["embedding", "lstm", "lstm", "dense"]


@pytest.mark.parametrize("cid", ["bare_gru", "bare_lstm_proj", "bare_rnn_relu"])
def test_inferred_recurrent(env, cid):
    _ok(env, cid)
    assert_close(env["arrays"][cid], env["expected"][cid], what=cid)


@pytest.mark.parametrize("dt", ["float64", "float16", "bfloat16"])
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_dtypes(env, dt, fmt):
    cid = f"dtype_{dt}_{fmt}"
    _ok(env, cid)
    assert_close(env["arrays"][cid], env["expected"][cid], what=cid)


def _spec_and_arrays_match(env, spec_id, read_id, arrays):
    """Case ``spec_id`` predicts like torch, and case ``read_id`` read every array of ``arrays`` exactly."""
    _ok(env, spec_id)
    assert_close(env["arrays"][spec_id], env["expected"][spec_id], what=spec_id)
    _ok(env, read_id)
    for k, v in arrays.items():
        got = env["arrays"][f"{read_id}/{k}"]
        assert got.shape == v.shape, k
        np.testing.assert_array_equal(got, v, err_msg=k)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_views(env, fmt):
    _spec_and_arrays_match(env, f"views_{fmt}", f"rawviews_{fmt}", env["extra"]["rawviews"])


def _err(env, cid, cls, *needles):
    r = env["results"][cid]
    assert not r["ok"], f"{cid} unexpectedly loaded"
    assert cls in r["bases"], f"{cid}: {r['error']}: {r['message']}"
    for n in needles:
        assert n in r["message"], f"{n!r} not in {r['message']!r}"
    return r["message"]


@pytest.mark.parametrize("cid,glob", [("evil_system", "posix.system"), ("evil_eval", "builtins.eval"),
                                      ("evil_legacy", "posix.system"), ("evil_magic", "posix.system")])
def test_hostile_pickles_refused(env, cid, glob):
    msg = _err(env, cid, "ModelFormatError", "refusing to load global", "never executes code")
    assert glob.split(".")[1] in msg
    assert not os.path.exists(env["extra"]["marker"])


def test_whole_module_refused(env):
    _err(env, "whole_module", "ModelFormatError", "torch.nn.modules.rnn", "state_dict()")


@pytest.mark.parametrize("cid,needle", [("trunc_zip", "zip"), ("trunc_legacy", "truncated"),
                                        ("trunc_legacy_pickle", "truncated"), ("short_storage", "storage"),
                                        ("view_oob", "shorter than the tensor claims")])
def test_broken_files(env, cid, needle):
    _err(env, cid, "ModelFormatError", needle)


def test_architecture_errors(env):
    _err(env, "bare_rnn_no_arch", "ConversionError", "rnn_relu", "nonlinearity")
    _err(env, "wrong_arch", "ConversionError", "lstm.weight_ih_l0")
    _err(env, "leftover", "ConversionError", "fc.weight", "strict=False")
    _err(env, "bi_h_n_last_no_linear", "UnsupportedLayerError", "backward")
    _err(env, "ambiguous", "ConversionError", "architecture=")


# --------------------------------------------------------------------------- live custom modules (torch.fx)
@pytest.mark.parametrize("name", list(ARCH))
def test_fx_custom_modules(env, name):
    from fastrnn.converters.torch import spec_from_torch
    import reference

    m, x = env["live"][name]
    spec = spec_from_torch(m)
    assert spec.metadata.get("torch_fx") is True
    assert_close(reference.run_spec(spec, x), env["expected"][name], what=name)
    import fastrnn
    assert_close(fastrnn.Model(spec).predict(x), env["expected"][name], what=name)


def test_fx_zero_initial_state_and_hidden_arg(env):
    torch = env["torch"]
    nn = torch.nn
    from fastrnn.converters.torch import spec_from_torch

    class Stock(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(5, 8, num_layers=2, batch_first=True)
            self.fc = nn.Linear(8, 1)

        def forward(self, x, hidden=None):
            h0 = torch.zeros(2, x.size(0), 8).to(x.device)
            c0 = torch.zeros(2, x.size(0), 8, device=x.device)
            out, _ = self.lstm(x, (h0, c0))
            return torch.sigmoid(self.fc(out[:, -1, :]))

    torch.manual_seed(3)
    m = Stock().eval()
    x = np.random.default_rng(3).standard_normal((4, 20, 5)).astype(np.float32)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    import fastrnn
    assert_close(fastrnn.Model(spec_from_torch(m)).predict(x), y)


def test_fx_unsupported_lists_every_node(env):
    torch = env["torch"]
    nn = torch.nn
    import fastrnn
    from fastrnn.converters.torch import spec_from_torch
    from fastrnn.errors import UnsupportedLayerError

    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(5, 8, batch_first=True)
            self.norm = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            out, h = self.gru(x)
            y = torch.cumsum(out, dim=1)
            return self.fc(self.norm(y)) * 2

    with pytest.raises(UnsupportedLayerError) as ei:
        spec_from_torch(Bad())
    msg = str(ei.value)
    for needle in ("cumsum", "LayerNorm", "mul", "Bad"):
        assert needle in msg, msg

    class Tuple(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(5, 8, batch_first=True)

        def forward(self, x):
            return self.gru(x)

    # a module returning the GRU's tuple (out, h_n) converts (several outputs): predict returns both
    tup = Tuple().eval()
    x = np.random.default_rng(3).standard_normal((2, 6, 5)).astype(np.float32)
    with torch.no_grad():
        out, h = tup(torch.from_numpy(x))
    got = fastrnn.Model(spec_from_torch(tup)).predict(x)
    assert isinstance(got, tuple) and len(got) == 2
    assert_close(got[0], out.numpy())
    assert_close(got[1], h.numpy())

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 5)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x)
            return x

    with pytest.raises(UnsupportedLayerError, match="torch.fx could not trace"):
        spec_from_torch(Branchy())


def test_modelspec_json_architecture(env, tmp_path):
    """A fastrnn ModelSpec header whose tensor references are state-dict keys (read in-process)."""
    torch = env["torch"]
    from fastrnn.io.torch_file import spec_from_torch_file
    import reference

    torch.manual_seed(4)
    m = torch.nn.LSTM(3, 4, batch_first=True).eval()
    torch.save(m.state_dict(), tmp_path / "j.pt")
    hdr = {"format": 1, "input_features": 3, "layers": [{
        "kind": "lstm", "name": "l", "input_size": 3, "units": 4,
        "tensors": {"forward.w_ih": "weight_ih_l0", "forward.w_hh": "weight_hh_l0",
                    "forward.b_ih": "bias_ih_l0", "forward.b_hh": "bias_hh_l0"}}]}
    spec = spec_from_torch_file(tmp_path / "j.pt", architecture=json.dumps(hdr))
    x = np.random.default_rng(4).standard_normal((2, 5, 3)).astype(np.float32)
    with torch.no_grad():
        y = m(torch.from_numpy(x))[0].numpy()
    assert_close(reference.run_spec(spec, x), y)


_LSTM_REFS = {"forward.w_ih": "weight_ih_l0", "forward.w_hh": "weight_hh_l0", "forward.b_ih": "bias_ih_l0",
              "forward.b_hh": "bias_hh_l0"}


@pytest.mark.parametrize("header,needle", [
    ({"format": 1, "layers": 5}, "'layers' must be a list"),
    ({"format": "1", "layers": []}, "'format' must be an int"),
    ({"format": 1, "layers": [{"kind": "lstm", "name": "l", "units": 4, "tensors": {"forward.w_ih": 3}}]},
     "'tensors' must map names to tensor names"),
    ({"format": 1, "layers": [{"kind": "lstm", "name": "l", "units": "4", "tensors": _LSTM_REFS}]}, "'units'"),
    ({"format": 1, "input_features": 3, "layers": [{"kind": "lstm", "name": "l", "input_size": 3, "units": 4,
                                                    "tensors": {**_LSTM_REFS, "forward.b_hh": "nope"}}]},
     "'nope'"),
])
def test_modelspec_json_architecture_is_checked_as_an_argument(env, tmp_path, header, needle):
    """Review 2026-12-05, section 5: a bad ModelSpec JSON given as ``architecture=`` is the argument's fault:
    a ConversionError saying "architecture: ...", from the file reader (naming the file too) and from
    ``from_state_dict`` -- never a TypeError, nor a ModelFormatError blaming the file."""
    torch = env["torch"]
    import fastrnn
    from fastrnn.errors import ConversionError
    from fastrnn.io.torch_file import spec_from_torch_file

    sd = torch.nn.LSTM(3, 4, batch_first=True).state_dict()
    torch.save(sd, tmp_path / "ok.pt")
    for call, names in [(lambda: spec_from_torch_file(tmp_path / "ok.pt", architecture=header), "ok.pt"),
                        (lambda: fastrnn.load(str(tmp_path / "ok.pt"), architecture=json.dumps(header)), "ok.pt"),
                        (lambda: fastrnn.from_state_dict({k: v.numpy() for k, v in sd.items()}, architecture=header),
                         "")]:
        with pytest.raises(ConversionError) as e:
            call()
        assert "architecture: " in str(e.value) and needle in str(e.value) and names in str(e.value), str(e.value)
        assert "cannot read" not in str(e.value)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_full_checkpoint_passes_the_pickle_scan(env, fmt):
    """Adam state, a scheduler, a nested config, the RNG state and shared views: loads, and matches torch."""
    _spec_and_arrays_match(env, f"ckpt_deep_{fmt}", f"ckpt_deep_{fmt}_read", env["extra"]["ckpt_deep"])


# --------------------------------------------------------------------------- hostile files (issue 12)
# Each file is read by a child (fastrnn.io.torch_file called directly, no exception boundary around it) under
# a 3 GiB address-space limit: a regression fails the test (crash, MemoryError, time) instead of the machine.
import hostile_torch as H  # noqa: E402

DIRECT = r'''
import json, resource, sys, time, types
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
import collections
import fastrnn.converters.torch as ct
import fastrnn.io.torch_file as tf
from fastrnn.errors import FastRNNError


def snapshot():
    """Everything of fastrnn's torch reader a file could change: functions, classes, module constants."""
    out = {"OrderedDict": repr(sorted(vars(collections.OrderedDict)))}
    for mod in (tf, ct):
        for k, v in vars(mod).items():
            if isinstance(v, types.FunctionType):
                out[mod.__name__ + "." + k] = repr((v.__defaults__, v.__kwdefaults__, sorted(v.__dict__), v.__code__))
            elif isinstance(v, type):
                out[mod.__name__ + "." + k] = repr(sorted(vars(v).items()))
            elif isinstance(v, (dict, list, tuple, set, frozenset, str, int)):
                out[mod.__name__ + "." + k] = repr(v)
    return out


before = snapshot()
t0 = time.perf_counter()
ru0 = resource.getrusage(resource.RUSAGE_SELF)
out = {"loaded": False}
try:
    fn = tf.read_torch_file if sys.argv[2] == "read" else tf.spec_from_torch_file
    fn(sys.argv[1], **json.loads(sys.argv[3]))
    out["loaded"] = True
except BaseException as e:
    out.update(type=type(e).__name__, fastrnn=isinstance(e, FastRNNError), msg=str(e)[:20000],
               bases=[b.__name__ for b in type(e).__mro__])
out["seconds"] = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
out["cpu_seconds"] = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
try:  # this process's own peak (ru_maxrss would include the parent's size at fork: pytest with torch loaded)
    out["maxrss_mib"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
except OSError:
    out["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
after = snapshot()
out["changed"] = sorted(k for k in before if before[k] != after.get(k))
print("DIRECT-RESULT " + json.dumps(out))
'''


def _direct(path, fn="spec", **options):
    r = subprocess.run([sys.executable, "-c", DIRECT, str(path), fn, json.dumps(options)], capture_output=True,
                       text=True, env=child_env(), cwd=CHILD_CWD, timeout=300)
    line = next((l for l in r.stdout.splitlines() if l.startswith("DIRECT-RESULT ")), None)
    assert r.returncode == 0 and line, f"the reader crashed (exit {r.returncode}) on {path}: {r.stderr[-3000:]}"
    return json.loads(line[len("DIRECT-RESULT "):])


def _refused(res, path, cls="ModelFormatError", *needles, seconds=5.0, rss_mib=256):
    """A FastRNNError of class ``cls`` naming the file (and the ``needles``), in bounded time and memory,
    with nothing of fastrnn changed."""
    assert res["changed"] == [], f"the file changed fastrnn's state: {res['changed']}"
    assert not res["loaded"], f"{path} loaded"
    assert res["fastrnn"] and cls in res["bases"], f"{res['type']}: {res['msg'][:2000]}"
    assert os.path.basename(str(path)) in res["msg"], res["msg"][:2000]
    for n in needles:
        assert n in res["msg"], f"{n!r} not in {res['msg'][:2000]!r}"
    # CPU time (the wall clock on a shared machine measures the load), and a wall bound for a blocked read
    assert res["cpu_seconds"] < seconds and res["seconds"] < 6 * seconds, f"{res['cpu_seconds']:.1f} CPU s, {res['seconds']:.1f} s"
    assert res["maxrss_mib"] < rss_mib, f"peak RSS {res['maxrss_mib']:.0f} MiB"
    return res["msg"]


# #12.1: nesting depth bounded BEFORE unpickling (a tuple's hash recurses in C: SIGSEGV at 10^6)
@pytest.mark.parametrize("kind,as_key,legacy,depth", [
    ("tuple", True, False, 65), ("tuple", True, False, 20_000), ("tuple", True, False, 1_000_000),
    ("tuple", True, True, 1_000_000), ("frozenset", True, False, 20_000), ("dict", False, False, 1000),
    ("memo_list", False, False, 1000), ("memo_list_topdown", False, False, 1000)])
def test_deep_nesting_refused_before_unpickling(tmp_path, kind, as_key, legacy, depth):
    path = H.make_deep(kind, as_key, legacy)(str(tmp_path), depth)
    needle = "already held by another one" if kind == "memo_list_topdown" else "nested more than 64 deep"
    _refused(_direct(path), path, "ModelFormatError", needle)


def test_depth_bound_is_exact_and_follows_the_memo():
    """64 levels pass the scan, 65 do not, also when built through the memo; an object filled after it
    is held (which would hide its depth from the scan) and an object holding itself are refused."""
    from fastrnn.errors import ModelFormatError
    from fastrnn.io.torch_file import _scan_pickle

    for kind in ("tuple", "frozenset", "list", "dict", "memo_list"):
        ok = H.PROTO2 + H.deep(kind, 64) + H.STOP
        assert _scan_pickle(ok, 0, "f.pt") == len(ok)
        with pytest.raises(ModelFormatError, match="f.pt: pickle nested more than 64 deep"):
            _scan_pickle(H.PROTO2 + H.deep(kind, 65) + H.STOP, 0, "f.pt")
    with pytest.raises(ModelFormatError, match="f.pt: .* APPEND/SETITEM opcode fills an object already held"):
        _scan_pickle(H.PROTO2 + H.deep("memo_list_topdown", 3) + H.STOP, 0, "f.pt")
    with pytest.raises(ModelFormatError, match="f.pt: .*an object that holds itself"):
        _scan_pickle(H.PROTO2 + H.EMPTY_LIST + H.put(0) + H.get(0) + H.APPEND + H.STOP, 0, "f.pt")


def test_scan_agrees_with_pickletools():
    """The pre-scan's own opcode reader ends every pickle (protocols 0-5, every opcode pickle writes for
    these objects) exactly where pickletools does, and accepts what pickle writes for shallow data."""
    import collections
    import pickletools
    import random
    from fastrnn.io.torch_file import _scan_pickle

    rng = random.Random(0)
    leaves = [1, -5, 2 ** 70, -2 ** 31 - 1, 300, 70000, 1.5, "s", "é" * 300, b"b", b"y" * 300, None, True,
              bytearray(b"q"), float("inf")]

    def obj(d=0):
        if d > 5 or rng.random() < 0.3:
            return rng.choice(leaves)
        k = rng.randrange(7)
        if k == 6:
            x = [1]
            return [x, x, (x,)]  # memo GETs
        items = [obj(d + 1) for _ in range(rng.randrange(4))]
        return [list, tuple, lambda v: dict(enumerate(v)), lambda v: {1, "a"}, lambda v: frozenset({2, "b"}),
                lambda v: collections.OrderedDict(enumerate(v))][k](items)

    for _ in range(400):
        o = obj()
        for proto in range(6):
            data = pickle.dumps(o, protocol=proto) + b"trailing"
            end = [pos for _, _, pos in pickletools.genops(data)][-1] + 1
            assert _scan_pickle(data, 0, "f.pt") == end, (proto, o)


# #12.2: every materialised tensor is charged against the file's budget before it is built
@pytest.mark.parametrize("make,size", [
    (H.make_stride0(1), 28), (H.make_stride0(1), 31), (H.make_stride0(8), 28), (H.make_stride0(8), 24),
    (H.make_stride0(1, legacy=True), 28), (H.make_stride0(1, stype="BFloat16Storage"), 28),
    (H.make_stride0(1, stype="ByteStorage"), 25), (H.make_shared_storage, 1000), (H.make_legacy_views, 1000)],
    ids=["stride0-2^28", "stride0-2^31", "stride0x8-2^28", "stride0x8-2^24", "stride0-legacy", "stride0-bf16",
         "stride0-u8-as-float32", "shared-storage", "legacy-views"])
def test_expansion_is_budgeted(tmp_path, make, size):
    """Reading the file (and converting its tensors to float32 weights) is charged before it is done."""
    path = make(str(tmp_path), size)
    _refused(_direct(path), path, "ModelFormatError", "may cost", rss_mib=200)


def test_ordered_dict_copies_are_counted(tmp_path):
    path = H.make_odict_copies(str(tmp_path), 100_000)
    _refused(_direct(path, "read"), path, "ModelFormatError", "copies more OrderedDict items", rss_mib=200)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_shared_references_are_read_once_and_match_torch(env, tmp_path, fmt):
    """torch.save shares what one object holds twice (a tuple, a list, a tensor, a whole state dict: memo
    GETs): such files load, each shared object read once and still shared, and match torch.load."""
    torch = env["torch"]
    from fastrnn.io.torch_file import read_torch_file, spec_from_torch_file

    torch.manual_seed(5)
    m = torch.nn.GRU(3, 4, batch_first=True).eval()
    sd = m.state_dict()
    pair, w = (1.5, "x", [2, 3]), torch.randn(2, 3)
    ck = {"model": sd, "ema": sd, "cfg": [pair, pair, {"p": pair}], "tied": {"a": w, "b": w, "c": w[1]}}
    path = tmp_path / f"shared_{fmt}.pt"
    torch.save(ck, path, _use_new_zipfile_serialization=(fmt == "zip"))
    back = torch.load(path, weights_only=True)
    assert back["model"] is back["ema"] and back["cfg"][0] is back["cfg"][1]  # the pickle does share them
    got = read_torch_file(path)
    assert got["model"] is got["ema"] and got["cfg"][0] is got["cfg"][1] is got["cfg"][2]["p"]
    assert got["cfg"][0] == (1.5, "x", [2, 3])
    for k in ("a", "b", "c"):
        np.testing.assert_array_equal(got["tied"][k], back["tied"][k].numpy())
    for k, v in back["model"].items():
        np.testing.assert_array_equal(got["model"][k], v.numpy())
    spec = spec_from_torch_file(path, architecture="gru", key="model")
    x = np.random.default_rng(5).standard_normal((2, 4, 3)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x))[0].numpy()
    import fastrnn

    assert_close(fastrnn.Model(spec).predict(x), want, atol=ATOL_F32, what="shared")


@pytest.mark.parametrize("leaf,legacy", [("none", False), ("none", True), ("tensor", False)])
def test_shared_reference_dag_costs_its_size(tmp_path, leaf, legacy):
    """``t_k = (t_{k-1}, t_{k-1})`` 45 deep (a 2^45-node tree in a ~300-byte file): each object is converted
    and searched once, so the file is refused at once (it holds no dict of tensors)."""
    path = H.make_dag(leaf, legacy)(str(tmp_path), 45)
    _refused(_direct(path), path, "ModelFormatError", "holds no dict of tensors", rss_mib=200)


def test_zero_strides_within_budget_expand_exactly(tmp_path):
    """A small stride-0 tensor (as torch.expand saves it) still reads, with torch's values."""
    from fastrnn.io.torch_file import read_torch_file

    for legacy in (False, True):
        got = read_torch_file(H.make_stride0(8, legacy=legacy)(str(tmp_path), 10))
        assert sorted(got) == [f"w{k}" for k in range(8)]
        for v in got.values():
            assert v.shape == (1024,) and v.dtype == np.float32 and (v == 1.5).all()


# #12.9: each of these once escaped as a bare ValueError / MemoryError / RecursionError
@pytest.mark.parametrize("make,size,cls,needle", [
    (H.make_size_wrap, 0, "ModelFormatError", "18,446,744,073,709,551,616 elements"),
    (H.make_size_wrap, 1, "ModelFormatError", "9,223,372,036,854,775,808 elements"),
    (H.make_size_wrap, 3, "ModelFormatError", "impossibly large"),
    (H.make_rank, 65, "ModelFormatError", "65 dimensions"),
    (H.make_deep("tuple", True, False), 20_000, "ModelFormatError", "nested more than 64"),
    (H.make_legacy_count, 33, "ModelFormatError", "claims 8,589,934,592 elements"),
    (H.make_frame, 62, "ModelFormatError", "a frame longer than the data"),
    (H.make_zip64("data/0"), 40, "ModelFormatError", "claims 1,099,511,627,776 bytes"),
    (H.make_zip64("data.pkl"), 40, "ModelFormatError", "claims 1,099,511,627,776 bytes"),
    (H.make_layer_index(), 5000, "ConversionError", "more than 9 digits")],
    ids=["wrap-0", "wrap-neg", "dim-2^63", "rank-65", "tuple-20k", "legacy-2^33", "frame-2^62", "zip64-storage",
         "zip64-pkl", "layer-5000-digits"])
def test_bad_content_raises_a_precise_fastrnn_error(tmp_path, make, size, cls, needle):
    path = make(str(tmp_path), size)
    msg = _refused(_direct(path), path, cls, needle)
    assert len(msg) < 2000, len(msg)


# #12.3: a huge layer index costs O(keys), never O(index)
@pytest.mark.parametrize("index", ["100000000", "1000000000000000000"])
def test_huge_layer_index_in_a_real_state_dict(tmp_path, index):
    torch = require("torch")
    sd = torch.nn.LSTM(3, 5, num_layers=2).state_dict()
    sd["weight_ih_l" + index] = sd["weight_ih_l1"].clone()
    torch.save(sd, tmp_path / "idx.pt")
    msg = _refused(_direct(tmp_path / "idx.pt"), tmp_path / "idx.pt", "ConversionError", seconds=3.0)
    assert len(msg) < 2000, len(msg)
    assert ("weight_ih_l2, weight_hh_l2" in msg) if len(index) <= 9 else ("more than 9 digits" in msg), msg


def test_missing_recurrent_parameters_named_exactly():
    """The capped message still names exactly what is missing, first ones first, with the total."""
    from fastrnn.converters.torch import rnn_desc_from_tensors
    from fastrnn.errors import ConversionError

    w = np.zeros((12, 3), np.float32)
    full = {f"{n}_l{k}{r}": w for k in range(3) for r in ("", "_reverse")
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    del full["bias_hh_l1_reverse"]
    with pytest.raises(ConversionError, match=r"for 3 layer\(s\), 1 missing: bias_hh_l1_reverse$"):
        rnn_desc_from_tensors(full, "m")
    many = {"weight_ih_l0": w, "weight_hh_l0": w, "weight_ih_l999999": w}
    with pytest.raises(ConversionError) as ei:
        rnn_desc_from_tensors(many, "m")
    msg = str(ei.value)
    assert "for 1,000,000 layer(s), 1,999,997 missing: weight_ih_l1, weight_hh_l1, weight_ih_l2" in msg, msg
    assert len(msg) < 1000 and msg.endswith("..."), msg


def test_build_spec_refuses_incomplete_pieces():
    """build_spec (public, shared by the file and ONNX paths) names a recurrent Piece without its RNNDesc
    (was an AttributeError on None) and an activation Piece without its activation."""
    from fastrnn.converters.torch import Piece, build_spec
    from fastrnn.errors import ConversionError, UnsupportedLayerError

    w = np.zeros((12, 3), np.float32)
    with pytest.raises(ConversionError, match=r"^architecture\[0\]: a recurrent piece needs its RNNDesc"):
        build_spec([Piece("rnn", "lstm", {"weight_ih_l0": w, "weight_hh_l0": w}, where="architecture[0]")])
    with pytest.raises(UnsupportedLayerError, match=r"^act: an activation piece needs its activation"):
        build_spec([Piece("linear", "fc", {"weight": w}), Piece("act", "act")])


# #12.13: no file may change fastrnn's state
@pytest.mark.parametrize("which", range(len(H.BUILD_TARGETS)),
                         ids=[".".join(t[:2]) + ("-memo" if len(t) > 2 else "") for t in H.BUILD_TARGETS])
def test_build_on_a_global_changes_nothing(tmp_path, which):
    path = H.make_build_global(str(tmp_path), which)
    _refused(_direct(path), path, "ModelFormatError", "BUILD")


def test_unpickler_hands_out_frozen_fresh_objects():
    """Behind the scan, the unpickler itself never hands a pickle one of the module's own functions or
    shared objects: each global is a fresh object whose attributes cannot be set, so a BUILD that got
    past the scan would still change nothing."""
    import io
    from fastrnn.errors import ModelFormatError
    from fastrnn.io import torch_file as tf

    u = tf._RestrictedUnpickler(io.BytesIO(b""), "f.pt")
    for mod, name in [t[:2] for t in H.BUILD_TARGETS]:
        a, b = u.find_class(mod, name), u.find_class(mod, name)
        assert a is not b
        for attr in ("__defaults__", "fn", "name", "dtype", "x"):
            with pytest.raises((ModelFormatError, AttributeError, TypeError)):
                setattr(a, attr, (7,))
    defaults = tf._rebuild_tensor_v2.__defaults__
    pkl = H.PROTO2 + H.build_on_global("torch._utils", "_rebuild_tensor_v2") + H.STOP
    with pytest.raises(ModelFormatError):
        tf._RestrictedUnpickler(io.BytesIO(pkl), "f.pt").load()  # no scan: the object refuses BUILD itself
    assert tf._rebuild_tensor_v2.__defaults__ == defaults


@pytest.mark.parametrize("legacy", [False, True])
def test_cell_architecture_entries(env, tmp_path, legacy):
    """lstm_cell / gru_cell / rnn_cell entries (keys without _l0) in the architecture list of a torch.save
    file: equal to torch's cells stepped by hand, inside an Embedding -> cell -> Linear decoder."""
    import fastrnn
    from fastrnn.io.torch_file import spec_from_torch_file

    torch = env["torch"]
    nn = torch.nn
    torch.manual_seed(9)
    ids = torch.randint(0, 11, (2, 6))
    for kind, cell in [("lstm_cell", nn.LSTMCell(4, 5)), ("gru_cell", nn.GRUCell(4, 5)),
                       ("rnn_cell", nn.RNNCell(4, 5, nonlinearity="relu"))]:
        emb, fc = nn.Embedding(11, 4), nn.Linear(5, 11)
        sd = {**{f"emb.{k}": v for k, v in emb.state_dict().items()},
              **{f"dec.{k}": v for k, v in cell.state_dict().items()},
              **{f"fc.{k}": v for k, v in fc.state_dict().items()}}
        p = tmp_path / f"{kind}.pt"
        torch.save(sd, p, _use_new_zipfile_serialization=not legacy)
        entry = {"type": kind, "key": "dec", "hidden_size": 5}
        if kind == "rnn_cell":
            entry["nonlinearity"] = "relu"
        arch = [{"type": "embedding", "key": "emb"}, entry, {"type": "linear", "key": "fc", "activation": "log_softmax"}]
        m = fastrnn.Model(spec_from_torch_file(p, architecture=arch))
        state, want = None, []
        with torch.no_grad():
            for t in range(ids.shape[1]):
                state = cell(emb(ids[:, t]), state)
                h = state[0] if kind == "lstm_cell" else state
                want.append(torch.log_softmax(fc(h), -1).numpy())
        assert_close(m.predict(ids.numpy()), np.stack(want, 1), ATOL_F32, what=kind)
    with pytest.raises(fastrnn.ConversionError, match=r"architecture\[0\].*rnn_cell.*needs \"nonlinearity\""):
        spec_from_torch_file(tmp_path / "rnn_cell.pt", architecture=[{"type": "rnn_cell", "key": "dec"}],
                             strict=False)
    with pytest.raises(fastrnn.ConversionError, match=r"hidden_size=6 but the tensors give 5"):
        spec_from_torch_file(tmp_path / "gru_cell.pt", architecture=[{"type": "gru_cell", "key": "dec",
                                                                       "hidden_size": 6}], strict=False)
    with pytest.raises(fastrnn.ConversionError, match=r"state dict has no 'emb\.weight_ih'"):
        spec_from_torch_file(tmp_path / "gru_cell.pt", architecture=[{"type": "gru_cell", "key": "emb"}],
                             strict=False)
    with pytest.raises(fastrnn.ConversionError, match=r"LSTM \(4 gate\(s\)\).*3 gate\(s\)"):
        spec_from_torch_file(tmp_path / "gru_cell.pt", architecture=[{"type": "lstm_cell", "key": "dec"}],
                             strict=False)


@pytest.mark.parametrize("extra", ["weight_ih_l00", "bias_hh_l01", "weight_hh_l0_reverse0"])
def test_layer_index_with_leading_zeros_is_refused(extra):
    """Review 2026-12-05, section 12: ``weight_ih_l00`` parsed as layer 0, so a state dict holding it next
    to ``weight_ih_l0`` loaded (strict) with one of the two silently ignored; it is not a PyTorch name."""
    import fastrnn
    from fastrnn.errors import ConversionError

    rng = np.random.default_rng(2)
    sd = {"weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32),
          "weight_hh_l0": rng.standard_normal((8, 2)).astype(np.float32)}
    assert [l.kind for l in fastrnn.from_state_dict(sd).spec.layers] == ["lstm"]
    with pytest.raises(ConversionError, match=extra):
        fastrnn.from_state_dict({**sd, extra: np.zeros((8, 2), np.float32)})
    with pytest.raises(ConversionError, match=extra):
        fastrnn.from_state_dict({**sd, extra: np.zeros((8, 2), np.float32)}, architecture=[{"type": "lstm", "key": ""}])
