"""BGZF compression and tabix indexes in pure Python (SAM/BAM specification section 4.1 and
htslib's tabix format), for the bgzipped, indexed text files dqtl writes (VCF, BED), and the
threaded BGZF reader of large phenotype BED files (:func:`read_bgzf`)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import BinaryIO

__all__ = ["BgzfWriter", "TabixIndex", "read_bgzf", "BGZF_THREADED_BYTES", "BGZF_THREADED_MAX"]

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


#: BGZF files of at least this many bytes, and below :data:`BGZF_THREADED_MAX`, are inflated on
#: threads into memory (smaller: the usual gzip reader; larger: streamed by pandas, which never
#: holds the whole text: 2-4x the compressed size, held twice while the parts are joined; at 180
#: MiB compressed the threaded read peaked 376 MiB above the streamed one)
BGZF_THREADED_BYTES = 1 << 20
BGZF_THREADED_MAX = 32 << 20


def read_bgzf(path: str, threads: int) -> bytes | None:
    """The decompressed bytes of a local BGZF file (bgzip's blocked gzip, as tabix-indexed BED
    files are), or None when ``path`` is not BGZF (plain gzip: the caller's usual reader).

    BGZF is a series of independent gzip members of at most 64 KiB, each giving its size in a
    ``BC`` extra field, so the members are inflated on ``threads`` threads (zlib releases the
    GIL; one thread inflates ~200 MB/s of text here). Every member's CRC-32 and length are
    checked (zlib's gzip trailer check); a member that does not decode is an :class:`InputError`
    naming its byte offset.
    """
    from concurrent.futures import ThreadPoolExecutor

    from dqtl.errors import InputError

    with open(path, "rb") as f:
        data = f.read()
    offsets = _bgzf_members(data)
    if offsets is None:
        return None
    view = memoryview(data)

    def inflate(first: int, last: int) -> bytes:
        out = []
        for a, b in zip(offsets[first:last], offsets[first + 1:last + 1], strict=True):
            d = zlib.decompressobj(31)  # gzip wrapper: header and CRC-32/length trailer checked
            try:
                out.append(d.decompress(view[a:b]))
                ok = d.eof and not d.unused_data
            except zlib.error as exc:
                raise InputError(f"{path}: the gzip block at byte {a:,} does not decode ({exc}); "
                                 "the file is corrupt: compress it again with bgzip") from None
            if not ok:
                raise InputError(f"{path}: the gzip block at byte {a:,} is incomplete; the file is "
                                 "truncated or corrupt: compress it again with bgzip")
        return b"".join(out)

    n = len(offsets) - 1
    parts = max(1, min(4 * threads, n))
    cuts = [round(i * n / parts) for i in range(parts + 1)]
    if threads <= 1 or parts == 1:
        return inflate(0, n)
    with ThreadPoolExecutor(threads, thread_name_prefix="dqtl-bgzf") as pool:
        return b"".join(pool.map(inflate, cuts[:-1], cuts[1:]))


def _bgzf_members(data: bytes) -> list[int] | None:
    """Start offsets of the BGZF members of ``data`` and its length (None: not BGZF)."""
    n, pos, offsets = len(data), 0, []
    while pos < n:
        if n - pos < 18 or data[pos:pos + 4] != b"\x1f\x8b\x08\x04":  # gzip, deflate, FEXTRA
            return None
        end = pos + 12 + int.from_bytes(data[pos + 10:pos + 12], "little")
        i, size = pos + 12, 0
        while i + 4 <= end:  # the extra subfields: BC (66, 67) holds the member size - 1
            length = int.from_bytes(data[i + 2:i + 4], "little")
            if data[i] == 66 and data[i + 1] == 67 and length == 2:
                size = int.from_bytes(data[i + 4:i + 6], "little") + 1
            i += 4 + length
        if size < 18 or pos + size > n:
            return None
        offsets.append(pos)
        pos += size
    offsets.append(n)
    return offsets if len(offsets) > 1 else None
