"""The forecast feedback loop of the stock-price tutorial: predict the next value, append it,
predict again; fastrnn against the same loop in PyTorch on the same weights."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from ..runtime import Model


def forecast_loop_fastrnn(model: Model, history: np.ndarray, horizon: int, window: int) -> np.ndarray:
    """Sliding-window recursive forecast with Model.predict (same result as the Keras loop)."""
    buf = np.empty(len(history) + horizon, np.float32)
    buf[: len(history)] = history
    x = np.empty((1, window, 1), np.float32)
    for i in range(horizon):
        n = len(history) + i
        x[0, :, 0] = buf[n - window: n]
        buf[n] = model.predict(x)[0, 0]
    return buf[len(history):]


def run_forecast(horizon: int = 50, window: int = 20, units: int = 32, out: Callable[[str], object] = print) -> dict[str, Any]:
    """Time the tutorial loop on the same weights: fastrnn, PyTorch, Keras (those installed)."""
    import fastrnn
    import torch

    torch.manual_seed(0)

    class StockLSTM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(1, units, batch_first=True)
            self.fc = torch.nn.Linear(units, 1)

        def forward(self, x: Any) -> Any:
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])

    tm = StockLSTM().eval()
    model = fastrnn.from_torch(tm)
    history = np.sin(np.linspace(0, 6, 100)).astype(np.float32)

    def torch_loop() -> np.ndarray:
        buf = list(history)
        with torch.inference_mode():
            for _ in range(horizon):
                x = torch.tensor(buf[-window:], dtype=torch.float32).view(1, window, 1)
                buf.append(float(tm(x)[0, 0]))
        return np.array(buf[len(history):], np.float32)

    engines = {"fastrnn": lambda: forecast_loop_fastrnn(model, history, horizon, window), "torch": torch_loop}
    ref = torch_loop()
    np.testing.assert_allclose(engines["fastrnn"](), ref, atol=1e-4)
    times: dict[str, float] = {}
    for k, f in engines.items():
        f()
        t0 = time.perf_counter()
        for _ in range(5):
            f()
        times[k] = (time.perf_counter() - t0) / 5 / horizon * 1e6
    out(f"forecast loop (window {window}, LSTM({units}) -> Dense(1), {horizon} steps): " +
        "  ".join(f"{k}: {v:.1f} us/step ({v / times['fastrnn']:.1f}x)" for k, v in times.items()))
    return times
