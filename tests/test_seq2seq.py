"""Sequence-to-sequence decoding (issue 11, deliverable 5): a PyTorch encoder-decoder converted as two
fastrnn models, the encoder's final states feeding ``generate(initial_state=...)``; greedy and sampled
decoding with stop ids against a PyTorch loop, beam search against an independent reference beam
search (written below over torch's step outputs), the returned logits against torch's, and
``Stream.generate`` continuing a stream."""
import numpy as np
import pytest

import fastrnn
from conftest import assert_close, require
from fastrnn.errors import ArgumentError, ArgumentTypeError

SRC_V, TGT_V, EMB, HID, LAYERS = 13, 11, 8, 20, 2
BOS = 1


def seq2seq(cell="gru", head="linear", seed=0):
    """(encoder, decoder) torch modules: Embedding -> 2-layer GRU/LSTM, and Embedding -> GRU/LSTM -> Linear
    (-> softmax), with sharpened weights (clear winners, no near-ties)."""
    torch = require("torch")
    rnn = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(SRC_V, EMB)
            self.rnn = rnn(EMB, HID, num_layers=LAYERS, batch_first=True)

        def forward(self, x):
            out, _ = self.rnn(self.embed(x))
            return out

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(TGT_V, EMB)
            self.rnn = rnn(EMB, HID, num_layers=LAYERS, batch_first=True)
            self.fc = torch.nn.Linear(HID, TGT_V)

        def forward(self, x):
            out, _ = self.rnn(self.embed(x))
            y = self.fc(out)
            return torch.softmax(y, -1) if head == "softmax" else y

    torch.manual_seed(seed)
    enc, dec = Encoder().eval(), Decoder().eval()
    with torch.no_grad():
        for p in list(enc.parameters()) + list(dec.parameters()):
            p.mul_(2.5)
    return enc, dec


def convert(enc, dec, cell, head="linear"):
    """The encoder through from_torch, the decoder from its state dict and an architecture list."""
    arch = [{"type": "embedding", "key": "embed"}, {"type": cell, "key": "rnn", "num_layers": LAYERS},
            {"type": "linear", "key": "fc", "activation": head}]
    return fastrnn.from_torch(enc), fastrnn.from_state_dict(dec.state_dict(), architecture=arch)


def source(batch=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, SRC_V, size=(batch, 9)), np.array([9, 6, 3, 8, 1, 5, 7, 2][:batch])


def torch_encode(enc, src, lengths):
    """The encoder's final states by PyTorch (packed sequences: each row's last valid step)."""
    torch = require("torch")
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(enc.embed(torch.as_tensor(src)), torch.as_tensor(lengths),
                                                         batch_first=True, enforce_sorted=False)
        _, state = enc.rnn(packed)
    return state


def torch_step(dec, ids, state, head):
    """One decoder step in PyTorch: ids (R,), state -> (the model's output (R, V) float32, the new state)."""
    torch = require("torch")
    with torch.no_grad():
        out, state = dec.rnn(dec.embed(torch.as_tensor(np.asarray(ids, np.int64))[:, None]), state)
        y = dec.fc(out[:, -1])
        return (torch.softmax(y, -1) if head == "softmax" else y).numpy(), state


def rows_of(state, rows):
    """Rows of a torch state ((layers, B, H), or (h, c) for LSTM)."""
    return tuple(s[:, rows] for s in state) if isinstance(state, tuple) else state[:, rows]


def torch_greedy(dec, state, steps, stops, head="linear"):
    """The greedy loop in PyTorch, batched: a row stops after emitting a stop id (-1 and NaN after)."""
    B = (state[0] if isinstance(state, tuple) else state).shape[1]
    ids, logits = np.full((B, steps), -1), np.full((B, steps, TGT_V), np.nan, np.float32)
    alive, tok = np.ones(B, bool), np.full(B, BOS)
    for n in range(steps):
        out, state = torch_step(dec, tok, state, head)
        tok = out.argmax(-1)  # the first maximum, as torch.argmax
        for b in np.flatnonzero(alive):
            ids[b, n], logits[b, n] = tok[b], out[b]
            alive[b] = tok[b] not in stops
        if not alive.any():
            break
    return ids, logits


