"""fastrnn: fast CPU inference for recurrent networks trained in Keras or PyTorch.

>>> import fastrnn
>>> m = fastrnn.from_torch(torch_lstm)      # or fastrnn.from_keras(keras_model)
>>> y = m.predict(x)                          # x: (batch, time, features)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import (ConversionError, CoreNotBuiltError, FastRNNError, ModelFormatError, ShapeError,
                     UnsupportedLayerError)
from .runtime import Model, core as _load_core
from .spec import ModelSpec

__all__ = [
    "Model", "ModelSpec", "from_torch", "from_keras", "set_num_threads", "get_num_threads", "set_isa", "info",
    "FastRNNError", "ShapeError", "ModelFormatError", "UnsupportedLayerError", "ConversionError",
    "CoreNotBuiltError", "__version__",
]


def from_torch(module) -> Model:
    """Convert a live torch module (nn.RNN/LSTM/GRU/Linear/Embedding/activations/Sequential)."""
    from .converters.torch import spec_from_torch

    return Model(spec_from_torch(module))


def from_keras(model) -> Model:
    """Convert a live Keras 3 model (Sequential or a functional chain)."""
    from .converters.keras import spec_from_keras

    return Model(spec_from_keras(model))


def set_num_threads(n: int) -> None:
    """Threads used by predict() (default: FASTRNN_NUM_THREADS or all cores)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _load_core().set_num_threads(n)


def get_num_threads() -> int:
    return _load_core().num_threads()


def set_isa(isa: str) -> None:
    """Force a kernel ISA ('generic', 'avx2', 'avx512'); for tests and comparisons."""
    c = _load_core()
    if isa not in c.available_isas():
        raise UnsupportedLayerError(f"ISA {isa!r} is not available here (available: {', '.join(c.available_isas())})")
    c.set_isa(isa)


def info() -> dict:
    """Version, ISA in use, ISAs available, BLAS and thread count."""
    c = _load_core()
    return {"version": __version__, "isa": c.isa(), "available_isas": list(c.available_isas()),
            "compiled_isas": list(c.compiled_isas()), "blas": c.blas(), "num_threads": c.num_threads()}
