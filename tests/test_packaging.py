"""Packaging: what a user sees when the compiled core cannot be imported (a source checkout without a
build, often shadowing an installed fastrnn; a broken installed copy).  Each case runs a child Python on a temporary copy of the package without ``_core``,
with ``-S`` (no site-packages) and only numpy (plus what the case adds) on PYTHONPATH, so what the
child can import is exactly what the case sets up."""
import json
import os
import shutil
import subprocess
import sys

import numpy
import pytest

import fastrnn

PKG = os.path.dirname(os.path.abspath(fastrnn.__file__))
CHILD = """
import sys
import fastrnn
try:
    fastrnn.info()
except fastrnn.CoreNotBuiltError as e:
    print(e)
    sys.exit(3)
print("CORE OK", fastrnn.__file__)
"""


def _copy_package(dest):
    """fastrnn's Python files, stub and marker, without any compiled module or the BLAS library."""
    shutil.copytree(PKG, dest, ignore=shutil.ignore_patterns("*.so", "*.so.*", "*.pyd", "*.dylib", "__pycache__"))
    return dest


def _numpy_only(tmp_path):
    """A PYTHONPATH entry that holds numpy (and its bundled libraries) and nothing else."""
    deps = tmp_path / "deps"
    deps.mkdir()
    site = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    for name in os.listdir(site):
        if name == "numpy" or name.startswith("numpy.") and not name.endswith(("-info", ".pth")):
            os.symlink(os.path.join(site, name), deps / name)
    return str(deps)


def _checkout(tmp_path):
    """A source checkout's shape (setup.py, src/bindings/, fastrnn/) with nothing built in it."""
    root = tmp_path / "checkout"
    (root / "src" / "bindings").mkdir(parents=True)
    (root / "setup.py").write_text("# stands for the checkout's setup.py\n")
    _copy_package(root / "fastrnn")
    return root


def _run(cwd, *path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join(path)
    return subprocess.run([sys.executable, "-S", "-c", CHILD], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_checkout_without_a_build_says_to_run_pip_install_e(tmp_path):
    root = _checkout(tmp_path)
    r = _run(root, _numpy_only(tmp_path))
    assert r.returncode == 3, r.stdout + r.stderr
    msg = r.stdout
    assert f"fastrnn was imported from {root / 'fastrnn'}" in msg
    assert "a source checkout with no compiled core" in msg
    assert "through the current directory" in msg
    assert f"cd {root} && pip install -e ." in msg
    assert "An installed fastrnn exists" not in msg


def test_checkout_shadowing_an_installed_fastrnn_names_it_and_both_ways_out(tmp_path):
    """The issue's case: `pip install .` put fastrnn in site-packages, then Python started inside the
    checkout imports the source tree.  The message names the installed copy and both remedies, and
    the first remedy (start Python outside the checkout) does import the installed, working core."""
    root = _checkout(tmp_path)
    deps = _numpy_only(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    os.symlink(PKG, site / "fastrnn")  # the installed copy: this test run's fastrnn, core included
    r = _run(root, deps, str(site))
    assert r.returncode == 3, r.stdout + r.stderr
    msg = r.stdout
    assert f"fastrnn was imported from {root / 'fastrnn'}" in msg
    assert f"An installed fastrnn exists at {site / 'fastrnn'}" in msg
    assert "Start Python outside the checkout" in msg
    assert f"cd {root} && pip install -e ." in msg

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    r = _run(outside, deps, str(site))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"CORE OK {site / 'fastrnn' / '__init__.py'}" in r.stdout


def test_checkout_shadowing_an_editable_install_of_another_checkout(tmp_path):
    root = _checkout(tmp_path)
    meta = tmp_path / "meta"
    info = meta / "fastrnn-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fastrnn\nVersion: 0.1.0\n")
    other = tmp_path / "other-checkout"
    (info / "direct_url.json").write_text(json.dumps({"url": other.as_uri(), "dir_info": {"editable": True}}))
    r = _run(root, _numpy_only(tmp_path), str(meta))
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"An installed fastrnn exists at {other / 'fastrnn'} (editable install)" in r.stdout


@pytest.mark.parametrize("stale", [False, True])
def test_broken_installed_copy_says_reinstall(tmp_path, stale):
    site = tmp_path / "site"
    _copy_package(site / "fastrnn")
    if stale:  # a core built for another Python: present, never loaded
        (site / "fastrnn" / "_core.cpython-27-x86_64-linux-gnu.so").write_bytes(b"")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    r = _run(outside, _numpy_only(tmp_path), str(site))
    assert r.returncode == 3, r.stdout + r.stderr
    msg = r.stdout
    assert f"fastrnn was imported from {site / 'fastrnn'}" in msg
    assert "This installed copy is incomplete or was built for another Python or platform" in msg
    assert "source checkout" not in msg.split("reinstall")[0]
    if stale:
        assert "which holds _core.cpython-27-x86_64-linux-gnu.so" in msg
        import importlib.machinery

        assert f"_core{importlib.machinery.EXTENSION_SUFFIXES[0]}" in msg

