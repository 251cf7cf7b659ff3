"""Genotype quality control: per-variant call rate, allele frequencies, HWE exact test; per-sample QC.

Three layers, as everywhere in dqtl:

* numpy kernels: :func:`hwe_exact_p` (vectorised exact Hardy-Weinberg test), and the block
  counters ``_variant_counts`` / ``_sample_counts`` that decode one genotype block;
* dask graphs tiling the counters over (variants, samples) blocks and summing partial counts;
* the Dataset API, :func:`variant_qc` and :func:`sample_qc`, lazy (nothing is computed until
  the caller asks), returning sgkit-named variables.

Conventions (as :func:`dqtl.kernels.genotypes.dosage_from_calls`): an allele index > 0 counts
as ALT; a call with any allele ``-1`` is missing; ``-2`` (non-present, mixed ploidy) alleles are
ignored. Heterozygous = called with both REF and ALT alleles. Genotype Datasets with only
``call_dosage`` (no calls) are counted from the dosages: missing = NaN, ALT count = summed
dosage, genotype classes from the dosage rounded to the nearest integer.

The HWE p-value is the exact test of Wigginton, Cutler & Abecasis (2005), computed as PLINK 2
``--hardy`` computes it (not the mid-p variant): the probability of every heterozygote count
no more likely than the observed one, conditional on the allele counts, with PLINK's handling
of ties. Tested against plink2 v2.00a3.5 on the bundled GEUVADIS genotypes.

References
----------
Wigginton JE, Cutler DJ, Abecasis GR (2005). A note on exact tests of Hardy-Weinberg
equilibrium. Am J Hum Genet 76:887-893. doi:10.1086/429864

Chang CC, Chow CC, Tellier LC, Vattikuti S, Purcell SM, Lee JJ (2015). Second-generation PLINK:
rising to the challenge of larger and richer datasets. GigaScience 4:7.
doi:10.1186/s13742-015-0047-8
"""

from __future__ import annotations

import logging
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from dqtl.errors import InputError
from dqtl.kernels.genotypes import call_counts

__all__ = [
    "hwe_exact_p",
    "variant_qc",
    "sample_qc",
    "VARIANT_QC_VARIABLES",
    "SAMPLE_QC_VARIABLES",
]

log = logging.getLogger(__name__)

#: Variables added by :func:`variant_qc` (all dims ``(variants,)``).
VARIANT_QC_VARIABLES = (
    "variant_n_called",
    "variant_call_rate",
    "variant_n_hom_ref",
    "variant_n_het",
    "variant_n_hom_alt",
    "variant_allele_total",
    "variant_alt_count",
    "variant_alt_frequency",
    "variant_maf",
    "variant_mac",
    "variant_hwe_p_value",
)

#: Variables added by :func:`sample_qc` (all dims ``(samples,)``).
SAMPLE_QC_VARIABLES = (
    "sample_n_called",
    "sample_call_rate",
    "sample_n_hom_ref",
    "sample_n_het",
    "sample_n_hom_alt",
    "sample_heterozygosity",
)

# PLINK's scale for the observed probability (2^-83) and its tolerance (2^-44)
_EXACT_TEST_BIAS = 2.0**-83
_SMALL_EPSILON = 2.0**-44
_N_COUNTS = 6  # n_called, allele_total, alt_count, hom_ref, het, hom_alt


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------


