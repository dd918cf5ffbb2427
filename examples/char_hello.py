"""Character-level "hello": a SimpleRNN and an LSTM learn to spell it (PyTorch -> fastrnn).

The oldest RNN tutorial: feed the characters "hihell" one-hot, one per step, and train the network
to answer the next character at each step, "ihello".  Two tiny PyTorch models (nn.RNN and nn.LSTM,
each followed by nn.Linear) train for a few hundred Adam steps; fastrnn.from_torch converts the
live modules; both engines must give the same per-step probabilities (max |diff| <= 1e-4) and
the same spelling.  The PNG shows, for each model, which character it believes comes next at
every step (a probability heat map), and fastrnn's time per call next to PyTorch's.

    python examples/char_hello.py [--quick] [--out DIR] [--threads N]
"""
from __future__ import annotations

import numpy as np

import _common as C

import fastrnn

SOURCE, TARGET = "hihell", "ihello"
VOCAB = sorted(set(SOURCE + TARGET))  # ['e', 'h', 'i', 'l', 'o']


def one_hot(text):
    x = np.zeros((1, len(text), len(VOCAB)), np.float32)
    x[0, np.arange(len(text)), [VOCAB.index(c) for c in text]] = 1
    return x


def make_model(torch, cell, hidden):
    class CharRNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cell(len(VOCAB), hidden, batch_first=True)
            self.fc = torch.nn.Linear(hidden, len(VOCAB))

        def forward(self, x):
            out, _ = self.rnn(x)
            return torch.softmax(self.fc(out), dim=-1)  # fastrnn folds the softmax into the Dense layer

    return CharRNN()


def train(torch, model, x, y, steps):
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        probs = model(x)
        loss = torch.nn.functional.nll_loss(torch.log(probs[0] + 1e-9), y)
        loss.backward()
        opt.step()
    return loss.item()


def main():
    args = C.parse_args(__doc__)
    torch = C.setup(args, "torch")
    x_np = one_hot(SOURCE)
    x, y = torch.from_numpy(x_np), torch.tensor([VOCAB.index(c) for c in TARGET])
    steps = 150 if args.quick else 500
    fig, axes = C.figure(ncols=3, width=4.6)
    times = []
    for i, (label, cell, hidden) in enumerate((("SimpleRNN", torch.nn.RNN, 8), ("LSTM", torch.nn.LSTM, 8))):
        model = make_model(torch, cell, hidden)
        loss = train(torch, model, x, y, steps)
        model.eval()
        fast = fastrnn.from_torch(model)  # the live module; no file in between
        with torch.inference_mode():
            ref = model(x).numpy()
            batch = torch.rand(16, 12, len(VOCAB))  # unseen, longer sequences: the whole graph, not just "hihell"
            ref_batch = model(batch).numpy()
        probs = fast.predict(x_np)
        C.parity(f"{label} on '{SOURCE}'", probs, ref, "torch")
        C.parity(f"{label} on a (16, 12, 5) batch", fast.predict(batch.numpy()), ref_batch, "torch")
        spelled = "".join(VOCAB[k] for k in probs[0].argmax(-1))
        torch_spelled = "".join(VOCAB[k] for k in ref[0].argmax(-1))
        print(f"{label}({hidden}): loss {loss:.3f} after {steps} steps; '{SOURCE}' -> fastrnn '{spelled}', "
              f"torch '{torch_spelled}'")
        if spelled != torch_spelled:
            raise SystemExit(f"FAIL: fastrnn spells '{spelled}', torch '{torch_spelled}'")

        def torch_call(model=model):
            with torch.inference_mode():
                return model(x)

        t = C.time_side_by_side(f"{label}, batch 1 x {len(SOURCE)} steps", {
            f"fastrnn {label}": lambda fast=fast: fast.predict(x_np), f"torch {label}": torch_call}, args.quick)
        times.append(t)

        ax = axes[i]
        ax.imshow(probs[0].T, cmap="Greens", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(SOURCE)), [f"'{c}'" for c in SOURCE])
        ax.set_yticks(range(len(VOCAB)), VOCAB)
        ax.set_xlabel("input character (one per step)")
        ax.set_ylabel("next character")
        for t_, k in enumerate(probs[0].argmax(-1)):
            ax.text(t_, k, f"{probs[0, t_, k]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if probs[0, t_, k] > 0.5 else "black")
        ax.set_title(f"{label}({hidden}) via fastrnn spells '{spelled}'\n(target '{TARGET}', loss {loss:.3f})",
                     fontsize=9)
    C.speed_bars(axes[2], times, f"batch 1, {len(SOURCE)} steps, 5 -> 8 -> 5", args)
    C.save(fig, args, "char_hello.png")


if __name__ == "__main__":
    main()
