"""Mediation of trans-eQTLs through cis genes (``dqtl mediate``).

For every trans pair (variant ``v``, target ``T``) of a trans scan and every candidate mediator
``M`` (a phenotype whose TSS lies within ``cis_window`` of ``v``; optionally only cis-eGenes),
the trio's total, direct and indirect effects, proportion mediated, Sobel p and a permutation p
of the mediator's effect on the target given the variant (the mediator permuted within the
genotype classes of ``v``, as GMAC does; the covariates of the run, hidden factors included, are
regressed out of every variable first, so a mediator-target pair confounded by them is not called
mediated) are computed on the samples where ``T`` and ``M`` are both observed
(:mod:`dqtl.kernels.mediation`). A trio is mediated when the mediator carries the variant's
effect (``pval_a``, ``m ~ g``) and passes it on (``pval_perm``): ``pval_joint = max(pval_a,
pval_perm)`` tests the composite null ``a = 0 or b = 0`` (intersection-union); ``qval`` are Storey
q-values of ``pval_joint`` over every tested trio; per pair the best mediator (smallest
``pval_joint``, then Sobel p) is marked. A dask graph over the trans variants.
"""

from __future__ import annotations

import logging
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from dqtl.compute import compute
from dqtl.errors import InputError
from dqtl.io.variant_ids import variant_rows
from dqtl.kernels.genotypes import decode_block
from dqtl.kernels.linalg import Residualizer
from dqtl.kernels.mediation import class_permutations, mediation_perm_tb, mediation_stats
from dqtl.kernels.stats import pval_from_t
from dqtl.study import StudyPlan, delayed_rows, plan_study

__all__ = ["map_mediation", "MEDIATION_COLUMNS", "candidate_mediators"]

log = logging.getLogger(__name__)

MEDIATION_COLUMNS = ("variant_id", "phenotype_id", "mediator_id", "beta_total", "beta_direct",
                     "beta_indirect", "prop_mediated", "pval_sobel", "pval_perm", "qval")


def _phenotype_table(plan: StudyPlan) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Raw values and observed-sample mask of every tested phenotype (plan order)."""
    n = plan.n_samples
    where = plan.group_of()
    out = {}
    for i, pid in enumerate(plan.phenotype_id.astype(str)):
        grp = plan.groups[int(where[i])]
        j = int(np.searchsorted(grp.index, i))
        mask = np.ones(n, dtype=bool) if grp.sample_index is None else np.isin(np.arange(n), grp.sample_index)
        vals = np.full(n, np.nan)
        vals[mask] = grp.P_raw[j]
        out[pid] = (vals, mask)
    return out, where


def candidate_mediators(plan: StudyPlan, variant_rows: np.ndarray, cis_window: int) -> list[np.ndarray]:
    """Per variant, the plan's phenotypes (indices) whose TSS/body lies within ``cis_window``."""
    contigs = np.asarray(plan.contig_id).astype(str)
    vcontig = contigs[np.asarray(plan.variant_contig)[variant_rows]]
    vpos = np.asarray(plan.variant_position)[variant_rows]
    from dqtl.io.genotypes import normalize_contig

    pcontig = np.array([normalize_contig(c) for c in plan.phenotype_contig.astype(str)])
    start = plan.phenotype_start + 1
    end = plan.phenotype_end
    out = []
    for c, p in zip(vcontig, vpos, strict=True):
        sel = (pcontig == normalize_contig(c)) & (start - cis_window <= p) & (p <= end + cis_window)
        out.append(np.flatnonzero(sel))
    return out


