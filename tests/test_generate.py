"""Model.generate: greedy decoding equals a PyTorch loop token for token; seeded sampling repeats."""
import numpy as np
import pytest

import fastrnn
from conftest import require
from fastrnn.errors import ArgumentError, ArgumentTypeError


def char_lm(vocab=17, emb=8, hidden=24, layers=2, seed=0):
    torch = require("torch")

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, emb)
            self.gru = torch.nn.GRU(emb, hidden, num_layers=layers, batch_first=True)
            self.fc = torch.nn.Linear(hidden, vocab)

        def forward(self, x):
            out, _ = self.gru(self.embed(x))
            return self.fc(out)

    torch.manual_seed(seed)
    m = CharLM().eval()
    with torch.no_grad():  # sharper distributions than the default init, so greedy has clear winners
        for p in m.parameters():
            p.mul_(3.0)
    return m


def torch_greedy(m, prompt, steps):
    torch = require("torch")
    with torch.no_grad():
        x = torch.as_tensor(prompt)
        out, h = m.gru(m.embed(x))
        logits = m.fc(out[:, -1])
        ids = []
        for _ in range(steps):
            nxt = logits.argmax(dim=-1)
            ids.append(nxt)
            out, h = m.gru(m.embed(nxt[:, None]), h)
            logits = m.fc(out[:, -1])
        return torch.stack(ids, dim=1).numpy()


def test_greedy_matches_torch_loop():
    m = char_lm()
    model = fastrnn.from_torch(m)
    prompt = np.random.default_rng(0).integers(0, 17, size=(3, 5))
    got = model.generate(prompt, 40, greedy=True)
    assert got.shape == (3, 40) and got.dtype == np.int64
    np.testing.assert_array_equal(got, torch_greedy(m, prompt, 40))
    np.testing.assert_array_equal(model.generate(prompt[0], 40, greedy=True), got[0])  # single prompt


def test_seeded_sampling_repeats_and_respects_top_k():
    model = fastrnn.from_torch(char_lm())
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    a = model.generate(prompt, 200, temperature=0.8, seed=42)
    b = model.generate(prompt, 200, temperature=0.8, seed=42)
    c = model.generate(prompt, 200, temperature=0.8, seed=43)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert a.min() >= 0 and a.max() < 17
    np.testing.assert_array_equal(model.generate(prompt, 30, top_k=1, seed=1), model.generate(prompt, 30, greedy=True))


def test_sampling_follows_the_distribution():
    """With a model whose output ignores the input, sampled frequencies match softmax(logits/T)."""
    from fastrnn import spec as S

    rng = np.random.default_rng(0)
    V = 5
    gru = S.RecurrentSpec(kind="gru", name="gru", input_size=3, units=4,
                          weights=[S.DirectionWeights(np.zeros((12, 3)), np.zeros((12, 4)), np.zeros(12), np.zeros(12))])
    bias = np.array([0.0, 1.0, 2.0, -1.0, 0.5])
    spec = S.ModelSpec(layers=[S.EmbeddingSpec(name="e", embeddings=rng.standard_normal((V, 3))), gru,
                               S.DenseSpec(name="fc", weight=np.zeros((V, 4)), bias=bias)])
    ids = fastrnn.Model(spec).generate(np.zeros((1, 1), np.int64), 40000, temperature=0.7, seed=3)[0]
    freq = np.bincount(ids, minlength=V) / ids.size
    p = np.exp(bias / 0.7) / np.exp(bias / 0.7).sum()
    np.testing.assert_allclose(freq, p, atol=0.01)


def test_generate_errors():
    model = fastrnn.from_torch(char_lm())
    with pytest.raises(fastrnn.ShapeError, match="outside"):
        model.generate(np.array([[99]]), 3)
    with pytest.raises(ArgumentError, match="temperature"):
        model.generate(np.array([[1]]), 3, temperature=0.0)
    with pytest.raises(ArgumentError, match="top_k"):
        model.generate(np.array([[1]]), 3, top_k=0)


def const_lm(bias, head="linear"):
    """An LM whose output ignores its input: the logits are ``bias`` (as float32) at every step."""
    from fastrnn import spec as S

    V = len(bias)
    gru = S.RecurrentSpec(kind="gru", name="gru", input_size=3, units=4,
                          weights=[S.DirectionWeights(np.zeros((12, 3)), np.zeros((12, 4)), np.zeros(12), np.zeros(12))])
    rng = np.random.default_rng(0)
    return fastrnn.Model(S.ModelSpec(layers=[S.EmbeddingSpec(name="e", embeddings=rng.standard_normal((V, 3))), gru,
                                             S.DenseSpec(name="fc", weight=np.zeros((V, 4)), bias=np.asarray(bias),
                                                         activation=head)]))


def numpy_softmax(logits, temperature):
    """The distribution sampling must follow, computed independently (float64, numpy)."""
    z = np.asarray(logits, np.float64) / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


