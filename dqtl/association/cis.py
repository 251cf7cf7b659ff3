"""cis-eQTL nominal mapping: every variant within a window of each phenotype's TSS (or body).

Graph layer and API on the study plan (:mod:`dqtl.study`). :func:`cis_batches` cuts the tested
phenotypes into batches of neighbours on one contig; one task per batch reads the variant range
its windows span, decodes it once (:func:`dqtl.kernels.genotypes.decode_block`), meets the
batch's residualized phenotypes in one product per missing-value group, and returns the batch's
pairs already sorted by phenotype then variant (:func:`cis_batch_kernel`). Batches follow the
plan's phenotype order, so concatenating their outputs gives the final order: the workflow
writes each batch where it is computed and concatenates the parts into the contig files
(:mod:`dqtl.workflows`); :func:`map_cis_nominal` gathers them into an ``xarray.Dataset``.

Window rule (as tensorQTL): with BED ``start``/``end`` (0-based half-open), a variant at 1-based
position ``pos`` is in the window of a phenotype when ``start + 1 - w <= pos <= end + w``; for a
TSS entry (``end == start + 1``) that is ``|pos - TSS| <= w``. ``start_distance = pos - (start+1)``,
``end_distance = pos - end``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import xarray as xr

from dqtl.compute import compute
from dqtl.kernels.genotypes import decode_block
from dqtl.kernels.linalg import residual_norm2
from dqtl.kernels.stats import stats_from_r
from dqtl.study import StudyPlan, delayed_rows, plan_study

__all__ = [
    "CisBatch",
    "cis_batches",
    "cis_batch_kernel",
    "cis_nominal_graph",
    "map_cis_nominal",
    "pairs_dataset",
    "PAIR_VARIABLES",
    "COUNTERS",
    "PAIRS_PER_SLICE",
]

log = logging.getLogger(__name__)

#: result variables of a cis pairs Dataset (dim ``pairs``), in order
PAIR_VARIABLES = (
    "phenotype_id",
    "variant_id",
    "start_distance",
    "end_distance",
    "af",
    "ma_samples",
    "ma_count",
    "p_value",
    "t_value",
    "beta",
    "beta_se",
)

#: per-run counters summed over tasks (each variant counted once)
COUNTERS = ("n_monomorphic", "n_maf_filtered", "n_imputed_calls", "n_variants_imputed")

#: default bounds of one batch task: bytes of decoded float64 genotypes (sets the variants it
#: spans beyond one window) and phenotypes; pairs are produced in slices of PAIRS_PER_SLICE
DECODED_BYTES_PER_TASK = 64 << 20
PHENOTYPES_PER_TASK = 1024
PAIRS_PER_SLICE = 250_000


@dataclass(frozen=True)
class CisBatch:
    """Neighbouring phenotypes of one contig tested by one task.

    ``rows`` index the plan's phenotypes (contiguous, plan order); ``v0:v1`` is the variant
    range their windows span; variants before ``count_from`` were counted by an earlier batch.
    """

    contig: str
    rows: np.ndarray
    v0: int
    v1: int
    count_from: int
    n_pairs: int


def cis_batches(
    plan: StudyPlan,
    *,
    variants_per_task: int | None = None,
    phenotypes_per_task: int = PHENOTYPES_PER_TASK,
) -> list[CisBatch]:
    """Cut the plan's phenotypes into batches (they do not depend on the store's chunking).

    A batch spans at most ``variants_per_task`` variants (default: as many as
    :data:`DECODED_BYTES_PER_TASK` of float64 dosages of the analysis samples hold, at least
    4,096), or its largest window plus a quarter of that when the window is larger (so
    neighbours with windows larger than the budget still share a task); each variant is decoded
    by about ``1 + window / (span - window)`` batches.
    """
    if variants_per_task is None:
        variants_per_task = max(4096, DECODED_BYTES_PER_TASK // (8 * max(plan.n_samples, 1)))
    lo, hi = plan.window_lo, plan.window_hi
    sizes = np.maximum(hi - lo, 0)
    out: list[CisBatch] = []
    seen_hi: dict[str, int] = {}
    cur: list[int] = []

    def flush() -> None:
        if not cur:
            return
        rows = np.asarray(cur, dtype=np.int64)
        contig = str(plan.phenotype_contig[rows[0]])
        v0, v1 = int(lo[rows].min()), int(hi[rows].max())
        count_from = max(v0, seen_hi.get(contig, v0))
        seen_hi[contig] = max(seen_hi.get(contig, v1), v1)
        out.append(CisBatch(contig, rows, v0, v1, count_from, int(sizes[rows].sum())))
        cur.clear()

    hi_max = size_max = 0
    for i in range(plan.n_phenotypes):
        if cur:
            first = cur[0]
            span = max(hi_max, int(hi[i])) - int(lo[first])
            limit = max(variants_per_task, max(size_max, int(sizes[i])) + variants_per_task // 4)
            if (plan.phenotype_contig[i] != plan.phenotype_contig[first] or span > limit
                    or len(cur) >= phenotypes_per_task):
                flush()
                hi_max = size_max = 0
        cur.append(i)
        hi_max = max(hi_max, int(hi[i]))
        size_max = max(size_max, int(sizes[i]))
    flush()
    return out


def cis_batch_kernel(
    block: np.ndarray,
    v0: int,
    count_from: int,
    sample_index: np.ndarray,
    parts: Sequence[tuple[Any, ...]],
    variant_id: np.ndarray,
    variant_position: np.ndarray,
    phenotype_id: np.ndarray,
    phenotype_start: np.ndarray,
    phenotype_end: np.ndarray,
    *,
    ploidy: int,
    maf_threshold: float,
    dtype: Any,
    sink: Any = None,
    pairs_per_slice: int = PAIRS_PER_SLICE,
) -> dict[str, np.ndarray]:
    """Test one batch of phenotypes against the variants of their windows.

    The block is decoded once; the batch's phenotypes are then tested in slices of at most
    ``pairs_per_slice`` pairs (each slice's product spans only its own windows), so memory holds
    one slice of pairs at a time when a ``sink`` takes them.

    Parameters
    ----------
    block
        (variants, samples, ploidy) int8 calls or (variants, samples) dosages of the variant
        range ``v0:v0 + len(block)`` (all genotype samples).
    count_from
        Global index of the first variant this batch counts in its counters.
    parts
        Per missing-value group: ``(rows, sample_index, P_hat, p_norm, Q, dof, lo, hi)``:
        the group's phenotypes as positions in the batch, its samples among the analysis
        samples (None: all), their residualized unit-norm values, residual norms, the group's
        covariate basis and dof, and their window bounds (global variant indices ``[lo, hi)``).
    variant_id, variant_position
        IDs and positions of the block's variants.
    phenotype_id, phenotype_start, phenotype_end
        The batch's phenotypes and their BED coordinates.
    sink
        Optional callable taking each slice's pairs (a dict as returned below, except that
        ``phenotype_id`` and ``variant_id`` are pyarrow ``large_string`` arrays: gathered by
        arrow, not converted from numpy strings per pair) in order, with a ``close()`` method
        called at the end (e.g. a parquet part writer); the task then returns only the counters
        and ``n_pairs``.

    Returns
    -------
    dict of 1-D arrays, one entry per tested pair, sorted by phenotype (batch order) then
    variant: the :data:`PAIR_VARIABLES`, and the :data:`COUNTERS` and ``n_pairs`` as 0-d arrays.
    """
    dec = _decode_rows(block, sample_index, parts, ploidy=ploidy, maf_threshold=maf_threshold,
                       dtype=dtype)
    counts = decode_block_counts(dec, slice(max(count_from - v0, 0), None))
    n_phen = len(phenotype_id)
    lo_all = np.zeros(n_phen, dtype=np.int64)
    hi_all = np.zeros(n_phen, dtype=np.int64)
    groups = []
    for (rows, _sidx, P_hat, p_norm, _Q, dof, lo, hi), (Gsw, g_norm, ok) in zip(
            parts, dec.groups, strict=True):
        where = np.full(n_phen, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        groups.append((where, Gsw, g_norm, ok, P_hat.astype(dtype, copy=False), p_norm, dof))
        lo_all[rows], hi_all[rows] = lo, hi
    ma_samples, ma_count = dec.ma_samples, dec.ma_count
    sizes = np.maximum(hi_all - lo_all, 0)
    ids: Any = (np.asarray(variant_id).astype(str), np.asarray(phenotype_id).astype(str))
    if sink is not None:
        import pyarrow as pa

        ids = tuple(pa.array(x, type=pa.large_string()) for x in ids)
    info = dict(variant_id=ids[0], variant_position=np.asarray(variant_position,
                dtype=np.int64), phenotype_id=ids[1],
                phenotype_start=np.asarray(phenotype_start, dtype=np.int64),
                phenotype_end=np.asarray(phenotype_end, dtype=np.int64),
                af=dec.af, ma_samples=ma_samples, ma_count=ma_count)
    outs = []
    n_pairs = 0
    a = 0
    while a < n_phen:  # slices of consecutive phenotypes, at most pairs_per_slice pairs each
        b = a + 1
        total = int(sizes[a])
        while b < n_phen and total + int(sizes[b]) <= pairs_per_slice:
            total += int(sizes[b])
            b += 1
        out = _slice_pairs(a, b, v0, lo_all, hi_all, groups, info)
        n_pairs += len(out["p_value"])
        if sink is not None:
            sink(out)
        else:
            outs.append(out)
        a = b
    if sink is not None:
        sink.close()
        return {"n_pairs": np.asarray(n_pairs), **{k: np.asarray(v) for k, v in counts.items()}}
    cat = {k: np.concatenate([o[k] for o in outs]) if outs else np.zeros(0) for k in PAIR_VARIABLES}
    return {**cat, "n_pairs": np.asarray(n_pairs), **{k: np.asarray(v) for k, v in counts.items()}}


def _window_runs(sel: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """Split consecutive phenotypes ``sel`` into runs whose windows' union is at most twice the
    windows' mean length (and at least 2x as dense as one product over the whole slice would
    be): each run's product covers little more than its own windows. Depends only on the
    windows, so every run of the plan computes the same products."""
    runs: list[np.ndarray] = []
    i = 0
    while i < sel.size:
        j = i + 1
        r_lo, r_hi, total = int(lo[sel[i]]), int(hi[sel[i]]), max(int(hi[sel[i]] - lo[sel[i]]), 0)
        while j < sel.size:
            n_lo, n_hi = min(r_lo, int(lo[sel[j]])), max(r_hi, int(hi[sel[j]]))
            n_total = total + max(int(hi[sel[j]] - lo[sel[j]]), 0)
            if (n_hi - n_lo) * (j - i + 1) > 2 * n_total:
                break
            r_lo, r_hi, total = n_lo, n_hi, n_total
            j += 1
        runs.append(sel[i:j])
        i = j
    return runs


def _slice_pairs(
    a: int, b: int, v0: int, lo_all: np.ndarray, hi_all: np.ndarray,
    groups: Sequence[tuple[Any, ...]], info: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Pairs of the batch's phenotypes ``a:b`` (sorted by phenotype then variant)."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "v", "r", "g_norm", "p_norm", "dof")}
    for where, Gsw, g_norm, ok, P_hat, p_norm, dof in groups:
        sel_all = np.flatnonzero(where[a:b] >= 0) + a  # batch positions of this group in the slice
        for sel in _window_runs(sel_all, lo_all, hi_all):
            va = max(int(lo_all[sel].min()) - v0, 0)
            vb = max(int(hi_all[sel].max()) - v0, va)
            if vb <= va:
                continue
            vi = np.arange(va, vb) + v0
            gpos = where[sel]
            R = Gsw[va:vb] @ P_hat[gpos].T  # (v, p): only the span of these windows
            inwin = ((vi[:, None] >= lo_all[sel][None, :]) & (vi[:, None] < hi_all[sel][None, :])
                     & ok[va:vb, None])
            pp, vv = np.nonzero(inwin.T)  # by phenotype, then variant
            cols["p"].append(sel[pp])
            cols["v"].append(vv + va)
            cols["r"].append(R[vv, pp].astype(np.float64) / g_norm[vv + va])
            cols["g_norm"].append(g_norm[vv + va])
            cols["p_norm"].append(p_norm[gpos][pp])
            cols["dof"].append(np.full(len(vv), dof, dtype=np.int64))
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
    pi = cat["p"].astype(np.int64)
    vloc = cat["v"].astype(np.int64)
    key = pi * (int(vloc.max()) + 1 if vloc.size else 1) + vloc
    if key.size > 1 and not bool(np.all(key[1:] > key[:-1])):  # runs of one group come sorted
        order = np.lexsort((vloc, pi))
        pi, vloc = pi[order], vloc[order]
        cat = {k: v[order] for k, v in cat.items()}
    t, p, slope, se = stats_from_r(cat["r"], cat["dof"], cat["g_norm"], cat["p_norm"])
    pos = info["variant_position"][vloc]
    return {
        "phenotype_id": _take(info["phenotype_id"], pi),
        "variant_id": _take(info["variant_id"], vloc) if vloc.size else np.zeros(0, dtype=str),
        "start_distance": pos - (info["phenotype_start"][pi] + 1),
        "end_distance": pos - info["phenotype_end"][pi],
        "af": info["af"][vloc],
        "ma_samples": np.asarray(info["ma_samples"], dtype=np.int32)[vloc],
        "ma_count": np.asarray(info["ma_count"], dtype=np.int32)[vloc],
        "p_value": p,
        "t_value": t,
        "beta": slope,
        "beta_se": se,
    }


def _take(values: Any, index: np.ndarray) -> Any:
    """``values[index]`` of a numpy or a pyarrow array."""
    return values.take(index) if hasattr(values, "take") and not isinstance(values, np.ndarray) \
        else values[index]


#: variants decoded at a time inside a batch task (bounds the float64 temporaries)
DECODE_ROWS = 2048


@dataclass
class _DecodedRows:
    """A batch's block decoded run by run: per group the centred product operand (``dtype``,
    on the group's samples), residual norms and testable mask; allele statistics; counters."""

    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    af: np.ndarray
    ma_samples: np.ndarray
    ma_count: np.ndarray
    valid: np.ndarray
    monomorphic: np.ndarray
    n_missing: np.ndarray


