"""Statistics over a trans scan's recorded blocks and the assembly of its results.

One code path serves both ways a scan is run: :func:`assemble_trans` (in memory, for
:func:`dqtl.association.trans.map_trans`) and :func:`write_trans_results` (the resumable block
store of :func:`dqtl.association.trans.run_trans`, streamed into the final files by the writers
of :mod:`dqtl.io.trans_output`, which hold no statistics).

q-values
--------
``q_value`` (file column ``qval``) is Benjamini-Hochberg over *all* tests performed:
``dqtl.multitest.bh(p_hits, n_tests=m)`` with ``m`` the total test count. Every q-value
``<= pval_threshold`` is exactly the one BH gives on the full ``m`` p-values; a q-value above
the p threshold is an upper bound of the full-data value (and is itself above the threshold), so
discoveries at any FDR level up to the p threshold are exact. ``q_value_phenotype`` is the same
per phenotype with its own test count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import xarray as xr

from dqtl.multitest import bh

__all__ = [
    "bh_by_phenotype",
    "permutation_null_columns",
    "TransStatistics",
    "trans_statistics",
    "iter_trans_rows",
    "assemble_trans",
    "write_trans_results",
    "MemoryBlocks",
    "COUNTERS",
]

log = logging.getLogger(__name__)

#: per-variant-block counters (recorded by the first phenotype block of each variant block)
COUNTERS = ("n_variants", "n_valid", "n_monomorphic", "n_maf_filtered", "n_imputed_calls",
            "n_variants_imputed")


class BlockReader(Protocol):
    def read(self, key: tuple[int, int], fields: Sequence[str] | None = None) -> dict[str, np.ndarray]: ...


class MemoryBlocks:
    """Block results held in memory, read like a :class:`dqtl.io.trans_output.TransBlockStore`."""

    def __init__(self, parts: Sequence[Mapping[str, Any]]) -> None:
        self.parts = {tuple(p["key"]): p for p in parts}

    def read(self, key: tuple[int, int], fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        part = self.parts[tuple(key)]
        names = [f for f in (fields or part) if f in part and f != "key"]
        return {f: np.asarray(part[f]) for f in names}


def bh_by_phenotype(p: np.ndarray, phenotype_index: np.ndarray, n_tests: np.ndarray) -> np.ndarray:
    """BH q-values within each phenotype over its own test count ``n_tests[phenotype]``.

    ``p`` are the hits of all phenotypes; each phenotype's hits are adjusted with
    :func:`dqtl.multitest.bh` and ``n_tests=n_tests[phenotype]`` (blockwise BH). Returns float64
    q-values aligned with ``p``.
    """
    p = np.asarray(p, dtype=np.float64)
    ph = np.asarray(phenotype_index, dtype=np.int64)
    q = np.full(p.shape, np.nan)
    if p.size == 0:
        return q
    order = np.argsort(ph, kind="stable")
    bounds = np.flatnonzero(np.diff(ph[order])) + 1
    for idx in np.split(order, bounds):
        q[idx] = bh(p[idx], n_tests=max(int(n_tests[ph[idx[0]]]), idx.size))
    return q


def permutation_null_columns(
    max_abs_r_perm: np.ndarray,
    p: np.ndarray,
    r: np.ndarray,
    group: np.ndarray,
    group_dof: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Empirical and beta-approximated p-values of hits from a genome-wide permutation null.

    Parameters
    ----------
    max_abs_r_perm : (groups, permutations) float64
        Genome-wide maximum ``|r|`` of each synthetic permuted phenotype of each group.
    p, r : (hits,) float64
        Nominal p-values and correlations of the hits.
    group : (hits,) int
        Missing-value group of each hit's phenotype.
    group_dof : (groups,) int

    Returns
    -------
    (pval_perm, pval_beta, fits)
        ``pval_perm = (#{minp_perm <= p} + 1) / (permutations + 1)``; ``pval_beta =
        BetaCDF(p(r^2; true_df); a, b)`` with ``true_df, a, b`` fitted to the minimum p-values
        (:func:`dqtl.multitest.beta_approx_pval`); ``fits``: one dict per group.
    """
    from scipy import special

    from dqtl.multitest import beta_approx_pval, pval_from_r2

    pval_perm = np.full(p.shape, np.nan)
    pval_beta = np.full(p.shape, np.nan)
    fits = []
    for g in range(max_abs_r_perm.shape[0]):
        r2 = np.minimum(np.asarray(max_abs_r_perm[g], dtype=np.float64) ** 2, 1.0)
        dof = float(group_dof[g])
        minp = np.sort(pval_from_r2(r2, dof))
        fit = beta_approx_pval(r2, float(r2.max()), dof)
        sel = np.asarray(group) == g
        if sel.any():
            pval_perm[sel] = (np.searchsorted(minp, p[sel], side="right") + 1) / (r2.size + 1)
            pval_beta[sel] = special.betainc(
                fit["beta_shape1"], fit["beta_shape2"], pval_from_r2(r[sel] ** 2, fit["true_df"])
            )
        fits.append({
            "group": g, "dof": dof, "permutations": int(r2.size), "true_df": float(fit["true_df"]),
            "beta_shape1": float(fit["beta_shape1"]), "beta_shape2": float(fit["beta_shape2"]),
            "converged": bool(fit["converged"]), "min_pval_median": float(np.median(minp)),
        })
    return pval_perm, pval_beta, fits


