"""Generate the seed corpora in fuzz/corpus/<target>/ (small valid inputs; seeded, reproducible).

    python fuzz/make_corpus.py          # needs torch, keras (TensorFlow backend) and h5py

Writes (and first empties) fuzz/corpus/{native,torch_file,keras_zip,predict,h5}/ and fuzz/data/keras/
(the model.weights.h5 payloads the keras_zip harness pairs with a fuzzed config.json).
``python fuzz/make_corpus.py h5`` writes fuzz/corpus/h5/ only (needs keras and h5py).  The fuzz
runs themselves need neither torch nor keras: only this generator does.  Keep the total < 300 KB.

``python fuzz/make_corpus.py hostile`` (also part of the full run; needs h5py only) replaces the
``hostile-*`` seeds: for each hostile-file family of tests/hostile_*.py (test_hostile_files.py) and
each target that reads its kind of file, its largest size whose file fits the target's input length
and HOSTILE_SEED_BYTES (with the harness's mode byte); fuzz/corpus/HOSTILE_SEEDS.txt lists every
family and its seeds.  Run it when a family is added (about 30 s):
tests/test_fuzz_regressions.py::test_every_hostile_family_seeds_the_fuzzers checks.
"""
from __future__ import annotations

import glob
import importlib
import io
import json
import os
import pickle
import shutil
import sys
import tempfile
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import fastrnn  # noqa: E402
from _harness import KERAS_WEIGHTS_DIR, NATIVE_MODELS, TORCH_ARCHS, native_header_to_seed  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")
SEED = 1234


def _fresh(d):
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def _write(d, name, data: bytes):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------------------------------ torch
def torch_models(torch):
    nn = torch.nn
    torch.manual_seed(SEED)

    class Clf(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 3)
            self.rnn = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            out, _ = self.rnn(self.emb(x))
            return torch.softmax(self.fc(out[:, -1]), dim=-1)

    return {
        "lstm": nn.LSTM(3, 4, batch_first=True),
        "gru_bi2": nn.GRU(2, 3, num_layers=2, bidirectional=True, batch_first=True),
        "rnn_relu": nn.RNN(3, 2, nonlinearity="relu", batch_first=True),
        "lstm_proj": nn.LSTM(3, 4, proj_size=2, batch_first=True, bias=False),
        "seq": nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.Softmax(dim=-1)),
        "clf": Clf(),
    }


def make_torch(torch, native_dir, torch_dir):
    """torch.save files (zip and legacy layouts, plain / wrapped / half / strided), prefixed with
    the harness mode byte; plus the data.pkl pickles alone (mode 1: the harness re-zips them)."""
    models = torch_models(torch)
    for name, m in models.items():
        fastrnn.from_torch(m.eval()).save(os.path.join(native_dir, f"torch_{name}.fastrnn"))
    arch_index = {json.dumps(a): i for i, a in enumerate(TORCH_ARCHS)}

    def save(obj, fname, arch, legacy=False):
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
        mode = arch_index[json.dumps(arch)] << 1
        _write(torch_dir, fname, bytes([mode]) + buf.getvalue())
        if not legacy:  # mode 1: the pickle alone, storages supplied by the harness
            with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
                pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                _write(torch_dir, fname.replace(".pt", ".pkl"), bytes([mode | 1]) + z.read(pkl))

    sd = models["lstm"].state_dict()
    save(sd, "lstm_zip.pt", None)
    save(sd, "lstm_legacy.pt", None, legacy=True)
    save({"epoch": 3, "model_state_dict": sd, "optimizer": {"lr": 0.1}}, "lstm_ckpt.pt", None)
    save({k: v.half() for k, v in models["gru_bi2"].state_dict().items()}, "gru_bi2_half.pt", "gru")
    save({k: v.to(torch.bfloat16) for k, v in models["gru_bi2"].state_dict().items()}, "gru_bi2_bf16.pt", None,
         legacy=True)
    save(models["rnn_relu"].state_dict(), "rnn_relu.pt", "rnn_relu")
    save({k: v.t().contiguous().t() if v.dim() == 2 else v for k, v in models["lstm_proj"].state_dict().items()},
         "lstm_proj_strided.pt", None)
    save({"module." + k: v for k, v in models["clf"].state_dict().items()}, "clf.pt", TORCH_ARCHS[4])
    save(models["seq"].state_dict(), "seq.pt", TORCH_ARCHS[5])
    _write(torch_dir, "not_torch.pt", b"\x00" + pickle.dumps({"a": [1, 2.5, "x"]}, protocol=2))


