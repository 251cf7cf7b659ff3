"""BGZF compression and tabix indexes in pure Python (SAM/BAM specification section 4.1 and
htslib's tabix format), for the bgzipped, indexed text files dqtl writes (VCF, BED), and the
threaded BGZF reader of large phenotype BED files (:func:`open_bgzf`)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Sequence
from typing import Any, BinaryIO

__all__ = ["BgzfWriter", "TabixIndex", "open_bgzf", "BGZF_THREADED_BYTES"]

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


#: BGZF files of at least this many bytes are read by :func:`open_bgzf` (smaller: the usual
#: gzip reader)
BGZF_THREADED_BYTES = 1 << 20
#: compressed bytes per inflating task of :func:`open_bgzf` (~16 members; 2-4 MiB of text)
_BGZF_TASK_BYTES = 1 << 20


def open_bgzf(path: str, threads: int) -> BinaryIO | None:
    """A binary stream of the decompressed text of a local BGZF file (bgzip's blocked gzip, as
    tabix-indexed BED files are), or None when ``path`` is not BGZF (plain gzip, or any member
    without the BGZF size field: the caller's usual reader).

    BGZF is a series of independent gzip members of at most 64 KiB, each giving its size in a
    ``BC`` extra field: the member headers are scanned first (seek and read 18+ bytes each), then
    runs of members of ~1 MiB are read and inflated on ``threads`` threads (zlib releases the
    GIL; one thread inflates ~200 MB/s of text here), at most ``2 * threads`` runs ahead of the
    reader, in order: the reader (pandas' parser) and the inflating overlap, and the memory held
    is a few MiB whatever the file's size. Every member's CRC-32 and length are checked (zlib's
    gzip trailer check); a member that does not decode raises :class:`InputError` naming its
    byte offset. Close the stream (a context manager) to stop its threads.
    """
    members = _bgzf_members(path)
    if members is None:
        return None
    return io.BufferedReader(_BgzfStream(path, members, max(1, int(threads))), buffer_size=1 << 20)


def _bgzf_members(path: str) -> list[int] | None:
    """Start offsets of the BGZF members of ``path`` and its size (None: not BGZF)."""
    n = os.path.getsize(path)
    pos, offsets = 0, []
    with open(path, "rb") as f:
        while pos < n:
            f.seek(pos)
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"\x1f\x8b\x08\x04":  # gzip, deflate, FEXTRA
                return None
            extra = f.read(int.from_bytes(head[10:12], "little"))
            i, size = 0, 0
            while i + 4 <= len(extra):  # the extra subfields: BC (66, 67) holds the size - 1
                length = int.from_bytes(extra[i + 2:i + 4], "little")
                if extra[i] == 66 and extra[i + 1] == 67 and length == 2:
                    size = int.from_bytes(extra[i + 4:i + 6], "little") + 1
                i += 4 + length
            if size < 18 or pos + size > n:
                return None
            offsets.append(pos)
            pos += size
    offsets.append(n)
    return offsets if len(offsets) > 1 else None


class _BgzfStream(io.RawIOBase):
    """The raw stream of :func:`open_bgzf`: runs of members inflated ahead on a thread pool."""

    def __init__(self, path: str, members: list[int], threads: int) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self._path = path
        self._members = members
        self._runs: list[tuple[int, int]] = []  # member index ranges of ~_BGZF_TASK_BYTES
        first = 0
        for k in range(1, len(members)):
            if members[k] - members[first] >= _BGZF_TASK_BYTES or k == len(members) - 1:
                self._runs.append((first, k))
                first = k
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dqtl-bgzf")
        self._ahead = 2 * threads
        self._pending: deque[Any] = deque()
        self._next = 0
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _submit(self) -> None:
        while len(self._pending) < self._ahead and self._next < len(self._runs):
            a, b = self._runs[self._next]
            self._next += 1
            self._file.seek(self._members[a])
            data = self._file.read(self._members[b] - self._members[a])
            bounds = [m - self._members[a] for m in self._members[a:b + 1]]
            self._pending.append(self._pool.submit(_inflate_members, self._path, data, bounds,
                                                   self._members[a]))

    def readinto(self, buffer: Any) -> int:
        while not self._view:
            self._submit()
            if not self._pending:
                return 0
            self._view = memoryview(self._pending.popleft().result())
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            for fut in self._pending:
                fut.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
            self._file.close()
        super().close()


def _inflate_members(path: str, data: bytes, bounds: list[int], base: int) -> bytes:
    """The text of consecutive BGZF members (``data[bounds[i]:bounds[i + 1]]``; ``base``: the
    file offset of ``data``, for errors)."""
    from dqtl.errors import InputError

    view = memoryview(data)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        d = zlib.decompressobj(31)  # gzip wrapper: header and CRC-32/length trailer checked
        try:
            out.append(d.decompress(view[a:b]))
            ok = d.eof and not d.unused_data
        except zlib.error as exc:
            raise InputError(f"{path}: the gzip block at byte {base + a:,} does not decode ({exc}); "
                             "the file is corrupt: compress it again with bgzip") from None
        if not ok:
            raise InputError(f"{path}: the gzip block at byte {base + a:,} is incomplete; the file "
                             "is truncated or corrupt: compress it again with bgzip")
    return b"".join(out)
