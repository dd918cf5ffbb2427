"""Multi-feature time-series regression: a building's power load from 48 hours of weather (PyTorch state dict -> fastrnn).

The PyTorch "LSTM for multivariate time series" tutorial: five features per hour (outdoor
temperature, humidity, the hour as sin / cos, a workday flag), windows of the last 48 hours,
a 2-layer LSTM(32) -> Linear(1) predicting the load at the window's last hour.  The data are
synthetic (seeded): the load follows occupancy and the temperature of the past hours (the
building's thermal inertia, which is why a recurrent model helps).  The trained weights are saved
the usual PyTorch way, torch.save(model.state_dict()), and read by fastrnn.load with the
architecture list (no torch needed to read them).  The PNG shows prediction against truth over two
test weeks, a predicted-vs-true scatter, and fastrnn's speed next to PyTorch's.

    python examples/timeseries_regress.py [--quick] [--out DIR] [--threads N]
"""
from __future__ import annotations

import numpy as np

import _common as C

import fastrnn

WINDOW, FEATURES, UNITS, LAYERS = 48, 5, 32, 2
# The chain fastrnn needs for a state dict (it has weights, not forward()): keys are the module names.
ARCHITECTURE = [{"type": "lstm", "key": "lstm", "num_layers": LAYERS},
                {"type": "last_step"},
                {"type": "linear", "key": "head"}]


def building(hours, rng):
    """Hourly features (temperature, humidity, hour sin / cos, workday) and the power load (kW)."""
    t = np.arange(hours)
    hour, day = t % 24, t // 24
    temp = 18 + 8 * np.sin(2 * np.pi * (hour - 9) / 24) + 4 * np.sin(2 * np.pi * day / 17) + rng.normal(0, 1.0, hours)
    humid = np.clip(60 - 1.5 * (temp - 18) + rng.normal(0, 5, hours), 10, 100)
    workday = ((day % 7) < 5).astype(float)
    occupied = workday * ((hour >= 8) & (hour < 19))
    inertia = np.convolve(temp, np.exp(-np.arange(24) / 6) / 3.8, mode="full")[:hours]  # past hours weigh in
    load = 40 + 60 * occupied + 3.0 * np.maximum(inertia - 20, 0) + 0.05 * humid + rng.normal(0, 2, hours)
    x = np.stack([temp, humid, np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24), workday], axis=1)
    return x.astype(np.float32), load.astype(np.float32)


def make_model(torch):
    class LoadLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(FEATURES, UNITS, num_layers=LAYERS, batch_first=True)
            self.head = torch.nn.Linear(UNITS, 1)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

    return LoadLSTM()


def main():
    args = C.parse_args(__doc__)
    torch = C.setup(args, "torch")
    rng = np.random.default_rng(args.seed)
    days = 120 if args.quick else 400
    feats, load = building(24 * days, rng)
    split = 24 * (days - 14)  # the last two weeks are the test period
    mu, sd = feats[:split].mean(0), feats[:split].std(0)
    lmu, lsd = load[:split].mean(), load[:split].std()
    xs = (feats - mu) / sd
    ends = np.arange(WINDOW, len(load) + 1)
    windows = xs[ends[:, None] - WINDOW + np.arange(WINDOW)]
    target = (load[ends - 1] - lmu) / lsd
    train = ends <= split
    x_train, y_train = torch.from_numpy(windows[train]), torch.from_numpy(target[train])
    x_test, y_true = windows[~train], load[ends[~train] - 1]

    model = make_model(torch)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    steps = 150 if args.quick else 1500
    for i in range(steps):
        idx = torch.randint(0, len(x_train), (64,))
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x_train[idx])[:, 0], y_train[idx])
        loss.backward()
        opt.step()
    model.eval()

    path = args.out / "building_load.pt"
    torch.save(model.state_dict(), path)
    fast = fastrnn.load(path, architecture=ARCHITECTURE)  # read without torch: a restricted unpickler
    print(f"{LAYERS}-layer LSTM({UNITS}) -> Linear(1): {steps} Adam steps, last batch mse {loss.item():.3f} "
          f"(standardized); {path.name} ({path.stat().st_size:,} bytes) -> {fast}")

    pred = fast.predict(x_test)[:, 0]
    x_test_t = torch.from_numpy(x_test)
    with torch.inference_mode():
        ref = model(x_test_t)[:, 0].numpy()
    C.parity(f"{len(x_test)} test windows (standardized load)", pred, ref, "torch")
    pred_kw = pred * lsd + lmu
    mae = float(np.abs(pred_kw - y_true).mean())
    print(f"test period ({len(x_test)} hours): mean absolute error {mae:.2f} kW (load {y_true.mean():.1f} kW on average)")

    last = x_test[-1:]
    last_t = torch.from_numpy(last)

    def torch_call(x):
        with torch.inference_mode():
            return model(x)

    t_one = C.time_side_by_side(f"latest window, batch 1 x {WINDOW} x {FEATURES}", {
        "fastrnn predict (1 window)": lambda: fast.predict(last),
        "torch (1 window)": lambda: torch_call(last_t)}, args.quick)
    t_all = C.time_side_by_side(f"test period, batch {len(x_test)} x {WINDOW} x {FEATURES}", {
        f"fastrnn predict ({len(x_test)})": lambda: fast.predict(x_test),
        f"torch ({len(x_test)})": lambda: torch_call(x_test_t)}, args.quick)

    fig, (ax, bx, cx) = C.figure(ncols=3, width=5.2, height=4.2)
    hours = np.arange(len(y_true))
    ax.plot(hours / 24, y_true, color="black", lw=1, label="true load")
    ax.plot(hours / 24, pred_kw, color="tab:green", lw=1.5, label="fastrnn prediction")
    ax.set_xlabel("day of the test period")
    ax.set_ylabel("power load (kW)")
    ax.set_title(f"two test weeks: mean abs error {mae:.1f} kW\nmax |fastrnn - torch| {np.abs(pred - ref).max():.1e} "
                 "(standardized)", fontsize=9)
    temp = ax.twinx()
    temp.plot(hours / 24, feats[ends[~train] - 1, 0], color="tab:red", lw=0.6, alpha=0.5)
    temp.set_ylabel("outdoor temperature (C)", color="tab:red", fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    bx.scatter(y_true, pred_kw, s=4, alpha=0.5, color="tab:green")
    lim = [min(y_true.min(), pred_kw.min()), max(y_true.max(), pred_kw.max())]
    bx.plot(lim, lim, color="black", lw=0.8, ls="--")
    bx.set_xlabel("true load (kW)")
    bx.set_ylabel("predicted load (kW)")
    bx.set_title("predicted vs true, one point per test hour", fontsize=9)
    C.speed_bars(cx, [t_one, t_all], f"{LAYERS}-layer LSTM({UNITS}) on {WINDOW} h x {FEATURES} features", args)
    C.save(fig, args, "timeseries_regress.png")


if __name__ == "__main__":
    main()