def _decode_rows(block: np.ndarray, sample_index: np.ndarray, parts: Sequence[tuple[Any, ...]], *,
                 ploidy: int, maf_threshold: float, dtype: Any) -> _DecodedRows:
    """Decode ``block`` :data:`DECODE_ROWS` variants at a time into preallocated outputs.

    Every step is row-local (:func:`dqtl.kernels.genotypes.decode_block`,
    :func:`dqtl.kernels.linalg.residual_norm2`), so the result equals decoding the whole block
    at once, while the float64 temporaries stay a few MiB.
    """
    nv = int(block.shape[0])
    n = len(sample_index)
    groups = []
    for _rows, sidx, _P, _pn, _Q, _dof, _lo, _hi in parts:
        ng = n if sidx is None else len(sidx)
        groups.append((np.empty((nv, ng), dtype=dtype), np.empty(nv), np.empty(nv, dtype=bool)))
    out = _DecodedRows(groups=groups, af=np.empty(nv), ma_samples=np.empty(nv, dtype=np.int32),
                       ma_count=np.empty(nv, dtype=np.int32), valid=np.empty(nv, dtype=bool),
                       monomorphic=np.empty(nv, dtype=bool), n_missing=np.empty(nv, dtype=np.int64))
    for s in range(0, nv, DECODE_ROWS):
        e = min(s + DECODE_ROWS, nv)
        dec = decode_block(block[s:e], sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
        out.ma_samples[s:e], out.ma_count[s:e] = dec.minor_allele()
        out.af[s:e], out.valid[s:e] = dec.af, dec.valid
        out.monomorphic[s:e], out.n_missing[s:e] = dec.monomorphic, dec.n_missing
        G = dec.G
        mean = dec.row_means()[:, None]  # G.mean(axis=1, keepdims=True), bit for bit
        for (Gsw, g_norm, ok), (_rows, sidx, _P, _pn, Q, _dof, _lo, _hi) in zip(groups, parts,
                                                                              strict=True):
            # centred on all analysis samples, written straight into the product operand (one
            # pass; the values of ``G - mean`` then a cast to ``dtype``, as before)
            Gs = np.subtract(G if sidx is None else G[:, sidx], mean, out=Gsw[s:e])
            if Gs.dtype != np.float64:
                Gs = (G if sidx is None else G[:, sidx]) - mean
            g_norm[s:e] = np.sqrt(residual_norm2(Gs, Q, centred=sidx is None))
            ok[s:e] = dec.valid & (g_norm[s:e] > 1e-10 * np.sqrt(Gs.shape[1]))
    return out


def decode_block_counts(dec: Any, rows: slice) -> dict[str, int]:
    """The counters of some rows of a decoded block."""
    n_missing = dec.n_missing[rows]
    return {
        "n_monomorphic": int(dec.monomorphic[rows].sum()),
        "n_maf_filtered": int((~dec.valid[rows] & ~dec.monomorphic[rows]).sum()),
        "n_imputed_calls": int(n_missing.sum()),
        "n_variants_imputed": int((n_missing > 0).sum()),
    }


def cis_nominal_graph(
    plan: StudyPlan,
    *,
    dtype: Any = np.float64,
    variants_chunk_size: int | None = None,
    batches: Sequence[CisBatch] | None = None,
    sinks: Sequence[Any] | None = None,
) -> list[tuple[CisBatch, Any]]:
    """Lazy cis-nominal graph: one delayed :func:`cis_batch_kernel` call per batch.

    ``sinks``: one per batch (see :func:`cis_batch_kernel`): each task then hands its pairs to
    its sink where it runs and returns only counts.
    """
    arr = plan.genotype_array(variants_chunk_size)
    vid = plan.genotypes["variant_id"].data  # lazy when the store keeps it lazily
    batches = cis_batches(plan) if batches is None else batches
    where = plan.group_of()
    kernel = dask.delayed(cis_batch_kernel, pure=True)
    out = []
    for k, b in enumerate(batches):
        parts = []
        g_of = where[b.rows]
        for g in np.unique(g_of):
            grp = plan.groups[int(g)]
            batch_rows = np.flatnonzero(g_of == g)
            # positions of these phenotypes inside the group
            gpos = np.searchsorted(grp.index, b.rows[batch_rows])
            parts.append((batch_rows, grp.sample_index, grp.P_hat[gpos], grp.p_norm[gpos], grp.Q,
                          int(grp.dof), plan.window_lo[b.rows[batch_rows]],
                          plan.window_hi[b.rows[batch_rows]]))
        task = kernel(
            delayed_rows(arr, slice(b.v0, b.v1)), b.v0, b.count_from, plan.genotype_sample_index, parts,
            delayed_rows(vid, slice(b.v0, b.v1)), plan.variant_position[b.v0:b.v1], plan.phenotype_id[b.rows],
            plan.phenotype_start[b.rows], plan.phenotype_end[b.rows],
            ploidy=plan.ploidy, maf_threshold=plan.maf_threshold, dtype=dtype,
            sink=None if sinks is None else sinks[k],
        )
        out.append((b, task))
    return out


def pairs_dataset(parts: Sequence[dict[str, np.ndarray]], plan: StudyPlan) -> xr.Dataset:
    """Concatenate batch outputs (in batch order) into a pairs Dataset with the run's report."""
    data = {k: ("pairs", np.concatenate([p[k] for p in parts]) if parts else np.zeros(0))
            for k in PAIR_VARIABLES}
    ds = xr.Dataset(data)
    ds.attrs.update(window=plan.window, n_samples=plan.n_samples)
    ds.attrs.update({k: v for k, v in plan.report.items() if not isinstance(v, list)})
    ds.attrs.update({k: int(sum(int(p[k]) for p in parts)) for k in COUNTERS})
    return ds


def map_cis_nominal(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None = None,
    *,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    variants_chunk_size: int | None = None,
    dtype: Any = np.float64,
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
) -> xr.Dataset:
    """cis-eQTL nominal scan: all variant-phenotype pairs within ``window`` of each phenotype.

    Runs on the session's ``distributed.Client`` if one is active, else on local threads.
    For scans too large to hold in memory, write the pairs where they are computed with
    :func:`dqtl.workflows.run_cis_nominal`.

    Parameters
    ----------
    genotypes
        Any xarray Dataset with VCF Zarr variables (:func:`dqtl.open_genotypes`,
        ``xarray.open_zarr``, sgkit).
    phenotypes
        Phenotype Dataset (see :func:`dqtl.read_phenotype_bed`).
    covariates
        Covariate Dataset (see :func:`dqtl.read_covariates`), or None.
    window
        cis window half-width in bp.
    maf_threshold
        Skip variants with minor allele frequency below this.
    variants_chunk_size
        Read genotypes in chunks of this many variants (default: the store's chunks).
    dtype
        Precision of the genotype x phenotype product: ``np.float64`` (default; statistics equal
        OLS to ~1e-12) or ``np.float32`` (faster; p-values within ~1e-4 relative for |t| < 10).
    plan
        A :class:`~dqtl.study.StudyPlan` already built for these inputs (then ``window``,
        ``maf_threshold`` and ``allow_sample_intersection`` are the plan's).

    Returns
    -------
    xarray.Dataset
        Dimension ``pairs``, sorted by phenotype then variant; variables ``phenotype_id``,
        ``variant_id``, ``start_distance``, ``end_distance``, ``af``, ``ma_samples``,
        ``ma_count``, ``p_value``, ``t_value``, ``beta``, ``beta_se``. ``attrs`` holds the run
        report (counts of skipped inputs).

    Examples
    --------
    >>> import dqtl
    >>> sim = dqtl.simulate(n_samples=60, n_variants=400, n_phenotypes=10, seed=1)
    >>> pairs = dqtl.map_cis_nominal(sim, sim, sim, window=20_000)  # one Dataset holds all three
    >>> sorted(pairs.data_vars)[:4], bool((pairs.p_value > 0).all())
    (['af', 'beta', 'beta_se', 'end_distance'], True)
    """
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    graph = cis_nominal_graph(plan, dtype=dtype, variants_chunk_size=variants_chunk_size)
    parts = compute([t for _, t in graph], label="cis nominal batches")
    return pairs_dataset(parts, plan)
