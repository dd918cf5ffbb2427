"""Hostile weight containers (#11.4): plain safetensors and .npz files that declare far more than they
hold, overlap their tensors, or bomb a compressed member; torch checkpoints nesting 10^5 dicts."""
import json
import os
import struct
import zipfile
import zlib

from hostile_common import Family


def _safetensors(path, header, data=b""):
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _st_huge_shape(d, n):
    """A tensor declaring n x n x n float64 elements whose offsets claim the same: the sizes cannot match."""
    return _safetensors(os.path.join(d, f"huge-{n}.safetensors"),
                        {"w": {"dtype": "F64", "shape": [n, n, n], "data_offsets": [0, 8 * n ** 3]}}, b"\0" * 64)


def _st_overlap(d, n):
    """n tensors of 4 float32 all declared over the same 16 bytes (reading each would cost n x the file)."""
    hdr = {f"t{i}": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]} for i in range(n)}
    return _safetensors(os.path.join(d, f"overlap-{n}.safetensors"), hdr, b"\0" * 16)


def _npy_header(shape, descr="<f4"):
    h = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    h += " " * (-(10 + len(h) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h.encode()


def _npz_huge_shape(d, n):
    """A stored member whose .npy header declares an (n, n) float32 array (and a zip entry size to match)
    but holds 64 bytes: refused from the header, before any read."""
    path = os.path.join(d, f"huge-{n}.npz")
    hdr = _npy_header((n, n))
    body = hdr + b"\0" * 64
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", body)
    # declare the full size in the local and central headers (what a reader would trust)
    raw = bytearray(open(path, "rb").read())
    declared = min(len(hdr) + 4 * n * n, 0xFFFFFFFE)
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.find(sig)
        struct.pack_into("<I", raw, at + off, declared)
    with open(path, "wb") as f:
        f.write(raw)
    return path


def _npz_bomb(d, mib):
    """A deflated member of ``mib`` MiB of zeros (~1000:1): a ratio bomb, refused before inflating."""
    path = os.path.join(d, f"bomb-{mib}.npz")
    n = mib << 20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("w.npy", "w", force_zip64=True) as m:
            m.write(_npy_header((n // 4,)))
            chunk = b"\0" * (1 << 20)
            for _ in range(mib):
                m.write(chunk)
    return path


def _npz_many_members(d, n):
    """n tiny .npy members (each a valid 1-element array): a state dict of n names, none a model."""
    path = os.path.join(d, f"many-{n}.npz")
    one = _npy_header((1,)) + b"\0" * 4
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            z.writestr(f"t{i}.npy", one)
    return path


def _ckpt_many_dicts(d, n):
    """A torch.save checkpoint of n small dicts (half of them at the end of a chain of 40 nested dicts)
    and one tensor, in no dict of tensors: the search for the state dict walks them all, iteratively,
    and refuses the file."""
    import torch

    path = os.path.join(d, f"dicts-{n}.pt")
    obj = {"t": torch.zeros(2), **{f"k{i}": {"a": i} for i in range(n // 2)}}
    chain = obj
    for _ in range(40):
        chain["nest"] = {}
        chain = chain["nest"]
    chain.update({f"j{i}": {"b": i} for i in range(n - n // 2)})
    torch.save(obj, path)
    return path


FAMILIES = [
    Family("containers_safetensors_huge_shape", _st_huge_shape, sizes=[1 << 10, 1 << 20], issue_item="#11.4"),
    Family("containers_safetensors_overlap", _st_overlap, sizes=[2, 100_000], issue_item="#11.4"),
    Family("containers_npz_huge_shape", _npz_huge_shape, sizes=[1 << 12, 1 << 15], issue_item="#11.4"),
    Family("containers_npz_ratio_bomb", _npz_bomb, sizes=[64, 512], issue_item="#11.4"),
    Family("containers_npz_many_members", _npz_many_members, sizes=[12_000, 60_000], issue_item="#11.4"),
    Family("containers_ckpt_many_dicts", _ckpt_many_dicts, sizes=[1_000, 100_000], issue_item="#11.4"),
]
