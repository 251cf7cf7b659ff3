"""Variant IDs of a genotype Dataset: naming the variants without one, and finding variants by ID.

A genotype store keeps its ``variant_id`` lazily (one chunk of IDs per 10,000 variants or so);
a biobank store has tens of millions, and a whole-column read as a fixed-width numpy ``str``
array costs ``4 x (longest ID) x variants`` bytes (one 300-base indel ID: 12 GB at 10 million
variants). So the IDs are only ever read a chunk at a time here:

- :func:`name_missing_ids` (at open): a variant whose ID is missing (VCF's ``.``, an empty
  string; bio2zarr's ``variant_id_mask``) is named ``CONTIG:POSITION:REF:ALT``, with a count in
  the log, lazily. Otherwise every such variant would be called ``.`` in the outputs and a
  lookup by ID (conditioning on a top variant, ``--regress-cis``, mediation) would take an
  arbitrary one of them.
- :func:`variant_rows`: the rows of given IDs, scanning the chunks in parallel (each task returns
  its chunk's matches as integers). An ID that names more than one variant of the genotypes is
  an input error naming it and where it occurs, unless a window per query leaves exactly one of
  them (the top variant of a gene lies in the gene's cis window).
- :func:`ids_at`: the IDs of given rows, reading only the chunks that hold them (:func:`take_rows`
  any variable's).
- :func:`alt_counts`: each site's number of ALT alleles, a chunk at a time (the multiallelic check
  at open), the alleles compared as Python objects (:func:`allele_present`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dqtl.errors import InputError

__all__ = [
    "name_missing_ids", "missing_mask", "variant_rows", "ids_at", "take_rows", "allele_present",
    "alt_counts", "MISSING_IDS", "ABSENT_ALLELES",
]

log = logging.getLogger(__name__)

#: ID values that mean "no ID" (VCF's ``.``; an empty string)
MISSING_IDS = (".", "")


def _is_dask(x: Any) -> bool:
    return hasattr(x, "dask") and hasattr(x, "chunks")


def _objects(block: Any) -> np.ndarray:
    """A chunk of strings as Python ``str`` objects (fixed-width bytes or str chunks decoded)."""
    a = np.asarray(block)
    if a.dtype.kind in "SU":
        a = a.astype(str)
    return np.asarray(a, dtype=object)


def missing_mask(ds: xr.Dataset) -> np.ndarray:
    """(variants,) bool: the variants without an ID. From the store's ``variant_id_mask``
    (bio2zarr and ``dqtl convert`` write it; one byte per variant) when present, else from
    the IDs themselves."""
    if "variant_id_mask" in ds and ds["variant_id_mask"].dims == ("variants",):
        return np.asarray(ds["variant_id_mask"].values, dtype=bool)
    return _per_chunk(ds["variant_id"].data, _block_missing, label="variant IDs")


def _per_chunk(data: Any, fn: Any, *args: Any, label: str) -> np.ndarray:
    """``fn(chunk, *args)`` of each chunk of ``data`` along variants (its other axes whole),
    concatenated: one task per chunk on the run's scheduler (``args`` sent once); in memory, one
    call."""
    if not _is_dask(data):
        return fn(np.asarray(data), *args)
    import dask

    from dqtl.compute import compute

    if data.ndim > 1 and any(len(c) > 1 for c in data.chunks[1:]):
        data = data.rechunk({i: -1 for i in range(1, data.ndim)})
    task = dask.delayed(fn, pure=True)
    shared = [dask.delayed(a, pure=True) for a in args]
    return np.concatenate(compute([task(b, *shared) for b in data.to_delayed().ravel()], label=label,
                                  blas_threads=None))


def _block_missing(ids: Any) -> np.ndarray:
    a = _objects(ids)
    out = np.zeros(a.shape, dtype=bool)
    for v in MISSING_IDS:
        out |= a == v
    return out


#: allele values that mean "no allele here" (bio2zarr pads a site's alleles with empty strings)
ABSENT_ALLELES = ("", ".", "None", "nan")


def allele_present(alleles: Any) -> np.ndarray:
    """Elementwise: the allele is given (not one of :data:`ABSENT_ALLELES`, None or NaN);
    compared as Python objects, without a fixed-width copy (long indel alleles)."""
    a = _objects(alleles)
    out = ~pd.isna(a)
    for v in ABSENT_ALLELES:
        out &= a != v
    return np.asarray(out, dtype=bool)


def alt_counts(alleles: xr.DataArray) -> np.ndarray:
    """(variants,) the number of ALT alleles each variant has (at least 1), a chunk at a time."""
    return _per_chunk(alleles.data, _block_alt_counts, label="allele counts")


def _block_alt_counts(block: Any) -> np.ndarray:
    return np.maximum(allele_present(block)[:, 1:].sum(axis=1), 1).astype(np.int64)


def _alt_text(alleles: np.ndarray) -> np.ndarray:
    """(v,) the ALT alleles of each row joined by ``,`` (absent alleles skipped)."""
    if alleles.shape[1] <= 1:
        return np.full(alleles.shape[0], "", dtype=object)
    present = allele_present(alleles)
    out = np.empty(alleles.shape[0], dtype=object)
    for i, (row, ok) in enumerate(zip(alleles[:, 1:], present[:, 1:], strict=True)):
        out[i] = ",".join(str(a) for a, k in zip(row, ok, strict=True) if k)
    return out


def _fill_block(ids: np.ndarray, mask: np.ndarray, vc: np.ndarray, pos: np.ndarray,
                alleles: np.ndarray | None, contigs: np.ndarray) -> np.ndarray:
    """A chunk of IDs with its missing ones (``mask``, or a missing value) named."""
    out = _objects(ids).copy()
    miss = np.asarray(mask, dtype=bool) | _block_missing(out)
    j = np.flatnonzero(miss)
    if j.size:
        names = contigs[np.asarray(vc)[j]]
        p = np.asarray(pos)[j]
        if alleles is None:
            out[j] = [f"{c}:{q}" for c, q in zip(names, p, strict=True)]
        else:
            a = _objects(alleles)[j]
            out[j] = [f"{c}:{q}:{r}:{t}" for c, q, r, t in zip(names, p, a[:, 0], _alt_text(a), strict=True)]
    return out


def name_missing_ids(ds: xr.Dataset, name: str) -> xr.Dataset:
    """``ds`` with each variant that has no ID (see :data:`MISSING_IDS`) named
    ``CONTIG:POSITION:REF:ALT`` (``CONTIG:POSITION`` without ``variant_allele``), with one log
    line counting them. Lazy where ``variant_id`` is: each chunk is named when it is read."""
    n = ds.sizes["variants"]
    mask = missing_mask(ds)
    k = int(mask.sum())
    if k == 0:
        return ds
    log.warning("%s: %d of %d variants have no ID ('.'): named CONTIG:POSITION:REF:ALT", name, k, n)
    contigs = np.asarray(ds["contig_id"].values, dtype=object).astype(str)
    vc = np.asarray(ds["variant_contig"].values)
    pos = np.asarray(ds["variant_position"].values)
    vid = ds["variant_id"]
    al = ds["variant_allele"] if "variant_allele" in ds and ds["variant_allele"].ndim == 2 else None
    if not _is_dask(vid.data):
        named = _fill_block(np.asarray(vid.values), mask, vc, pos,
                            None if al is None else np.asarray(al.values), contigs)
        return ds.assign(variant_id=(vid.dims, named, vid.attrs))
    import dask.array as da

    chunks = vid.data.chunks

    def aligned(x: np.ndarray) -> Any:
        return da.from_array(x, chunks=chunks)

    def fill(ids: Any, m: Any, c: Any, q: Any, alle: Any = None) -> np.ndarray:
        return _fill_block(ids, m, c, q, alle, contigs)

    args: list[Any] = [vid.data, "i", aligned(mask), "i", aligned(vc), "i", aligned(pos), "i"]
    if al is not None:
        a = al.data if _is_dask(al.data) else da.from_array(np.asarray(al.values))
        want = (chunks[0], (a.shape[1],))
        args += [a if a.chunks == want else a.rechunk(want), "ij"]  # (rechunk imports distributed)
    named_da = da.blockwise(fill, "i", *args, dtype=object, concatenate=True,
                            meta=np.empty(0, dtype=object))
    return ds.assign(variant_id=(vid.dims, named_da, vid.attrs))


def _block_hits(block: Any, want: pd.Index) -> np.ndarray:
    """Index into ``want`` of each ID of the chunk (-1: not wanted)."""
    return want.get_indexer(_objects(block)).astype(np.int64)


def variant_rows(genotypes: xr.Dataset, ids: Sequence[str] | np.ndarray | pd.Series, *, source: str,
                 windows: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Row of each of ``ids`` in ``genotypes`` (-1: not there), reading the IDs a chunk at a time.

    ``windows``: ``(lo, hi)`` per query; an ID that names several variants resolves to the one
    row ``lo <= row < hi`` (a gene's top variant lies in its cis window). An ID that names
    several variants and is not resolved so is an :class:`InputError` (``source`` says which
    input names it): which variant was meant is unknown."""
    q = np.asarray(pd.Series(ids, dtype=object).astype(str).to_numpy(), dtype=object)
    if q.size == 0:
        return np.zeros(0, dtype=np.int64)
    want = pd.Index(pd.unique(q))
    code = want.get_indexer(q)
    hits = _per_chunk(genotypes["variant_id"].data, _block_hits, want, label="variant ID chunks")
    rows = np.flatnonzero(hits >= 0)
    hc = hits[rows]
    count = np.bincount(hc, minlength=len(want))
    order = np.argsort(hc, kind="stable")  # the rows of each ID, in genome order
    starts = np.concatenate([[0], np.cumsum(count)])
    first = np.full(len(want), -1, dtype=np.int64)
    have = count > 0
    first[have] = rows[order[starts[:-1][have]]]
    out = first[code]
    dup = count[code] > 1
    if not dup.any():
        return out
    pos = np.asarray(genotypes["variant_position"].values)
    vc = np.asarray(genotypes["variant_contig"].values)
    contigs = np.asarray(genotypes["contig_id"].values, dtype=object).astype(str)
    for i in np.flatnonzero(dup):
        c = code[i]
        cand = rows[order[starts[c]:starts[c + 1]]]
        if windows is not None:
            inside = cand[(cand >= windows[0][i]) & (cand < windows[1][i])]
            if inside.size == 1:
                out[i] = int(inside[0])
                continue
        where = ", ".join(f"{contigs[vc[r]]}:{pos[r]}" for r in cand[:3]) + (", ..." if cand.size > 3 else "")
        raise InputError(
            f"{source}: variant ID {q[i]!r} names {cand.size} variants of the genotypes ({where}), so "
            "which one is meant is unknown; give the variants unique IDs (e.g. bcftools annotate "
            "--set-id '%CHROM:%POS:%REF:%FIRST_ALT', then convert again) and rerun what wrote "
            f"{source}")
    return out


def take_rows(ds: xr.Dataset, name: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
    """Variable ``name`` at variant ``rows`` (sorted, unique), reading only the chunks that hold
    them; strings stay Python objects (no fixed-width copy sized by the longest)."""
    r = np.asarray(rows, dtype=np.int64)
    data = ds[name].data
    if _is_dask(data):
        from dqtl.compute import compute

        vals = np.asarray(compute([data[r]], label=name, blas_threads=None)[0])
    else:
        vals = np.asarray(data)[r]
    return _objects(vals) if vals.dtype.kind in "OSUT" else vals


def ids_at(genotypes: xr.Dataset, rows: Sequence[int] | np.ndarray) -> np.ndarray:
    """(len(rows),) str IDs of variant ``rows`` (any order, repeats allowed), reading only the
    chunks that hold them."""
    r = np.asarray(rows, dtype=np.int64)
    if r.size == 0:
        return np.zeros(0, dtype=str)
    u, inv = np.unique(r, return_inverse=True)
    vals = take_rows(genotypes, "variant_id", u)
    return vals.astype(str)[inv.ravel()]