def _trio_kernel(block: np.ndarray, rows: np.ndarray, targets: list[list[int]],
                 mediators: list[list[np.ndarray]], values: dict[str, Any], pheno_ids: np.ndarray,
                 variant_ids: np.ndarray, covariates: np.ndarray | None, sample_index: np.ndarray, *,
                 ploidy: int, nperm: int, seed: int, stop_hits: int, trans_b: list[list[float]]
                 ) -> dict[str, Any]:
    """Every trio of a chunk of variants (see the module docstring)."""
    dec = decode_block(block, sample_index, ploidy=ploidy)
    bases: dict[bytes, Residualizer] = {}
    out: list[dict[str, Any]] = []
    mismatch: list[str] = []
    for k, v in enumerate(rows):
        graw = dec.G[k]
        for ti, meds, tb in zip(targets[k], mediators[k], trans_b[k], strict=True):
            tvals, tmask = values[pheno_ids[ti]]
            for mi in meds:
                mvals, mmask = values[pheno_ids[mi]]
                S = tmask & mmask
                key = np.packbits(S).tobytes()
                if key not in bases:
                    bases[key] = Residualizer.from_covariates(
                        None if covariates is None else covariates[S], n_samples=int(S.sum()),
                        where="covariates on the samples of a mediation trio")
                B = bases[key]
                g = B.transform(graw[S][None, :])[0]
                if float(g @ g) <= 1e-12 * S.sum():
                    continue
                t = B.transform(tvals[S][None, :])[0]
                m = B.transform(mvals[S][None, :])[0]
                st = {c: float(x[0]) for c, x in mediation_stats(g, t, m[None, :], B.dof).items()}
                st["pval_a"] = float(pval_from_t(np.array([st["beta_a"] / st["se_a"]]), B.dof)[0]) \
                    if st["se_a"] > 0 else np.nan
                if np.isfinite(tb) and tmask.all() and mmask.all():
                    # the trans run's slope on all samples is this trio's total effect
                    if abs(st["beta_total"] - tb) > 1e-4 * max(abs(tb), 1e-3):
                        mismatch.append(f"{variant_ids[k]} / {pheno_ids[ti]}")
                rng = np.random.default_rng([seed, int(v), int(ti), int(mi)])
                classes = np.rint(graw[S]).astype(np.int64)
                obs = abs(st["beta_b"] / st["se_b"]) if st["se_b"] > 0 else np.nan
                hits = done = 0
                step = min(nperm, 100)
                while done < nperm and np.isfinite(obs):
                    perms = class_permutations(classes, min(step, nperm - done), rng)
                    hits += int(np.sum(mediation_perm_tb(g, t, m, B.Q, B.dof, perms) >= obs))
                    done += perms.shape[0]
                    if hits >= stop_hits:
                        break
                out.append({"variant_id": str(variant_ids[k]), "phenotype_id": str(pheno_ids[ti]),
                            "mediator_id": str(pheno_ids[mi]), **st,
                            "pval_perm": (hits + 1) / (done + 1) if done else np.nan,
                            "n_permutations": done, "n_samples": int(S.sum())})
    return {"trios": out, "mismatch": mismatch}


