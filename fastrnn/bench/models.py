"""The models every engine starts from: a seeded torch module (the reference for correctness),
its torch cells, fastrnn's own random model, and the per-case :class:`Context` engines share."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from .cases import GATES, Case

if TYPE_CHECKING:
    from ..runtime import Model
    from ..spec import LayerSpec


def build_torch(case: Case, seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[case.cell]
    return cls(case.features, case.hidden, num_layers=case.layers, bidirectional=case.bidirectional,
               batch_first=True).eval()


def torch_cells(module: Any) -> list[Any]:
    """One ``nn.LSTMCell`` / ``GRUCell`` / ``RNNCell`` per layer of a one-direction torch RNN, with
    its weights copied (what a user writes to run one step per call)."""
    import torch

    kind = type(module).__name__
    cls = {"LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell, "RNN": torch.nn.RNNCell}[kind]
    extra = {"nonlinearity": module.nonlinearity} if kind == "RNN" else {}
    cells = []
    for i in range(module.num_layers):
        cell = cls(module.input_size if i == 0 else module.hidden_size, module.hidden_size, bias=module.bias,
                   **extra).eval()
        with torch.no_grad():
            for name, p in cell.named_parameters():
                p.copy_(getattr(module, f"{name}_l{i}"))
        cells.append(cell)
    return cells


def random_model(cell: str, features: int, hidden: int, layers: int = 1, bidirectional: bool = False, seed: int = 0,
                 scale: float = 0.1) -> Model:
    """A fastrnn Model of stacked ``cell`` layers ('lstm' / 'gru' / 'rnn') with seeded weights drawn
    uniformly from [-scale, scale], straight from a ModelSpec (no framework needed); output sequence."""
    import fastrnn

    from ..spec import DirectionWeights, ModelSpec, RecurrentSpec

    rng = np.random.default_rng(seed)
    g, nd = GATES[cell] * hidden, 2 if bidirectional else 1
    specs: list[LayerSpec] = []
    feats = features
    for i in range(layers):
        w = [DirectionWeights(*(rng.uniform(-scale, scale, s).astype(np.float32) for s in
                                ((g, feats), (g, hidden), (g,), (g,)))) for _ in range(nd)]
        specs.append(RecurrentSpec(kind={"rnn": "simple_rnn"}.get(cell, cell), name=f"l{i}", input_size=feats,
                                   units=hidden, weights=w, direction="bidirectional" if bidirectional else "forward"))
        feats = hidden * nd
    return fastrnn.Model(ModelSpec(layers=specs, input_features=features))


class Stepper(NamedTuple):
    """A step engine: ``call(x_t)`` (batch, features) -> (batch, outputs) runs one step and carries
    the state to the next call; ``reset()`` sets the state back to zeros."""
    call: Callable[[np.ndarray], np.ndarray]
    reset: Callable[[], None]


def carried(step: Callable[[np.ndarray, Any], tuple[np.ndarray, Any]], init: Callable[[], Any]) -> Stepper:
    """A :class:`Stepper` from ``step(x, state) -> (y, new_state)`` and ``init() -> zero state``."""
    box = [init()]

    def call(x: np.ndarray) -> np.ndarray:
        y, box[0] = step(x, box[0])
        return y

    def reset() -> None:
        box[0] = init()

    return Stepper(call, reset)


class Context:
    """What the engines of one case share: the torch module and what engines derive from it (an
    ONNX export, a Keras model, ...) built once via :meth:`shared`, released by :meth:`close`."""

    def __init__(self, case: Case, threads: int) -> None:
        self.case, self.threads = case, threads
        self._module: Any = None
        self._shared: dict[str, Any] = {}
        self._closers: list[Callable[[], object]] = []

    @property
    def module(self) -> Any:
        if self._module is None:
            self._module = build_torch(self.case)
        return self._module

    def shared(self, key: str, build: Callable[[], Any], close: Callable[[], object] | None = None) -> Any:
        """``build()`` once per case under ``key``; ``close()`` (if given) runs in :meth:`close`."""
        if key not in self._shared:
            self._shared[key] = build()
            if close is not None:
                self._closers.append(close)
        return self._shared[key]

    def reference(self, x: np.ndarray) -> np.ndarray:
        """torch's output sequence on x (batch, time, features)."""
        import torch

        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            y: np.ndarray = self.module(torch.from_numpy(x))[0].numpy()
            return y

    def close(self) -> None:
        for close in self._closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - best effort
                pass
        self._module, self._shared, self._closers = None, {}, []
