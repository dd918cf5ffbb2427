"""The tutorials in examples/: each is documented and run by CI (.ci/examples.sh runs them all with
--quick), their shared parity check fails on a real mismatch, and one (char_hello, PyTorch, a few
seconds) runs here end to end against the framework."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CHILD_CWD, child_env, require

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("[a-z]*.py"))


def test_every_example_is_documented_and_quick():
    """Seven tutorials; each has a 5-10 line docstring, the shared --quick/--out command line, and an
    entry in examples/README.md; .ci/examples.sh runs every examples/[a-z]*.py."""
    names = [p.name for p in SCRIPTS]
    assert names == sorted(["char_hello.py", "char_lm_generate.py", "sensor_streaming.py", "sentiment_bilstm.py",
                            "stock_forecast.py", "timeseries_classify.py", "timeseries_regress.py"])
    readme = (EXAMPLES / "README.md").read_text()
    ci = (EXAMPLES.parent / ".ci" / "examples.sh").read_text()
    assert "ls [a-z]*.py" in ci and "--quick" in ci
    for p in SCRIPTS:
        tree = ast.parse(p.read_text())
        doc = ast.get_docstring(tree)
        assert doc, f"{p.name}: no module docstring"
        prose = doc.split("\n\n    python ")[0].strip().splitlines()
        assert 5 <= len(prose) <= 10, f"{p.name}: the docstring explains the tutorial in {len(prose)} lines"
        src = p.read_text()
        assert "C.parse_args(__doc__)" in src and "C.parity(" in src and "C.time_side_by_side(" in src, p.name
        assert "C.save(fig, args," in src, f"{p.name} saves no figure"
        assert f"`{p.name}`" in readme, f"examples/README.md does not describe {p.name}"


def test_parity_check_exits_on_a_mismatch(capsys):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _common
    finally:
        sys.path.remove(str(EXAMPLES))
    assert _common.parity("ok", [1.0, 2.0], [1.0 + 5e-5, 2.0], "torch") == pytest.approx(5e-5, rel=1e-3)
    with pytest.raises(SystemExit) as e:
        _common.parity("bad", [1.0, 2.0], [1.0, 2.0 + 2e-4], "torch")
    assert "FAIL parity bad: 0.0002 > 0.0001" == e.value.code  # sys.exit(message): exit status 1
    with pytest.raises(SystemExit):
        _common.parity("nan", [float("nan")], [0.0], "torch")
    with pytest.raises(SystemExit):
        _common.parity("shape", [[1.0]], [1.0], "torch")
    assert "FAIL" in capsys.readouterr().out


def test_char_hello_quick_runs_and_matches_torch(tmp_path):
    require("torch")
    require("matplotlib")
    r = subprocess.run([sys.executable, str(EXAMPLES / "char_hello.py"), "--quick", "--out", str(tmp_path)],
                       cwd=CHILD_CWD, env=child_env(MPLBACKEND="Agg"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    parity = [line for line in r.stdout.splitlines() if line.startswith("parity ")]
    assert len(parity) == 4 and all(line.endswith(" OK") for line in parity), r.stdout
    assert "'hihell' -> fastrnn 'ihello', torch 'ihello'" in r.stdout
    png = tmp_path / "char_hello.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["char_hello.png"]
