"""Stateful sensor streaming: a fault detector fed one reading (or one chunk) at a time (PyTorch -> fastrnn).

The streaming-inference tutorial: four machines each send a reading (vibration, temperature,
current) every tick; a GRU(32) -> Linear(1) -> sigmoid trained on whole recordings gives P(fault)
at every step.  In production the readings arrive one by one, so the recurrent state must be
carried from call to call: fastrnn's model.stream(4) keeps it (step(x_t) for one tick of all four
machines, run(chunk) for a burst of buffered ticks, reset([k]) when machine k is swapped, state to
park and resume).  The same loop in PyTorch carries h by hand; both must agree at every tick.  The
data are synthetic (seeded fault episodes: vibration rises, temperature drifts).  The PNG shows
each machine's readings with its P(fault) trace against the true faults, and the time per tick.

    python examples/sensor_streaming.py [--quick] [--out DIR] [--threads N]
"""
from __future__ import annotations

import numpy as np

import _common as C

import fastrnn

MACHINES, FEATURES, UNITS, CHUNK = 4, 3, 32, 25


def recordings(n, steps, rng):
    """(n, steps, 3) readings and (n, steps) fault labels: a few fault episodes per machine."""
    x = np.empty((n, steps, FEATURES), np.float32)
    y = np.zeros((n, steps), np.float32)
    t = np.arange(steps)
    for i in range(n):
        fault = np.zeros(steps)
        for start in rng.integers(0, steps, max(1, steps // 300)):
            fault[start:start + rng.integers(40, 120)] = 1
        ramp = np.convolve(fault, np.ones(30) / 30, mode="same")  # faults build up, then fade
        vib = 1 + 0.2 * np.sin(2 * np.pi * t / rng.uniform(40, 80)) + 1.2 * ramp * rng.uniform(0.7, 1.3)
        x[i, :, 0] = vib * (1 + 0.25 * rng.standard_normal(steps))
        x[i, :, 1] = 0.8 * ramp + 0.15 * rng.standard_normal(steps)  # temperature above normal (scaled)
        x[i, :, 2] = 0.3 * np.sin(2 * np.pi * t / 90) + 0.3 * ramp + 0.1 * rng.standard_normal(steps)
        y[i] = fault
    return x, y


def make_model(torch):
    class FaultGRU(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(FEATURES, UNITS, batch_first=True)
            self.head = torch.nn.Linear(UNITS, 1)

        def forward(self, x):
            out, _ = self.gru(x)
            return torch.sigmoid(self.head(out))

    return FaultGRU()


def main():
    args = C.parse_args(__doc__)
    torch = C.setup(args, "torch")
    rng = np.random.default_rng(args.seed)
    x_train, y_train = recordings(64, 160, rng)
    model = make_model(torch)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    steps = 60 if args.quick else 600
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (16,))
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy(model(xt[idx])[..., 0], yt[idx])
        loss.backward()
        opt.step()
    model.eval()
    fast = fastrnn.from_torch(model)
    print(f"GRU({UNITS}) -> Linear(1) -> sigmoid: {steps} Adam steps, loss {loss.item():.3f}; {fast}")

    ticks = 600 if args.quick else 2000
    live, faults = recordings(MACHINES, ticks, rng)
    swap = ticks // 2  # machine 2 is replaced here: its state starts again from zero

    # fastrnn: one stream for the four machines; ticks one by one, then buffered chunks.
    stream = fast.stream(MACHINES)
    out = np.empty((MACHINES, 1), np.float32)
    ours = np.empty((MACHINES, ticks), np.float32)
    t = 0
    while t < ticks:
        if t == swap:
            stream.reset([2])
        if (t // 100) % 2 == 0:  # one reading per call ...
            ours[:, t] = stream.step(live[:, t], out=out)[:, 0]
            t += 1
        else:  # ... or a chunk of buffered readings (never across the swap)
            n = min(CHUNK, ticks - t, (swap - t) if t < swap else ticks)
            ours[:, t:t + n] = stream.run(live[:, t:t + n])[..., 0]
            t += n

    # PyTorch: the same loop, carrying h by hand, one tick per call.
    theirs = np.empty_like(ours)
    h = None
    with torch.inference_mode():
        for t in range(ticks):
            if t == swap:
                h[:, 2] = 0
            o, h = model.gru(torch.from_numpy(live[:, t:t + 1]), h)
            theirs[:, t] = torch.sigmoid(model.head(o))[:, 0, 0].numpy()
    C.parity(f"P(fault) at every tick, {MACHINES} machines x {ticks} ticks, steps + chunks + a reset", ours, theirs,
             "torch")

    # Park and resume: the state of all four machines saved mid-stream and put back gives the same numbers.
    stream.reset()
    stream.run(live[:, :50])
    saved = stream.state
    after = stream.run(live[:, 50:80])
    stream.reset()
    stream.state = saved
    if not np.array_equal(stream.run(live[:, 50:80]), after):
        raise SystemExit("FAIL: resuming from a saved state gave different numbers")
    print("park / resume: stream.state saved at tick 50 and restored gives the same outputs (bit for bit)")
    hits = float(np.mean((ours > 0.5) == (faults > 0.5)))
    print(f"P(fault) > 0.5 matches the true fault state at {hits:.1%} of the {MACHINES * ticks} machine-ticks")

    x1, xs = live[:, 0], live[:, :CHUNK]
    s_step, s_chunk = fast.stream(MACHINES), fast.stream(MACHINES)
    hold = {}

    def torch_tick(x):
        with torch.inference_mode():
            o, hold["h"] = model.gru(x, hold.get("h"))
            return torch.sigmoid(model.head(o))

    x1_t, xs_t = torch.from_numpy(live[:, :1]), torch.from_numpy(xs)
    t_tick = C.time_side_by_side(f"one tick of {MACHINES} machines (state carried)", {
        "fastrnn stream.step (1 tick)": lambda: s_step.step(x1, out=out),
        "torch GRU + head (1 tick)": lambda: torch_tick(x1_t)}, args.quick)
    t_chunk = C.time_side_by_side(f"a chunk of {CHUNK} ticks of {MACHINES} machines", {
        f"fastrnn stream.run ({CHUNK} ticks)": lambda: s_chunk.run(xs),
        f"torch GRU + head ({CHUNK} ticks)": lambda: torch_tick(xs_t)}, args.quick)

    fig, axes = C.figure(ncols=1, nrows=MACHINES + 1, width=11, height=1.9)
    tt = np.arange(ticks)
    for k, ax in enumerate(axes[:MACHINES]):
        ax.fill_between(tt, 0, faults[k] * live[k, :, 0].max(), color="tab:red", alpha=0.12, step="mid",
                        label="true fault")
        ax.plot(tt, live[k, :, 0], color="tab:gray", lw=0.5, label="vibration")
        ax.set_ylabel(f"machine {k}", fontsize=8)
        px = ax.twinx()
        px.plot(tt, ours[k], color="tab:red", lw=1.2, label="P(fault), fastrnn stream")
        px.set_ylim(-0.05, 1.05)
        px.set_yticks([0, 0.5, 1])
        ax.set_xlim(0, ticks)
        if k == 2:
            ax.axvline(swap, color="black", lw=1, ls="--")
            ax.text(swap, ax.get_ylim()[1], " swapped: reset([2])", fontsize=7, va="top")
        if k == 0:
            ax.set_title(f"{MACHINES} machines streamed tick by tick and in chunks of {CHUNK}; "
                         f"max |fastrnn - torch| {np.abs(ours - theirs).max():.1e}", fontsize=9)
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = px.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left", ncol=3)
    axes[MACHINES - 1].set_xlabel("tick")
    C.speed_bars(axes[MACHINES], [t_tick, t_chunk], f"GRU({UNITS}) fault detector, {MACHINES} streams", args)
    C.save(fig, args, "sensor_streaming.png")


if __name__ == "__main__":
    main()
