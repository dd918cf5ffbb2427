"""The PyTorch word-language-model example (medium): 2-layer LSTM(650 -> 650), batch 20, bptt 35."""
from ._case import Case

ORDER = 60
CASES = [Case("word_lm_b20", "lstm", 20, 35, 650, 650, layers=2,
              note="PyTorch word_language_model: 2-layer LSTM(650), batch 20, T=35")]
