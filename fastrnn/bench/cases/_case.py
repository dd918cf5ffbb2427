"""What a case is: one model shape, timed as a whole sequence per call or one step per call."""
from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
#: steps each step engine runs, with its state carried, in the check against torch
CHECK_STEPS = 6


@dataclasses.dataclass(frozen=True)
class Case:
    """``mode="sequence"``: one call = ``predict`` on a (batch, steps, features) array.
    ``mode="step"``: one call = one step of a stream, (batch, features) in, state carried between
    calls (``steps`` is 1).  ``targets``: extra per-case rules ``(engine, ratio)``: the engine's
    time / fastrnn's must reach ``ratio``."""
    name: str
    cell: str  # "lstm" | "gru" | "rnn"
    batch: int
    steps: int
    features: int
    hidden: int
    layers: int = 1
    bidirectional: bool = False
    note: str = ""
    mode: str = "sequence"
    targets: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("sequence", "step"):
            raise ValueError(f"case {self.name}: mode must be 'sequence' or 'step', not {self.mode!r}")
        if self.mode == "step" and (self.steps != 1 or self.bidirectional):
            raise ValueError(f"case {self.name}: a step case has steps=1 and no backward direction")

    def describe(self) -> str:
        bi = " bi" if self.bidirectional else ""
        t = "step" if self.mode == "step" else f"T={self.steps}"
        return (f"{self.cell.upper()}{bi} x{self.layers} B={self.batch} {t} "
                f"I={self.features} H={self.hidden}")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def input_steps(self) -> int:
        """Steps of the input the engines are checked on (and, for a sequence, timed on)."""
        return CHECK_STEPS if self.mode == "step" else self.steps


def flops(case: Case) -> int:
    """Multiply-add FLOPs of one call: sum over layers and directions of 2*T*B*G*H*(I_layer + H)."""
    total, feats = 0, case.features
    for _ in range(case.layers):
        total += case.directions * 2 * case.steps * case.batch * GATES[case.cell] * case.hidden * (feats + case.hidden)
        feats = case.hidden * case.directions
    return total


def step_weight_bytes(case: Case) -> int:
    """Bytes of float32 weights every step must read again, whatever the engine: the recurrent weights
    W_hh (G*H x H per layer and direction; a sequence's input projection can run for all its steps at
    once), and W_ih too for a step case (one step per call: nothing to share it with).  At batch 1
    nothing else reuses them, so reading them sets a floor under the time of a step: the weight-read
    roofline of the batch-1 targets (targets.py)."""
    if case.mode == "step":
        return 2 * flops(case) // case.batch  # 4 bytes per weight, flops = 2 * B * weights
    return 4 * case.layers * case.directions * GATES[case.cell] * case.hidden * case.hidden


def make_input(case: Case, seed: int = 0) -> npt.NDArray[np.float32]:
    """(batch, input_steps, features) float32, seeded."""
    return np.random.default_rng(seed).standard_normal((case.batch, case.input_steps, case.features)).astype(
        np.float32)