def variant_block_hits(
    blocks: BlockReader, keys: Sequence[tuple[int, int]], fields: Sequence[str]
) -> dict[str, np.ndarray]:
    """Hits of one variant block (all its phenotype blocks), sorted by variant then phenotype."""
    parts = [blocks.read(k, ["variant_index", "phenotype_index", *fields]) for k in keys]
    parts = [p for p in parts if "variant_index" in p and p["variant_index"].size]
    if not parts:
        return {}
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((cat["phenotype_index"], cat["variant_index"]))
    return {k: v[order] for k, v in cat.items()}


@dataclass
class TransStatistics:
    """Run-wide statistics of a trans scan: test counts, q-values, the permutation null."""

    n_tests: np.ndarray  # (phenotypes,) tests per phenotype
    n_hits: np.ndarray  # (phenotypes,) hits per phenotype
    q_value: np.ndarray  # (hits,) in output order
    q_value_phenotype: np.ndarray | None
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # p_value_perm, p_value_beta
    null_fit: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    p_sketch: np.ndarray | None = None  # sampled tests' -log10 p counts (kernels.trans.SKETCH_BINS)
    p_hits: np.ndarray | None = None  # p-values of every hit (output order)

    @property
    def total_tests(self) -> int:
        return int(self.n_tests.sum())

    @property
    def total_hits(self) -> int:
        return int(self.q_value.size)


