"""The fastrnn exception hierarchy.

Every class derives from :class:`FastRNNError` *and* from the matching built-in, so
``except ValueError`` keeps working for callers that do not know fastrnn.
This module must not import ``fastrnn._core`` (the extension imports it at init).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Union

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

__all__ = [
    "FastRNNError",
    "ShapeError",
    "ModelFormatError",
    "UnsupportedLayerError",
    "ConversionError",
    "CoreNotBuiltError",
    "ModelFileNotFoundError",
    "ArgumentError",
    "ArgumentTypeError",
    "UnsupportedOptionError",
    "OutOfMemoryError",
    "ConversionWarning",
    "file_errors",
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


class ArgumentError(FastRNNError, ValueError):
    """An API or CLI argument with a value fastrnn refuses (``set_num_threads(0)``, ``stream(2**62)``, ...)."""


class ArgumentTypeError(FastRNNError, TypeError):
    """An API argument of a type fastrnn does not take."""


class UnsupportedOptionError(UnsupportedLayerError, ArgumentTypeError):
    """A reader option (a keyword of :func:`fastrnn.load`) that the file's format, or the object, does not
    take: one class for every reader, both an :class:`UnsupportedLayerError` and an
    :class:`ArgumentTypeError` (a ``TypeError``, like an unexpected keyword argument)."""

    options: tuple[str, ...] = ()  # the keywords refused


class OutOfMemoryError(FastRNNError, MemoryError):
    """A request (batch size, sequence length) whose buffers cannot be allocated on this machine."""


class ConversionWarning(UserWarning):
    """A model converted, but an input to the conversion probably means something else than the user
    thinks (a Keras 3 config given as ``architecture=`` for weights written by Keras 2.2, whose defaults
    differ).  Filter it with ``warnings.filterwarnings("ignore", category=ConversionWarning)``."""


def _names_file(msg: str, path: PathLike) -> bool:
    """Whether ``msg`` names the file: its whole path (a bare basename proves nothing: a file called
    ``gru`` or ``model`` matches words that messages use)."""
    return os.fsdecode(os.fspath(path)) in msg


@contextlib.contextmanager
def file_errors(path: PathLike, action: str = "read") -> Iterator[None]:
    """The one exception boundary of every file reader: inside it, anything that is not a
    :class:`FastRNNError` becomes one that names ``path`` and the cause (kept as ``__cause__``);
    a FastRNNError whose message does not name the file is re-raised with the file name in front.
    ``KeyboardInterrupt`` / ``SystemExit`` pass unchanged.

    >>> with file_errors(path):
    ...     spec = read(path)
    """
    try:
        yield
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except FastRNNError as e:
        msg = str(e)
        if _names_file(msg, path):
            raise
        try:
            new = type(e)(f"{os.fsdecode(os.fspath(path))}: {msg}")
        except Exception:  # noqa: BLE001 - a subclass with another signature: keep it as it is
            raise e from None
        raise new from e
    except FileNotFoundError as e:
        import errno

        raise ModelFileNotFoundError(errno.ENOENT, f"cannot {action} ({e.strerror or e})",
                                     os.fsdecode(os.fspath(path))) from e
    except MemoryError as e:
        raise ModelFormatError(f"{os.fsdecode(os.fspath(path))}: cannot {action}: the file asks for more memory "
                               f"than this machine gives ({type(e).__name__}: {e}); a corrupt or hostile file?") from e
    except RecursionError as e:
        raise ModelFormatError(f"{os.fsdecode(os.fspath(path))}: cannot {action}: data nested too deeply") from e
    except Exception as e:  # noqa: BLE001 - the boundary: every other escape becomes a FastRNNError
        raise ModelFormatError(f"{os.fsdecode(os.fspath(path))}: cannot {action} ({type(e).__name__}: {e})") from e
