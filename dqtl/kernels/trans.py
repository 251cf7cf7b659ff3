"""Pure array kernels of the trans scan (numpy, or cupy through the same calls).

No xarray, no dask, no I/O. One call of :func:`trans_block` tests one variant block against one
block of phenotypes:

1. decode the int8 calls (or dosages) of the analysis samples, mean-impute, allele frequency,
   monomorphic and MAF filters (:func:`dqtl.kernels.genotypes.decode_block`, shared with every method);
2. per missing-value group of phenotypes: centre the genotypes on the group's samples, take their
   residual norms (:func:`dqtl.kernels.linalg.residual_norm2`) and scale each row to unit
   residual norm, in float32;
3. one float32 GEMM per tile, ``R = G_hat @ P_hat^T``: ``R`` approximates the partial correlation
   ``r`` (phenotype rows are residualized and unit norm, so ``G P^T = G_res P^T``);
4. keep the candidates ``|R| >= r* - tol``, where ``tol`` bounds the float32 error of any
   product of unit vectors (:func:`float32_tolerance`), so no hit is lost at the boundary;
5. recompute ``r`` of every candidate exactly in float64 (one row-wise dot product per pair,
   the same arithmetic whatever the blocking) and keep ``|r| >= r*`` outside the cis window;
6. statistics in float64 from ``r`` (:func:`dqtl.kernels.stats.stats_from_r`), and the
   per-phenotype count of tests (valid variants outside the phenotype's cis window).

Shapes are written ``(variants, samples)`` for genotypes and ``(phenotypes, samples)`` for
phenotypes. Everything a block returns is a typed 1-D or 2-D numpy array on the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dqtl.kernels.genotypes import decode_block, get_array_module, to_host
from dqtl.kernels.linalg import residual_norm2, row_dots
from dqtl.kernels.stats import float32_tolerance, stats_from_r

__all__ = [
    "GroupTile",
    "PhenotypeBlock",
    "PermutationBlock",
    "group_genotypes",
    "PreparedGroup",
    "PreparedBlock",
    "prepare_block",
    "centred_rows",
    "candidate_pairs",
    "exact_r",
    "count_tests",
    "max_abs_r",
    "trans_block",
    "HIT_FIELDS",
]

#: candidate pairs recomputed in float64 per batch (bounds the (pairs, samples) gather)
_EXACT_BATCH = 4096
#: phenotype columns per GEMM tile inside a block (the tile is scanned while it is in cache)
TILE_PHENOTYPES = 2048
#: variant rows per GEMM tile inside a block
TILE_VARIANTS = 2048
#: at most this many variants are decoded at a time inside a block ...
DECODE_ROWS = 256
#: ... and at most about this many bytes per float64 temporary (they stay in cache)
DECODE_BYTES = 1 << 20

#: per-hit arrays returned by :func:`trans_block`, with their dtypes
HIT_FIELDS: dict[str, Any] = {
    "variant_index": np.int64,
    "phenotype_index": np.int64,
    "r": np.float64,
    "t_value": np.float64,
    "p_value": np.float64,
    "beta": np.float64,
    "beta_se": np.float64,
    "af": np.float64,
}


@dataclass(frozen=True)
class GroupTile:
    """Phenotypes of one missing-value group within a phenotype block (host numpy arrays).

    Attributes
    ----------
    index : (p,) int64
        Indices of these phenotypes among the tested phenotypes.
    sample_index : (n_g,) int64 or None
        The group's samples among the analysis samples (None: all).
    P : (p, n_g) float64
        Residualized phenotypes scaled to unit norm.
    p_norm : (p,) float64
        Their residual norms.
    Q : (n_g, k) float64
        Orthonormal basis of ``[1, C]`` on the group's samples.
    dof : int
        Residual degrees of freedom.
    r_star : float
        Correlation threshold at this ``dof`` (:func:`r_threshold`).
    cis_lo, cis_hi : (p,) int64
        Global variant index range ``[lo, hi)`` excluded as cis for each phenotype (empty if
        ``lo >= hi``).
    """

    index: np.ndarray
    sample_index: np.ndarray | None
    P: np.ndarray
    p_norm: np.ndarray
    Q: np.ndarray
    dof: int
    r_star: float
    cis_lo: np.ndarray
    cis_hi: np.ndarray


@dataclass(frozen=True)
class PhenotypeBlock:
    """The tested phenotypes ``start:stop`` (contiguous), split by missing-value group."""

    start: int
    stop: int
    groups: tuple[GroupTile, ...]


@dataclass(frozen=True)
class PermutationBlock:
    """Synthetic permuted phenotypes, one set per missing-value group (host numpy arrays).

    ``P[g]`` is (permutations, n_g) float64, residualized on ``Q[g]`` and unit norm.
    """

    sample_index: tuple[np.ndarray | None, ...]
    P: tuple[np.ndarray, ...]
    Q: tuple[np.ndarray, ...]


def group_genotypes(G: Any, valid: Any, sample_index: Any, Q: Any) -> tuple[Any, Any, Any, Any]:
    """Genotypes of one group: centred rows, residual norms, testable mask, float32 unit rows.

    Parameters
    ----------
    G : (variants, samples) float64
        Decoded dosages of the analysis samples.
    valid : (variants,) bool
    sample_index : (n_g,) int or None
    Q : (n_g, k) float64, same array module as ``G``

    Returns
    -------
    (Gc, g_norm, ok, Gn32)
        ``Gc`` (variants, n_g) float64 centred on the group's samples; ``g_norm`` (variants,)
        float64 residual norms (:func:`dqtl.kernels.linalg.residual_norm2`); ``ok`` = valid and not constant on
        these samples; ``Gn32`` (variants, n_g) float32 rows ``Gc / g_norm`` (zero where not
        ``ok``). Every output row depends on its input row only.
    """
    xp = get_array_module(G)
    Gs = G if sample_index is None else xp.ascontiguousarray(G[:, xp.asarray(sample_index)])
    Gc = Gs - Gs.mean(axis=1, keepdims=True)
    g_norm = xp.sqrt(residual_norm2(Gc, Q, centred=True))
    ok = valid & (g_norm > 1e-10 * np.sqrt(max(Gc.shape[1], 1)))
    scale = xp.where(ok, 1.0 / xp.where(ok, g_norm, 1.0), 0.0)
    Gn32 = (Gc * scale[:, None]).astype(xp.float32)
    return Gc, g_norm, ok, Gn32


@dataclass
class PreparedGroup:
    """One group's view of a variant block: float32 unit rows, exact norms, testable mask."""

    sample_index: Any
    Q: Any
    Gn32: Any  # (variants, n_g) float32
    g_norm: Any  # (variants,) float64
    ok: Any  # (variants,) bool


