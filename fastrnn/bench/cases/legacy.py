"""The named cases of earlier versions and tiny smoke cases: reachable by name, not in the default run."""
from ._case import Case

ORDER = 90
DEFAULT = False
CASES = [
    Case("realtime_step", "lstm", 1, 1, 16, 128, note="one step of one stream"),
    Case("small_seq", "lstm", 1, 100, 32, 128, note="one sequence (batch 1)"),
    Case("batch32", "lstm", 32, 100, 32, 128, note="small batch"),
    Case("gru_sensor", "gru", 8, 200, 12, 64, note="sensor windows"),
    Case("large_batch", "gru", 256, 50, 64, 256, note="batch scoring"),
    Case("bilstm_text", "lstm", 64, 80, 64, 128, layers=2, bidirectional=True, note="sentiment-style encoder"),
    Case("smoke", "gru", 2, 5, 4, 8, layers=2, bidirectional=True, note="tiny: a seconds-long check of the machinery"),
    Case("smoke_step", "lstm", 2, 1, 4, 8, layers=2, mode="step", note="tiny step case: a check of the machinery"),
]
