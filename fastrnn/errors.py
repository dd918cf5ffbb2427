"""The fastrnn exception hierarchy.

Every class derives from :class:`FastRNNError` *and* from the matching built-in, so
``except ValueError`` keeps working for callers that do not know fastrnn.
This module must not import ``fastrnn._core`` (the extension imports it at init).
"""
from __future__ import annotations

__all__ = [
    "FastRNNError",
    "ShapeError",
    "ModelFormatError",
    "UnsupportedLayerError",
    "ConversionError",
    "CoreNotBuiltError",
    "ModelFileNotFoundError",
]


class FastRNNError(Exception):
    """Base class of every error fastrnn raises on purpose."""


class ShapeError(FastRNNError, ValueError):
    """An input (array, ids, lengths, state) whose rank, size, dtype or range the model cannot take."""


class ModelFormatError(FastRNNError, ValueError):
    """A model description or file that is malformed, truncated or of an unknown version."""


class UnsupportedLayerError(FastRNNError, NotImplementedError):
    """A layer, activation or option that fastrnn does not run (e.g. ``stateful=True``)."""


class ConversionError(FastRNNError, ValueError):
    """Framework weights or configuration that are inconsistent (e.g. a missing reverse tensor)."""


class CoreNotBuiltError(FastRNNError, ImportError):
    """The compiled extension ``fastrnn._core`` could not be imported."""


class ModelFileNotFoundError(FastRNNError, FileNotFoundError):
    """A model path given to :func:`fastrnn.load` (or the CLI) that does not exist."""
