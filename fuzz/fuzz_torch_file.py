"""Fuzz the torch.save reader (restricted unpickler, zip and legacy layouts) without torch.

Input: one mode byte, then the payload.
  bit 0 = 0: the payload is a whole file (zip archive or legacy pickle stream);
  bit 0 = 1: the payload is a data.pkl pickle: the harness packs it into a valid zip archive
             (``archive/data.pkl``, ``archive/byteorder``, storages ``archive/data/0`` .. ``/15`` of
             256 bytes each) so that mutations of the pickle are not stopped by the zip CRC;
  bits 1-3: which architecture= (fuzz/_harness.py TORCH_ARCHS);
  bit 4:    strict=False.
"""
from __future__ import annotations

import io
import os
import struct
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fastrnn.io.torch_file import read_torch_file, spec_from_torch_file  # noqa: E402
from _harness import contract, TORCH_ARCHS, write_tmp  # noqa: E402

_STORAGE = struct.pack("<64f", *[((i * 37) % 17 - 8) / 8.0 for i in range(64)])


def _zip_pickle(pkl: bytes, big_endian: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "big" if big_endian else "little")
        for k in range(16):
            z.writestr(f"archive/data/{k}", _STORAGE)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, payload = data[0], data[1:]
    if mode & 1:
        payload = _zip_pickle(payload, bool(mode & 0x20))
    arch = TORCH_ARCHS[(mode >> 1) & 7]
    path = write_tmp("input.pt", payload)
    with contract():
        read_torch_file(path)
        spec_from_torch_file(path, architecture=arch, strict=not mode & 0x10)


TestOneInput = test_one_input

if __name__ == "__main__":
    from run import main

    sys.exit(main(["torch_file"] + sys.argv[1:]))