def map_mediation(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    trans_pairs: pd.DataFrame,
    *,
    cis_window: int = 1_000_000,
    mediators: str = "all",
    egenes: pd.DataFrame | None = None,
    fdr: float = 0.05,
    permutations: int = 1000,
    seed: int = 0,
    stop_hits: int = 10,
    variants_per_task: int = 32,
    allow_sample_intersection: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Mediation of every trans pair through its candidate cis mediators.

    ``trans_pairs``: ``variant_id``, ``phenotype_id`` (and the trans run's ``b``, checked against
    the recomputed total effect). ``mediators="egenes"`` keeps mediators that are cis-eGenes of the
    variant: ``egenes`` (a ``cis_qtl.txt.gz`` table) with ``qval <= fdr`` and the variant's
    ``m ~ g`` p-value at most the gene's ``pval_nominal_threshold``. Permutations are adaptive:
    batches of 100 until ``stop_hits`` exceed the observed statistic or ``permutations`` ran.

    Returns the trio table (:data:`MEDIATION_COLUMNS` then ``beta_a, se_a, beta_b, se_b, t_b,
    z_sobel, n_permutations, n_samples, is_best``) and a summary.

    Examples
    --------
    >>> from dqtl.simulation import plant_mediation
    >>> sim, truth = plant_mediation(seed=1, n_samples=200)
    >>> pairs = truth[["variant_id", "phenotype_id"]].drop_duplicates()
    >>> trios, summary = map_mediation(sim, sim, sim, pairs, permutations=200)
    >>> summary["n_pairs"] == len(pairs), {"pval_perm", "qval"} <= set(trios.columns)
    (True, True)
    """
    from dqtl.multitest.qvalue import qvalue

    if mediators not in ("all", "egenes"):
        raise InputError("--mediators must be 'all' or 'egenes'")
    if mediators == "egenes" and egenes is None:
        raise InputError("--mediators egenes needs --cis-results (a cis_qtl.txt.gz of dqtl or tensorQTL)")
    for c in ("variant_id", "phenotype_id"):
        if c not in trans_pairs.columns:
            raise InputError(f"trans results: no {c} column; give the trans_qtl_pairs.parquet of dqtl trans")
    plan = plan_study(genotypes, phenotypes, covariates, window=0, cis=False,
                      allow_sample_intersection=allow_sample_intersection)
    pairs = trans_pairs.drop_duplicates(["variant_id", "phenotype_id"]).reset_index(drop=True)
    if pairs.empty:
        raise InputError("trans results: no pair to mediate")
    vrow = variant_rows(plan.genotypes, pairs["variant_id"], source="trans results")
    if (vrow < 0).any():
        bad = pairs["variant_id"][vrow < 0].iloc[0]
        raise InputError(f"trans results: variant {bad} is not in the genotypes ({int((vrow < 0).sum())} "
                         "pairs); give the genotype store of the trans run")
    pid = plan.phenotype_id.astype(str)
    pindex = pd.Index(pid)
    prow = pindex.get_indexer(pairs["phenotype_id"].astype(str))
    if (prow < 0).any():
        bad = pairs["phenotype_id"][prow < 0].iloc[0]
        raise InputError(f"trans results: phenotype {bad} is not among the tested phenotypes; give "
                         "the phenotypes and covariates of the trans run")
    uniq_v = np.unique(vrow)
    id_of = dict(zip(vrow.tolist(), pairs["variant_id"].astype(str), strict=True))  # row -> its ID
    cands = dict(zip(uniq_v.tolist(), candidate_mediators(plan, uniq_v, cis_window), strict=True))
    keep_eg = None
    thr: dict[str, float] = {}
    if mediators == "egenes" and egenes is not None:
        eg = egenes[egenes["qval"].astype(float) <= fdr]
        keep_eg = set(eg["phenotype_id"].astype(str))
        thr = dict(zip(eg["phenotype_id"].astype(str), eg["pval_nominal_threshold"].astype(float),
                       strict=True))
    values, _ = _phenotype_table(plan)
    b_col = pairs["b"].to_numpy(dtype=float) if "b" in pairs else np.full(len(pairs), np.nan)
    by_v: dict[int, list[int]] = {}
    for i, v in enumerate(vrow):
        by_v.setdefault(int(v), []).append(i)
    arr = plan.genotype_array()
    kernel = dask.delayed(_trio_kernel, pure=True)
    tasks, n_none = [], 0
    vlist = sorted(by_v)
    for s in range(0, len(vlist), variants_per_task):
        chunk = vlist[s:s + variants_per_task]
        targets, meds, tbs = [], [], []
        for v in chunk:
            tl, ml, bl = [], [], []
            for i in by_v[v]:
                m = [int(x) for x in cands[v] if x != prow[i]]
                if keep_eg is not None:
                    m = [x for x in m if pid[x] in keep_eg]
                if not m:
                    n_none += 1
                tl.append(int(prow[i]))
                ml.append(np.asarray(m, dtype=np.int64))
                bl.append(float(b_col[i]))
            targets.append(tl)
            meds.append(ml)
            tbs.append(bl)
        tasks.append(kernel(delayed_rows(arr, np.asarray(chunk)), np.asarray(chunk), targets, meds, values, pid,
                            np.asarray([id_of[int(r)] for r in chunk], dtype=str), plan.covariates,
                            plan.genotype_sample_index, ploidy=plan.ploidy, nperm=permutations,
                            seed=seed, stop_hits=stop_hits, trans_b=tbs))
    if n_none == len(pairs):
        raise InputError(f"no candidate mediator: no tested phenotype lies within {cis_window} bp of "
                         "any trans variant" + (" among the eGenes of --cis-results" if keep_eg else ""))
    log.info("mediation: %d trans pairs (%d variants), %d without a candidate mediator, %d tasks",
             len(pairs), len(vlist), n_none, len(tasks))
    parts = compute(tasks, label="mediation")
    mismatch = [m for p in parts for m in p["mismatch"]]
    if mismatch:
        raise InputError(f"trans results do not match these inputs: the total effect of {mismatch[0]} "
                         f"differs from the trans run's b ({len(mismatch)} pairs); give the genotypes, "
                         "phenotypes and covariates of the trans run")
    trios = pd.DataFrame([t for p in parts for t in p["trios"]])
    if trios.empty:
        raise InputError("mediation: no trio could be tested (monomorphic variants on the shared samples)")
    if keep_eg is not None:
        trios = trios[[p <= thr.get(m, -1.0) for p, m in zip(
            trios["pval_a"], trios["mediator_id"], strict=True)]]
        if trios.empty:
            raise InputError("mediation: no mediator is a cis-eGene of its trans variant at its threshold")
    # a mediator must carry the variant's effect (a) and pass it on (b): the composite null
    # "a = 0 or b = 0" is tested by the larger of the two p-values (intersection-union test)
    trios["pval_joint"] = np.fmax(trios["pval_a"].to_numpy(dtype=float),
                                  trios["pval_perm"].to_numpy(dtype=float))
    trios["qval"] = qvalue(trios["pval_joint"].to_numpy(dtype=float)).qvalues
    order = trios.sort_values(["pval_joint", "pval_sobel"], kind="stable")
    best = order.groupby(["variant_id", "phenotype_id"], sort=False).head(1).index
    trios["is_best"] = trios.index.isin(best)
    extra = ["beta_a", "se_a", "pval_a", "beta_b", "se_b", "t_b", "z_sobel", "pval_joint",
             "n_permutations", "n_samples", "is_best"]
    trios = trios[[*MEDIATION_COLUMNS, *extra]].reset_index(drop=True)
    mediated = trios[trios["qval"] <= fdr].groupby(["variant_id", "phenotype_id"]).size()
    summary = {"n_pairs": int(len(pairs)), "n_pairs_without_mediator": int(n_none),
               "n_trios": int(len(trios)), "fdr": fdr, "n_pairs_mediated": int(len(mediated)),
               "fraction_mediated": float(len(mediated) / len(pairs)),
               "n_trios_significant": int((trios["qval"] <= fdr).sum())}
    log.info("mediation: %d of %d trans pairs (%.1f%%) mediated by a cis gene at FDR %g (%d trios)",
             summary["n_pairs_mediated"], summary["n_pairs"], 100 * summary["fraction_mediated"], fdr,
             summary["n_trios"])
    return trios, summary
