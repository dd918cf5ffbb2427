"""An RNN-T prediction-network step: LSTM(640 -> 640), batch 1, one token per call."""
from ._case import Case

ORDER = 40
CASES = [Case("rnnt_pred_step", "lstm", 1, 1, 640, 640, mode="step",
              note="RNN-T prediction network: LSTM(640 -> 640), one token per call")]
