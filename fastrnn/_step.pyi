"""Type stub of the optional Cython step entry point ``fastrnn._step`` (fastrnn/_step.pyx)."""
import numpy as np

from fastrnn import _core

class FastStep:
    def __init__(self, stream: _core.Stream) -> None: ...
    def __call__(self, x: object, out: object = None) -> np.ndarray: ...