@pytest.mark.parametrize("scale,temperature", [(1.0, 0.7), (1e-3, 1e-3), (1e-30, 1e-30), (1e3, 1e3), (1e-36, 2e-36)])
def test_sampling_matches_numpy_softmax(scale, temperature):
    """Issue 12.7: sampled frequencies follow softmax(logits / T) computed by numpy from the model's
    real logits, at every scale of logits and temperature (tiny ones included)."""
    model = const_lm(np.array([0.0, 1.0, 2.0, -1.0, 0.5]) * scale)
    logits = model.stream(1).step(np.zeros(1, np.int64))[0]
    ids = model.generate(np.zeros((1, 1), np.int64), 40000, temperature=temperature, seed=3)[0]
    freq = np.bincount(ids, minlength=5) / ids.size
    np.testing.assert_allclose(freq, numpy_softmax(logits, temperature), atol=0.01)


@pytest.mark.parametrize("temperature", [1e-30, 1e-39, 1e-46, 1e-300, 5e-324])
def test_tiny_temperature_is_greedy(temperature):
    """Issue 12.7: 1e-39 and 1e-46 passed the `> 0` check, logits / T overflowed (1e-46 is 0 as a
    float32), inf - inf gave NaN, and every row got the last vocabulary id.  Sampling from
    exp((logit - max) / T) never overflows; a T this small leaves only the maximum."""
    model = fastrnn.from_torch(char_lm())
    prompt = np.random.default_rng(1).integers(0, 17, size=(4, 3))
    greedy = model.generate(prompt, 30, greedy=True)
    np.testing.assert_array_equal(model.generate(prompt, 30, temperature=temperature, seed=5), greedy)
    np.testing.assert_array_equal(model.generate(prompt, 30, temperature=temperature, top_k=3, seed=5), greedy)


@pytest.mark.parametrize("head", ["linear", "softmax", "log_softmax"])
def test_huge_logits_do_not_overflow(head):
    """Logits near the float32 limit over a normal temperature: z / T overflowed to inf (-> NaN,
    the last id); the weights of the differences to the maximum give the argmax, as numpy does."""
    bias = np.array([1e38, 2e38, 3e38, -3e38, 0.0]) if head == "linear" else np.array([0.0, 1.0, 80.0, -1.0, 0.5])
    model = const_lm(bias, head)
    out = model.stream(1).step(np.zeros(1, np.int64))[0]
    logits = np.log(out.astype(np.float64)) if head == "softmax" else out
    p = numpy_softmax(logits, 0.1 if head == "linear" else 1e-3)
    ids = model.generate(np.zeros((1, 1), np.int64), 2000, temperature=0.1 if head == "linear" else 1e-3, seed=0)[0]
    assert p.max() > 1 - 1e-12 and (ids == p.argmax()).all(), (p, np.bincount(ids))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"steps": 2.0}, ArgumentTypeError, r"generate: steps must be an int, got float"),
    ({"steps": -1}, ArgumentError, r"generate: steps must be in \[0, "),
    ({"steps": 2 ** 40}, ArgumentError, r"generate: steps must be in \[0, 2,147,483,648\]"),
    ({"steps": True}, ArgumentTypeError, r"got a bool"),
    ({"top_k": 1.5}, ArgumentTypeError, r"top_k must be an int"),
    ({"top_k": 2 ** 70}, ArgumentError, r"top_k must be in"),
    ({"seed": 2 ** 70}, ArgumentError, r"seed must be in"),
    ({"seed": "1"}, ArgumentTypeError, r"seed must be an int"),
    ({"temperature": "hot"}, ArgumentTypeError, r"temperature must be a number"),
    ({"temperature": float("nan")}, ArgumentError, r"temperature must be a finite number > 0"),
    ({"temperature": -1}, ArgumentError, r"temperature must be a finite number > 0"),
    ({"prompt_ids": [[1.5, 2.0]]}, fastrnn.ShapeError, r"ids must be integers, got non-integral floats"),
    ({"prompt_ids": [[True]]}, fastrnn.ShapeError, r"expects integer ids, got dtype bool"),
])
def test_generate_argument_rule(kwargs, exc, match):
    """Issue 12.12: the int arguments follow the API's one rule (any int type; a float or bool is an
    ArgumentTypeError, a value out of range an ArgumentError, both naming the argument)."""
    model = fastrnn.from_torch(char_lm())
    args = {"prompt_ids": [[1, 2]], "steps": 3, **kwargs}
    with pytest.raises(exc, match=match):
        model.generate(args.pop("prompt_ids"), **args)


def test_generate_takes_numpy_ints_and_integral_float_prompts():
    model = fastrnn.from_torch(char_lm())
    want = model.generate([[1, 2]], 5, top_k=4, seed=9)
    np.testing.assert_array_equal(model.generate(np.array([[1.0, 2.0]]), np.int64(5), top_k=np.int32(4),
                                                 seed=np.uint64(9)), want)
