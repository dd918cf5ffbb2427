"""The grid: LSTM / GRU / SimpleRNN x (I, H) in 8x64, 32x128, 128x512 x batch 1 / 32 / 256, T=100,
plus a 2-layer and a bidirectional LSTM(32 -> 128) at the same batches (33 cases)."""
from ._case import Case

ORDER = 0
IS_GRID = True


def _grid() -> list[Case]:
    cases = []
    for cell in ("lstm", "gru", "rnn"):
        for feats, hidden in ((8, 64), (32, 128), (128, 512)):
            for batch in (1, 32, 256):
                cases.append(Case(f"{cell}_{feats}x{hidden}_b{batch}", cell, batch, 100, feats, hidden))
    for batch in (1, 32, 256):
        cases.append(Case(f"lstm2_h128_b{batch}", "lstm", batch, 100, 32, 128, layers=2, note="2-layer LSTM"))
    for batch in (1, 32, 256):
        cases.append(Case(f"bilstm_h128_b{batch}", "lstm", batch, 100, 32, 128, bidirectional=True,
                          note="bidirectional LSTM"))
    return cases


CASES = _grid()
#: --quick: the (32, 128) shapes at batch 1 and 32
QUICK = [c.name for c in CASES if ("32x128" in c.name or "_h128" in c.name) and c.name.endswith(("_b1", "_b32"))]
