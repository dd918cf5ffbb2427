"""Per-sample streaming as in RTNeural-compare: LSTM and GRU with input = hidden = 8, 16, 32, 64,
batch 1, one step (one audio sample) per call."""
from ._case import Case

ORDER = 20
CASES = [Case(f"rtneural_{cell}_{n}", cell, 1, 1, n, n, mode="step",
              note=f"RTNeural-compare: {cell.upper()}({n}), one sample per call")
         for cell in ("lstm", "gru") for n in (8, 16, 32, 64)]
QUICK = ["rtneural_gru_32"]
RUN_NOTE = ("rtneural_*: RTNeural's own figures are not included (none taken from the RTNeural-compare "
            "repository here); run RTNeural-compare on the same machine to compare")