def hwe_exact_p(
    n_het: Any, n_hom_1: Any, n_hom_2: Any, *, max_block_elements: int = 1 << 22
) -> np.ndarray:
    """Exact Hardy-Weinberg equilibrium test p-values, vectorised over variants.

    For a biallelic variant with ``n`` called diploid genotypes and ``r`` copies of the rarer
    allele, the heterozygote count ``H`` conditional on ``r`` has (Levene 1949)
    ``P(H = h) ∝ n! 2^h / (h! ((r-h)/2)! (n-(r+h)/2)!)``. The p-value is the total probability
    of the counts no more likely than the observed one (Wigginton et al. 2005), computed as
    PLINK 2 ``HweP(..., midp=0)``: probabilities relative to the observed one by the same chain
    of ratio products (so that ties resolve as in PLINK: counts as likely as the observed one,
    within a relative 2^-44, count as "no more likely"), summed over a window of
    heterozygote counts that holds all mass above ``1e-60`` of the mode.

    Parameters
    ----------
    n_het, n_hom_1, n_hom_2
        Heterozygote and the two homozygote counts, integer arrays of one shape.
    max_block_elements
        Memory bound: the work matrix of one batch of variants holds at most this many floats.

    Returns
    -------
    numpy.ndarray
        float64 p-values of the input shape; 1 for monomorphic variants, NaN without any
        called genotype or with a negative count.

    Examples
    --------
    >>> hwe_exact_p([6, 39, 0, 0], [68, 41, 90, 0], [3, 10, 0, 0]).round(6)
    array([0.003723, 1.      , 1.      ,      nan])
    """
    het = np.asarray(n_het)
    h1 = np.asarray(n_hom_1)
    h2 = np.asarray(n_hom_2)
    shape = np.broadcast_shapes(het.shape, h1.shape, h2.shape)
    het = np.broadcast_to(het, shape).astype(np.int64).ravel()
    h1 = np.broadcast_to(h1, shape).astype(np.int64).ravel()
    h2 = np.broadcast_to(h2, shape).astype(np.int64).ravel()
    out = np.full(het.size, np.nan)
    homr = np.minimum(h1, h2)
    homc = np.maximum(h1, h2)
    n = het + homr + homc
    ok = (n > 0) & (homr >= 0) & (het >= 0)
    rare = 2 * homr + het
    g2 = 2 * n
    out[ok & (rare == 0)] = 1.0
    todo = np.flatnonzero(ok & (rare > 0))
    if todo.size == 0:
        return out.reshape(shape)
    het, homr, n, rare, g2 = het[todo], homr[todo], n[todo], rare[todo], g2[todo]
    upper = het * g2 > rare * (g2 - rare)
    # window of heterozygote counts on the lattice h = parity + 2 j, j = 0 .. rare // 2
    parity = rare % 2
    expected = rare * (g2 - rare) / np.maximum(g2 - 1, 1)
    half = np.maximum(12.0 * np.sqrt(expected + 1.0) + 4.0, 2.0 * np.abs(het - expected) + 4.0)
    j_obs = (het - parity) // 2
    j_lo = np.clip(np.floor((expected - half - parity) / 2.0), 0, None).astype(np.int64)
    j_hi = np.minimum(np.ceil((expected + half - parity) / 2.0).astype(np.int64), rare // 2)
    j_lo = np.minimum(j_lo, j_obs)
    j_hi = np.maximum(j_hi, j_obs)
    n_left = j_obs - j_lo  # steps towards fewer heterozygotes
    n_right = j_hi - j_obs  # steps towards more heterozygotes
    width = np.maximum(n_left, n_right) + 1
    order = np.argsort(width, kind="stable")
    start = 0
    p = np.empty(todo.size)
    while start < order.size:
        # grow the batch while rows x (widest row) stays within the budget
        w_max = int(width[order[start]])
        stop = start + 1
        while stop < order.size:
            w_next = int(width[order[stop]])
            if (stop - start + 1) * w_next > max_block_elements:
                break
            w_max = w_next
            stop += 1
        idx = order[start:stop]
        p[idx] = _hwe_batch(het[idx], homr[idx], n[idx], rare[idx], upper[idx],
                            n_left[idx], n_right[idx], w_max)
        start = stop
    out[todo] = p
    return out.reshape(shape)


def _hwe_batch(
    het: np.ndarray, homr: np.ndarray, n: np.ndarray, rare: np.ndarray, upper: np.ndarray,
    n_left: np.ndarray, n_right: np.ndarray, width: int,
) -> np.ndarray:
    """PLINK's relative probabilities around the observed count, for one batch of variants."""
    k = np.arange(width - 1, dtype=np.float64)[None, :]
    h0 = het.astype(np.float64)[:, None]
    r = rare.astype(np.float64)[:, None]
    nn = n.astype(np.float64)[:, None]
    # up step h -> h + 2 (h = het + 2k): 4 homr(h) homc(h) / ((h + 2)(h + 1))
    h = h0 + 2.0 * k
    homr_h = (r - h) / 2.0
    homc_h = nn - h - homr_h
    valid_r = k < n_right[:, None]
    up = np.where(valid_r, (4.0 * homr_h * homc_h) / np.where(valid_r, (h + 2.0) * (h + 1.0), 1.0), 0.0)
    # down step h -> h - 2 (h = het - 2k): h (h - 1) / (4 homr(h - 2) homc(h - 2))
    h = h0 - 2.0 * k
    homr_d = (r - h) / 2.0 + 1.0
    homc_d = nn - (h - 2.0) - homr_d
    valid_l = k < n_left[:, None]
    down = np.where(valid_l, (h * (h - 1.0)) / np.where(valid_l, 4.0 * homr_d * homc_d, 1.0), 0.0)
    # the chain starts just below the observed probability, so that near-ties (relative
    # 2^-44) of the observed probability compare as "not more likely" (PLINK's convention)
    start = np.full((het.size, 1), (1.0 - _SMALL_EPSILON) * _EXACT_TEST_BIAS)
    with np.errstate(over="ignore", invalid="ignore"):
        right = np.cumprod(np.hstack([start, up]), axis=1)[:, 1:]
        left = np.cumprod(np.hstack([start, down]), axis=1)[:, 1:]
    right = np.where(valid_r, right, 0.0)
    left = np.where(valid_l, left, 0.0)
    toward = np.where(upper[:, None], left, right)
    away = np.where(upper[:, None], right, left)
    # terms towards the mode are "more likely" until the first one below the observed one
    before_break = np.logical_and.accumulate(toward >= _EXACT_TEST_BIAS, axis=1)
    with np.errstate(invalid="ignore"):
        center = np.where(before_break, toward, 0.0).sum(axis=1)
        tail = ((1.0 - _SMALL_EPSILON) * _EXACT_TEST_BIAS
                + np.where(before_break, 0.0, toward).sum(axis=1) + away.sum(axis=1))
        p = tail / (tail + center)
    p[center == 0] = 1.0
    p[~np.isfinite(center)] = 0.0
    return p


def _class_counts(block: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per (variant, sample): called, alleles present, ALT count, hom-ref, het, hom-alt (bool/int)."""
    if block.ndim == 3:
        called, n_alt, n_present = call_counts(block)
        n_alt = np.where(called, n_alt, 0)
        n_present = np.where(called, n_present, 0)
        hom_ref = called & (n_alt == 0) & (n_present > 0)
        hom_alt = called & (n_alt == n_present) & (n_present > 0)
        het = called & (n_alt > 0) & (n_alt < n_present)
        return called, n_present, n_alt, hom_ref, het, hom_alt
    d = np.asarray(block, dtype=np.float64)
    called = ~np.isnan(d)
    alt = np.where(called, d, 0.0)
    hard = np.rint(alt)
    ploidy = 2.0  # dosage stores do not record ploidy; diploid assumed
    return (called, np.where(called, ploidy, 0.0), alt, called & (hard == 0),
            called & (hard > 0) & (hard < ploidy), called & (hard >= ploidy))


def _variant_counts(block: np.ndarray) -> np.ndarray:
    """(variants, 1, 6) partial counts of one block (summed over its samples)."""
    parts = _class_counts(block)
    dtype = np.float64 if block.ndim == 2 else np.int64
    out = np.stack([np.asarray(x).sum(axis=1, dtype=dtype) for x in parts], axis=-1)
    return out[:, None, :]


def _sample_counts(block: np.ndarray) -> np.ndarray:
    """(1, samples, 5) partial counts of one block (summed over its variants)."""
    called, _, _, hom_ref, het, hom_alt = _class_counts(block)
    out = np.stack([x.sum(axis=0, dtype=np.int64) for x in (called, hom_ref, het, hom_alt)], axis=-1)
    n_var = np.full(out.shape[:1] + (1,), block.shape[0], dtype=np.int64)
    return np.concatenate([out, n_var], axis=-1)[None, :, :]


def _hwe_block(counts: np.ndarray, ploidy: int) -> np.ndarray:
    if ploidy != 2:
        return np.full(counts.shape[0], np.nan)
    return hwe_exact_p(counts[:, 4], counts[:, 3], counts[:, 5])


# --------------------------------------------------------------------------------------------
# graph
# --------------------------------------------------------------------------------------------


def _genotype_data(ds: xr.Dataset, call_genotype: str, call_dosage: str,
                   chunks: int | None) -> tuple[da.Array, int]:
    if call_genotype in ds:
        var = ds[call_genotype]
        ploidy = int(var.shape[2]) if var.ndim == 3 else 2
    elif call_dosage in ds:
        var = ds[call_dosage]
        ploidy = 2
    else:
        raise InputError(
            f"genotypes: expected a variable {call_genotype!r} (variants, samples, ploidy) or "
            f"{call_dosage!r} (variants, samples), found {sorted(map(str, ds.data_vars))}; open "
            "the store with dqtl.io.genotypes.open_genotypes"
        )
    arr = var.data
    if not isinstance(arr, da.Array):
        arr = da.from_array(np.asarray(arr), chunks=(chunks or 10_000,) + (-1,) * (var.ndim - 1))
    elif chunks:
        arr = arr.rechunk({0: chunks})
    if arr.ndim == 3 and len(arr.chunks[2]) > 1:
        arr = arr.rechunk({2: -1})
    return arr, ploidy


def _variant_count_graph(arr: da.Array) -> da.Array:
    """(variants, 6) lazy counts, summed over sample chunks."""
    n_sc = len(arr.chunks[1])
    dtype = np.float64 if arr.ndim == 2 else np.int64
    parts = da.map_blocks(
        _variant_counts, arr, chunks=(arr.chunks[0], (1,) * n_sc, (_N_COUNTS,)), dtype=dtype,
        meta=np.empty((0, 0, 0), dtype=dtype), **({"new_axis": 2} if arr.ndim == 2 else {}),
    )
    return parts.sum(axis=1)


# --------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------


def variant_qc(
    ds: xr.Dataset,
    *,
    call_genotype: str = "call_genotype",
    call_dosage: str = "call_dosage",
    variants_chunk_size: int | None = None,
    merge: bool = True,
) -> xr.Dataset:
    """Per-variant QC statistics, lazily (dask): call rate, allele counts and frequencies, HWE.

    Parameters
    ----------
    ds
        Genotype Dataset in the VCF Zarr model (``call_genotype`` (variants, samples, ploidy)
        int8, -1 missing; or only ``call_dosage`` (variants, samples) float, NaN missing).
    call_genotype, call_dosage
        Names of the input variables.
    variants_chunk_size
        Rechunk to this many variants per task (default: the input's chunks).
    merge
        Return ``ds`` with the new variables (True) or only the new variables (False).

    Returns
    -------
    xarray.Dataset
        Dask-backed variables with dims ``(variants,)``:
        ``variant_n_called`` (int64: samples with a complete call), ``variant_call_rate``
        (``n_called / n_samples``), ``variant_n_hom_ref``, ``variant_n_het``,
        ``variant_n_hom_alt`` (int64), ``variant_allele_total`` (alleles observed in called
        samples), ``variant_alt_count`` (ALT alleles; float64 for dosage input),
        ``variant_alt_frequency`` (``alt_count / allele_total``, NaN if nothing called),
        ``variant_maf`` (``min(f, 1 - f)``), ``variant_mac`` (``min(alt, total - alt)``),
        ``variant_hwe_p_value`` (float64 exact HWE test, :func:`hwe_exact_p`; NaN unless
        diploid). Multi-allelic sites are counted as ALT (any non-REF allele) versus REF.

    Examples
    --------
    >>> from dqtl.simulation import simulate
    >>> sim = simulate(n_samples=50, n_variants=20, n_phenotypes=2, n_contigs=1, seed=3)
    >>> qc = variant_qc(sim, merge=False)
    >>> qc.variant_call_rate.chunks is not None
    True
    >>> bool((qc.variant_call_rate.values == 1).all()), bool((qc.variant_maf <= 0.5).all())
    (True, True)
    """
    arr, ploidy = _genotype_data(ds, call_genotype, call_dosage, variants_chunk_size)
    n_samples = arr.shape[1]
    counts = _variant_count_graph(arr)
    count_dtype = counts.dtype
    hwe = da.map_blocks(_hwe_block, counts, ploidy, drop_axis=1, dtype=np.float64,
                        meta=np.empty((0,), dtype=np.float64))
    n_called = counts[:, 0]
    total = counts[:, 1]
    alt = counts[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = da.where(total > 0, alt / da.maximum(total, 1), np.nan)
        maf = da.minimum(freq, 1.0 - freq)
        mac = da.minimum(alt, total - alt)
    dims = ("variants",)
    new = xr.Dataset(
        {
            "variant_n_called": (dims, n_called.astype(np.int64)),
            "variant_call_rate": (dims, n_called / max(n_samples, 1)),
            "variant_n_hom_ref": (dims, counts[:, 3].astype(np.int64)),
            "variant_n_het": (dims, counts[:, 4].astype(np.int64)),
            "variant_n_hom_alt": (dims, counts[:, 5].astype(np.int64)),
            "variant_allele_total": (dims, total.astype(np.int64)),
            "variant_alt_count": (dims, alt.astype(count_dtype)),
            "variant_alt_frequency": (dims, freq),
            "variant_maf": (dims, maf),
            "variant_mac": (dims, mac.astype(count_dtype)),
            "variant_hwe_p_value": (dims, hwe),
        }
    )
    new["variant_hwe_p_value"].attrs["description"] = (
        "exact Hardy-Weinberg test (Wigginton et al. 2005), as PLINK 2 --hardy"
    )
    return ds.merge(new) if merge else new


def sample_qc(
    ds: xr.Dataset,
    *,
    call_genotype: str = "call_genotype",
    call_dosage: str = "call_dosage",
    variants_chunk_size: int | None = None,
    merge: bool = True,
) -> xr.Dataset:
    """Per-sample QC statistics, lazily (dask): call rate and heterozygosity.

    Parameters
    ----------
    ds
        Genotype Dataset (see :func:`variant_qc`).
    call_genotype, call_dosage, variants_chunk_size, merge
        As :func:`variant_qc`.

    Returns
    -------
    xarray.Dataset
        Dask-backed variables with dims ``(samples,)``: ``sample_n_called`` (int64: variants
        with a complete call), ``sample_call_rate`` (``n_called / n_variants``),
        ``sample_n_hom_ref``, ``sample_n_het``, ``sample_n_hom_alt`` (int64) and
        ``sample_heterozygosity`` (``n_het / n_called``, NaN without calls).

    Examples
    --------
    >>> from dqtl.simulation import simulate
    >>> sim = simulate(n_samples=5, n_variants=40, n_phenotypes=2, n_contigs=1, seed=3,
    ...                missing_genotype_rate=0.1)
    >>> qc = sample_qc(sim, merge=False).compute()
    >>> bool(((qc.sample_call_rate > 0.7) & (qc.sample_call_rate < 1)).all())
    True
    """
    arr, _ = _genotype_data(ds, call_genotype, call_dosage, variants_chunk_size)
    n_vc = len(arr.chunks[0])
    parts = da.map_blocks(
        _sample_counts, arr, chunks=((1,) * n_vc, arr.chunks[1], (5,)), dtype=np.int64,
        meta=np.empty((0, 0, 0), dtype=np.int64), **({"new_axis": 2} if arr.ndim == 2 else {}),
    )
    counts = parts.sum(axis=0)
    n_variants = arr.shape[0]
    n_called = counts[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        het_rate = da.where(n_called > 0, counts[:, 2] / da.maximum(n_called, 1), np.nan)
    dims = ("samples",)
    new = xr.Dataset(
        {
            "sample_n_called": (dims, n_called),
            "sample_call_rate": (dims, n_called / max(n_variants, 1)),
            "sample_n_hom_ref": (dims, counts[:, 1]),
            "sample_n_het": (dims, counts[:, 2]),
            "sample_n_hom_alt": (dims, counts[:, 3]),
            "sample_heterozygosity": (dims, het_rate),
        }
    )
    return ds.merge(new) if merge else new
