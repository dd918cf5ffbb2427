"""A DTLN-like noise-suppression frame step: 2-layer LSTM(257 -> 128), batch 1, one frame per call."""
from ._case import Case

ORDER = 30
CASES = [Case("dtln_step", "lstm", 1, 1, 257, 128, layers=2, mode="step",
              note="DTLN-like: 2-layer LSTM(257 -> 128), one frame per call")]
QUICK = ["dtln_step"]