def log_probs(out, head):
    out = np.asarray(out, np.float64)
    if head == "softmax":
        with np.errstate(divide="ignore"):
            return np.log(out)
    m = out.max()
    return out - m - np.log(np.exp(out - m).sum())


def reference_beam(dec, state, steps, K, stops, alpha, head="linear"):
    """An independent beam search for one row (state: that row's torch state, batch 1), following the
    documented rule: candidates score + log p ranked (ties: smaller k*V + v, k the hypothesis' place
    in the list), a stop id among the first K ranks finishes a hypothesis, the next non-stop ones
    (best first) are the K live ones; done at K finished; after `steps` the live ones count too;
    returned: the best score / len**alpha (first on ties).  Returns (ids, per-step outputs, the
    state after all ids but the last)."""
    out, st = torch_step(dec, [BOS], state, head)
    live = [(0.0, [], [], state, st, out[0])]  # score, ids, outputs, state before the last id, state, output
    finished = []
    for n in range(steps):
        cands = [(score + lp, k, v) for k, (score, *_rest) in enumerate(live)
                 for v, lp in enumerate(log_probs(live[k][5], head))]
        cands.sort(key=lambda c: (-c[0], c[1] * TGT_V + c[2]))
        chosen = []
        for r, (sc, k, v) in enumerate(cands):
            if len(chosen) == K or sc == -np.inf:
                break
            _, ids, outs, _, st, out = live[k]
            if v in stops:
                if r < K:
                    finished.append((sc / (n + 1) ** alpha, ids + [v], outs + [out], st))
            else:
                chosen.append((sc, ids + [v], outs + [out], st))
        if len(finished) >= K or not chosen:
            break
        live = []
        for sc, ids, outs, st in chosen:
            out, new = torch_step(dec, [ids[-1]], st, head)
            live.append((sc, ids, outs, st, new, out[0]))
    else:
        finished += [(sc / steps ** alpha, ids, outs, before) for sc, ids, outs, before, _, _ in live]
    best = max(finished, key=lambda f: f[0])  # the first of equal ones
    return best[1], np.array(best[2]), best[3]


def stop_id_for(greedy_ids):
    """A stop id that ends the rows at the most different steps (never counts as a step): taken from
    PyTorch's greedy decode, so that rows stop while others go on."""
    def first(tok, row):
        return list(row).index(tok) if tok in row else len(row)

    toks = sorted({int(t) for t in greedy_ids[:, 1:].ravel()})
    return max(toks, key=lambda t: len({first(t, row) for row in greedy_ids}))