# ------------------------------------------------------------------------------------ keras
def keras_models(keras):
    L = keras.layers
    keras.utils.set_random_seed(SEED)
    return {
        "lstm_dense": keras.Sequential([keras.Input((None, 3)), L.LSTM(4, return_sequences=True), L.Dense(2)]),
        "gru_ra0": keras.Sequential([keras.Input((None, 2)), L.GRU(3, reset_after=False, go_backwards=True),
                                     L.Dense(2, activation="softmax")]),
        "bidi_masking": keras.Sequential([keras.Input((None, 3)), L.Masking(0.0),
                                          L.Bidirectional(L.SimpleRNN(2, return_sequences=True), merge_mode="sum"),
                                          L.TimeDistributed(L.Dense(2)), L.Activation("relu")]),
        "emb_lstm": keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(6, 3, mask_zero=True),
                                      L.LSTM(3, recurrent_activation="hard_sigmoid"), L.Dropout(0.1),
                                      L.Dense(6, activation="log_softmax")]),
    }


def make_keras(keras, native_dir, keras_dir, weights_dir):
    """Each .keras archive: its model.weights.h5 goes to fuzz/data/keras/<i>.weights.h5 and the seed
    is one selector byte (which weights file) + config.json, the part the harness mutates."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, m) in enumerate(keras_models(keras).items()):
            assert name == list(KERAS_WEIGHTS_DIR_NAMES)[i]
            p = os.path.join(tmp, f"{name}.keras")
            m.save(p)
            fastrnn.load(p).save(os.path.join(native_dir, f"keras_{name}.fastrnn"))
            with zipfile.ZipFile(p) as z:
                _write(weights_dir, f"{name}.weights.h5", z.read("model.weights.h5"))
                cfg = json.loads(z.read("config.json"))
            # drop what the reader never looks at (compile / build configs): smaller seeds
            for k in ("compile_config", "build_config"):
                cfg.pop(k, None)
            _write(keras_dir, f"{name}.json", bytes([i]) + json.dumps(cfg, separators=(",", ":")).encode())


KERAS_WEIGHTS_DIR_NAMES = ("lstm_dense", "gru_ra0", "bidi_masking", "emb_lstm")


def make_h5(keras, h5_dir):
    """Seeds of the h5 harness: one mode byte (see fuzz_h5.py) + a whole HDF5 file.  Mode 0: legacy
    full-model .h5 files (Keras 3 ``model.save("x.h5")`` and the hand-made Keras 2.2 fixture);
    mode 1 | (i << 1): the model.weights.h5 of keras_zip weights i, re-zipped with its config."""
    import tempfile
    import warnings

    models = keras_models(keras)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("lstm_dense", "gru_ra0"):
            p = os.path.join(tmp, f"{name}.h5")
            models[name].save(p)
            with open(p, "rb") as f:
                _write(h5_dir, f"legacy_{name}.h5", b"\x00" + f.read())
    fixture = os.path.join(os.path.dirname(HERE), "tests", "data", "keras", "keras22_lstm.h5")
    with open(fixture, "rb") as f:
        _write(h5_dir, "keras22_lstm.h5", b"\x00" + f.read())
    for i, name in enumerate(KERAS_WEIGHTS_DIR_NAMES[:2]):
        with open(os.path.join(KERAS_WEIGHTS_DIR, f"{name}.weights.h5"), "rb") as f:
            _write(h5_dir, f"zip_{name}.weights.h5", bytes([1 | (i << 1)]) + f.read())


# ------------------------------------------------------------------------------------ hostile families
HOSTILE_SEED_BYTES = 24 << 10  # a seed larger than this is not kept (small seeds only)
_ROUTES = {".pt": "torch_file", ".pth": "torch_file", ".fastrnn": "native", ".keras": "keras_zip", ".h5": "h5"}
_FORMAT_ROUTES = {"torch": "torch_file", "fastrnn": "native", "keras": "keras_zip", "keras_h5": "h5"}


def hostile_families():
    """Every Family of tests/hostile_*.py (the hostile-file test generator)."""
    tests = os.path.join(os.path.dirname(HERE), "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    out = []
    for f in sorted(glob.glob(os.path.join(tests, "hostile_*.py"))):
        name = os.path.basename(f)[:-3]
        if name != "hostile_common":
            out += list(importlib.import_module(name).FAMILIES)
    return out


def hostile_seed(fam, path):
    """``(target, seed bytes)`` for the file ``path`` of family ``fam``: the harness's mode byte (if it
    has one) + the whole file, for the target that reads that kind of file; None if none does."""
    from fastrnn.io.detect import detect_format

    target = _ROUTES.get(os.path.splitext(path)[1].lower())
    if target is None:
        try:
            target = _FORMAT_ROUTES.get(detect_format(path))
        except Exception:  # noqa: BLE001 - not a format fastrnn detects: no target reads it
            return None
        if target is None:
            return None
    with open(path, "rb") as f:
        data = f.read()
    kw = fam.load_kwargs or {}
    if target == "torch_file":  # mode bit 0 = 0: a whole file; bits 1-3: architecture=; bit 4: strict=False
        archs = [json.dumps(a) for a in TORCH_ARCHS]
        arch = json.dumps(kw.get("architecture"))
        mode = (archs.index(arch) if arch in archs else 0) << 1 | (0x10 if kw.get("strict") is False else 0)
        return target, bytes([mode]) + data
    if target == "keras_zip":
        from fuzz_keras_zip import WHOLE_FILE

        return target, bytes([WHOLE_FILE]) + data
    if target == "h5":
        return target, b"\x00" + data  # mode 0: a raw .h5 file
    if target == "native" and data[:1] == b"{":
        return None  # the native harness would read it as a bare header
    return target, data


def hostile_seeds(families=None):
    """``{family name: ([(target, seed file name, seed bytes), ...], why there is none)}``."""
    from run import TARGETS

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fam in families if families is not None else hostile_families():
            best, why = {}, "every file is too large"  # target -> the largest size that fits
            for size in sorted(fam.sizes):
                d = os.path.join(tmp, f"{fam.name}-{size}")
                os.makedirs(d)
                try:
                    path = fam.make(d, size)
                except Exception as e:  # noqa: BLE001 - a family that needs what is not installed here
                    print(f"hostile family {fam.name} ({size}): not made ({type(e).__name__}: {e})")
                    continue
                seed = hostile_seed(fam, path)
                if seed is None:
                    why = f"no fuzz target reads {os.path.splitext(path)[1] or 'such'} files"
                elif len(seed[1]) <= min(TARGETS[seed[0]], HOSTILE_SEED_BYTES):
                    best[seed[0]] = (seed[0], f"hostile-{fam.name}-{size}{os.path.splitext(path)[1]}", seed[1])
                shutil.rmtree(d, ignore_errors=True)
            out[fam.name] = sorted(best.values()), why
    return out


HOSTILE_MANIFEST = os.path.join(CORPUS, "HOSTILE_SEEDS.txt")


def make_hostile():
    """Replace the hostile-* seeds of every corpus and the manifest (a file identical to one already
    written, e.g. a family run isolated and in-process, is kept once)."""
    for old in glob.glob(os.path.join(CORPUS, "*", "hostile-*")):
        os.remove(old)
    written, lines = {}, []
    for fam, (seeds, why) in hostile_seeds().items():
        names = []
        for target, name, data in seeds:
            if data not in written:
                written[data] = f"{target}/{name}"
                _write(os.path.join(CORPUS, target), name, data)
            names.append(written[data])
        lines.append(f"{fam}: {' '.join(names) if names else f'(no seed: {why})'}")
    with open(HOSTILE_MANIFEST, "w") as f:
        f.write("# family: its seeds (fuzz/make_corpus.py hostile)\n" + "\n".join(lines) + "\n")
    print(f"hostile seeds written: {len(written)} files, {sum(map(len, written)) / 1024:.0f} KB")


# ------------------------------------------------------------------------------------ predict
def make_predict(predict_dir):
    """Byte strings for the predict harness (a FuzzedDataProvider decodes them: any bytes work)."""
    rng = np.random.default_rng(SEED)
    for i in range(24):
        _write(predict_dir, f"seed{i:02d}.bin", rng.bytes(int(rng.integers(8, 160))))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["h5"]:  # only the h5 seeds (they reuse fuzz/data/keras/ as it is)
        import keras

        make_h5(keras, _fresh(os.path.join(CORPUS, "h5")))
        return
    if argv == ["hostile"]:  # only the hostile-* seeds
        make_hostile()
        return
    import torch
    import keras

    native_dir = _fresh(os.path.join(CORPUS, "native"))
    torch_dir = _fresh(os.path.join(CORPUS, "torch_file"))
    keras_dir = _fresh(os.path.join(CORPUS, "keras_zip"))
    predict_dir = _fresh(os.path.join(CORPUS, "predict"))
    weights_dir = _fresh(KERAS_WEIGHTS_DIR)
    make_torch(torch, native_dir, torch_dir)
    make_keras(keras, native_dir, keras_dir, weights_dir)
    # the native header alone (harness mode: the input starts with '{', the harness adds the length
    # prefix and a zero data section): mutations of the header then need not keep the length field right
    for name in sorted(os.listdir(native_dir)):
        with open(os.path.join(native_dir, name), "rb") as f:
            raw = f.read()
        _write(native_dir, name.replace(".fastrnn", ".hdr"), native_header_to_seed(raw))
    # the models the predict harness runs are a subset of the native seeds
    for name in NATIVE_MODELS:
        assert os.path.exists(os.path.join(native_dir, name)), name
    make_predict(predict_dir)
    make_h5(keras, _fresh(os.path.join(CORPUS, "h5")))
    total = sum(os.path.getsize(os.path.join(r, f)) for base in (CORPUS, KERAS_WEIGHTS_DIR)
                for r, _, fs in os.walk(base) for f in fs)
    print(f"corpus written: {total / 1024:.0f} KB")
    assert total < 300 * 1024, "corpus too large"
    make_hostile()


if __name__ == "__main__":
    main()
