"""BGZF compression and tabix indexes in pure Python (SAM/BAM specification section 4.1 and
htslib's tabix format), for the bgzipped, indexed text files dqtl writes (VCF, BED)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import BinaryIO

__all__ = ["BgzfWriter", "TabixIndex"]

_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_BGZF_MAX_INPUT = 0xFF00


class BgzfWriter:
    """Blocked gzip writer (readable by ``gzip``, ``bgzip``, htslib) with virtual offsets."""

    def __init__(self, raw: BinaryIO, level: int = 6) -> None:
        self._raw = raw
        self._level = level
        self._buf = bytearray()
        self._coffset = 0

    def __enter__(self) -> BgzfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tell(self) -> int:
        """Virtual offset ``compressed block offset << 16 | offset within the block``."""
        return (self._coffset << 16) | len(self._buf)

    def write(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) >= _BGZF_MAX_INPUT:
            self._flush_block(bytes(self._buf[:_BGZF_MAX_INPUT]))
            del self._buf[:_BGZF_MAX_INPUT]

    def _flush_block(self, data: bytes) -> None:
        for level in (self._level, 0):
            comp = zlib.compressobj(level, zlib.DEFLATED, -15)
            body = comp.compress(data) + comp.flush()
            if len(body) + 26 <= 65536:
                break
        header = struct.pack("<4BI2BH2BHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2,
                             len(body) + 25)
        block = header + body + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data))
        self._raw.write(block)
        self._coffset += len(block)

    def close(self) -> None:
        if self._buf:
            self._flush_block(bytes(self._buf))
            self._buf.clear()
        if self._raw is not None:
            self._raw.write(_BGZF_EOF)
            self._raw = None  # type: ignore[assignment]


def _reg2bin(beg: int, end: int) -> int:
    end -= 1
    for shift, offset in ((14, 4681), (17, 585), (20, 73), (23, 9), (26, 1)):
        if beg >> shift == end >> shift:
            return offset + (beg >> shift)
    return 0


class TabixIndex:
    """Collects records (0-based half-open) and serialises a tabix (.tbi) index.

    ``preset`` 2 is VCF (end from REF length), ``0x10000`` generic 0-based (BED, ``col_end``).
    """

    def __init__(self, names: Sequence[str], *, preset: int = 2, col_end: int = 0) -> None:
        self._names = [str(n) for n in names]
        self._preset, self._col_end = preset, col_end
        self._bins: list[dict[int, list[list[int]]]] = [{} for _ in self._names]
        self._linear: list[list[int]] = [[] for _ in self._names]
        self._last: tuple[int, int] | None = None

    def add(self, ref: int, beg: int, end: int, voff_beg: int, voff_end: int) -> None:
        b = _reg2bin(beg, end)
        chunks = self._bins[ref].setdefault(b, [])
        if self._last == (ref, b) and chunks and chunks[-1][1] == voff_beg:
            chunks[-1][1] = voff_end
        else:
            chunks.append([voff_beg, voff_end])
        self._last = (ref, b)
        lin = self._linear[ref]
        last_window = (end - 1) >> 14
        while len(lin) <= last_window:
            lin.append(-1)
        for w in range(beg >> 14, last_window + 1):
            if lin[w] < 0:
                lin[w] = voff_beg

    def to_bytes(self) -> bytes:
        names = b"".join(n.encode() + b"\0" for n in self._names)
        parts = [b"TBI\x01", struct.pack("<8i", len(self._names), self._preset, 1, 2,
                                         self._col_end, ord("#"), 0, len(names)), names]
        for bins, lin in zip(self._bins, self._linear, strict=True):
            parts.append(struct.pack("<i", len(bins)))
            for b in sorted(bins):
                parts.append(struct.pack("<Ii", b, len(bins[b])))
                parts.extend(struct.pack("<QQ", c0, c1) for c0, c1 in bins[b])
            filled: list[int] = []
            first = next((x for x in lin if x >= 0), 0)
            for x in lin:
                filled.append(x if x >= 0 else (filled[-1] if filled else first))
            parts.append(struct.pack("<i", len(filled)))
            parts.append(struct.pack(f"<{len(filled)}Q", *filled))
        return b"".join(parts)