def fastrnn_state_of(state_list):
    """fastrnn stream state (list per layer of (1, B, H) / ((1, B, H), (1, B, H))) as torch's stacked layout."""
    if isinstance(state_list[0], tuple):
        return tuple(np.concatenate([s[i] for s in state_list]) for i in range(2))
    return np.concatenate(state_list)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_greedy_decode_with_stop_ids_matches_torch(cell):
    """Encoder return_state -> decoder generate(initial_state=..., stop_ids=..., return_logits=True):
    ids token for token, and the logits within 1e-5, of a PyTorch greedy loop; -1 / NaN after a stop."""
    enc, dec = seq2seq(cell)
    fenc, fdec = convert(enc, dec, cell)
    src, lengths = source()
    _, states = fenc.predict(src, lengths=lengths, return_state=True)
    tstate = torch_encode(enc, src, lengths)
    plain, _ = torch_greedy(dec, tstate, 30, ())
    stop = stop_id_for(plain)
    want_ids, want_logits = torch_greedy(dec, tstate, 30, (stop,))
    assert len({int((row >= 0).sum()) for row in want_ids}) > 1 and (want_ids == -1).any()  # rows stop at different steps
    bos = np.full((len(src), 1), BOS)
    ids, logits = fdec.generate(bos, 30, greedy=True, initial_state=states, stop_ids=[stop], return_logits=True)
    assert ids.shape == (4, 30) and ids.dtype == np.int64 and logits.shape == (4, 30, TGT_V) and logits.dtype == np.float32
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(np.isnan(logits), np.isnan(want_logits))
    assert_close(np.nan_to_num(logits), np.nan_to_num(want_logits))
    np.testing.assert_array_equal(fdec.generate(bos, 30, greedy=True, initial_state=states), plain)  # no stop ids
    # beam_width 1 with greedy=True is greedy decoding; a single prompt gives one row
    np.testing.assert_array_equal(fdec.generate(bos, 30, greedy=True, beam_width=1, initial_state=states,
                                                stop_ids=stop), want_ids)
    one = [s[:, :1] if not isinstance(s, tuple) else tuple(x[:, :1] for x in s) for s in states]
    np.testing.assert_array_equal(fdec.generate([BOS], 30, greedy=True, initial_state=one, stop_ids=[stop]), want_ids[0])


@pytest.mark.parametrize("cell,head,K,alpha,steps,stops", [
    ("gru", "linear", 3, 1.0, 14, True), ("lstm", "linear", 5, 0.6, 14, True), ("gru", "softmax", 4, 0.0, 14, True),
    ("lstm", "linear", 4, 2.0, 14, True),
    ("gru", "linear", 3, 1.0, 6, True),     # some rows finish, others are cut at `steps` (live hypotheses count)
    ("lstm", "softmax", 3, 0.6, 9, False),  # no stop ids: the best live hypothesis after `steps`
])
def test_beam_search_matches_reference(cell, head, K, alpha, steps, stops):
    """Beam search in C++ equals the reference beam search over PyTorch's step outputs: the ids of the
    best hypothesis per row, its per-step outputs (1e-5), and the state a stream is left with."""
    enc, dec = seq2seq(cell, head, seed=3)
    fenc, fdec = convert(enc, dec, cell, head)
    src, lengths = source(6, seed=4)
    _, states = fenc.predict(src, lengths=lengths, return_state=True)
    tstate = torch_encode(enc, src, lengths)
    greedy, _ = torch_greedy(dec, tstate, steps, (), head)
    stop = [stop_id_for(greedy)] if stops else []
    greedy_stop, _ = torch_greedy(dec, tstate, steps, stop, head)
    s = fdec.stream(len(src))
    s.state = states
    ids, logits = s.generate(np.full((len(src), 1), BOS), steps, stop_ids=stop or None, beam_width=K,
                             length_penalty=alpha, return_logits=True)
    differs = False
    for b in range(len(src)):
        want, want_logits, want_state = reference_beam(dec, rows_of(tstate, [b]), steps, K, set(stop), alpha, head)
        n = len(want)
        np.testing.assert_array_equal(ids[b], want + [-1] * (steps - n), err_msg=f"row {b}")
        assert_close(logits[b, :n], want_logits)
        assert np.isnan(logits[b, n:]).all()
        # the stream row holds the state after every id but the last
        assert_close(fastrnn_state_of([(tuple(x[:, b:b + 1] for x in e) if isinstance(e, tuple) else e[:, b:b + 1])
                                       for e in s.state]),
                     tuple(x.numpy() for x in want_state) if isinstance(want_state, tuple) else want_state.numpy())
        differs |= want != [int(t) for t in greedy_stop[b] if t >= 0]
    assert differs  # the beam found other sequences than greedy decoding somewhere
    # Model.generate gives the same, from initial_state
    np.testing.assert_array_equal(fdec.generate(np.full((len(src), 1), BOS), steps, stop_ids=stop, beam_width=K,
                                                length_penalty=alpha, initial_state=states), ids)


