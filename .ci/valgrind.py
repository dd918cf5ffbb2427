"""The parts of .ci/valgrind.sh (valgrind memcheck of fastrnn's C++ core):

    python .ci/valgrind.py workload            # what runs under valgrind: fastrnn only (no framework), small
    python .ci/valgrind.py check LOG.xml       # exit 1 if the log holds an error in fastrnn's code
    python .ci/valgrind.py selftest-workload   # a planted leak + invalid read in a C library named like ours

workload: loads the committed .fastrnn fixtures, predicts a few shapes (lengths, return_state),
streams steps (step / run / state / reset), generates ids, round-trips bytes / files / pickles, and
raises errors on bad input (their cleanup paths must not leak either).

check: valgrind's XML log -> every error (invalid read/write, uninitialised value, bad free, ...) and
every *definite* leak whose stack has a frame in fastrnn's code (an object file in a ``fastrnn/``
package directory: ``_core*.so``, ``_step*.so``, the bundled OpenBLAS; or a function ``fastrnn::``)
fails.  Errors with no such frame are CPython's / numpy's / the loader's own (CPython 3.11 under
memcheck reports uninitialised reads in its small-int cache and ld.so invalid reads; numpy leaks at
import): counted and listed by library, never failing.

selftest-workload: loads, with ctypes, a C library compiled by valgrind.sh into a directory named
``fastrnn/`` whose functions leak a malloc'd block and read past one: the check must fail on it,
which valgrind.sh verifies (the filter does see our frames).
"""
import collections
import os
import pickle
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "tests", "data", "formats", "v1")


def lm_spec(S, np, vocab=11, emb=6, hidden=12, seed=0):
    rng = np.random.default_rng(seed)
    G = S.GATES["lstm"]
    w = S.DirectionWeights(rng.standard_normal((G * hidden, emb)) * 0.4, rng.standard_normal((G * hidden, hidden)) * 0.4,
                           rng.standard_normal(G * hidden) * 0.1, rng.standard_normal(G * hidden) * 0.1, None)
    return S.ModelSpec(layers=[
        S.EmbeddingSpec(name="emb", embeddings=rng.standard_normal((vocab, emb))),
        S.RecurrentSpec(kind="lstm", name="lstm", input_size=emb, units=hidden, weights=[w], return_sequences=True),
        S.DenseSpec(name="head", weight=rng.standard_normal((vocab, hidden)) * 0.3, bias=np.zeros(vocab),
                    activation="softmax"),
    ], input_features=None, source="valgrind")


