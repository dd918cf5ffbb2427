"""Multi-feature time-series classification: which activity is a 3-axis accelerometer recording? (Keras -> fastrnn)

The Keras "classify time series" tutorial on sensor data: windows of 32 steps (2 s at 16 Hz) of a 3-channel
signal (x, y, z acceleration), three classes (still, walking, running), GRU(32) -> Dense(3,
softmax).  The recordings are synthetic (seeded; nothing is downloaded): gravity on z plus noise,
a ~2 Hz sway for walking, a faster and stronger one for running.  After a short training the live
Keras model is converted with fastrnn.from_keras.  A long recording that changes activity is then
classified by a sliding window at every step (one batch of windows, one call): the PNG shows the
signal, the class probabilities over time against the true activity, and the speed side by side.

    python examples/timeseries_classify.py [--quick] [--out DIR] [--threads N]
"""
from __future__ import annotations

import numpy as np

import _common as C

import fastrnn

CLASSES = ("still", "walking", "running")
WINDOW, FEATURES, UNITS, HZ = 32, 3, 32, 16  # 32 steps = 2 s at 16 Hz


def recording(labels, steps_each, rng):
    """A 3-axis accelerometer signal: ``steps_each`` steps of each activity in ``labels``."""
    parts = []
    for k in labels:
        t = np.arange(steps_each) / HZ
        freq, amp = {0: (0.0, 0.0), 1: (rng.uniform(1.6, 2.2), 0.5), 2: (rng.uniform(2.8, 3.4), 1.2)}[k]
        phase = rng.uniform(0, 2 * np.pi)
        sway = amp * np.sin(2 * np.pi * freq * t + phase)
        sig = np.stack([sway, 0.5 * amp * np.cos(2 * np.pi * freq * t + phase), 1.0 + 0.3 * sway * sway], axis=1)
        parts.append(sig + 0.15 * rng.standard_normal(sig.shape))
    return np.concatenate(parts).astype(np.float32)


def dataset(n, rng):
    y = rng.integers(0, len(CLASSES), n)
    x = np.stack([recording([k], WINDOW, rng) for k in y])
    return x, y


def main():
    args = C.parse_args(__doc__)
    keras = C.setup(args, "keras")
    rng = np.random.default_rng(args.seed)
    x_train, y_train = dataset(300 if args.quick else 3000, rng)
    x_test, y_test = dataset(200, rng)
    model = keras.Sequential([keras.Input((WINDOW, FEATURES)), keras.layers.GRU(UNITS),
                              keras.layers.Dense(len(CLASSES), activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    epochs = 8 if args.quick else 15
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)

    fast = fastrnn.from_keras(model)  # the live model: weights are read, nothing is traced
    probs = fast.predict(x_test)
    C.parity(f"class probabilities of {len(x_test)} test windows", probs, model.predict_on_batch(x_test), "keras")
    acc = float(np.mean(probs.argmax(-1) == y_test))
    print(f"GRU({UNITS}) -> Dense({len(CLASSES)}, softmax), {epochs} epochs on {len(x_train)} windows: "
          f"test accuracy {acc:.1%} (fastrnn)")

    # A 24-second recording that changes activity every 6 s, classified at every step by the window ending there.
    story = [0, 1, 2, 1] if args.quick else [0, 1, 2, 1, 0, 2]
    each = 6 * HZ
    signal = recording(story, each, rng)
    truth = np.repeat(story, each)
    ends = np.arange(WINDOW, len(signal) + 1)
    slides = signal[ends[:, None] - WINDOW + np.arange(WINDOW)]  # one window per step: (len - WINDOW + 1, WINDOW, 3)
    trace = fast.predict(slides)
    C.parity(f"sliding-window trace ({len(slides)} windows)", trace, model.predict_on_batch(slides), "keras")
    agree = float(np.mean(trace.argmax(-1) == truth[ends - 1]))
    print(f"sliding window over a {len(signal) / HZ:.0f} s recording: the argmax matches the true activity at "
          f"{agree:.1%} of the steps")

    one = slides[:1]
    t_one = C.time_side_by_side(f"one window, batch 1 x {WINDOW} x {FEATURES}", {
        "fastrnn predict (1 window)": lambda: fast.predict(one),
        "keras predict_on_batch (1 window)": lambda: model.predict_on_batch(one)}, args.quick)
    t_all = C.time_side_by_side(f"the whole trace, batch {len(slides)} x {WINDOW} x {FEATURES}", {
        f"fastrnn predict ({len(slides)})": lambda: fast.predict(slides),
        f"keras predict_on_batch ({len(slides)})": lambda: model.predict_on_batch(slides),
        f"keras model.predict ({len(slides)})": lambda: model.predict(slides, verbose=0)}, args.quick)

    fig, (ax, bx, cx) = C.figure(ncols=1, nrows=3, width=11, height=2.8)
    t = np.arange(len(signal)) / HZ
    colors = ("tab:gray", "tab:blue", "tab:red")
    for i, name in enumerate("xyz"):
        ax.plot(t, signal[:, i], lw=0.6, label=f"acc {name}")
    for seg, k in enumerate(story):
        for a in (ax, bx):
            a.axvspan(seg * each / HZ, (seg + 1) * each / HZ, color=colors[k], alpha=0.08)
        ax.text((seg + 0.5) * each / HZ, ax.get_ylim()[1], CLASSES[k], ha="center", va="top", fontsize=8)
    ax.set_xlim(t[0], t[-1])
    ax.set_ylabel("acceleration (g)")
    ax.legend(fontsize=7, loc="lower right", ncol=3)
    ax.set_title("synthetic 3-axis accelerometer recording (true activity shaded)", fontsize=9)
    for k, name in enumerate(CLASSES):
        bx.plot(ends / HZ, trace[:, k], color=colors[k], lw=1.5, label=f"P({name})")
    bx.set_ylim(-0.02, 1.02)
    bx.set_xlim(t[0], t[-1])
    bx.set_xlabel("time (s): each point classifies the 2 s window ending there")
    bx.set_ylabel("probability (fastrnn)")
    bx.legend(fontsize=7, loc="lower left")
    bx.set_title(f"class probabilities by sliding window: argmax right at {agree:.0%} of the steps; "
                 f"max |fastrnn - keras| {np.abs(trace - model.predict_on_batch(slides)).max():.1e}", fontsize=9)
    C.speed_bars(cx, [t_one, t_all], f"GRU({UNITS}) classifier, windows of {WINDOW} x {FEATURES}", args)
    C.save(fig, args, "timeseries_classify.png")


if __name__ == "__main__":
    main()