@dataclass
class PreparedBlock:
    """A variant block decoded for the GEMM (see :func:`prepare_block`)."""

    af: Any
    valid: Any
    groups: list[PreparedGroup]
    counts: dict[str, int]


def prepare_block(
    block: Any,
    sample_index: Any,
    groups: Sequence[tuple[Any, Any]],
    *,
    ploidy: int,
    maf_threshold: float,
) -> PreparedBlock:
    """Decode a variant block and build each group's float32 unit rows, a few rows at a time.

    Rows are decoded in runs of :data:`DECODE_ROWS` (so the float64 temporaries stay in cache)
    and only the float32 rows of each group, their residual norms and masks are kept.

    Parameters
    ----------
    groups
        ``(sample_index, Q)`` of each missing-value group (``Q`` in the block's array module).
    """
    xp = get_array_module(block)
    nv = int(block.shape[0])
    af = xp.zeros(nv, dtype=xp.float64)
    valid = xp.zeros(nv, dtype=bool)
    out = [PreparedGroup(
        sidx, Q,
        xp.zeros((nv, int(Q.shape[0])), dtype=xp.float32),
        xp.zeros(nv, dtype=xp.float64),
        xp.zeros(nv, dtype=bool),
    ) for sidx, Q in groups]
    counts = {"n_monomorphic": 0, "n_maf_filtered": 0, "n_imputed_calls": 0, "n_variants_imputed": 0}
    step = max(8, min(DECODE_ROWS, DECODE_BYTES // (8 * max(int(block.shape[1]), 1))))
    for s in range(0, nv, step):
        e = min(s + step, nv)
        dec = decode_block(block[s:e], sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
        af[s:e] = dec.af
        valid[s:e] = dec.valid
        for k in counts:
            counts[k] += getattr(dec, k)
        for pg in out:
            _, g_norm, ok, Gn32 = group_genotypes(dec.G, dec.valid, pg.sample_index, pg.Q)
            pg.Gn32[s:e] = Gn32
            pg.g_norm[s:e] = g_norm
            pg.ok[s:e] = ok
    return PreparedBlock(af=af, valid=valid, groups=out, counts=counts)


def centred_rows(
    block: Any, rows: Any, sample_index: Any, group_index: Any, *, ploidy: int, maf_threshold: float
) -> Any:
    """float64 centred dosages of some rows of a block, on a group's samples.

    Bit-identical to the rows :func:`group_genotypes` centres within the whole block (every
    step is row-local), so exact statistics do not depend on the blocking.
    """
    dec = decode_block(block[rows], sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
    xp = get_array_module(dec.G)
    Gs = dec.G if group_index is None else xp.ascontiguousarray(dec.G[:, xp.asarray(group_index)])
    return Gs - Gs.mean(axis=1, keepdims=True)


def candidate_pairs(Gn32: Any, P32: Any, threshold: float, out: Any = None) -> tuple[Any, Any]:
    """Pairs ``(variant, phenotype)`` of the tile with ``|Gn32 @ P32^T| >= threshold``.

    One float32 GEMM (into ``out``, a flat float32 buffer of at least ``v p`` values, when
    given); two read-only passes (row maximum and minimum) find the rows with a candidate, and
    only those rows are searched.
    """
    xp = get_array_module(Gn32)
    if out is None:
        R = Gn32 @ P32.T
    else:
        R = out[: Gn32.shape[0] * P32.shape[0]].reshape(Gn32.shape[0], P32.shape[0])
        xp.matmul(Gn32, P32.T, out=R)
    if R.shape[1] == 0 or R.shape[0] == 0:
        z = xp.zeros(0, dtype=np.int64)
        return z, z
    rows = xp.flatnonzero((R.max(axis=1) >= threshold) | (R.min(axis=1) <= -threshold))
    if rows.size == 0:
        z = xp.zeros(0, dtype=np.int64)
        return z, z
    vv, pp = xp.nonzero(xp.abs(R[rows]) >= threshold)
    return rows[vv], pp


def exact_r(Gc: Any, g_norm: Any, P: Any, vv: Any, pp: Any) -> Any:
    """float64 ``r`` of pairs ``(vv[i], pp[i])``: ``(Gc[vv] . P[pp]) / g_norm[vv]``.

    One row-wise product per pair, in batches: the same arithmetic for a pair whatever the
    block it was found in, so results do not depend on chunking.
    """
    xp = get_array_module(Gc)
    out = xp.empty(int(vv.shape[0]), dtype=xp.float64)
    for s in range(0, int(vv.shape[0]), _EXACT_BATCH):
        v = vv[s : s + _EXACT_BATCH]
        p = pp[s : s + _EXACT_BATCH]
        out[s : s + _EXACT_BATCH] = (Gc[v] * P[p]).sum(axis=1) / g_norm[v]
    return out


#: bins of the sketch of sampled tests' p-values: -log10 p in 0.001 steps (the last: beyond 10)
SKETCH_BINS = 10_000
#: phenotypes per product of :func:`sampled_pvalue_counts` (256 x 1,000 samples: 2 MiB)
_SKETCH_ROWS = 256


def sampled_pvalue_counts(block: Any, pg: PreparedGroup, grp: GroupTile, v0: int, stride: int,
                          sample_index: Any, *, ploidy: int, maf_threshold: float) -> np.ndarray:
    """Histogram (:data:`SKETCH_BINS` bins of -log10 p) of the exact p-values of every test of
    the variants whose global index is a multiple of ``stride`` (outside the cis window): a
    sample of the scan's null for the QQ plot and lambda_GC, the same at any blocking (one
    row-wise float64 product per variant and phenotype, as :func:`exact_r`)."""
    xp = get_array_module(pg.Gn32)
    ok = to_host(pg.ok)
    first = (-v0) % stride
    rows = np.arange(first, ok.size, stride)
    rows = rows[ok[rows]] if rows.size else rows
    counts = np.zeros(SKETCH_BINS, dtype=np.int64)
    if rows.size == 0 or grp.P.shape[0] == 0:
        return counts
    Gc = centred_rows(block, xp.asarray(rows), sample_index, pg.sample_index, ploidy=ploidy,
                      maf_threshold=maf_threshold)
    P = xp.asarray(grp.P)
    g_norm = to_host(pg.g_norm)[rows]
    npheno = int(P.shape[0])
    for i, row in enumerate(rows):
        # (P * g).sum(axis=1) bit for bit, without a (phenotypes, samples) temporary per variant
        r = to_host(row_dots(P, Gc[i], rows=_SKETCH_ROWS)) / g_norm[i]
        gv = row + v0
        keep = ~((gv >= grp.cis_lo) & (gv < grp.cis_hi))
        if not keep.any():
            continue
        _, p, _, _ = stats_from_r(r[keep], grp.dof, np.full(int(keep.sum()), g_norm[i]),
                                  grp.p_norm[:npheno][keep])
        lp = -np.log10(np.clip(p, 1e-300, 1.0))
        counts += np.bincount(np.minimum((lp * 1000).astype(np.int64), SKETCH_BINS - 1),
                              minlength=SKETCH_BINS)
    return counts


def count_tests(ok: Any, v0: int, cis_lo: np.ndarray, cis_hi: np.ndarray) -> np.ndarray:
    """Tests per phenotype in a block: testable variants outside the phenotype's cis range.

    Parameters
    ----------
    ok : (variants,) bool
        Testable variants of the block (global indices ``v0 ...``).
    cis_lo, cis_hi : (p,) int64
        Global cis index ranges ``[lo, hi)``.

    Returns
    -------
    (p,) int64
    """
    okh = to_host(ok).astype(np.int64)
    cs = np.concatenate([[0], np.cumsum(okh)])
    nv = okh.size
    lo = np.clip(np.asarray(cis_lo, dtype=np.int64) - v0, 0, nv)
    hi = np.clip(np.asarray(cis_hi, dtype=np.int64) - v0, 0, nv)
    inside = np.where(hi > lo, cs[hi] - cs[lo], 0)
    return cs[-1] - inside


def _exact_candidates(
    block: Any, pg: PreparedGroup, vv: Any, pp: Any, P: Any, sample_index: Any, *, ploidy: int,
    maf_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact float64 ``r`` of candidate pairs: decode their rows again, row-wise dots."""
    xp = get_array_module(pg.Gn32)
    vv_h, pp_h = to_host(vv), to_host(pp)
    rows, local = np.unique(vv_h, return_inverse=True)
    Gc = centred_rows(block, xp.asarray(rows), sample_index, pg.sample_index, ploidy=ploidy,
                      maf_threshold=maf_threshold)
    r = exact_r(Gc, pg.g_norm[xp.asarray(rows)], P, xp.asarray(local), xp.asarray(pp_h))
    return vv_h, pp_h, to_host(r)


def max_abs_r(
    block: Any, pg: PreparedGroup, P: Any, tol: float, sample_index: Any, *, ploidy: int,
    maf_threshold: float,
) -> np.ndarray:
    """Exact float64 maximum of ``|r|`` over the testable rows of a block, per row of ``P``.

    The float32 product finds, per column, every row within ``2 tol`` of the float32 maximum;
    those are recomputed exactly (float64, row-wise), so the maximum does not depend on the
    blocking.

    Returns
    -------
    (P rows,) float64 on the host (0 for an empty block).
    """
    xp = get_array_module(pg.Gn32)
    npm = int(P.shape[0])
    if pg.Gn32.shape[0] == 0 or npm == 0 or not bool(pg.ok.any()):
        return np.zeros(npm)
    R = xp.abs(pg.Gn32 @ P.astype(xp.float32).T)
    m32 = R.max(axis=0)
    vv, pp = xp.nonzero((R >= (m32 - 2.0 * tol)[None, :]) & pg.ok[:, None])
    out = np.zeros(npm)
    if vv.size:
        vv_h, pp_h, r = _exact_candidates(block, pg, vv, pp, P, sample_index, ploidy=ploidy,
                                          maf_threshold=maf_threshold)
        np.maximum.at(out, pp_h, np.abs(r))
    return out


def _empty_hits() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=t) for k, t in HIT_FIELDS.items()}


def _concat_hits(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return _empty_hits()
    out = {k: np.concatenate([p[k] for p in parts]).astype(t, copy=False) for k, t in HIT_FIELDS.items()}
    order = np.lexsort((out["phenotype_index"], out["variant_index"]))
    return {k: v[order] for k, v in out.items()}


def trans_block(
    block: Any,
    v0: int,
    sample_index: np.ndarray,
    phenotypes: PhenotypeBlock | None,
    *,
    ploidy: int,
    maf_threshold: float,
    permutations: PermutationBlock | None = None,
    sketch_stride: int = 0,
) -> dict[str, Any]:
    """Test one variant block against one phenotype block (or the permutation block).

    Parameters
    ----------
    block
        (variants, samples, ploidy) int8 calls or (variants, samples) float dosages (numpy or
        cupy) of all genotype samples; the analysis samples are ``sample_index``.
    v0
        Global index of the block's first variant.
    phenotypes
        The phenotype block, or None with ``permutations`` given.
    permutations
        Synthetic permuted phenotypes: returns their per-group maxima of ``|r|`` instead.
    sketch_stride
        With a positive stride, ``p_sketch`` counts the exact p-values of every test of the
        variants whose global index is a multiple of it (:func:`sampled_pvalue_counts`).

    Returns
    -------
    dict
        Hits (arrays of :data:`HIT_FIELDS`, sorted by variant then phenotype, host numpy),
        ``n_tests`` ((stop - start,) int64 tests per phenotype of the block), the scalars
        ``n_variants``, ``n_valid``, ``n_monomorphic``, ``n_maf_filtered``, ``n_imputed_calls``,
        ``n_variants_imputed`` and, for the permutation block, ``perm_max_abs_r``
        ((groups, permutations) float64).
    """
    xp = get_array_module(block)
    sidx = xp.asarray(sample_index)
    if permutations is not None:
        gq = [(s, xp.asarray(Q)) for s, Q in zip(permutations.sample_index, permutations.Q, strict=True)]
    elif phenotypes is not None:
        gq = [(t.sample_index, xp.asarray(t.Q)) for t in phenotypes.groups]
    else:
        raise ValueError("trans_block: pass a phenotype block or a permutation block")
    kw: dict[str, Any] = dict(ploidy=ploidy, maf_threshold=maf_threshold)
    prep = prepare_block(block, sidx, gq, **kw)
    nv = int(block.shape[0])
    out: dict[str, Any] = {"n_variants": nv, "n_valid": int(prep.valid.sum()), **prep.counts}
    if permutations is not None:
        maxima = []
        for pg, P in zip(prep.groups, permutations.P, strict=True):
            tol = float32_tolerance(int(pg.Gn32.shape[1]))
            maxima.append(np.concatenate([
                max_abs_r(block, pg, xp.asarray(P[s : s + TILE_PHENOTYPES]), tol, sidx, **kw)
                for s in range(0, P.shape[0], TILE_PHENOTYPES)
            ]) if P.shape[0] else np.zeros(0))
        out["perm_max_abs_r"] = np.stack(maxima) if maxima else np.zeros((0, 0))
        out.update(_empty_hits())
        out["n_tests"] = np.zeros(0, dtype=np.int64)
        return out
    if phenotypes is None:  # unreachable: checked above (narrows the type)
        raise ValueError("trans_block: no phenotype block")
    n_tests = np.zeros(phenotypes.stop - phenotypes.start, dtype=np.int64)
    sketch = np.zeros(SKETCH_BINS, dtype=np.int64)
    parts: list[dict[str, np.ndarray]] = []
    af_host = to_host(prep.af)
    buf = None  # the product tile, reused
    for grp, pg in zip(phenotypes.groups, prep.groups, strict=True):
        n_tests[grp.index - phenotypes.start] = count_tests(pg.ok, v0, grp.cis_lo, grp.cis_hi)
        if nv == 0 or not bool(pg.ok.any()):
            continue
        if sketch_stride > 0:
            sketch += sampled_pvalue_counts(block, pg, grp, v0, sketch_stride, sidx, **kw)
        thr = grp.r_star - float32_tolerance(int(pg.Gn32.shape[1]))
        g_norm_h = to_host(pg.g_norm)
        if buf is None:
            buf = xp.empty(min(nv, TILE_VARIANTS) * min(phenotypes.stop - phenotypes.start,
                                                          TILE_PHENOTYPES), dtype=xp.float32)
        for s in range(0, grp.P.shape[0], TILE_PHENOTYPES):
            P64 = xp.asarray(grp.P[s : s + TILE_PHENOTYPES])
            P32 = P64.astype(xp.float32)
            found = []
            for vs in range(0, nv, TILE_VARIANTS):
                vv, pp = candidate_pairs(pg.Gn32[vs : vs + TILE_VARIANTS], P32, thr, out=buf)
                if vv.size:
                    found.append((vv + vs, pp))
            if not found:
                continue
            vv = xp.concatenate([f[0] for f in found])
            pp = xp.concatenate([f[1] for f in found])
            vv_h, pp_h, r_h = _exact_candidates(block, pg, vv, pp, P64, sidx, **kw)
            pp_h = pp_h + s
            gv = vv_h + v0
            keep = (np.abs(r_h) >= grp.r_star) & ~((gv >= grp.cis_lo[pp_h]) & (gv < grp.cis_hi[pp_h]))
            if not keep.any():
                continue
            vv_h, pp_h, r_h = vv_h[keep], pp_h[keep], r_h[keep]
            t, p, b, se = stats_from_r(r_h, grp.dof, g_norm_h[vv_h], grp.p_norm[pp_h])
            parts.append({
                "variant_index": vv_h.astype(np.int64) + v0,
                "phenotype_index": grp.index[pp_h].astype(np.int64),
                "r": r_h, "t_value": t, "p_value": p, "beta": b, "beta_se": se,
                "af": af_host[vv_h],
            })
    out.update(_concat_hits(parts))
    out["n_tests"] = n_tests
    out["p_sketch"] = sketch
    return out
