"""Reduced-precision recurrent weights: the one place that turns float32 weights into bfloat16 or int8
(and back).  numpy only; runs once, when a model is converted or loaded with ``weights=...``.

Precisions (``RecurrentSpec.precision``; the spec holds the weights in their *stored* form):

``"f32"``
    float32 (the default: exact, what the source framework computes).
``"bf16"``
    ``w_ih`` / ``w_hh`` / ``w_hr`` as uint16 arrays of bfloat16 bit patterns, same shapes: the top
    16 bits of the float32, rounded to nearest even (a NaN stays a NaN, quiet; +-inf stay +-inf; a
    finite value past the largest bfloat16 rounds to inf, as IEEE does).
``"int8"``
    the same matrices as int8 arrays ``q`` in [-127, 127] plus float32 row scales
    ``<name>_scale`` (rows,): ``w[r, k] ~= q[r, k] * scale[r]`` with
    ``scale[r] = max_k |w[r, k]| / 127`` (symmetric, per output row; -128 is never used).  An
    all-zero row gets ``scale 0`` and ``q 0``.  Weights that are not finite cannot be int8 and are
    refused (:class:`~fastrnn.errors.ModelFormatError` naming the tensor).

Biases, Dense and Embedding weights, activations, states and accumulations stay float32.

Converting between reduced precisions goes through the stored form: :func:`convert_spec` dequantizes
(bf16 exactly; int8 as ``q * scale`` in float32) and quantizes again, so ``bf16 -> int8`` and
``int8 -> bf16`` both work and their errors add up; ``-> "f32"`` gives float32 weights equal to the
dequantized ones -- it never brings back the original weights, which a reduced model does not keep.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .errors import ArgumentError, ArgumentTypeError, ModelFormatError

if TYPE_CHECKING:
    from .spec import ModelSpec, RecurrentSpec

__all__ = ["PRECISIONS", "ALIASES", "REDUCED_TENSORS", "precision_arg", "to_bf16", "from_bf16", "to_int8",
           "from_int8", "stored_dtype", "quantize", "dequantize", "convert_layer", "convert_spec"]

PRECISIONS = ("f32", "bf16", "int8")
ALIASES = {"float32": "f32", "bfloat16": "bf16"}
# the matrices a reduced precision stores reduced (biases stay float32)
REDUCED_TENSORS = ("w_ih", "w_hh", "w_hr")
INT8_MAX = 127


def precision_arg(value: object, what: str) -> str:
    """The one rule for a precision argument (``load(weights=)``, ``Model.with_weights``, ``--weights``):
    one of :data:`PRECISIONS` or an alias (``"float32"``, ``"bfloat16"``), case-insensitive; anything
    else raises :class:`ArgumentError` (a str of another value) or :class:`ArgumentTypeError` naming
    ``what``."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{what} must be a str (one of {', '.join(PRECISIONS)}), got "
                                f"{type(value).__name__} {value!r:.40}")
    key = value.strip().lower()
    key = ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ArgumentError(f"{what} must be one of {', '.join(PRECISIONS)} (or {', '.join(ALIASES)}), "
                            f"got {value!r:.40}")
    return key


def stored_dtype(precision: str) -> np.dtype:
    """The dtype of a reduced matrix in ``precision`` (float32, uint16 bf16 bits, int8)."""
    return np.dtype({"f32": np.float32, "bf16": np.uint16, "int8": np.int8}[precision])


# --------------------------------------------------------------------------------- bfloat16
def to_bf16(a: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """float32 values -> uint16 bfloat16 bit patterns, round to nearest even; NaN stays NaN (quiet)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    bits = a.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    nan = np.isnan(a)
    out: npt.NDArray[np.uint16] = rounded.astype(np.uint16)
    if nan.any():  # rounding could carry a NaN's low mantissa into the exponent (inf) or lose it
        out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def from_bf16(b: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    b = np.ascontiguousarray(b, dtype=np.uint16)
    f: npt.NDArray[np.float32] = (b.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return f


# --------------------------------------------------------------------------------- int8
def to_int8(a: npt.ArrayLike, name: str = "weights") -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """float32 matrix [rows, cols] -> ``(q int8 [rows, cols], scale float32 [rows])``, symmetric per row:
    ``scale = max|row| / 127`` (float32), ``q = round(w / scale)`` (nearest even, computed in float64
    against the stored scale) clipped to [-127, 127]; an all-zero row: scale 0, q 0.
    Non-finite weights raise :class:`ModelFormatError` naming ``name``."""
    w = np.asarray(a, dtype=np.float32)
    if w.ndim != 2:
        raise ModelFormatError(f"tensor '{name}': int8 weights are per-row matrices, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ModelFormatError(f"tensor '{name}': holds NaN or inf, which int8 cannot represent "
                               "(keep this model in f32 or bf16)")
    amax = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
    scale = (amax.astype(np.float64) / INT8_MAX).astype(np.float32)
    safe = np.where(scale > 0, scale, 1).astype(np.float64)[:, None]
    q = np.clip(np.rint(w.astype(np.float64) / safe), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def from_int8(q: npt.ArrayLike, scale: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``q * scale[:, None]`` in float32 (what the int8 weights stand for)."""
    return np.asarray(q, dtype=np.float32) * np.asarray(scale, dtype=np.float32)[:, None]


# --------------------------------------------------------------------------------- one direction / layer / spec
def quantize(a: npt.ArrayLike, precision: str, name: str = "weights") -> tuple[np.ndarray, np.ndarray | None]:
    """float32 matrix -> ``(stored, scale or None)`` in ``precision``."""
    if precision == "f32":
        return np.ascontiguousarray(a, dtype=np.float32), None
    if precision == "bf16":
        return to_bf16(a), None
    if precision == "int8":
        return to_int8(a, name)
    raise ArgumentError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")


def dequantize(stored: npt.ArrayLike, precision: str, scale: Any = None) -> npt.NDArray[np.float32]:
    """The float32 values a stored matrix stands for (inverse of :func:`quantize` up to its rounding)."""
    if precision == "f32":
        return np.asarray(stored, dtype=np.float32)
    if precision == "bf16":
        return from_bf16(stored)
    if precision == "int8":
        return from_int8(stored, scale)
    raise ArgumentError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")


def convert_layer(layer: RecurrentSpec, precision: str) -> RecurrentSpec:
    """A copy of the RecurrentSpec ``layer`` with its matrices in ``precision`` (from its stored form;
    ``layer`` itself is unchanged; the same precision returns ``layer``)."""
    if layer.precision == precision:
        return layer
    dirs = []
    for d, w in enumerate(layer.weights):
        new: dict[str, Any] = {}
        for t in REDUCED_TENSORS:
            stored = getattr(w, t)
            if stored is None:
                new[t], new[f"{t}_scale"] = None, None
                continue
            where = f"{layer.name}.{('forward', 'backward')[d]}.{t}"
            values = dequantize(stored, layer.precision, getattr(w, f"{t}_scale"))
            new[t], new[f"{t}_scale"] = quantize(values, precision, where)
        dirs.append(dataclasses.replace(w, **new))
    return dataclasses.replace(layer, weights=dirs, precision=precision)


def convert_spec(spec: ModelSpec, precision: str) -> ModelSpec:
    """A new, validated ModelSpec whose recurrent layers all hold ``precision`` weights (other layers
    and the arrays of layers already in ``precision`` are shared with ``spec``)."""
    from .spec import RecurrentSpec

    layers = [convert_layer(l, precision) if isinstance(l, RecurrentSpec) else l for l in spec.layers]
    return dataclasses.replace(spec, layers=layers, metadata=dict(spec.metadata)).validate()
