"""Hostile zip archives (the container of .keras and torch files): a central directory of
hundreds of thousands of members, which zipfile would turn into one object each before any other
check (#12: bounded memory and time for every container); and the same archives whose end record
LIES about the count (says 1): zipfile ignores that count and walks the central directory by its
byte size, so only a bound on that size holds (review 2026-12-05, section 2)."""
import os
import struct
import zlib

from hostile_common import Family


def _many_members(d, n, first, lie=False, suffix=""):
    """A valid zip of n empty stored members named ``m<i><suffix>`` (+ ``first`` with a little content),
    written raw; ``lie``: the end record says 1 member (no zip64 record), whatever n is."""
    path = os.path.join(d, f"many-{n}{'-lie' if lie else ''}.zip")
    local, central = bytearray(), bytearray()
    names = [first] + [f"m{i}{suffix}" for i in range(n - 1)]
    for i, name in enumerate(names):
        data = b"{}" if i == 0 else b""
        nb = name.encode()
        crc = zlib.crc32(data)
        off = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(data), len(data), len(nb), 0)
        local += nb + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, len(data), len(data),
                               len(nb), 0, 0, 0, 0, 0, off)
        central += nb
    count = 1 if lie else min(n, 0xFFFF)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(local), 0)
    if n >= 0xFFFF and not lie:  # zip64 end record + locator carry the real count
        z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), len(local))
        loc = struct.pack("<IIQI", 0x07064B50, 0, len(local) + len(central), 1)
        eocd = z64 + loc + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(path, "wb") as f:
        f.write(local + central + eocd)
    return path


FAMILIES = [
    Family("zip_many_members_keras", lambda d, n: _many_members(d, n, "config.json"), sizes=[150_000, 400_000],
           load_kwargs={"isolate": False}, issue_item="#12.4"),
    Family("zip_many_members_torch", lambda d, n: _many_members(d, n, "archive/data.pkl"), sizes=[150_000],
           issue_item="#12.2"),
    Family("zip_lying_count_torch", lambda d, n: _many_members(d, n, "archive/data.pkl", lie=True),
           sizes=[300_000], issue_item="#12.2"),
    Family("zip_lying_count_npz", lambda d, n: _many_members(d, n, "a.npy", lie=True, suffix=".npy"),
           sizes=[300_000], issue_item="#12.2"),
    Family("zip_lying_count_keras", lambda d, n: _many_members(d, n, "config.json", lie=True),
           sizes=[300_000], load_kwargs={"isolate": False}, issue_item="#12.4"),
]
