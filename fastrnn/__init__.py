"""fastrnn: fast CPU inference for recurrent networks trained in Keras or PyTorch.

>>> import fastrnn
>>> m = fastrnn.from_torch(torch_lstm)      # or fastrnn.from_keras(keras_model)
>>> y = m.predict(x)                          # x: (batch, time, features)
>>> m.save("model.fastrnn"); m = fastrnn.load("model.fastrnn")   # or load("model.keras" / "model.pt")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, SupportsIndex

from ._version import __version__

from .errors import (ConversionError, ConversionWarning, CoreNotBuiltError, FastRNNError, ModelFileNotFoundError,
                     ModelFormatError, ShapeError, UnsupportedLayerError)
from .runtime import Model, core as _load_core
from .spec import ModelSpec

if TYPE_CHECKING:
    import os

    from .io.torch_file import Architecture

__all__ = [
    "Model", "ModelSpec", "load", "from_torch", "from_keras", "from_state_dict", "set_num_threads", "get_num_threads", "set_isa", "info",
    "FastRNNError", "ShapeError", "ModelFormatError", "UnsupportedLayerError", "ConversionError",
    "CoreNotBuiltError", "ModelFileNotFoundError", "ConversionWarning", "__version__",
]


def from_torch(module: Any) -> Model:
    """Convert a live torch module (nn.RNN/LSTM/GRU/Linear/Embedding/activations/Sequential)."""
    from .converters.torch import spec_from_torch

    return Model(spec_from_torch(module))


def from_keras(model: Any) -> Model:
    """Convert a live Keras 3 model (Sequential or a functional chain)."""
    from .converters.keras import spec_from_keras

    return Model(spec_from_keras(model))


def from_state_dict(state_dict: Mapping[str, Any], architecture: Architecture = None, strict: bool = True,
                    key: str | None = None) -> Model:
    """Build a model from an in-memory state dict of numpy arrays or torch tensors (or a checkpoint dict
    nesting one: ``key`` names it), with the architecture list of ``fastrnn.io.torch_file``; the same path
    as ``load("weights.pt" / ".safetensors" / ".npz", architecture=...)``."""
    from .io.containers import spec_from_state_dict

    return Model(spec_from_state_dict(state_dict, architecture, strict=strict, key=key))


def _framework(obj: object) -> str | None:
    """'torch' / 'keras' when a class in type(obj)'s MRO comes from that framework (no import)."""
    import sys

    for cls in type(obj).__mro__:
        top = (getattr(cls, "__module__", "") or "").split(".")[0]
        if top == "torch" and "torch" in sys.modules:
            return "torch"
        if top in ("keras", "tf_keras"):
            return "keras"
    return None