def test_sampling_with_stop_ids_and_logits():
    """Sampling stops a row after its stop id (the rows' samples do not depend on each other's stops);
    the returned logits are PyTorch's outputs for the sampled ids fed back."""
    enc, dec = seq2seq("gru")
    fenc, fdec = convert(enc, dec, "gru")
    src, lengths = source()
    _, states = fenc.predict(src, lengths=lengths, return_state=True)
    tstate = torch_encode(enc, src, lengths)
    bos = np.full((4, 1), BOS)
    free, free_logits = fdec.generate(bos, 25, temperature=1.5, seed=7, initial_state=states, return_logits=True)
    stop = int(free[0, 3])
    ids, logits = fdec.generate(bos, 25, temperature=1.5, seed=7, initial_state=states, stop_ids=[stop, stop],
                                return_logits=True)
    for b in range(4):
        cut = list(free[b]).index(stop) + 1 if stop in free[b] else 25
        np.testing.assert_array_equal(ids[b, :cut], free[b, :cut])
        assert (ids[b, cut:] == -1).all() and np.isnan(logits[b, cut:]).all() and not np.isnan(logits[b, :cut]).any()
    assert (ids == -1).any()
    # teacher-force the sampled ids through PyTorch: the logits each id was drawn from
    state, tok = tstate, np.full(4, BOS)
    for n in range(25):
        out, state = torch_step(dec, tok, state, "linear")
        assert_close(free_logits[:, n], out)
        tok = free[:, n]


def test_stream_generate_continues():
    """Stream.generate continues from the stream's state: a prompt split between run() and generate(),
    and greedy decoding in two calls (the last id as the next prompt), equal one call; a stopped row
    keeps the state from before its stop id (equal to PyTorch's)."""
    enc, dec = seq2seq("lstm", seed=5)
    fenc, fdec = convert(enc, dec, "lstm")
    src, lengths = source()
    _, states = fenc.predict(src, lengths=lengths, return_state=True)
    prompt = np.random.default_rng(2).integers(0, TGT_V, size=(4, 5))
    whole = fdec.generate(prompt, 24, greedy=True, initial_state=states)
    s = fdec.stream(4)
    s.state = states
    s.run(prompt[:, :3])
    first = s.generate(prompt[:, 3:], 10, greedy=True)
    second = s.generate(first[:, -1:], 14, greedy=True)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), whole)

    tstate = torch_encode(enc, src, lengths)
    plain, _ = torch_greedy(dec, tstate, 20, ())
    stop = stop_id_for(plain)
    s.state = states
    ids = s.generate(np.full((4, 1), BOS), 20, greedy=True, stop_ids=[stop])
    want_ids, _ = torch_greedy(dec, tstate, 20, (stop,))
    np.testing.assert_array_equal(ids, want_ids)
    got = fastrnn_state_of(s.state)
    for b in range(4):  # PyTorch's state after BOS and every id but the last
        st = rows_of(tstate, [b])
        for t in [BOS] + [int(i) for i in ids[b] if i >= 0][:-1]:
            _, st = torch_step(dec, [t], st, "linear")
        assert_close(tuple(x[:, b:b + 1] for x in got), tuple(x.numpy() for x in st))
    # single-row stream: a (time,) prompt gives (steps,)
    s1 = fdec.stream(1)
    assert s1.generate([BOS, 2], 6, greedy=True).shape == (6,)