def trans_statistics(
    blocks: BlockReader,
    variant_blocks: Sequence[Sequence[tuple[int, int]]],
    permutation_keys: Sequence[tuple[int, int]],
    *,
    n_phenotypes: int,
    phenotype_group: np.ndarray,
    group_dof: np.ndarray,
    phenotype_qvalues: bool = True,
) -> TransStatistics:
    """Pass 1 over the blocks: p-values of every hit (output order), counts, q-values, null.

    Memory holds the p-values, phenotypes and correlations of all hits (24 bytes per hit),
    never the hit table.
    """
    n_tests = np.zeros(n_phenotypes, dtype=np.int64)
    counters = dict.fromkeys(COUNTERS, 0)
    p_parts, ph_parts, r_parts = [], [], []
    sketch: np.ndarray | None = None
    for keys in variant_blocks:
        for k in keys:
            z = blocks.read(k, ["n_tests", "phenotype_start", *COUNTERS])
            try:
                part = blocks.read(k, ["p_sketch"])["p_sketch"]
                sketch = part.astype(np.int64) if sketch is None else sketch + part
            except KeyError:  # a block recorded without the sketch
                pass
            s = int(z["phenotype_start"])
            n_tests[s : s + z["n_tests"].size] += z["n_tests"]
            if k == keys[0]:
                for c in COUNTERS:
                    counters[c] += int(z[c])
        hits = variant_block_hits(blocks, keys, ["p_value", "r"])
        if hits:
            p_parts.append(hits["p_value"])
            ph_parts.append(hits["phenotype_index"])
            r_parts.append(hits["r"])
    p_all = np.concatenate(p_parts) if p_parts else np.zeros(0)
    ph_all = np.concatenate(ph_parts).astype(np.int64) if ph_parts else np.zeros(0, dtype=np.int64)
    m = int(n_tests.sum())
    q_all = bh(p_all, n_tests=max(m, p_all.size)) if p_all.size else p_all.copy()
    q_ph = bh_by_phenotype(p_all, ph_all, n_tests) if phenotype_qvalues else None
    extra: dict[str, np.ndarray] = {}
    fits: list[dict[str, Any]] = []
    if permutation_keys:
        mx = np.max(np.stack([blocks.read(k, ["perm_max_abs_r"])["perm_max_abs_r"]
                              for k in permutation_keys]), axis=0)
        r_all = np.concatenate(r_parts) if r_parts else np.zeros(0)
        grp = np.asarray(phenotype_group)[ph_all] if p_all.size else np.zeros(0, dtype=np.int64)
        pp, pb, fits = permutation_null_columns(mx, p_all, r_all, grp, group_dof)
        extra = {"p_value_perm": pp, "p_value_beta": pb}
    return TransStatistics(
        n_tests=n_tests, n_hits=np.bincount(ph_all, minlength=n_phenotypes).astype(np.int64),
        q_value=q_all, q_value_phenotype=q_ph, extra=extra, null_fit=fits, counters=counters,
        p_sketch=sketch, p_hits=p_all,
    )


def iter_trans_rows(
    blocks: BlockReader,
    variant_blocks: Sequence[Sequence[tuple[int, int]]],
    stats: TransStatistics,
    phenotype_id: np.ndarray,
    *,
    fields: Sequence[str] = ("variant_id", "p_value", "beta", "beta_se", "af"),
) -> Iterator[dict[str, np.ndarray]]:
    """Pass 2: each variant block's hits with their run-wide columns, in output order.

    Yields dicts of result arrays (dqtl names: ``variant_id``, ``phenotype_id``, the ``fields``,
    ``q_value``, and ``q_value_phenotype``, ``p_value_perm``, ``p_value_beta`` when present).
    """
    pid = np.asarray(phenotype_id).astype(str)
    off = 0
    for keys in variant_blocks:
        hits = variant_block_hits(blocks, keys, fields)
        if not hits:
            continue
        n = hits["p_value"].size
        sl = slice(off, off + n)
        cols = {"variant_id": hits["variant_id"].astype(str),
                "phenotype_id": pid[hits["phenotype_index"].astype(np.int64)],
                **{f: hits[f] for f in fields if f != "variant_id"},
                "q_value": stats.q_value[sl]}
        if stats.q_value_phenotype is not None:
            cols["q_value_phenotype"] = stats.q_value_phenotype[sl]
        for name, values in stats.extra.items():
            cols[name] = values[sl]
        cols["phenotype_index"] = hits["phenotype_index"].astype(np.int64)
        off += n
        yield cols