def load(path_or_object: str | os.PathLike[str] | Any, **options: Any) -> Model:
    """Load a model from a file or a live object; the one way in for the CLI, tests and benchmarks.

    * a path (``str`` / ``os.PathLike``), format told by content, not suffix: a ``.fastrnn`` file
      (:meth:`Model.save`), a Keras ``.keras`` / ``.h5`` file, a PyTorch ``.pt`` / ``.pth`` file
      (a state dict needs ``architecture=...``, see ``fastrnn.io.torch_file``), or weights in a plain
      ``.safetensors`` / ``.npz`` file (the same ``architecture=``); ``key="model_state"`` (or a dotted
      path) names the state dict in a checkpoint holding several.  Options are passed to the file reader.
    * a live ``torch.nn.Module`` (as :func:`from_torch`), ``keras.Model`` (as :func:`from_keras`),
      a :class:`ModelSpec`, or a :class:`Model` (returned as is).

    ``weights``: the precision of the recurrent weights, ``"f32"`` (``"float32"``), ``"bf16"``
    (``"bfloat16"``) or ``"int8"`` (see :meth:`Model.with_weights`).  By default a model keeps the
    precision of its source: float32 for every framework model (never reduced unless asked), bf16 /
    int8 for a ``.fastrnn`` file converted with ``fastrnn convert --weights``.  An ONNX
    ``DynamicQuantizeLSTM`` loaded with ``weights="int8"`` keeps its own int8 weights (exact per row
    where they are symmetric); otherwise it is dequantized to float32.

    Raises :class:`ModelFileNotFoundError` (a ``FileNotFoundError``) for a missing path and
    :class:`ModelFormatError` (a ``ValueError``) for content it cannot read, naming the file.
    """
    import os

    obj = path_or_object
    weights = options.pop("weights", None)
    if weights is not None:
        from .quantize import precision_arg

        weights = precision_arg(weights, "load: weights")
    if isinstance(obj, (str, os.PathLike)):
        from .errors import file_errors
        from .io.detect import spec_from_file

        spec, _ = spec_from_file(obj, **options, **({"weights": weights} if weights else {}))
        with file_errors(obj, "load"):  # the core's own refusals (and bad_alloc) name the file too
            return Model(spec)
    if isinstance(obj, Model) or isinstance(obj, ModelSpec):
        what = type(obj).__name__
        fw = None
    else:
        fw = _framework(obj)
        what = {"torch": "a torch module", "keras": "a Keras model"}.get(fw or "", "")
    from .io.detect import refuse_options

    refuse_options(options, "load()", what or "this object", "weights= only")
    if isinstance(obj, Model):
        model = obj
    elif isinstance(obj, ModelSpec):
        model = Model(obj)
    elif fw == "torch":
        model = from_torch(obj)
    elif fw == "keras":
        model = from_keras(obj)
    else:
        model = None
    if model is not None:
        return model.with_weights(weights) if weights else model
    from .errors import ArgumentTypeError

    raise ArgumentTypeError(f"load() takes a path, a torch.nn.Module, a keras.Model or a fastrnn ModelSpec; got "
                    f"{type(obj).__module__}.{type(obj).__qualname__}")


THREADS_PER_CORE = 2  # set_num_threads takes at most this many threads per logical CPU


def _max_num_threads() -> int:
    import os

    return THREADS_PER_CORE * (os.cpu_count() or 1)


def set_num_threads(n: SupportsIndex) -> None:
    """Threads used by predict() (default: FASTRNN_NUM_THREADS or all cores): any int type
    (``np.int64(2)`` works) from 1 to ``THREADS_PER_CORE`` x the logical CPUs of this machine (more
    threads than cores only slow every call down); anything else raises :class:`ArgumentError`
    (a ``ValueError``) or :class:`ArgumentTypeError` (a ``TypeError``)."""
    from .errors import ArgumentError
    from .runtime import int_arg

    n = int_arg(n, "set_num_threads: n", 1)
    cap = _max_num_threads()
    if n > cap:
        raise ArgumentError(f"set_num_threads: {n:,} threads is more than fastrnn takes on this machine: at most "
                            f"{cap} ({THREADS_PER_CORE} x its {cap // THREADS_PER_CORE} logical CPUs); threads "
                            "beyond the cores only slow every call down")
    _load_core().set_num_threads(n)


def get_num_threads() -> int:
    return int(_load_core().num_threads())


def set_isa(isa: str) -> None:
    """Force a kernel ISA ('generic', 'avx2', 'avx512'); for tests and comparisons.  One this CPU or
    build lacks raises :class:`ArgumentError` listing the available ones."""
    from .errors import ArgumentError, ArgumentTypeError

    c = _load_core()
    if not isinstance(isa, str):
        raise ArgumentTypeError(f"set_isa: isa must be a str, got {type(isa).__name__} {isa!r:.40}")
    if isa not in c.available_isas():
        raise ArgumentError(f"set_isa: ISA {isa!r:.40} is not available here (available: "
                            f"{', '.join(c.available_isas())})")
    c.set_isa(isa)


def info() -> dict[str, Any]:
    """Version, ISA in use, ISAs available, BLAS, the bf16 / int8 kernels the ISA in use runs, the bits
    of int8 activations (7 on x86 CPUs without VNNI: the range reduction, else 8), and the thread
    count."""
    c = _load_core()
    return {"version": __version__, "isa": c.isa(), "available_isas": list(c.available_isas()),
            "compiled_isas": list(c.compiled_isas()), "blas": c.blas(), "reduced_kernels": c.quantized_paths(),
            "int8_activation_bits": 7 if c.int8_activation_max() < 127 else 8, "num_threads": c.num_threads()}