def test_all_rows_stopped_ends_the_loop():
    """Every row stops at its first id: the rest is -1 / NaN, and the stream state is the one after the prompt."""
    enc, dec = seq2seq("gru")
    _, fdec = convert(enc, dec, "gru")
    prompt = np.array([[1, 2], [3, 4]])
    ids, logits = fdec.generate(prompt, 50, stop_ids=np.arange(TGT_V), seed=0, return_logits=True)
    assert (ids[:, 0] >= 0).all() and (ids[:, 1:] == -1).all() and np.isnan(logits[:, 1:]).all()
    want = fdec.predict(prompt)[:, -1]
    assert_close(logits[:, 0], want)
    for kwargs in ({"greedy": True}, {"beam_width": 3}):
        s = fdec.stream(2)
        ids = s.generate(prompt, 50, stop_ids=list(range(TGT_V)), **kwargs)
        assert (ids[:, 1:] == -1).all()
        _, after_prompt = fdec.predict(prompt, return_state=True)
        assert_close(fastrnn_state_of(s.state), fastrnn_state_of(after_prompt))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"stop_ids": [TGT_V]}, ArgumentError, r"stop id 11 is outside \[0, 11\)"),
    ({"stop_ids": -1}, ArgumentError, r"stop id -1 is outside"),
    ({"stop_ids": [1.0]}, ArgumentTypeError, r"stop_ids must be an id or a list of integer ids"),
    ({"stop_ids": [[1]]}, ArgumentTypeError, r"stop_ids must be"),
    ({"stop_ids": [True]}, ArgumentTypeError, r"stop_ids must be"),
    ({"beam_width": 0}, ArgumentError, r"beam_width must be in \[1, 11\]"),
    ({"beam_width": TGT_V + 1}, ArgumentError, r"beam_width must be in \[1, 11\]"),
    ({"beam_width": 2.0}, ArgumentTypeError, r"beam_width must be an int"),
    ({"beam_width": 3, "temperature": 0.5}, ArgumentError, r"beam search .* drop temperature=0.5"),
    ({"beam_width": 3, "top_k": 4}, ArgumentError, r"drop top_k=4"),
    ({"beam_width": 3, "seed": 1}, ArgumentError, r"drop seed=1"),
    ({"beam_width": 3, "greedy": True}, ArgumentError, r"drop greedy=True"),
    ({"beam_width": 3, "length_penalty": float("nan")}, ArgumentError, r"length_penalty must be finite"),
    ({"length_penalty": "long"}, ArgumentTypeError, r"length_penalty must be a number"),
    ({"return_logits": "yes"}, ArgumentTypeError, r"return_logits must be a bool"),
    ({"initial_state": np.zeros((1, 2, HID))}, fastrnn.ShapeError, r"one entry per recurrent layer"),
    ({"initial_state": [np.zeros((1, 3, HID))] * 2}, fastrnn.ShapeError, r"must have shape \(1, 2, 20\)"),
    ({"initial_state": [np.zeros((1, 2, HID + 1)), None]}, fastrnn.ShapeError, r"must have shape \(1, 2, 20\)"),
])
def test_generate_argument_errors(kwargs, exc, match):
    enc, dec = seq2seq("gru")
    _, fdec = convert(enc, dec, "gru")
    with pytest.raises(exc, match=match):
        fdec.generate(np.array([[1], [2]]), 5, **kwargs)


def test_initial_state_layers_may_be_none_and_stream_prompt_rows():
    enc, dec = seq2seq("gru")
    fenc, fdec = convert(enc, dec, "gru")
    src, lengths = source(2)
    _, states = fenc.predict(src, lengths=lengths, return_state=True)
    prompt = np.array([[1], [2]])
    # None for a layer: zeros, as predict's initial_state
    want = fdec.generate(prompt, 8, greedy=True, initial_state=[np.zeros_like(states[0]), states[1]])
    np.testing.assert_array_equal(fdec.generate(prompt, 8, greedy=True, initial_state=[None, states[1]]), want)
    with pytest.raises(fastrnn.ShapeError, match=r"prompt_ids must be integer ids of shape \(3 \(the stream's"):
        fdec.stream(3).generate(prompt, 4, greedy=True)
    with pytest.raises(TypeError, match="initial_state"):
        fdec.stream(2).generate(prompt, 4, greedy=True, initial_state=states)  # a stream has .state for that
