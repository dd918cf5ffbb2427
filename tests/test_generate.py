"""Model.generate: greedy decoding equals a PyTorch loop token for token; seeded sampling repeats."""
import numpy as np
import pytest

import fastrnn
from conftest import require


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
    with pytest.raises(fastrnn.ShapeError, match="temperature"):
        model.generate(np.array([[1]]), 3, temperature=0.0)
    with pytest.raises(fastrnn.ShapeError, match="top_k"):
        model.generate(np.array([[1]]), 3, top_k=0)
