"""Stock-price window LSTM with the forecast feedback loop (Keras -> .keras file -> fastrnn).

The classic Keras tutorial: cut a price series into windows of the last 20 (scaled) prices, train
LSTM(32) -> Dense(1) to predict the next one, then forecast the future by feeding each prediction
back into the window.  The prices here are synthetic (a seeded random walk with drift and a
cycle; nothing is downloaded).  The model is saved as a .keras file and read back by
fastrnn.load (no TensorFlow needed to read it), then written and re-read as a .fastrnn file.  Parity is
checked on every test window and on the whole feedback forecast; the loop (fastrnn.bench.
forecast_loop_fastrnn, the loop README shows) is timed against the same loop calling the Keras model.
The PNG shows the forecast against the true continuation, and the speed side by side.

    python examples/stock_forecast.py [--quick] [--out DIR] [--threads N]
"""
from __future__ import annotations

import numpy as np

import _common as C

import fastrnn
from fastrnn.bench import forecast_loop_fastrnn

WINDOW, UNITS = 20, 32


def synthetic_prices(n, seed):
    """A seeded geometric random walk with a slow cycle: something price-shaped."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    log_ret = 0.0004 + 0.012 * rng.standard_normal(n) + 0.01 * np.sin(2 * np.pi * t / 60)
    return (100 * np.exp(np.cumsum(log_ret))).astype(np.float32)


def windows(series, window):
    idx = np.arange(len(series) - window)[:, None] + np.arange(window)
    return series[idx][..., None], series[window:]


def keras_forecast(model, history, horizon, window):
    """The same feedback loop in Keras: predict, append, slide.  predict_on_batch runs Keras's compiled
    predict function: ~40x faster per call than model(x) or model.predict(x) here."""
    buf = list(history)
    for _ in range(horizon):
        x = np.asarray(buf[-window:], np.float32).reshape(1, window, 1)
        buf.append(float(model.predict_on_batch(x)[0, 0]))
    return np.asarray(buf[len(history):], np.float32)


def main():
    args = C.parse_args(__doc__)
    keras = C.setup(args, "keras")
    n, horizon = (400, 30) if args.quick else (1200, 60)
    prices = synthetic_prices(n, args.seed)
    split = int(0.8 * n)
    lo, hi = prices[:split].min(), prices[:split].max()  # scale with the training part only
    scaled = (prices - lo) / (hi - lo)
    x_train, y_train = windows(scaled[:split], WINDOW)
    x_test, y_test = windows(scaled[split - WINDOW:], WINDOW)

    model = keras.Sequential([keras.Input((WINDOW, 1)), keras.layers.LSTM(UNITS), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    epochs = 2 if args.quick else 20
    hist = model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    print(f"trained LSTM({UNITS}) -> Dense(1) on {len(x_train)} windows of {WINDOW}: {epochs} epochs, "
          f"mse {hist.history['loss'][-1]:.2e}")

    keras_path = args.out / "stock_lstm.keras"
    model.save(keras_path)
    fast = fastrnn.load(keras_path)  # read in a sandboxed child process; TensorFlow is not used
    native_path = args.out / "stock_lstm.fastrnn"
    fast.save(native_path)           # fastrnn's own format: what a service would ship
    fast = fastrnn.load(native_path)
    print(f"{keras_path.name} ({keras_path.stat().st_size:,} bytes) -> {native_path.name} "
          f"({native_path.stat().st_size:,} bytes): {fast}")

    one_step = fast.predict(x_test)[:, 0]
    C.parity(f"one-step predictions on {len(x_test)} test windows",
             one_step, model(x_test, training=False).numpy()[:, 0], "keras")
    history = scaled[:split]
    ours = forecast_loop_fastrnn(fast, history, horizon, WINDOW)
    theirs = keras_forecast(model, history, horizon, WINDOW)
    C.parity(f"{horizon}-step feedback forecast", ours, theirs, "keras")

    loop = C.time_side_by_side(f"feedback forecast, {horizon} steps of batch 1 x {WINDOW}", {
        "fastrnn forecast loop": lambda: forecast_loop_fastrnn(fast, history, horizon, WINDOW),
        "keras predict_on_batch loop": lambda: keras_forecast(model, history, horizon, WINDOW)}, args.quick)
    batch = C.time_side_by_side(f"one-step predictions, batch {len(x_test)} x {WINDOW}", {
        "fastrnn predict": lambda: fast.predict(x_test),
        "keras predict_on_batch": lambda: model.predict_on_batch(x_test),
        "keras model.predict": lambda: model.predict(x_test, verbose=0)}, args.quick)

    unscale = lambda v: v * (hi - lo) + lo  # noqa: E731
    fig, (ax, bx) = C.figure(ncols=2, width=6.5)
    t = np.arange(n)
    ax.plot(t[:split], prices[:split], color="black", lw=1, label="history (training part)")
    ax.plot(t[split:], prices[split:], color="tab:blue", lw=1, label="truth")
    ax.plot(t[split:], unscale(one_step), color="tab:orange", lw=1, label="one step ahead (fastrnn)")
    ax.plot(t[split:split + horizon], unscale(ours), color="tab:green", lw=2.5,
            label=f"{horizon}-step feedback forecast (fastrnn)")
    ax.plot(t[split:split + horizon], unscale(theirs), color="black", lw=1, ls="--",
            label="same forecast in Keras")
    ax.axvline(split, color="gray", lw=0.5)
    ax.set_xlim(max(0, split - 3 * horizon), n)
    ax.set_xlabel("day")
    ax.set_ylabel("price")
    ax.set_title(f"synthetic price, window {WINDOW}, LSTM({UNITS}) -> Dense(1)\n"
                 f"max |fastrnn - keras| over the forecast: {np.abs(ours - theirs).max():.1e}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    C.speed_bars(bx, [loop, batch], f"forecast loop ({horizon} calls) and one batch of {len(x_test)} windows", args)
    C.save(fig, args, "stock_forecast.png")


if __name__ == "__main__":
    main()
