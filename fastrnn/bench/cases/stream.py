"""One step of one stream, called from Python (also what `fastrnn bench --stream` runs by default)."""
from ._case import Case

ORDER = 10
CASES = [
    # the per-step target: >= 15x ONNX Runtime's one-step model and >= 25x torch.nn.LSTMCell
    Case("step_lstm_8x64", "lstm", 1, 1, 8, 64, mode="step", targets=(("onnxruntime", 15.0), ("torch", 25.0)),
         note="one step of an LSTM(8 -> 64) stream"),
    Case("step_gru_16x128", "gru", 1, 1, 16, 128, mode="step", note="one step of a GRU(16 -> 128) stream"),
]
QUICK = ["step_lstm_8x64"]
