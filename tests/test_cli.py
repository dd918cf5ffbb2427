"""The `fastrnn` command line, run as a user would: `python -m fastrnn ...` in a subprocess."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from conftest import child_env, CHILD_CWD
from fastrnn import spec as S
from test_kernels import rnn_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, cwd=None, timeout=120):
    env = child_env()
    cwd = CHILD_CWD if cwd is None else cwd
    r = subprocess.run([sys.executable, "-m", "fastrnn", *map(str, args)], capture_output=True, text=True, env=env,
                       cwd=cwd, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    lstm = fastrnn.Model(rnn_spec("lstm", 3, 4, direction="bidirectional"))
    lstm.save(d / "lstm.fastrnn")
    emb = S.ModelSpec(layers=[S.EmbeddingSpec(name="emb", embeddings=rng.standard_normal((10, 3)), mask_zero=True),
                              rnn_spec("gru", 3, 5, return_sequences=False).layers[0],
                              S.DenseSpec(name="head", weight=rng.standard_normal((2, 5)), activation="softmax")])
    ids_model = fastrnn.Model(emb)
    ids_model.save(d / "ids.fastrnn")
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    np.save(d / "x.npy", x)
    np.savez(d / "xs.npz", first=x, second=x[:1, :4])
    np.savetxt(d / "x.csv", x[0], delimiter=",", header="a,b,c", comments="")
    ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    np.savetxt(d / "ids.csv", ids, delimiter=",", fmt="%d")
    (d / "garbage.fastrnn").write_bytes(b"\x01\x02garbage")
    return {"dir": d, "lstm": lstm, "ids_model": ids_model, "x": x, "ids": ids}


def test_help():
    r = cli("--help")
    assert r.returncode == 0
    for cmd in ("convert", "info", "predict", "demo", "bench"):
        assert cmd in r.stdout
    r = cli("predict", "--help")
    assert r.returncode == 0 and ".csv" in r.stdout and "--lengths" in r.stdout


def test_no_command_is_a_usage_error():
    r = cli()
    assert r.returncode == 2 and "usage:" in r.stderr


def test_info_without_model_prints_the_runtime():
    r = cli("info", "--json")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    assert d["version"] == fastrnn.__version__ and "isa" in d and "num_threads" in d
    r = cli("info")  # a table for people
    assert r.returncode == 0 and f"version:        {fastrnn.__version__}" in r.stdout
    assert f"isa:            {d['isa']}" in r.stdout


def test_version():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"fastrnn {fastrnn.__version__}"


@pytest.mark.parametrize("args,message", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["info", "--bogus"], "unrecognized arguments: --bogus"),
    (["convert"], "convert: the following arguments are required: SRC, DST"),
    (["convert", "{d}/lstm.fastrnn"], "the following arguments are required: DST"),
    (["convert", "{d}/lstm.fastrnn", "{d}/o.fastrnn", "--arch"], "--arch: expected one argument"),
    (["info", "{d}/lstm.fastrnn", "--bogus"], "unrecognized arguments: --bogus"),
    (["predict", "{d}/lstm.fastrnn"], "required: INPUT"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "--threads", "-3"], "--threads: must be at least 1, got -3"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "--threads", "0"], "--threads: must be at least 1, got 0"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "--threads", "two"], "--threads: 'two' is not an integer"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "--threads", "100000"], "threads"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "-o", "{d}/y.txt"], "unknown output format"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "-o", "{d}/y.csv", "--key"], "--key: expected one argument"),
    (["demo", "--steps", "0"], "--steps: must be at least 1"),
    (["demo", "--threads", "-1"], "--threads: must be at least 1"),
    (["demo", "--repeat", "x"], "--repeat: 'x' is not an integer"),
    (["bench", "--threads", "0"], "threads"),
    (["bench", "--min-time", "abc"], "--min-time"),
    (["bench", "no_such_case_xyz"], "no_such_case_xyz"),
])
def test_every_bad_argument_is_a_fastrnn_error_exit_2(files, args, message):
    r = cli(*[a.format(d=files["dir"]) for a in args])
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr)
    assert r.stderr.startswith("fastrnn: error: ") and message in r.stderr, r.stderr
    assert not (files["dir"] / "y.txt").exists()


def test_predict_csv_output(files, tmp_path):
    r = cli("predict", files["dir"] / "lstm.fastrnn", files["dir"] / "x.npy", "-o", tmp_path / "y.csv")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "y.csv").read_text().splitlines()
    y = files["lstm"].predict(files["x"])  # (2, 6, 8)
    assert lines[0] == "batch,time," + ",".join(f"y{i}" for i in range(y.shape[-1]))
    table = np.loadtxt(tmp_path / "y.csv", delimiter=",", skiprows=1)
    assert table.shape == (y.shape[0] * y.shape[1], 2 + y.shape[-1])
    np.testing.assert_array_equal(table[:, 0], np.repeat(np.arange(2), 6))
    np.testing.assert_array_equal(table[:, 1], np.tile(np.arange(6), 2))
    np.testing.assert_array_equal(table[:, 2:].astype(np.float32), y.reshape(-1, y.shape[-1]))
    r = cli("predict", files["dir"] / "ids.fastrnn", files["dir"] / "ids.csv", "-o", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1).astype(np.float32),
                                  files["ids_model"].predict(files["ids"]))


def test_csv_errors_give_the_line_number(files, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n4,x,6\n")
    r = cli("predict", files["dir"] / "lstm.fastrnn", bad)
    assert r.returncode == 2 and f"{bad}:3: 'x' is not a number" in r.stderr, r.stderr
    bad.write_text("1,2,3\n\n4,5\n")
    r = cli("predict", files["dir"] / "lstm.fastrnn", bad)
    assert r.returncode == 2 and f"{bad}:3: 2 values, but the rows above have 3" in r.stderr, r.stderr


def test_demo_checks_itself_against_numpy_without_torch():
    code = ("import sys; sys.modules['torch'] = None; from fastrnn.cli import main; "
            "sys.exit(main(['demo', '--repeat', '1', '--steps', '7']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), cwd=CHILD_CWD,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numpy" in r.stdout and "max |diff| vs numpy" in r.stdout and "MISMATCH" not in r.stdout


def test_info_with_model(files):
    p = files["dir"] / "lstm.fastrnn"
    r = cli("info", p)
    assert r.returncode == 0, r.stderr
    for s in ("lstm_0", "lstm", "bidirectional", "(batch, time, 8)", "parameters:", "isa:", f"{os.path.getsize(p):,}"):
        assert s in r.stdout, s
    d = json.loads(cli("info", p, "--json").stdout)
    n = sum(t.size for t in files["lstm"].spec.to_core()[1].values())
    assert d["parameters"] == n and d["file_size"] == os.path.getsize(p) and d["source"] == "test"
    assert d["layers"][0]["units"] == 4 and d["layers"][0]["direction"] == "bidirectional"
    d = json.loads(cli("info", files["dir"] / "ids.fastrnn", "--json").stdout)
    assert [l["kind"] for l in d["layers"]] == ["embedding", "gru", "dense"]
    assert d["input"].startswith("(batch, time) int ids") and d["output"] == "(batch, 2)"


def test_convert(files, tmp_path):
    dst = tmp_path / "copy.fastrnn"
    r = cli("convert", files["dir"] / "lstm.fastrnn", dst)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "parameters" in r.stdout
    np.testing.assert_array_equal(fastrnn.load(dst).predict(files["x"]), files["lstm"].predict(files["x"]))


def test_convert_arch_errors(files, tmp_path):
    src = files["dir"] / "lstm.fastrnn"
    r = cli("convert", src, tmp_path / "o.fastrnn", "--arch", "{not json")
    assert r.returncode == 2 and "fastrnn: error: --arch: not valid JSON" in r.stderr
    r = cli("convert", src, tmp_path / "o.fastrnn", "--arch", tmp_path / "missing.json")
    assert r.returncode == 2 and "no such file" in r.stderr
    (tmp_path / "arch.json").write_text('{"type": "lstm"}')
    r = cli("convert", src, tmp_path / "o.fastrnn", "--arch", tmp_path / "arch.json")
    assert r.returncode == 2 and "do not apply to a .fastrnn file" in r.stderr
    assert not (tmp_path / "o.fastrnn").exists()


def test_predict_npy(files, tmp_path):
    out = tmp_path / "y.npy"
    r = cli("predict", files["dir"] / "lstm.fastrnn", files["dir"] / "x.npy", "-o", out)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out), files["lstm"].predict(files["x"]))


def test_predict_lengths(files, tmp_path):
    out = tmp_path / "y.npy"
    for lengths in (["6", "3"], ["6,3"]):
        r = cli("predict", files["dir"] / "lstm.fastrnn", files["dir"] / "x.npy", "-o", out, "--lengths", *lengths)
        assert r.returncode == 0, r.stderr
        np.testing.assert_array_equal(np.load(out), files["lstm"].predict(files["x"], lengths=[6, 3]))


def test_predict_npz(files, tmp_path):
    out = tmp_path / "y.npy"
    assert cli("predict", files["dir"] / "lstm.fastrnn", files["dir"] / "xs.npz", "-o", out).returncode == 0
    np.testing.assert_array_equal(np.load(out), files["lstm"].predict(files["x"]))
    r = cli("predict", files["dir"] / "lstm.fastrnn", files["dir"] / "xs.npz", "--key", "second", "-o", out)
    assert r.returncode == 0
    np.testing.assert_array_equal(np.load(out), files["lstm"].predict(files["x"][:1, :4]))
    r = cli("predict", files["dir"] / "lstm.fastrnn", files["dir"] / "xs.npz", "--key", "third")
    assert r.returncode == 2 and "no array 'third' (arrays: first, second)" in r.stderr


def test_predict_csv_is_one_sequence(files, tmp_path):
    out = tmp_path / "y.npz"
    r = cli("predict", files["dir"] / "lstm.fastrnn", files["dir"] / "x.csv", "-o", out)
    assert r.returncode == 0, r.stderr
    with np.load(out) as z:
        y = z["output"]
    assert y.shape == (1, 6, 8)
    np.testing.assert_allclose(y, files["lstm"].predict(files["x"][:1]), atol=1e-6)


def test_predict_csv_ids_and_printed_output(files):
    r = cli("predict", files["dir"] / "ids.fastrnn", files["dir"] / "ids.csv")
    assert r.returncode == 0, r.stderr
    assert "shape (2, 2) float32" in r.stderr
    printed = np.array(json.loads(r.stdout.replace("\n", "")))
    np.testing.assert_allclose(printed, files["ids_model"].predict(files["ids"]), atol=1e-6)


@pytest.mark.parametrize("args,message", [
    (["predict", "{d}/nope.fastrnn", "{d}/x.npy"], "no such model file"),
    (["predict", "{d}/lstm.fastrnn", "{d}/nope.npy"], "nope.npy: no such input file"),
    (["predict", "{d}/garbage.fastrnn", "{d}/x.npy"], "garbage.fastrnn: not a fastrnn model file"),
    (["predict", "{d}/lstm.fastrnn", "{d}/lstm.fastrnn"], "unknown input format"),
    (["predict", "{d}/ids.fastrnn", "{d}/x.npy"], "ids must be integers"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "--lengths", "9", "1"], "lengths: values must be in [0, 6]"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "--lengths", "a"], "--lengths: 'a' is not an integer"),
    (["predict", "{d}/lstm.fastrnn", "{d}/x.npy", "-o", "{d}/no/such/dir/y.npy"], "No such file or directory"),
    (["info", "{d}/x.npy"], "a numpy .npy array, not a model"),
    (["convert", "{d}/garbage.fastrnn", "{d}/out.fastrnn"], "not a fastrnn model file"),
])
def test_errors_exit_2_with_a_message(files, args, message):
    r = cli(*[a.format(d=files["dir"]) for a in args])
    assert r.returncode == 2
    assert r.stderr.startswith("fastrnn: error: ") and message in r.stderr, r.stderr
    assert not (files["dir"] / "out.fastrnn").exists()


def test_predict_shape_error(files, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 6, 5), np.float32))
    r = cli("predict", files["dir"] / "lstm.fastrnn", tmp_path / "bad.npy")
    assert r.returncode == 2 and "expects 3 features, got shape (2, 6, 5)" in r.stderr


def test_demo():
    r = cli("demo", "--repeat", "1", "--steps", "5", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fastrnn" in r.stdout


def _reader_or_skip(name):
    import importlib

    try:
        importlib.import_module(f"fastrnn.io.{name}")
    except ImportError:
        pytest.skip(f"fastrnn.io.{name} is not available")


def test_convert_torch_state_dict(tmp_path, files):
    _reader_or_skip("torch_file")
    from conftest import require, child_env, CHILD_CWD

    torch = require("torch")
    torch.manual_seed(0)
    m = torch.nn.GRU(3, 4, num_layers=2, batch_first=True).eval()
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    r = cli("convert", tmp_path / "sd.pt", tmp_path / "sd.fastrnn", "--arch", "gru")
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        expected = m(torch.from_numpy(files["x"]))[0].numpy()
    np.testing.assert_allclose(fastrnn.load(tmp_path / "sd.fastrnn").predict(files["x"]), expected, atol=1e-5)


def test_convert_keras_file(tmp_path, files):
    _reader_or_skip("keras_file")
    from conftest import require

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = require("keras")
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4, return_sequences=True),
                              keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "m.keras")
    r = cli("convert", tmp_path / "m.keras", tmp_path / "m.fastrnn")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(fastrnn.load(tmp_path / "m.fastrnn").predict(files["x"]), np.asarray(model(files["x"])),
                               atol=1e-5)
    r = cli("info", tmp_path / "m.keras")
    assert r.returncode == 0 and "lstm" in r.stdout


def test_reader_options_as_flags(tmp_path):
    """Review 2026-12-05, section 8: the readers' refusals ask for key= (a checkpoint holding several state
    dicts) or output= (an ONNX graph with several outputs); --state-key and --graph-output pass them, on
    convert (and info / predict, which share the flags).  Outputs checked against torch / onnxruntime."""
    torch = pytest.importorskip("torch")
    from test_onnx import input_to_fastrnn, output_to_onnx, rnn_model, vi
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    student, teacher = torch.nn.LSTM(3, 4, batch_first=True), torch.nn.LSTM(3, 4, batch_first=True)
    torch.save({"student": student.state_dict(), "teacher": teacher.state_dict()}, tmp_path / "ck.pt")
    r = cli("convert", str(tmp_path / "ck.pt"), str(tmp_path / "o.fastrnn"))
    assert r.returncode == 2 and "--state-key student" in r.stderr, r.stderr
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    for name, mod in (("student", student), ("teacher", teacher)):
        r = cli("convert", str(tmp_path / "ck.pt"), str(tmp_path / f"{name}.fastrnn"), "--state-key", name)
        assert r.returncode == 0, r.stderr
        with torch.no_grad():
            want = mod(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(fastrnn.load(str(tmp_path / f"{name}.fastrnn")).predict(x), want, atol=1e-5)

    m = rnn_model(np.random.default_rng(1), "LSTM")
    m.graph.output.append(vi("Y_h", None))
    onnx.save(m, str(tmp_path / "two.onnx"))
    r = cli("convert", str(tmp_path / "two.onnx"), str(tmp_path / "y.fastrnn"))  # both outputs (test_predict_...)
    assert r.returncode == 0, r.stderr
    r = cli("convert", str(tmp_path / "two.onnx"), str(tmp_path / "h.fastrnn"), "--graph-output", "Y_h")
    assert r.returncode == 0, r.stderr
    xt = np.random.default_rng(2).standard_normal((5, 2, 3)).astype(np.float32)  # ONNX layout: (T, N, I)
    y_h = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["Y_h"], {"X": xt})[0]
    model = fastrnn.load(str(tmp_path / "h.fastrnn"))
    got = output_to_onnx(model.spec, model.predict(input_to_fastrnn(model.spec, xt)))
    np.testing.assert_allclose(got, y_h, atol=1e-5)
    r = cli("info", str(tmp_path / "two.onnx"), "--graph-output", "Y_h", "--json")
    assert r.returncode == 0, r.stderr
    r = cli("convert", str(tmp_path / "h.fastrnn"), str(tmp_path / "z.fastrnn"), "--state-key", "x")
    assert r.returncode == 2 and "--state-key does not apply to" in r.stderr, r.stderr


def test_predict_several_outputs_writes_one_array_per_output(tmp_path):
    """A model with several outputs (an ONNX graph returning Y and Y_h): -o OUT.npz holds one array per
    output name, checked against onnxruntime; .npy / .csv are refused with the reason."""
    from test_onnx import output_to_onnx, rnn_model, vi
    import onnx
    import onnxruntime as ort

    m = rnn_model(np.random.default_rng(1), "LSTM")
    m.graph.output.append(vi("Y_h", None))
    onnx.save(m, str(tmp_path / "two.onnx"))
    x = np.random.default_rng(2).standard_normal((2, 5, 3)).astype(np.float32)  # batch-first, as predict takes
    np.save(tmp_path / "x.npy", x)
    r = cli("predict", str(tmp_path / "two.onnx"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz"))
    assert r.returncode == 0, r.stderr
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"X": np.ascontiguousarray(x.transpose(1, 0, 2))})
    model = fastrnn.load(str(tmp_path / "two.onnx"))
    with np.load(tmp_path / "y.npz") as z:
        assert sorted(z.files) == ["Y", "Y_h"]
        np.testing.assert_allclose(output_to_onnx(model, z["Y"], "Y"), want[0], atol=1e-5)
        np.testing.assert_allclose(z["Y_h"], want[1], atol=1e-5)
    for suffix in ("npy", "csv"):
        r = cli("predict", str(tmp_path / "two.onnx"), str(tmp_path / "x.npy"), "-o", str(tmp_path / f"y.{suffix}"))
        assert r.returncode == 2 and "2 outputs (Y, Y_h): use -o OUT.npz" in r.stderr, r.stderr
