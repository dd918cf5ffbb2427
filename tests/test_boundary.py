"""The one exception boundary (fastrnn.errors.file_errors) that every file reader runs inside."""
import pickle

import pytest

import fastrnn
from fastrnn.errors import ConversionError, FastRNNError, ModelFileNotFoundError, ModelFormatError, file_errors


@pytest.mark.parametrize("exc", [ValueError("bad"), TypeError("function takes exactly 5 arguments"), KeyError("k"),
                                 MemoryError(), RecursionError("deep"), RuntimeError("zlib"), OverflowError("big"),
                                 UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
                                 pickle.UnpicklingError("x")])
def test_stray_exceptions_become_model_format_errors_naming_the_file(exc):
    with pytest.raises(ModelFormatError) as ei:
        with file_errors("/some/dir/model.pt"):
            raise exc
    assert "/some/dir/model.pt" in str(ei.value)
    assert ei.value.__cause__ is exc
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, FastRNNError)


def test_fastrnn_errors_keep_their_type_and_gain_the_file_name():
    with pytest.raises(ConversionError) as ei:
        with file_errors("/d/weights.pt"):
            raise ConversionError("layer 'rnn': wrong shape")
    assert str(ei.value).startswith("/d/weights.pt: ") and "layer 'rnn'" in str(ei.value)
    named = ModelFormatError("/d/weights.pt: truncated")
    with pytest.raises(ModelFormatError) as ei:
        with file_errors("/d/weights.pt"):
            raise named
    assert ei.value is named  # already names the file: unchanged


def test_missing_file_and_interrupts():
    with pytest.raises(ModelFileNotFoundError) as ei:
        with file_errors("/nope/m.keras"):
            open("/nope/m.keras", "rb")
    assert isinstance(ei.value, FileNotFoundError) and ei.value.filename == "/nope/m.keras"
    for exc in (KeyboardInterrupt(), SystemExit(3)):
        with pytest.raises(type(exc)):
            with file_errors("/d/m.pt"):
                raise exc


def test_load_runs_readers_inside_the_boundary(tmp_path, monkeypatch):
    """A reader bug (any exception) reaches the caller as a FastRNNError naming the file."""
    import fastrnn.io.native as native

    p = tmp_path / "m.fastrnn"
    fastrnn.Model(__import__("test_kernels").rnn_spec("gru", 3, 4)).save(p)

    def broken(*a, **k):
        raise IndexError("reader bug")

    monkeypatch.setattr(native, "load_spec", broken)
    with pytest.raises(ModelFormatError, match="m.fastrnn.*IndexError: reader bug") as ei:
        fastrnn.load(p)
    assert isinstance(ei.value.__cause__, IndexError)
