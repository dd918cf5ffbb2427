"""Character-level language model generation (PyTorch state dict -> fastrnn generate).

The char-RNN tutorial: an Embedding -> LSTM(128) -> Linear over the characters learns to predict
the next character of a small text, then writes new text one character at a time, feeding each
pick back in.  The text is a few lines written for this example (nothing is downloaded).  The
weights are saved with torch.save(model.state_dict()) and read by fastrnn.load with the
architecture list.  fastrnn.Model.generate runs the whole loop (prompt, pick, feed back) in C++;
greedy generation must give exactly the ids of the same loop in PyTorch, and the logits along the
generated text must agree within 1e-4.  The PNG shows the model's next-character probabilities
while it writes, sampled text at two temperatures, and the time per generated character.

    python examples/char_lm_generate.py [--quick] [--out DIR] [--threads N]
"""
from __future__ import annotations

import textwrap

import numpy as np

import _common as C

import fastrnn

TEXT = """\
the quick brown fox jumps over the lazy dog. the lazy dog sleeps in the sun and the fox runs
into the wood. in the wood the fox finds a river, and by the river an old tree. the tree is
tall and the river is cold. the fox drinks from the river and sleeps under the tall tree.
when the sun goes down the dog wakes up and looks for the fox, but the fox is in the wood,
far from the dog, under the old tree by the cold river. the dog goes back to sleep in the sun.
"""
CHARS = sorted(set(TEXT))
EMBED, UNITS, SEQ = 32, 128, 48
ARCHITECTURE = [{"type": "embedding", "key": "embed"}, {"type": "lstm", "key": "lstm"},
                {"type": "linear", "key": "head"}]


def make_model(torch):
    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(len(CHARS), EMBED)
            self.lstm = torch.nn.LSTM(EMBED, UNITS, batch_first=True)
            self.head = torch.nn.Linear(UNITS, len(CHARS))

        def forward(self, ids, state=None):
            out, state = self.lstm(self.embed(ids), state)
            return self.head(out), state

    return CharLM()


def torch_greedy(torch, model, prompt, steps):
    """The tutorial's generation loop in PyTorch: run the prompt, then feed back the argmax."""
    with torch.inference_mode():
        logits, state = model(torch.as_tensor(prompt))
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out = [nxt]
        for _ in range(steps - 1):
            logits, state = model(nxt, state)
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
    return torch.cat(out, 1).numpy()


def decode(ids):
    return "".join(CHARS[i] for i in ids)


def main():
    args = C.parse_args(__doc__)
    torch = C.setup(args, "torch")
    data = np.array([CHARS.index(c) for c in TEXT], np.int64)
    model = make_model(torch)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    steps = 120 if args.quick else 1500
    rng = np.random.default_rng(args.seed)
    for _ in range(steps):
        starts = rng.integers(0, len(data) - SEQ - 1, 32)
        batch = torch.from_numpy(data[starts[:, None] + np.arange(SEQ + 1)])
        opt.zero_grad()
        logits, _ = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(CHARS)), batch[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
    model.eval()

    path = args.out / "char_lm.pt"
    torch.save(model.state_dict(), path)
    lm = fastrnn.load(path, architecture=ARCHITECTURE)
    print(f"char LM: Embedding({len(CHARS)}, {EMBED}) -> LSTM({UNITS}) -> Linear({len(CHARS)}), {steps} Adam steps, "
          f"loss {loss.item():.2f}; {path.name} ({path.stat().st_size:,} bytes) -> {lm}")

    prompt_text, n = "the fox ", 120 if args.quick else 300
    prompt = np.array([[CHARS.index(c) for c in prompt_text]])
    ours = lm.generate(prompt, n, greedy=True)
    theirs = torch_greedy(torch, model, prompt, n)
    same = int(np.sum(ours == theirs))
    print(f"greedy, {n} characters after '{prompt_text}': {same}/{n} ids equal to PyTorch's loop")
    print("  " + repr(prompt_text + decode(ours[0])))
    if same != n:
        raise SystemExit(f"FAIL: greedy generation differs from PyTorch at {n - same} of {n} characters")
    full = np.concatenate([prompt, ours], 1)  # the whole written text, teacher-forced through both
    logits_all = lm.predict(full)
    with torch.inference_mode():
        ref = model(torch.from_numpy(full))[0].numpy()
    C.parity(f"logits along the {full.shape[1]} generated characters", logits_all, ref, "torch")

    samples = {t: prompt_text + decode(lm.generate(prompt, n, temperature=t, top_k=10, seed=args.seed)[0])
               for t in (0.7, 1.5)}
    for t, s in samples.items():
        print(f"  sampled, temperature {t}, top_k 10: {s!r}")

    prompts16 = np.stack([data[i:i + len(prompt_text)] for i in rng.integers(0, len(data) - 20, 16)])
    t_one = C.time_side_by_side(f"greedy generation of {n} characters, 1 prompt", {
        f"fastrnn generate ({n} chars)": lambda: lm.generate(prompt, n, greedy=True),
        f"torch loop ({n} chars)": lambda: torch_greedy(torch, model, prompt, n)}, args.quick)
    t_16 = C.time_side_by_side(f"greedy generation of {n} characters, 16 prompts", {
        f"fastrnn generate (16 x {n})": lambda: lm.generate(prompts16, n, greedy=True),
        f"torch loop (16 x {n})": lambda: torch_greedy(torch, model, prompts16, n)}, args.quick)
    for label, t in (("1 prompt", t_one), ("16 prompts", t_16)):
        f, tt = t.values()
        print(f"  per generated character, {label}: fastrnn {C.fmt_s(f / n)}, torch {C.fmt_s(tt / n)}")

    fig, (ax, bx, cx) = C.figure(ncols=3, width=5.4, height=4.4)
    shown = 40
    logits = logits_all[0, len(prompt_text) - 1:len(prompt_text) - 1 + shown].astype(np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    top = np.argsort(-p.sum(0))[:14]
    ax.imshow(p[:, top].T, cmap="Blues", aspect="auto", vmin=0, vmax=1)
    ax.set_yticks(range(len(top)), [repr(CHARS[i]) for i in top], fontsize=7)
    ax.set_xticks(range(shown), list(decode(ours[0, :shown])), fontsize=7)
    ax.set_xlabel("character written (greedy), step by step")
    ax.set_title(f"P(next character) while writing after '{prompt_text}'\n(the {len(top)} likeliest characters)",
                 fontsize=9)
    bx.axis("off")
    body = "\n\n".join(f"temperature {t}, top_k 10:\n" + textwrap.fill(s[:220], 48) for t, s in samples.items())
    bx.text(0, 1, f"greedy (= PyTorch, {same}/{n} ids):\n" + textwrap.fill((prompt_text + decode(ours[0]))[:220], 48)
            + "\n\n" + body, va="top", family="monospace", fontsize=7.5, transform=bx.transAxes)
    bx.set_title("what fastrnn.generate wrote", fontsize=9)
    C.speed_bars(cx, [t_one, t_16], f"generating {n} characters, LSTM({UNITS})", args)
    C.save(fig, args, "char_lm_generate.png")


if __name__ == "__main__":
    main()
