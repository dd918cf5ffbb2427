"""fastrnn/_core.pyi is kept in step with the compiled bindings: same names, same parameters
(names and defaults, read from pybind11's signatures), properties where the bindings have properties."""
import ast
import os
import re

import pytest

import fastrnn

from fastrnn import _core as core  # noqa: E402
STUB = os.path.join(os.path.dirname(os.path.abspath(fastrnn.__file__)), "_core.pyi")


def _stub():
    tree = ast.parse(open(STUB, encoding="utf-8").read())
    out = {}

    def params(fn):
        a = fn.args
        names = [x.arg for x in a.args]
        defaults = [None] * (len(names) - len(a.defaults)) + [ast.unparse(d) for d in a.defaults]
        return list(zip(names, defaults))

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = ("function", params(node))
        elif isinstance(node, ast.ClassDef):
            members = {}
            for m in node.body:
                if isinstance(m, ast.FunctionDef):
                    prop = any(isinstance(d, ast.Name) and d.id == "property" for d in m.decorator_list)
                    members[m.name] = ("property", None) if prop else ("method", params(m))
            out[node.name] = ("class", members)
    return out


_SIG = re.compile(r"^\w+\((.*)\) ->")


def _split_params(text):
    """'self: X, a: T = [], b: T = None' -> [('self', None), ('a', '[]'), ('b', 'None')] (brackets aware)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    out = []
    for p in parts:
        name = p.split(":")[0].strip()
        default = p.split("=", 1)[1].strip() if "=" in p else None
        out.append((name, default))
    return out


def _runtime_params(obj):
    sig = _SIG.match((obj.__doc__ or "").splitlines()[0])
    assert sig, f"no pybind11 signature in {obj!r}'s docstring"
    return _split_params(sig.group(1))


def _runtime():
    out = {}
    for name in dir(core):
        if name.startswith("__"):
            continue
        obj = getattr(core, name)
        if isinstance(obj, type):
            members = {}
            for m, v in vars(obj).items():
                if m.startswith("_pybind11") or (m.startswith("__") and m != "__init__"):
                    continue
                members[m] = ("property", None) if isinstance(v, property) else ("method", _runtime_params(getattr(obj, m)))
            out[name] = ("class", members)
        elif callable(obj):
            out[name] = ("function", _runtime_params(obj))
    return out


def test_stub_names_match_the_bindings():
    stub, rt = _stub(), _runtime()
    assert sorted(stub) == sorted(rt), f"stub-only: {sorted(set(stub) - set(rt))}, bindings-only: {sorted(set(rt) - set(stub))}"
    for name, (kind, members) in rt.items():
        assert stub[name][0] == kind, name
        if kind == "class":
            assert sorted(stub[name][1]) == sorted(members), \
                f"{name}: stub-only {sorted(set(stub[name][1]) - set(members))}, bindings-only {sorted(set(members) - set(stub[name][1]))}"


def test_stub_parameters_match_the_bindings():
    stub, rt = _stub(), _runtime()
    for name, (kind, body) in rt.items():
        pairs = [(name, body, stub[name][1])] if kind == "function" else \
            [(f"{name}.{m}", v[1], stub[name][1][m][1]) for m, v in body.items() if v[0] == "method"]
        for where, got, want in pairs:
            assert [p for p, _ in got] == [p for p, _ in want], f"{where}: bindings {got} != stub {want}"
            assert [d for _, d in got] == [d for _, d in want], f"{where}: defaults {got} != stub {want}"


def test_stub_is_shipped_and_typed():
    here = os.path.dirname(os.path.abspath(fastrnn.__file__))
    assert os.path.isfile(os.path.join(here, "py.typed"))
