"""Genotype kernels: calls to dosages, mean imputation, allele statistics, block decoding.

Conventions (the only place they are written down in code): an allele index ``> 0`` counts as
ALT; ``-1`` marks a missing allele and makes the whole call missing; ``-2`` marks a non-present
allele (mixed ploidy) and is ignored. Dosage input is used as stored, NaN = missing.

Every function works row by row in C order, so a variant's result does not depend on which
other variants share its block (results are identical at any chunking).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "get_array_module",
    "to_host",
    "call_counts",
    "dosage_from_calls",
    "impute_mean",
    "allele_stats",
    "DecodedBlock",
    "decode_block",
]


def get_array_module(x: Any) -> ModuleType:
    """Return ``cupy`` for cupy arrays, else ``numpy``."""
    if type(x).__module__.startswith("cupy"):
        import cupy  # optional dependency

        return cupy
    return np


def to_host(x: Any) -> np.ndarray:
    """A numpy array of ``x`` (copies a cupy array to the host)."""
    return x.get() if type(x).__module__.startswith("cupy") else np.asarray(x)


def call_counts(gt: Any) -> tuple[Any, Any, Any]:
    """Per (variant, sample) of calls (variants, samples, ploidy): called, ALT alleles, alleles present.

    Returns
    -------
    (called, n_alt, n_present)
        bool, int8 and int8 arrays of shape (variants, samples). ``n_alt`` counts allele
        indices ``> 0``; ``n_present`` counts alleles ``>= 0``; ``called`` is False where any
        allele is ``-1``.

    >>> gt = np.array([[[0, 1], [1, 1], [-1, 0], [2, -2]]], dtype=np.int8)
    >>> [a.tolist() for a in call_counts(gt)]
    [[[True, True, False, True]], [[1, 2, 0, 1]], [[2, 2, 1, 1]]]
    """
    xp = get_array_module(gt)
    shape = gt.shape[:2]
    n_alt = xp.zeros(shape, dtype=xp.int8)
    n_present = xp.zeros(shape, dtype=xp.int8)
    missing = xp.zeros(shape, dtype=bool)
    # an explicit loop over the short ploidy axis: several times faster than a reduction over it
    for k in range(gt.shape[-1]):
        a = gt[..., k]
        n_alt += a > 0
        n_present += a >= 0
        missing |= a == -1
    return ~missing, n_alt, n_present


def dosage_from_calls(gt: Any, dtype: Any = np.float64) -> Any:
    """ALT allele dosage from calls (variants, samples, ploidy) int8, NaN for missing calls.

    Returns a C-ordered (variants, samples) array of ``dtype``.

    >>> dosage_from_calls(np.array([[[0, 1], [1, 1], [-1, 0]]], dtype=np.int8)).tolist()
    [[1.0, 2.0, nan]]
    """
    xp = get_array_module(gt)
    shape = gt.shape[:2]
    n_alt = xp.zeros(shape, dtype=xp.int8)
    missing = xp.zeros(shape, dtype=bool)
    for k in range(gt.shape[-1]):  # as call_counts, without the alleles-present count
        a = gt[..., k]
        n_alt += a > 0
        missing |= a == -1
    d = xp.ascontiguousarray(n_alt.astype(dtype))
    d[missing] = xp.nan
    return d


def impute_mean(G: Any) -> tuple[Any, Any]:
    """Replace NaN in each row by the mean of the row's non-missing values (in place).

    Returns ``(G, n_missing)`` with ``n_missing`` (variants,) int; an all-missing row becomes
    all zeros.

    >>> G, n = impute_mean(np.array([[0.0, np.nan, 2.0]]))
    >>> G.tolist(), n.tolist()
    ([[0.0, 1.0, 2.0]], [1])
    """
    xp = get_array_module(G)
    miss = xp.isnan(G)
    n_missing = miss.sum(axis=1)
    if int(n_missing.sum()):
        n_obs = G.shape[1] - n_missing
        sums = xp.where(miss, 0, G).sum(axis=1)
        means = xp.where(n_obs > 0, sums / xp.maximum(n_obs, 1), 0)
        rows, cols = xp.nonzero(miss)
        G[rows, cols] = means[rows]
    return G, n_missing


def allele_stats(G: Any, ploidy: int = 2) -> tuple[Any, Any, Any]:
    """ALT allele frequency, minor-allele samples and minor-allele count per variant.

    Follows tensorQTL: ``af = sum(g) / (ploidy n)``; if ``af <= 0.5`` the minor allele is ALT:
    ``ma_samples = #{g > 0.5}``, ``ma_count = trunc(sum(g[g > 0.5]))``; otherwise REF:
    ``ma_samples = #{g < ploidy - 0.5}``, ``ma_count = ploidy n - trunc(sum(g[g > 0.5]))``.
    Computed on (mean-imputed) dosages, so imputed calls contribute fractional counts.
    """
    xp = get_array_module(G)
    n = G.shape[1]
    s = G.sum(axis=1, dtype=xp.float64)
    af = s / (ploidy * n) if n else xp.zeros(G.shape[0])
    alt_minor = af <= 0.5
    m_alt = G > 0.5
    m_ref = G < ploidy - 0.5
    ma_samples = xp.where(alt_minor, m_alt.sum(axis=1), m_ref.sum(axis=1)).astype(xp.int32)
    c_alt = xp.trunc(xp.where(m_alt, G, 0).sum(axis=1, dtype=xp.float64))
    ma_count = xp.where(alt_minor, c_alt, ploidy * n - c_alt).astype(xp.int32)
    return af, ma_samples, ma_count


@dataclass
class DecodedBlock:
    """A decoded variant block (arrays of the block's array module).

    Attributes
    ----------
    G : (variants, samples) float64
        Mean-imputed ALT dosages of the analysis samples, C-ordered (float32 integers when
        decoded with ``float32_calls`` from a block without missing calls).
    af : (variants,) float64
        ALT allele frequency ``sum(g) / (ploidy n)`` (after imputation).
    valid : (variants,) bool
        Polymorphic and passing the MAF filter.
    monomorphic : (variants,) bool
    n_missing : (variants,) int
        Missing calls per variant (mean-imputed).
    n_maf_filtered : int
    ploidy : int
    """

    G: Any
    af: Any
    valid: Any
    monomorphic: Any
    n_missing: Any
    n_maf_filtered: int
    ploidy: int
    #: decoded from diploid hard calls on the host: the rows without missing calls hold the
    #: integers 0, 1, 2 only (:meth:`minor_allele` counts them from two exact row sums)
    diploid_calls: bool = False
    #: (variants,) ``G.sum(axis=1)``, bit for bit, when the decoder has it (the row means
    #: ``sums / samples`` then equal ``G.mean(axis=1)`` without another pass over ``G``)
    sums: Any = None

    def row_means(self, a: int = 0, b: int | None = None) -> Any:
        """``G[a:b].mean(axis=1)``, bit for bit (from :attr:`sums` when known)."""
        if self.sums is None:
            return self.G[a:b].mean(axis=1)
        return self.sums[a:b] / self.G.shape[1]

    def integer_rows(self, a: int = 0, b: int | None = None) -> Any:
        """(rows,) bool: the rows ``a:b`` known to hold integers only (decoded from hard calls,
        no missing call), or None when the decoder does not know (dosages)."""
        if not self.diploid_calls:
            return None
        return self.n_missing[a:b] == 0

    @property
    def n_monomorphic(self) -> int:
        return int(self.monomorphic.sum())

    @property
    def n_imputed_calls(self) -> int:
        return int(self.n_missing.sum())

    @property
    def n_variants_imputed(self) -> int:
        return int((self.n_missing > 0).sum())

    def counts(self) -> dict[str, int]:
        """The block's counters, summed over blocks into a run's report."""
        return {
            "n_monomorphic": self.n_monomorphic,
            "n_maf_filtered": int(self.n_maf_filtered),
            "n_imputed_calls": self.n_imputed_calls,
            "n_variants_imputed": self.n_variants_imputed,
        }

    def minor_allele(self, rows: Any = None) -> tuple[Any, Any]:
        """``(ma_samples, ma_count)`` per variant (see :func:`allele_stats`); ``rows``: only
        those variants (an index array), in that order."""
        G = self.G if rows is None else self.G[rows]
        if G.dtype == np.float32:  # float32_calls: the same integers, counted in float64
            G = G.astype(np.float64)
        if not self.diploid_calls:
            _, ma_samples, ma_count = allele_stats(G, self.ploidy)
            return ma_samples, ma_count
        n_missing = self.n_missing if rows is None else self.n_missing[rows]
        sums = self.sums if rows is None else self.sums[rows]
        return _allele_stats_calls(G, sums, n_missing, self.ploidy)


def decode_block(
    block: Any, sample_index: Any, *, ploidy: int, maf_threshold: float = 0.0, float32_calls: bool = False
) -> DecodedBlock:
    """Decode calls (variants, samples, ploidy) int8 or dosages (variants, samples) of a block.

    Selects the analysis samples, mean-imputes missing calls per variant, computes the ALT
    allele frequency and the filters: monomorphic (all imputed dosages equal) and, when
    ``maf_threshold > 0``, ``min(af, 1 - af) < maf_threshold``.

    ``float32_calls``: diploid hard calls without a missing call in the block decode to float32
    dosages (the integers 0, 1, 2: exact; a fifth of the time of the float64 copy), for callers
    whose arithmetic on them is float64 anyway (the permutation tasks); otherwise float64.

    >>> gt = np.array([[[0, 0], [0, 1], [1, 1]], [[0, 0], [0, 0], [-1, -1]]], dtype=np.int8)
    >>> d = decode_block(gt, np.arange(3), ploidy=2)
    >>> d.G.tolist(), d.valid.tolist(), d.counts()["n_imputed_calls"]
    ([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]], [True, False], 1)
    """
    xp = get_array_module(block)
    if xp is np and block.ndim == 3 and block.shape[-1] == 2 and block.dtype == np.int8 and ploidy == 2:
        return _decode_diploid(np.ascontiguousarray(block), np.asarray(sample_index), maf_threshold,
                               float32_calls=float32_calls)
    idx = xp.asarray(sample_index)
    if block.ndim == 3:
        G = dosage_from_calls(block[:, idx, :], dtype=xp.float64)
    else:
        G = xp.ascontiguousarray(block[:, idx].astype(xp.float64))
        if G.base is block:  # never impute into the caller's array
            G = G.copy()
    G, n_missing = impute_mean(G)
    n = G.shape[1]
    af = G.sum(axis=1) / (ploidy * n) if n else xp.zeros(G.shape[0])
    monomorphic = G.max(axis=1) == G.min(axis=1) if n else xp.ones(G.shape[0], dtype=bool)
    valid, n_maf = _variant_filters(xp, af, monomorphic, maf_threshold)
    return DecodedBlock(G=G, af=af, valid=valid, monomorphic=monomorphic, n_missing=n_missing,
                        n_maf_filtered=n_maf, ploidy=int(ploidy))


def _variant_filters(xp: ModuleType, af: Any, monomorphic: Any, maf_threshold: float) -> tuple[Any, int]:
    """``(valid, n_maf_filtered)``: polymorphic and, when ``maf_threshold > 0``, with
    ``min(af, 1 - af) >= maf_threshold``."""
    valid = ~monomorphic
    n_maf = 0
    if maf_threshold > 0:
        low = (xp.minimum(af, 1.0 - af) < maf_threshold) & valid
        n_maf = int(low.sum())
        valid &= ~low
    return valid, n_maf


def _pair_codes() -> np.ndarray:
    """Lookup table over the 65,536 int8 pairs of a diploid call read as one uint16: the ALT
    dosage as int8 (-1 when an allele is ``-1``)."""
    pairs = np.arange(1 << 16, dtype=np.uint16).view(np.int8).reshape(-1, 2)
    dose = (pairs > 0).sum(axis=1).astype(np.int8)
    dose[(pairs == -1).any(axis=1)] = -1
    return dose


_PAIR_INT8 = _pair_codes()


def _diploid_codes(block: np.ndarray, sample_index: np.ndarray | None) -> np.ndarray:
    """The int8 dosage codes of :data:`_PAIR_INT8` (-1: a missing allele) of C-ordered diploid
    calls, on the samples ``sample_index`` (None: all), C-ordered.

    Biallelic calls (every allele -1, 0 or 1, the common case) are the sum of the two allele
    bytes, 3x faster than the table lookup, except where an allele is missing: the rows with a
    -1 take the table. Any other allele value (multiallelic indices, the -2 fill of mixed
    ploidy) sends the block through the table, whose semantics are the definition.
    """
    v, n_all = block.shape[:2]
    alleles = block.reshape(v, 2 * n_all)
    if v and n_all and (row_min := alleles.min(axis=1)).min() >= -1 and alleles.max() <= 1:
        calls = block
        if sample_index is not None:  # both alleles of a call as one uint16: one item per call
            calls = block.view(np.uint16).reshape(v, n_all).take(sample_index, axis=1)
            calls = calls.view(np.int8).reshape(v, -1, 2)
        codes = np.add(calls[:, :, 0], calls[:, :, 1])  # int8, C-ordered
        rows = np.flatnonzero(row_min < 0)  # rows with a missing allele (in any sample)
        if rows.size:
            codes[rows] = _PAIR_INT8[calls[rows].view(np.uint16).reshape(rows.size, -1)]
        return codes
    pairs = block.view(np.uint16).reshape(v, n_all)
    if sample_index is not None:
        pairs = pairs.take(sample_index, axis=1)  # C-ordered (pairs[:, idx] is F-ordered)
    return _PAIR_INT8[pairs]


def _decode_diploid(block: np.ndarray, sample_index: np.ndarray, maf_threshold: float, *,
                    float32_calls: bool = False) -> DecodedBlock:
    """:func:`decode_block` for C-ordered diploid int8 calls on the host, bit for bit.

    Each call's two allele bytes are read as one uint16 and mapped through a 65,536-entry
    table to an int8 dosage (-1 missing), so selecting samples, counting missing calls, the
    allele frequency and the monomorphic test run on int8 integers (exact); rows with a missing
    call take the float path of :func:`impute_mean` unchanged.
    """
    v, n_all = block.shape[:2]
    subset = not (len(sample_index) == n_all and np.array_equal(sample_index, np.arange(n_all)))
    codes = _diploid_codes(block, sample_index if subset else None)
    n = codes.shape[1]
    n_missing = np.zeros(v, dtype=np.int64)
    if not n:
        z = np.zeros(v)
        return DecodedBlock(G=codes.astype(np.float64), af=z, valid=np.zeros(v, dtype=bool),
                            monomorphic=np.ones(v, dtype=bool), n_missing=n_missing, n_maf_filtered=0,
                            ploidy=2, diploid_calls=True, sums=z.copy())
    lo = codes.min(axis=1)
    monomorphic = codes.max(axis=1) == lo
    rows = np.flatnonzero(lo < 0)  # the rows with a missing call (-1)
    # float32 holds the integers exactly, and their sums below 2^24
    f32 = float32_calls and not rows.size and 2 * n < 2**24
    G = codes.astype(np.float32 if f32 else np.float64)
    if rows.size:
        n_missing[rows] = np.count_nonzero(codes[rows] < 0, axis=1)
    # integer dosages: every partial sum is an integer below 2^53 (2^24 in float32), so the sums
    # are exact in any order (a BLAS product with ones: 2x faster than a reduction), the -1 of
    # each missing call removed; equal to impute_mean's and G.sum's on the rows without missing calls
    sums = (G @ np.ones(n, dtype=G.dtype)).astype(np.float64)
    sums += n_missing
    af = sums / (2 * n)
    if rows.size:  # mean imputation with impute_mean's values, on those rows only
        cm = codes[rows]
        miss = cm < 0
        n_obs = n - n_missing[rows]
        means = np.where(n_obs > 0, sums[rows] / np.maximum(n_obs, 1), 0)
        Gm = np.where(miss, means[:, None], G[rows])
        G[rows] = Gm
        sums[rows] = Gm.sum(axis=1)  # numpy's row sum (what G.sum / G.mean compute)
        af[rows] = sums[rows] / (2 * n)
        monomorphic[rows] = Gm.max(axis=1) == Gm.min(axis=1)
    valid, n_maf = _variant_filters(np, af, monomorphic, maf_threshold)
    return DecodedBlock(G=G, af=af, valid=valid, monomorphic=monomorphic, n_missing=n_missing,
                        n_maf_filtered=n_maf, ploidy=2, diploid_calls=True, sums=sums)


def _allele_stats_calls(G: np.ndarray, s: np.ndarray, n_missing: np.ndarray,
                        ploidy: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ma_samples, ma_count)`` of :func:`allele_stats` for dosages decoded from hard calls
    (``s``: their row sums, :attr:`DecodedBlock.sums`): exact integer counts for the rows without
    missing calls (equal to the float computation: every value is an integer),
    :func:`allele_stats` on the imputed rows."""
    n = G.shape[1]
    # on a row without missing calls (dosages 0, 1, 2: c0 + c1 + c2 = n) the exact float sums
    # s = c1 + 2 c2 and q = c1 + 4 c2 (integers below 2^53) give c2 = (q - s) / 2, hence
    # n_alt = c1 + c2 = s - c2 and n_ref = c0 + c1 = n - c2 (the rows with a missing call: below)
    c2 = (np.einsum("ij,ij->i", G, G) - s) / 2
    n_alt = s - c2
    n_ref = n - c2
    alt_minor = s <= ploidy * n * 0.5  # af <= 0.5 on exact integers
    ma_samples = np.where(alt_minor, n_alt, n_ref).astype(np.int32)
    ma_count = np.where(alt_minor, s, ploidy * n - s).astype(np.int32)
    rows = np.nonzero(n_missing)[0]
    if rows.size:
        _, ms, mc = allele_stats(G[rows], ploidy)
        ma_samples[rows], ma_count[rows] = ms, mc
    return ma_samples, ma_count