def workload():
    import numpy as np

    import fastrnn
    from fastrnn import spec as S
    from fastrnn.errors import FastRNNError

    fastrnn.set_num_threads(int(os.environ.get("FASTRNN_NUM_THREADS", "2")))
    rng = np.random.default_rng(0)
    n = 0
    for name in sorted(os.listdir(FIXTURES)):
        if not name.endswith(".fastrnn"):
            continue
        base = os.path.join(FIXTURES, name[:-len(".fastrnn")])
        m = fastrnn.load(os.path.join(FIXTURES, name))
        x = np.load(base + ".input.npy")
        lengths = np.load(base + ".lengths.npy") if os.path.exists(base + ".lengths.npy") else None
        y = m.predict(x, lengths=lengths)
        np.testing.assert_allclose(y, np.load(base + ".expected.npy"), atol=1e-4, rtol=1e-4)
        for b, t in ((1, 1), (3, 7), (9, 2)):  # a few shapes: batch 1, odd batches, short sequences
            xs = (rng.integers(0, 3, (b, t)) if m.spec.takes_ids
                  else rng.standard_normal((b, t, m.spec.input_features)).astype(np.float32))
            m.predict(xs)
            m.predict(xs, lengths=np.maximum(1, np.arange(b) % (t + 1)))
        out = m.predict(xs, return_state=True)
        m2 = fastrnn.Model.from_bytes(m.to_bytes())
        np.testing.assert_array_equal(m2.predict(x, lengths=lengths), y)
        pickle.loads(pickle.dumps(m))
        with tempfile.TemporaryDirectory() as d:
            m.save(os.path.join(d, "m.fastrnn"))
            fastrnn.load(os.path.join(d, "m.fastrnn"), mmap=True).predict(x, lengths=lengths)
        try:
            s = m.stream(2)
        except FastRNNError:  # bidirectional: no streaming
            s = None
        if s is not None:
            f = m.spec.input_features
            for t in range(20):
                s.step(rng.integers(0, 3, 2) if m.spec.takes_ids else rng.standard_normal((2, f)).astype(np.float32))
            s.run(rng.standard_normal((2, 5, f)).astype(np.float32) if not m.spec.takes_ids else rng.integers(0, 3, (2, 5)))
            st = s.state
            s.reset([1])
            s.state = st
            s.reset()
        for bad in (np.zeros((2, 3, 999), np.float32), np.zeros((2,), np.float32), [[1, 2], [3]]):
            try:
                m.predict(bad)
            except FastRNNError:
                pass
        n += 1
    lm = fastrnn.Model(lm_spec(S, np))
    ids = lm.generate(np.array([[1, 2, 3], [4, 5, 6]]), 25, temperature=0.8, top_k=4, seed=1)
    assert ids.shape == (2, 25)
    lm.generate([1, 2], 10, greedy=True)
    ids, logits = lm.generate(np.array([[1, 2], [3, 4]]), 12, beam_width=3, stop_ids=[0, 5], return_logits=True)
    assert ids.shape == (2, 12) and logits.shape == (2, 12, 11)
    lm.generate(np.array([[1], [2]]), 12, stop_ids=[0, 5], seed=2, initial_state=lm.stream(2).state)
    lm.stream(2).generate(np.array([[1], [2]]), 8, greedy=True, stop_ids=[3])
    s = lm.stream(1)
    out = np.empty((1, 11), np.float32)
    for i in range(30):
        s.step(np.array([i % 11]), out)
    try:
        fastrnn.Model.from_bytes(lm.to_bytes()[:-7])
    except FastRNNError:
        pass
    print(f"valgrind workload: {n} fixture models + a language model, ok")
    return 0


def selftest_workload():
    import ctypes

    lib = ctypes.CDLL(os.environ["FASTRNN_VALGRIND_SELFTEST_LIB"])
    lib.fastrnn_selftest_leak(64)
    lib.fastrnn_selftest_read_past_end(16)
    print("valgrind self-test workload ran")
    return 0


def _ours(frame) -> bool:
    obj = frame.findtext("obj") or ""
    fn = frame.findtext("fn") or ""
    return f"{os.sep}fastrnn{os.sep}" in obj or "fastrnn::" in fn or fn.startswith("fastrnn_")


def check(xml_path) -> int:
    import xml.etree.ElementTree as ET

    root = ET.parse(xml_path).getroot()
    ours, foreign = [], collections.Counter()
    for e in root.findall("error"):
        kind = e.findtext("kind") or "?"
        if kind.startswith("Leak_") and kind != "Leak_DefinitelyLost":
            continue
        stack = e.find("stack")
        frames = stack.findall("frame") if stack is not None else []
        if any(_ours(f) for f in frames):
            ours.append((kind, e.findtext("xwhat/text") or e.findtext("what") or "", frames))
        else:
            lib = next((os.path.basename(f.findtext("obj") or "?") for f in frames
                        if "vgpreload" not in (f.findtext("obj") or "")), "?")
            foreign[(kind, lib)] += 1
    if foreign:
        print(f"valgrind: {sum(foreign.values())} report(s) with no fastrnn frame (CPython / numpy / loader, not failing):")
        for (kind, lib), n in sorted(foreign.items()):
            print(f"    {n:4d} {kind} in {lib}")
    if not ours:
        print("valgrind: no error and no definite leak in fastrnn's code")
        return 0
    print(f"valgrind: {len(ours)} error(s) / definite leak(s) in fastrnn's code:")
    for kind, what, frames in ours:
        print(f"  {kind}: {what}")
        for f in frames[:16]:
            where = f.findtext("file")
            where = f"{where}:{f.findtext('line')}" if where else os.path.basename(f.findtext("obj") or "?")
            print(f"      {(f.findtext('fn') or '?')[:100]}  ({where})")
    return 1


def main(argv):
    if argv[:1] == ["workload"]:
        return workload()
    if argv[:1] == ["selftest-workload"]:
        return selftest_workload()
    if argv[:1] == ["check"] and len(argv) == 2:
        return check(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
