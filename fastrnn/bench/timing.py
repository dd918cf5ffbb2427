"""Checking an engine against torch, then timing the engines of a case in interleaved rounds."""
from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence, TextIO

import numpy as np

if TYPE_CHECKING:
    from .models import Stepper

TOLERANCE = 1e-4   # max abs difference from torch for an engine to count as correct
MIN_RUNS = 3       # timed samples per engine per case, at least
MAX_RUNS = 200     # ... at most
ROUNDS = 5         # interleaved rounds the samples are spread over
PAUSE = 0.05       # seconds between engine blocks (idle spinning threads go to sleep)
SAMPLE_S = 1e-3    # a call under half of this is timed in bursts of about this long (one sample)


def _compare(y: Any, expected: np.ndarray, tol: float) -> float:
    y = np.asarray(y)
    if y.shape != expected.shape:
        raise AssertionError(f"output shape {y.shape} != torch's {expected.shape}")
    diff = float(np.max(np.abs(y.astype(np.float64) - expected))) if y.size else 0.0
    if not diff <= tol:  # also catches NaN
        raise AssertionError(f"differs from torch by {diff:.3g} (tolerance {tol:g})")
    return diff


def check_engine(f: Callable[[Any], Any], x: Any, expected: np.ndarray | None, tol: float = TOLERANCE) -> tuple[float | None, float]:
    """Run f(x) (warm-up / compile), then again timed; returns (max_abs_diff, seconds) or raises
    AssertionError when the output differs from `expected` (None: nothing to check)."""
    f(x)
    t0 = time.perf_counter()
    y = f(x)
    dt = time.perf_counter() - t0
    return (None if expected is None else _compare(y, expected, tol)), dt


def check_stepper(stepper: Stepper, xs: Sequence[np.ndarray], expected: np.ndarray | None,
                  tol: float = TOLERANCE) -> tuple[float | None, float]:
    """A step engine from zero state over the steps ``xs`` (each (batch, features)) against torch's
    output sequence ``expected`` (batch, len(xs), outputs) (None: unchecked), after a warm-up step;
    returns (max_abs_diff, seconds of the last step) and leaves the state at zero."""
    stepper.call(xs[0])
    stepper.reset()
    ys: list[np.ndarray] = []
    dt = 0.0
    for x in xs:
        t0 = time.perf_counter()
        y = stepper.call(x)
        dt = time.perf_counter() - t0
        ys.append(np.array(y, dtype=np.float32, copy=True))  # an engine may reuse its output buffer
    stepper.reset()
    return (None if expected is None else _compare(np.stack(ys, axis=1), expected, tol)), dt


def calls_per_sample(f: Callable[[Any], Any], x: Any, dt: float) -> int:
    """Calls per sample: 1 for a call of SAMPLE_S / 2 or more (dt: one call's time), else as many
    as last about SAMPLE_S (measured)."""
    number = 1
    while dt * number < SAMPLE_S / 2 and number < 1 << 20:
        number = min(1 << 20, max(number * 2, math.ceil(SAMPLE_S / max(dt, 1e-9))))
        dt = burst(f, x, number) / number
    return number


def burst(f: Callable[[Any], Any], x: Any, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        f(x)
    return time.perf_counter() - t0


class Progress:
    """`[ 12/33] lstm_32x128_b32 keras_xla timing 2/5` (case number / cases, engine, phase) on stderr,
    rewritten in place; only on a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.total, self.i = total, 0
        self.stream = stream or sys.stderr
        self.enabled = (hasattr(self.stream, "isatty") and self.stream.isatty()) if enabled is None else enabled
        self.width = 0

    def show(self, case: str, engine: str, what: str = "") -> None:
        if not self.enabled:
            return
        n = len(str(self.total))
        msg = f"[{min(self.i + 1, self.total):>{n}}/{self.total}] {case} {engine} {what}".rstrip()
        self.stream.write("\r" + msg.ljust(self.width))
        self.stream.flush()
        self.width = len(msg)

    def step(self) -> None:
        self.i += 1

    def clear(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


def time_engines(live: dict[str, tuple[Callable[[Any], Any], Any, float]], min_time: float = 0.4,
                 progress: Progress | None = None, label: str = "", pause: float = PAUSE) -> dict[str, dict[str, Any]]:
    """Time checked engines side by side: ``live`` = {name: (f, x, seconds of the checked call)}.

    Adaptive repetition: at least MIN_RUNS samples per engine (a call of SAMPLE_S / 2 or more is
    one sample, and the checked call counts as the first; faster calls are timed in bursts),
    about ``min_time`` seconds, spread over interleaved rounds that go through the engines in
    turn, so that machine noise hits all alike.  Returns {name: {"number": calls per sample,
    "samples": [seconds per call, ...]}}.
    """
    progress = progress or Progress(1, enabled=False)
    number: dict[str, int] = {}
    samples: dict[str, list[float]] = {}
    plan: dict[str, int] = {}
    for k, (f, x, dt) in live.items():
        progress.show(label, k, "calibrating")
        number[k] = n = calls_per_sample(f, x, dt)
        samples[k] = [dt] if n == 1 else []
        plan[k] = max(MIN_RUNS, min(MAX_RUNS, math.ceil(min_time / max(dt * n, 1e-6)))) - len(samples[k])
    rounds = min(ROUNDS, max(plan.values(), default=0))
    for r in range(rounds):
        for k, (f, x, _) in live.items():
            todo = round((r + 1) * plan[k] / rounds) - round(r * plan[k] / rounds)
            if not todo:
                continue
            progress.show(label, k, f"timing {r + 1}/{rounds}")
            time.sleep(pause)
            n = number[k]
            for _ in range(todo):
                samples[k].append(burst(f, x, n) / n)
    return {k: {"number": number[k], "samples": samples[k]} for k in live}
