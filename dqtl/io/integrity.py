"""Genotype store integrity: every chunk a run reads must exist (and, with ``deep``, decode).

Zarr reads a missing chunk as the array's fill value, so a store copied or synced halfway would
give genotypes of 0/0 (or -1) for whole variant ranges without a word. Arrays whose chunks are
all data (``call_genotype``, ``call_dosage`` and the variant and sample tables) must have every
chunk stored; the mask and phasing arrays may legitimately omit all-fill chunks and are not
checked. :func:`verify_store` runs on every :func:`dqtl.io.genotypes.open_genotypes` of a store
(listing only); ``dqtl check STORE`` also decodes every chunk.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

from dqtl.errors import InputError

__all__ = ["verify_store", "record_stored_chunks", "damaged_metadata", "COMPLETE_ARRAYS", "RECORD_ATTR"]

log = logging.getLogger(__name__)

#: arrays whose every chunk must be stored in any store (data, never plausibly all fill value);
#: ``variant_contig`` is not among them (a chunk on the first contig is all 0, the fill value)
COMPLETE_ARRAYS = ("call_genotype", "call_dosage", "variant_position", "variant_id",
                   "variant_allele", "sample_id", "contig_id")

#: group attribute where dqtl records, when it writes a store, how many chunks each array holds
RECORD_ATTR = "dqtl_stored_chunks"


_METADATA_FILES = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


def damaged_metadata(path: Any) -> str | None:
    """The first metadata file (``zarr.json``, ``.zarray``, ...) of a local store that is not
    valid JSON, as "FILE (line L column C: what)", or None (also for URLs: not walked)."""
    import json
    import os

    root = os.fspath(path)
    if "://" in root or not os.path.isdir(root):
        return None
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            if f in _METADATA_FILES:
                full = os.path.join(d, f)
                try:
                    with open(full, encoding="utf-8") as fh:
                        json.load(fh)
                except (ValueError, UnicodeDecodeError) as exc:
                    where = (f"line {exc.lineno} column {exc.colno}: {exc.msg}"
                             if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text")
                    return f"{full} ({where})"
    return None


def _chunk_grid(arr: Any) -> list[tuple[int, ...]]:
    outer = getattr(arr, "shards", None) or arr.chunks
    return list(itertools.product(*(range(math.ceil(s / c)) for s, c in zip(arr.shape, outer, strict=True))))


def verify_store(group: Any, name: str, *, deep: bool = False) -> dict[str, Any]:
    """Check the data arrays of an open Zarr ``group``; raise :class:`InputError` naming the
    array, a missing (or undecodable) chunk and the fix. Returns per-array chunk counts."""
    report: dict[str, Any] = {}
    recorded = {}
    for key, rec in dict(group.attrs.get(RECORD_ATTR, {}) or {}).items():
        try:  # a record holds only for the chunking it was made for (not a rewritten copy)
            arr = group[key]
        except KeyError:
            recorded[key] = rec
            continue
        if isinstance(rec, dict) and list(rec.get("chunks", [])) == list(arr.chunks) and \
                list(rec.get("shape", [])) == list(arr.shape):
            recorded[key] = int(rec["stored"])
    for key in dict.fromkeys([*COMPLETE_ARRAYS, *recorded]):
        try:
            arr = group[key]
        except KeyError:
            if key in recorded:
                raise InputError(f"{name}: array {key} is missing; the store is incomplete: resync "
                                 "the store or convert the input again") from None
            continue
        if key not in COMPLETE_ARRAYS and key not in recorded:
            continue
        stored = int(arr.nchunks_initialized) if arr.shape else 1
        expected = int(recorded[key]) if key in recorded else (int(math.prod(
            math.ceil(s / c) for s, c in zip(arr.shape, getattr(arr, "shards", None) or arr.chunks,
                                             strict=True))) if arr.shape else 1)
        report[key] = {"chunks": expected, "stored": stored}
        if stored < expected:
            full = int(math.prod(math.ceil(s / c) for s, c in zip(
                arr.shape, getattr(arr, "shards", None) or arr.chunks, strict=True))) if arr.shape else 1
            example = _first_missing(arr) if expected == full else ""  # else some are legitimately absent
            what = "of its" if key not in recorded else "stored; it had"
            raise InputError(
                f"{name}: array {key} has {stored} chunks {what} {expected}{example}; the store is "
                "incomplete (an interrupted copy or sync?) and missing chunks would read as fill "
                "values: resync the store or convert the input again")
        if deep:
            outer = getattr(arr, "shards", None) or arr.chunks
            for coords in _chunk_grid(arr):
                sel = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(
                    coords, outer, arr.shape, strict=True))
                try:
                    arr[sel]
                except Exception as exc:  # noqa: BLE001  (any codec error is a corrupt chunk)
                    raise InputError(
                        f"{name}: array {key}, chunk {'.'.join(map(str, coords))} cannot be decoded "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); the store is "
                        "corrupt: resync it or convert the input again") from None
    return report


def _first_missing(arr: Any) -> str:
    """`` (missing: chunk i.j.k)`` for the first chunk not stored, when it can be found cheaply."""
    try:
        import asyncio

        async_arr = arr._async_array  # zarr 3
        store = async_arr.store_path
        for coords in _chunk_grid(arr)[:200_000]:
            ckey = async_arr.metadata.encode_chunk_key(coords)
            if not asyncio.run((store / ckey).exists()):
                return f" (missing: chunk {'.'.join(map(str, coords))}, key {ckey})"
    except Exception:  # noqa: BLE001  (the count alone is still a clear message)
        return ""
    return ""


def record_stored_chunks(path: Any) -> None:
    """Record in a store just written (by dqtl) how many chunks each of its arrays holds, so
    that a later loss of any chunk, of any array, is detected on open."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    group.attrs[RECORD_ATTR] = {
        name: {"stored": int(arr.nchunks_initialized), "chunks": list(arr.chunks),
               "shape": list(arr.shape)} for name, arr in group.arrays()}