def assemble_trans(parts: Sequence[Mapping[str, Any]], plan: Any) -> xr.Dataset:
    """The in-memory result Dataset of a trans scan from its block results (see ``map_trans``)."""
    blocks = MemoryBlocks(parts)
    variant_blocks = plan.block_keys()
    perm_keys = plan.permutation_keys()
    stats = trans_statistics(blocks, variant_blocks, perm_keys, n_phenotypes=len(plan.phenotype_id),
                             phenotype_group=plan.phenotype_group, group_dof=plan.group_dof)
    rows = list(iter_trans_rows(blocks, variant_blocks, stats, plan.phenotype_id,
                                fields=("variant_id", "p_value", "t_value", "beta", "beta_se",
                                        "af", "r")))
    names = ["variant_id", "phenotype_id", "p_value", "t_value", "beta", "beta_se", "af", "r",
             "q_value", "q_value_phenotype", *stats.extra]
    empty = {"variant_id": np.zeros(0, dtype=str), "phenotype_id": np.zeros(0, dtype=str)}
    data: dict[str, Any] = {
        k: ("pairs", np.concatenate([r[k] for r in rows]) if rows else empty.get(k, np.zeros(0)))
        for k in names
    }
    data.update({
        "tested_phenotype_id": ("phenotypes", np.asarray(plan.phenotype_id)),
        "phenotype_n_tests": ("phenotypes", stats.n_tests),
        "phenotype_n_hits": ("phenotypes", stats.n_hits),
    })
    ds = xr.Dataset(data)
    ds.attrs.update({k: v for k, v in plan.report.items() if not isinstance(v, list | dict)})
    ds.attrs.update(stats.counters)
    ds.attrs.update(
        n_tests=stats.total_tests, n_hits=stats.total_hits, pval_threshold=plan.pval_threshold,
        r_threshold=plan.group_r_star.tolist(), dof=plan.group_dof.tolist(),
        cis_window=plan.cis_window, maf_threshold=plan.maf_threshold,
    )
    if stats.null_fit:
        ds.attrs["permutation_null"] = stats.null_fit
    return ds


def write_trans_results(
    store: Any,
    *,
    output_prefix: str,
    plan: Any,
    summary: dict[str, Any],
    formats: Sequence[str] = ("parquet",),
    phenotype_qvalues: bool = False,
) -> dict[str, Any]:
    """Stream a completed block store into the final files (:func:`dqtl.io.trans_output.write_trans_tables`).

    Returns the summary written (tests, hits, ...), with ``files``.
    """
    from dqtl.io.trans_output import write_trans_tables

    variant_blocks = plan.block_keys()
    perm_keys = plan.permutation_keys()
    missing = [k for ks in variant_blocks for k in ks if not store.has(k)]
    missing += [k for k in perm_keys if not store.has(k)]
    if missing:
        raise RuntimeError(f"trans: {len(missing)} blocks are not recorded yet (e.g. {missing[0]})")
    stats = trans_statistics(store, variant_blocks, perm_keys, n_phenotypes=len(plan.phenotype_id),
                             phenotype_group=plan.phenotype_group, group_dof=plan.group_dof,
                             phenotype_qvalues=phenotype_qvalues)
    columns = ["variant_id", "phenotype_id", "p_value", "beta", "beta_se", "af", "q_value"]
    if stats.q_value_phenotype is not None:
        columns.append("q_value_phenotype")
    columns += list(stats.extra)
    out_summary = {
        **summary,
        "n_tests": stats.total_tests,
        "n_hits": stats.total_hits,
        "n_phenotypes_with_hits": int((stats.n_hits > 0).sum()),
        **stats.counters,
        "qvalue_note": (
            "qval = BH over all n_tests tests (hits + tests above the p threshold); exact for "
            "q <= pval_threshold, an upper bound above it"
        ),
    }
    if stats.null_fit:
        out_summary["permutation_null"] = stats.null_fit
    figures = {}
    if stats.p_sketch is not None and stats.p_sketch.sum():
        from dqtl.plot import lambda_from_log_counts, plot_qq_sampled

        out_summary["lambda_gc"] = lambda_from_log_counts(stats.p_sketch)
        out_summary["n_tests_sampled_for_lambda"] = int(stats.p_sketch.sum())
        figures["trans_qtl.qq.png"] = plot_qq_sampled(
            stats.p_sketch, stats.p_hits if stats.p_hits is not None else np.zeros(0),
            stats.total_tests, plan.pval_threshold)
        log.info("trans: lambda_GC %.3f (from %d sampled tests)", out_summary["lambda_gc"],
                 out_summary["n_tests_sampled_for_lambda"])
    rows = iter_trans_rows(store, variant_blocks, stats, plan.phenotype_id)
    files = write_trans_tables(
        output_prefix, rows, columns=columns, n_rows=stats.total_hits,
        phenotype_id=np.asarray(plan.phenotype_id).astype(str), n_tests=stats.n_tests,
        n_hits=stats.n_hits, summary=out_summary, formats=formats, figures=figures,
    )
    out_summary["files"] = files
    return out_summary
