"""cis-eQTL nominal mapping: every variant within a window of each phenotype's TSS (or body).

Graph layer and API. The plan (:func:`plan_cis`) holds the small eager metadata: aligned samples,
window bounds as variant-index ranges, and the residualized, unit-norm phenotypes grouped by
missingness pattern. :func:`cis_nominal_graph` tiles the block kernel over the variant chunks of
the genotype dask array (one ``dask.delayed`` task per chunk, reading its chunk straight from
Zarr); :func:`map_cis_nominal` computes it and returns an ``xarray.Dataset`` of pairs.

Window rule (as tensorQTL): with BED ``start``/``end`` (0-based half-open), a variant at 1-based
position ``pos`` is in the window of a phenotype when ``start + 1 - w <= pos <= end + w``; for a
TSS entry (``end == start + 1``) that is ``|pos - TSS| <= w``. ``start_distance = pos - (start+1)``,
``end_distance = pos - end``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from dqtl.association.kernels import (
    allele_stats,
    dosage_from_calls,
    impute_mean,
    residual_norm2,
    stats_from_r,
)
from dqtl.association.residualize import Residualizer
from dqtl.errors import InputError
from dqtl.io.genotypes import normalize_contig

__all__ = [
    "CisPlan",
    "plan_cis",
    "cis_nominal_graph",
    "map_cis_nominal",
    "cis_chunk_kernel",
    "decode_genotype_block",
]

log = logging.getLogger(__name__)

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


@dataclass
class PhenotypeGroup:
    """Phenotypes sharing one pattern of non-missing samples, residualized on those samples."""

    index: np.ndarray  # (p_g,) indices into CisPlan phenotypes
    sample_index: np.ndarray | None  # indices into analysis samples; None = all samples
    P_hat: np.ndarray  # (p_g, n_g) float64 unit-norm residuals
    p_norm: np.ndarray  # (p_g,) residual norms
    Q: np.ndarray  # (n_g, rank) basis of [1, C] on these samples
    dof: int
    P_raw: np.ndarray | None = None  # (p_g, n_g) phenotype values on these samples (permutations)


@dataclass
class CisPlan:
    """Eager metadata of a cis scan (small: positions, ids, window bounds, residual phenotypes)."""

    phenotype_id: np.ndarray
    phenotype_contig: np.ndarray  # genotype contig name of each phenotype
    phenotype_start: np.ndarray  # BED start (0-based)
    phenotype_end: np.ndarray
    window_lo: np.ndarray  # first variant index in window (global)
    window_hi: np.ndarray  # one past last variant index in window
    groups: list[PhenotypeGroup]
    genotype_sample_index: np.ndarray  # genotype sample columns of the analysis samples
    sample_id: np.ndarray
    variant_id: np.ndarray
    variant_position: np.ndarray  # int64
    variant_contig: np.ndarray  # int index into contig_id
    contig_id: np.ndarray
    window: int
    ploidy: int
    covariates: np.ndarray | None = None  # (samples, covariates) aligned to sample_id
    covariate_id: tuple[str, ...] = ()
    report: dict[str, Any] = field(default_factory=dict)
    phenotype_group_index: np.ndarray | None = None  # (phenotypes,) index into group_id
    group_id: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return len(self.sample_id)

    @property
    def contigs(self) -> list[str]:
        """Contigs with at least one phenotype, in genotype order."""
        have = set(self.phenotype_contig.tolist())
        return [c for c in self.contig_id.tolist() if c in have]


def _covariate_matrix(
    covariates: xr.Dataset | None, cidx: np.ndarray | None
) -> tuple[np.ndarray | None, list[str]]:
    if covariates is None:
        return None, []
    C = np.asarray(covariates["covariate_values"].values, dtype=np.float64)[cidx]
    return C, [str(x) for x in covariates["covariate_id"].values]



def prepare_phenotype_groups(
    vals: np.ndarray,
    C: np.ndarray | None,
    cov_ids: Sequence[str],
    *,
    keep: np.ndarray,
    phenotype_ids: np.ndarray,
) -> tuple[np.ndarray, list[PhenotypeGroup], Residualizer, dict[str, Any]]:
    """Skip untestable phenotypes and residualize the rest, grouped by missingness pattern.

    Parameters
    ----------
    vals
        (phenotypes, samples) float64 values on the analysis samples, NaN = missing.
    C
        (samples, covariates) aligned covariates, or None.
    keep
        (phenotypes,) bool: phenotypes still candidates (e.g. with a non-empty cis window).

    Returns
    -------
    (kept, groups, base, report)
        ``kept``: indices of tested phenotypes into ``vals``; ``groups`` index into ``kept``;
        ``base``: the residualizer on all samples; ``report``: counts of skipped phenotypes.
    """
    n = vals.shape[1]
    report: dict[str, Any] = {}
    keep = np.asarray(keep, dtype=bool).copy()
    obs = ~np.isnan(vals)
    n_obs = obs.sum(axis=1)
    with np.errstate(invalid="ignore"):
        vmax = np.where(obs, vals, -np.inf).max(axis=1)
        vmin = np.where(obs, vals, np.inf).min(axis=1)
    constant = keep & (n_obs > 0) & (vmax == vmin)
    if constant.any():
        log.warning(
            "%d phenotypes are constant across samples and are skipped (e.g. %s)",
            int(constant.sum()), ", ".join(map(str, phenotype_ids[constant][:5])),
        )
    report["phenotypes_constant"] = int(constant.sum())
    keep &= ~constant
    # the residualizer on all samples also validates covariates / dof up front
    base = Residualizer.from_covariates(C, n_samples=n, covariate_ids=cov_ids, where="covariates")
    too_few = keep & (n_obs < base.rank + 2)
    if too_few.any():
        log.warning(
            "%d phenotypes have too few non-missing samples for the model and are skipped",
            int(too_few.sum()),
        )
    report["phenotypes_too_few_samples"] = int(too_few.sum())
    keep &= ~too_few
    kept = np.nonzero(keep)[0]
    if kept.size == 0:
        raise InputError(
            "no phenotype can be tested: check that phenotype and genotype contigs match (chr1 vs 1 "
            "is handled), that the phenotypes lie within the window of some variant, and that they "
            "are not constant"
        )
    report["phenotypes_tested"] = int(kept.size)
    report["covariates_dropped"] = list(base.dropped)
    report["dof"] = base.dof

    groups: list[PhenotypeGroup] = []
    pattern_rows: dict[bytes, list[int]] = {}
    for j, i in enumerate(kept):
        pattern_rows.setdefault(np.packbits(obs[i]).tobytes(), []).append(j)
    for rows in pattern_rows.values():
        rows_a = np.asarray(rows)
        mask = obs[kept[rows_a[0]]]
        if mask.all():
            res, sidx = base, None
        else:
            sidx = np.nonzero(mask)[0]
            res = Residualizer.from_covariates(
                None if C is None else C[sidx], n_samples=len(sidx), covariate_ids=cov_ids,
                where=f"covariates on the {len(sidx)} samples observed for some phenotypes",
            )
        P = vals[kept[rows_a]] if sidx is None else vals[kept[rows_a]][:, sidx]
        R = res.transform(P)
        norm = np.linalg.norm(R, axis=1)
        zero = norm <= 1e-12 * np.maximum(np.linalg.norm(P, axis=1), 1e-300)
        if zero.any():
            # phenotype fully explained by covariates: nothing left to test
            log.warning("%d phenotypes are fully explained by the covariates; skipped", int(zero.sum()))
            report["phenotypes_explained_by_covariates"] = (
                report.get("phenotypes_explained_by_covariates", 0) + int(zero.sum())
            )
            rows_a, R, norm, P = rows_a[~zero], R[~zero], norm[~zero], P[~zero]
            if rows_a.size == 0:
                continue
        groups.append(PhenotypeGroup(rows_a, sidx, R / norm[:, None], norm, res.Q, res.dof, P))
    if len(pattern_rows) > 1:
        log.info("phenotypes fall into %d missing-value patterns; each residualized on its own samples", len(pattern_rows))
    return kept, groups, base, report


def plan_cis(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None = None,
    *,
    window: int = 1_000_000,
    allow_sample_intersection: bool = False,
    min_samples: int = 3,
) -> CisPlan:
    """Align inputs and compute the eager metadata of a cis scan.

    Parameters
    ----------
    genotypes
        VCF Zarr model Dataset (``call_genotype`` or ``call_dosage``, ``variant_*``, ``sample_id``).
    phenotypes
        From :func:`dqtl.io.phenotypes.read_phenotype_bed`.
    covariates
        From :func:`dqtl.io.phenotypes.read_covariates`, or None.
    window
        Half-width in bp around the TSS (or the body ``[start, end]``).
    """
    from dqtl.io.phenotypes import align_samples

    if window < 0:
        raise InputError(f"--window must be >= 0, got {window}")
    pidx, gidx, cidx = align_samples(
        phenotypes["sample_id"].values,
        genotypes["sample_id"].values,
        None if covariates is None else covariates["sample_id"].values,
        intersect=allow_sample_intersection,
    )
    n = len(pidx)
    if n < min_samples:
        raise InputError(f"too few samples: {n} shared samples, need at least {min_samples}")

    # --- variants: small 1-D metadata, loaded eagerly
    vpos = np.asarray(genotypes["variant_position"].values).astype(np.int64)
    vcon = np.asarray(genotypes["variant_contig"].values).astype(np.int64)
    contig_id = np.asarray(genotypes["contig_id"].values).astype(str)
    vid = np.asarray(genotypes["variant_id"].values).astype(str) if "variant_id" in genotypes else None
    if vid is None:
        vid = np.array([f"{contig_id[c]}:{p}" for c, p in zip(vcon, vpos, strict=True)])
    if vpos.size == 0:
        raise InputError("the genotype store has no variants")
    # contig blocks must be contiguous and positions sorted within each
    change = np.nonzero(np.diff(vcon))[0] + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(vcon)]])
    seen: set[int] = set()
    contig_range: dict[int, tuple[int, int]] = {}
    for a, b in zip(starts, ends, strict=True):
        c = int(vcon[a])
        if c in seen:
            raise InputError(
                f"genotypes: variants of contig {contig_id[c]} are not contiguous; sort the input "
                f"(e.g. bcftools sort / plink2 --sort-vars) and convert it again"
            )
        seen.add(c)
        if np.any(np.diff(vpos[a:b]) < 0):
            i = a + int(np.argmax(np.diff(vpos[a:b]) < 0))
            raise InputError(
                f"genotypes: variants are not sorted by position on contig {contig_id[c]} (position "
                f"{vpos[i]} before {vpos[i + 1]}); sort the input and convert it again"
            )
        contig_range[c] = (int(a), int(b))

    # --- phenotypes: contig reconciliation (chr1 == 1), windows
    norm_to_gcontig = {normalize_contig(c): i for i, c in enumerate(contig_id)}
    pcontig_raw = np.asarray(phenotypes["phenotype_contig"].values).astype(str)
    gci = np.array([norm_to_gcontig.get(normalize_contig(c), -1) for c in pcontig_raw])
    start = np.asarray(phenotypes["phenotype_start"].values).astype(np.int64)
    end = np.asarray(phenotypes["phenotype_end"].values).astype(np.int64)
    lo = np.zeros(len(start), dtype=np.int64)
    hi = np.zeros(len(start), dtype=np.int64)
    for i in range(len(start)):
        c = int(gci[i])
        if c < 0 or c not in contig_range:
            continue
        a, b = contig_range[c]
        pos = vpos[a:b]
        lo[i] = a + np.searchsorted(pos, start[i] + 1 - window, side="left")
        hi[i] = a + np.searchsorted(pos, end[i] + window, side="right")
    report: dict[str, Any] = {}
    no_contig = gci < 0
    if no_contig.any():
        missing = sorted(set(pcontig_raw[no_contig].tolist()))
        log.info(
            "%d phenotypes are on contigs without genotypes (%s); not tested",
            int(no_contig.sum()), ", ".join(missing[:10]),
        )
    report["phenotypes_no_genotype_contig"] = int(no_contig.sum())
    empty = (~no_contig) & (hi <= lo)
    if empty.any():
        log.info("%d phenotypes have no variant within the cis window; not tested", int(empty.sum()))
    report["phenotypes_empty_window"] = int(empty.sum())

    # --- phenotype values: constant / too sparse phenotypes, missingness groups
    vals = np.asarray(phenotypes["phenotype_values"].values, dtype=np.float64)[:, pidx]
    C, cov_ids = _covariate_matrix(covariates, cidx)
    kept, groups, base, prep_report = prepare_phenotype_groups(
        vals, C, cov_ids, keep=(~no_contig) & (~empty),
        phenotype_ids=np.asarray(phenotypes["phenotype_id"].values),
    )
    report.update(prep_report)

    ploidy = int(genotypes.sizes.get("ploidy", 2))
    return CisPlan(
        phenotype_id=np.asarray(phenotypes["phenotype_id"].values).astype(str)[kept],
        phenotype_contig=contig_id[gci[kept]],
        phenotype_start=start[kept],
        phenotype_end=end[kept],
        window_lo=lo[kept],
        window_hi=hi[kept],
        groups=groups,
        genotype_sample_index=np.asarray(gidx, dtype=np.int64),
        sample_id=np.asarray(phenotypes["sample_id"].values).astype(str)[pidx],
        variant_id=vid,
        variant_position=vpos,
        variant_contig=vcon,
        contig_id=contig_id,
        window=int(window),
        ploidy=ploidy,
        covariates=C,
        covariate_id=tuple(cov_ids),
        report=report,
    )


def _dosage_block(block: np.ndarray, sample_index: np.ndarray, dtype: Any) -> np.ndarray:
    """Decode one genotype block (calls or dosages) for the analysis samples, NaN = missing."""
    if block.ndim == 3:  # calls (variants, samples, ploidy)
        return dosage_from_calls(block[:, sample_index, :], dtype=dtype)
    d = np.asarray(block[:, sample_index], dtype=dtype)
    return d.copy() if d.base is block else d



@dataclass
class GenotypeBlock:
    """A decoded genotype block: mean-imputed dosages, allele statistics and the test mask."""

    G: np.ndarray  # (variants, samples) float64, mean-imputed
    af: np.ndarray
    ma_samples: np.ndarray
    ma_count: np.ndarray
    valid: np.ndarray  # bool: polymorphic and passing the MAF filter
    monomorphic: np.ndarray
    n_maf_filtered: int
    n_missing: np.ndarray  # missing calls per variant

    def counts(self) -> dict[str, np.ndarray]:
        return {
            "n_monomorphic": np.asarray(int(self.monomorphic.sum())),
            "n_maf_filtered": np.asarray(self.n_maf_filtered),
            "n_imputed_calls": np.asarray(int(self.n_missing.sum())),
            "n_variants_imputed": np.asarray(int((self.n_missing > 0).sum())),
        }


def decode_genotype_block(
    block: np.ndarray, sample_index: np.ndarray, *, ploidy: int, maf_threshold: float
) -> GenotypeBlock:
    """Decode calls/dosages for the analysis samples, mean-impute, compute allele stats and filters.

    Monomorphic variants (all imputed dosages equal) and, when ``maf_threshold > 0``, variants
    with ``min(af, 1 - af) < maf_threshold`` are marked invalid (not tested).
    """
    G = _dosage_block(block, sample_index, np.float64)
    G, n_missing = impute_mean(G)
    af, ma_samples, ma_count = allele_stats(G, ploidy)
    monomorphic = G.max(axis=1) == G.min(axis=1) if G.shape[1] else np.ones(G.shape[0], bool)
    valid = ~monomorphic
    n_maf = 0
    if maf_threshold > 0:
        low = (np.minimum(af, 1.0 - af) < maf_threshold) & valid
        n_maf = int(low.sum())
        valid &= ~low
    return GenotypeBlock(G, af, ma_samples, ma_count, valid, monomorphic, n_maf, n_missing)


def cis_chunk_kernel(
    block: np.ndarray,
    v0: int,
    sample_index: np.ndarray,
    groups: Sequence[tuple[np.ndarray, PhenotypeGroup, np.ndarray, np.ndarray]],
    *,
    ploidy: int,
    maf_threshold: float,
    dtype: Any,
) -> dict[str, np.ndarray]:
    """Test one variant chunk against the phenotypes whose windows overlap it.

    Parameters
    ----------
    block
        (variants, samples, ploidy) int8 calls or (variants, samples) dosages of the chunk.
    v0
        Global index of the chunk's first variant.
    groups
        ``(rows, group, lo, hi)``: rows of the group overlapping the chunk, the group, and their
        window bounds (global variant indices).

    Returns
    -------
    dict of 1-D arrays, one entry per tested pair: ``phenotype_index``, ``variant_index``,
    ``t_value``, ``p_value``, ``beta``, ``beta_se``, ``af``, ``ma_samples``, ``ma_count``, and
    scalars ``n_monomorphic``, ``n_maf_filtered``, ``n_imputed`` (0-d arrays).
    """
    gb = decode_genotype_block(block, sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
    G, af, ma_samples, ma_count, valid = gb.G, gb.af, gb.ma_samples, gb.ma_count, gb.valid
    vi_all = np.arange(G.shape[0]) + v0
    Gc = G - G.mean(axis=1, keepdims=True)
    Gw = Gc.astype(dtype, copy=False)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("phenotype_index", "variant_index", "r", "g_norm", "p_norm", "dof")}
    for rows, grp, lo, hi in groups:
        if grp.sample_index is None:
            Gs, Gsw = Gc, Gw
        else:
            Gs = Gc[:, grp.sample_index]
            Gsw = Gs.astype(dtype, copy=False)
        g_norm = np.sqrt(residual_norm2(Gs, grp.Q))
        ok = valid & (g_norm > 1e-10 * np.sqrt(Gs.shape[1]))
        Ph = grp.P_hat[rows].astype(dtype, copy=False)
        R = Gsw @ Ph.T  # (v, p)
        inwin = (vi_all[:, None] >= lo[None, :]) & (vi_all[:, None] < hi[None, :]) & ok[:, None]
        vv, pp = np.nonzero(inwin)
        out["phenotype_index"].append(grp.index[rows][pp])
        out["variant_index"].append(vi_all[vv])
        out["r"].append(R[vv, pp].astype(np.float64) / g_norm[vv])
        out["g_norm"].append(g_norm[vv])
        out["p_norm"].append(grp.p_norm[rows][pp])
        out["dof"].append(np.full(len(vv), grp.dof, dtype=np.int64))
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}
    vloc = (cat["variant_index"] - v0).astype(np.int64)
    t, p, slope, se = stats_from_r(cat["r"], cat["dof"], cat["g_norm"], cat["p_norm"])
    return {
        "phenotype_index": cat["phenotype_index"].astype(np.int64),
        "variant_index": cat["variant_index"].astype(np.int64),
        "t_value": t,
        "p_value": p,
        "beta": slope,
        "beta_se": se,
        "af": af[vloc],
        "ma_samples": ma_samples[vloc],
        "ma_count": ma_count[vloc],
        **gb.counts(),
    }


def _genotype_array(genotypes: xr.Dataset, chunks: int | None) -> Any:
    """The dask array the kernel reads: dosages if present, else calls; full samples per chunk."""
    import dask.array as da

    name = "call_dosage" if "call_dosage" in genotypes else "call_genotype"
    if name not in genotypes:
        raise InputError("genotypes have neither call_genotype nor call_dosage")
    arr = genotypes[name].data
    if not isinstance(arr, da.Array):
        arr = da.from_array(arr, chunks=(chunks or 10_000,) + arr.shape[1:])
    var_chunks: Any = chunks if chunks else arr.chunks[0]
    return arr.rechunk((var_chunks,) + tuple(-1 for _ in arr.shape[1:]))


def cis_nominal_graph(
    plan: CisPlan,
    genotypes: xr.Dataset,
    *,
    maf_threshold: float = 0.0,
    variants_chunk_size: int | None = None,
    dtype: Any = np.float64,
) -> dict[str, list[Any]]:
    """Lazy cis-nominal graph: per contig, one delayed kernel call per overlapping variant chunk."""
    if not 0 <= maf_threshold < 0.5:
        raise InputError(f"--maf-threshold must be in [0, 0.5), got {maf_threshold}")
    arr = _genotype_array(genotypes, variants_chunk_size)
    blocks = arr.to_delayed().reshape(-1)
    bounds = np.concatenate([[0], np.cumsum(arr.chunks[0])])
    kernel = dask.delayed(cis_chunk_kernel, pure=True)
    out: dict[str, list[Any]] = {c: [] for c in plan.contigs}
    for b, blk in enumerate(blocks):
        v0, v1 = int(bounds[b]), int(bounds[b + 1])
        parts = []
        for grp in plan.groups:
            lo = plan.window_lo[grp.index]
            hi = plan.window_hi[grp.index]
            rows = np.nonzero((lo < v1) & (hi > v0))[0]
            if rows.size:
                parts.append((rows, grp, lo[rows], hi[rows]))
        if not parts:
            continue
        contigs = {str(c) for rows, grp, _, _ in parts for c in plan.phenotype_contig[grp.index[rows]]}
        task = kernel(
            blk, v0, plan.genotype_sample_index, parts,
            ploidy=plan.ploidy, maf_threshold=maf_threshold, dtype=dtype,
        )
        # a chunk spanning two contigs serves both; the assembler filters by contig
        for c in contigs:
            out[c].append(task)
    return out


def assemble_pairs(plan: CisPlan, parts: Sequence[dict[str, np.ndarray]], contig: str | None = None) -> xr.Dataset:
    """Concatenate kernel outputs into a pairs Dataset sorted by phenotype then variant."""
    keys = ("phenotype_index", "variant_index", "t_value", "p_value", "beta", "beta_se", "af", "ma_samples", "ma_count")
    cat = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in keys}
    pi = cat["phenotype_index"].astype(np.int64)
    vi = cat["variant_index"].astype(np.int64)
    sel = np.ones(len(pi), dtype=bool)
    if contig is not None:
        sel = plan.phenotype_contig[pi] == contig if len(pi) else sel
    order = np.lexsort((vi[sel], pi[sel]))
    idx = np.nonzero(sel)[0][order]
    pi, vi = pi[idx], vi[idx]
    pos = plan.variant_position[vi]
    ds = xr.Dataset(
        {
            "phenotype_id": ("pairs", plan.phenotype_id[pi]),
            "variant_id": ("pairs", plan.variant_id[vi]),
            "start_distance": ("pairs", pos - (plan.phenotype_start[pi] + 1)),
            "end_distance": ("pairs", pos - plan.phenotype_end[pi]),
            "af": ("pairs", cat["af"][idx]),
            "ma_samples": ("pairs", cat["ma_samples"][idx].astype(np.int32)),
            "ma_count": ("pairs", cat["ma_count"][idx].astype(np.int32)),
            "p_value": ("pairs", cat["p_value"][idx]),
            "t_value": ("pairs", cat["t_value"][idx]),
            "beta": ("pairs", cat["beta"][idx]),
            "beta_se": ("pairs", cat["beta_se"][idx]),
        }
    )
    ds.attrs.update(window=plan.window, n_samples=plan.n_samples)
    return ds


def summarize_counts(parts: Sequence[dict[str, np.ndarray]], plan: CisPlan) -> dict[str, int]:
    """Sum the per-chunk counters (each chunk counted once)."""
    seen: set[int] = set()
    totals = {"n_monomorphic": 0, "n_maf_filtered": 0, "n_imputed_calls": 0, "n_variants_imputed": 0}
    for p in parts:
        if id(p) in seen:
            continue
        seen.add(id(p))
        for k in totals:
            totals[k] += int(p[k])
    return totals


def compute_parts(
    tasks: Sequence[Any],
    *,
    client: Any = None,
    progress: bool = False,
    cache: dict[Any, Any] | None = None,
) -> list[Any]:
    """Compute delayed kernel tasks on the threaded scheduler or a distributed ``client``.

    ``cache`` (key -> result) lets a chunk shared by two contigs be computed once.
    """
    cache = {} if cache is None else cache
    uniq = [t for t in {t.key: t for t in tasks}.values() if t.key not in cache]
    if not uniq:
        return [cache[t.key] for t in tasks]
    if client is not None:
        futures = client.compute(uniq)
        if progress:
            from distributed import progress as dprogress

            dprogress(futures)
        results = client.gather(futures)
    elif progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=_stderr()):
            results = dask.compute(*uniq, scheduler="threads")
    else:
        results = dask.compute(*uniq, scheduler="threads")
    cache.update({t.key: r for t, r in zip(uniq, results, strict=True)})
    return [cache[t.key] for t in tasks]


def _stderr() -> Any:
    import sys

    return sys.stderr


def map_cis_nominal(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None = None,
    *,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    variants_chunk_size: int | None = None,
    dtype: Any = np.float64,
    client: Any = None,
    allow_sample_intersection: bool = False,
    progress: bool = False,
) -> xr.Dataset:
    """cis-eQTL nominal scan: all variant-phenotype pairs within ``window`` of each phenotype.

    Parameters
    ----------
    genotypes
        VCF Zarr model Dataset (see :func:`dqtl.io.genotypes.open_genotypes`).
    phenotypes
        Phenotype Dataset (see :func:`dqtl.io.phenotypes.read_phenotype_bed`).
    covariates
        Covariate Dataset (see :func:`dqtl.io.phenotypes.read_covariates`), or None.
    window
        cis window half-width in bp.
    maf_threshold
        Skip variants with minor allele frequency below this.
    variants_chunk_size
        Rechunk genotypes to this many variants per task (default: the store's chunks).
    dtype
        Precision of the genotype x phenotype product: ``np.float64`` (default; statistics equal
        OLS to ~1e-12) or ``np.float32`` (faster; p-values within ~1e-4 relative for |t| < 10).
    client
        A ``distributed.Client`` to run on; default the threaded scheduler.

    Returns
    -------
    xarray.Dataset
        Dimension ``pairs``; variables ``phenotype_id``, ``variant_id``, ``start_distance``,
        ``end_distance``, ``af``, ``ma_samples``, ``ma_count``, ``p_value``, ``t_value``, ``beta``,
        ``beta_se``. ``attrs`` holds the run report (counts of skipped inputs).

    Examples
    --------
    >>> import dqtl
    >>> sim = dqtl.simulate(n_samples=60, n_variants=400, n_phenotypes=10, seed=1)  # doctest: +SKIP
    >>> pairs = dqtl.map_cis_nominal(sim, dqtl.phenotypes_of(sim))  # doctest: +SKIP
    """
    plan = plan_cis(
        genotypes, phenotypes, covariates, window=window,
        allow_sample_intersection=allow_sample_intersection,
    )
    graph = cis_nominal_graph(plan, genotypes, maf_threshold=maf_threshold,
                              variants_chunk_size=variants_chunk_size, dtype=dtype)
    tasks = [t for ts in graph.values() for t in ts]
    parts = compute_parts(tasks, client=client, progress=progress)
    uniq = list({id(p): p for p in parts}.values())
    ds = assemble_pairs(plan, uniq)
    ds.attrs.update({k: v for k, v in plan.report.items() if not isinstance(v, list)})
    ds.attrs.update(summarize_counts(uniq, plan))
    return ds


def pairs_to_frame(ds: xr.Dataset) -> pd.DataFrame:
    """pandas view of a pairs Dataset with tensorQTL's column names."""
    from dqtl.io.results import to_tensorqtl_pairs

    return to_tensorqtl_pairs(ds)
