"""A silero-VAD-like recurrent step: LSTMCell(128), batch 1, one chunk per call."""
from ._case import Case

ORDER = 50
CASES = [Case("silero_step", "lstm", 1, 1, 128, 128, mode="step",
              note="silero-like: LSTMCell(128), one chunk per call")]
