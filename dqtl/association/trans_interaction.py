"""trans genotype x interaction scan: every variant against every phenotype, one interaction term.

tensorQTL's ``map_trans(interaction_s=...)`` model (``y ~ C + g + i + g:i``, per-half MAF filter on
the term) on the study plan (``cis=False``: the window is the cis exclusion). One task per block
of variants: decode, residualize ``g``, ``i`` and ``g i`` on the covariate basis once
(:func:`dqtl.kernels.interaction.interaction_gram`, as the cis scan), invert the 3 x 3 Gram matrix
per variant, and meet every phenotype through two products
(``G_r Y'``, ``(G i)_r Y'``); the coefficients, residual sums of squares and ``t_gi`` follow
elementwise for the whole (variants x phenotypes) block in float64. Pairs with ``p_gi <=
pval_threshold`` outside the cis exclusion are kept; BH over every test of the scan (exact for the
kept pairs, as :mod:`dqtl.multitest.bh` explains).
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
from dqtl.kernels.genotypes import decode_block
from dqtl.kernels.interaction import half_maf_mask, interaction_gram, well_conditioned
from dqtl.kernels.stats import pval_from_t
from dqtl.study import StudyPlan, delayed_rows, plan_study

__all__ = ["trans_interaction_kernel", "map_trans_interaction", "TRANS_INTERACTION_COLUMNS"]

log = logging.getLogger(__name__)

TRANS_INTERACTION_COLUMNS = ("variant_id", "phenotype_id", "pval_g", "b_g", "b_g_se", "pval_i",
                             "b_i", "b_i_se", "pval_gi", "b_gi", "b_gi_se", "af")


def trans_interaction_kernel(
    block: np.ndarray,
    v0: int,
    sample_index: np.ndarray,
    Y: np.ndarray,
    basis: Any,
    term: np.ndarray,
    excl_lo: np.ndarray,
    excl_hi: np.ndarray,
    variant_id: np.ndarray,
    phenotype_id: np.ndarray,
    *,
    ploidy: int,
    maf_threshold: float,
    maf_threshold_interaction: float,
    pval_threshold: float,
    dof: int,
) -> dict[str, Any]:
    """One block of variants against every phenotype ``Y`` (P, n residualized); returns the kept
    pairs, the number of tests and the counters."""
    dec = decode_block(block, sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
    G = dec.G
    ok = dec.valid & (G.max(axis=1) > G.min(axis=1))
    n_half = 0
    if maf_threshold_interaction > 0:
        half = half_maf_mask(G, term, maf_threshold_interaction, ploidy)
        n_half = int((ok & ~half).sum())
        ok &= half
    idx = np.flatnonzero(ok)
    empty = {c: np.zeros(0) for c in TRANS_INTERACTION_COLUMNS}
    out: dict[str, Any] = {"pairs": empty, "n_tests": 0, "n_monomorphic": int(dec.monomorphic.sum()),
                           "n_interaction_maf_filtered": n_half, "n_singular": 0}
    if idx.size == 0:
        return out
    gram = interaction_gram(G[idx], term[:, None], basis)  # the cis kernel's Gram blocks
    Gr, GIr, ir, XtX = gram.Gr, gram.GIr[0], gram.Ir[0], gram.XtX
    good = well_conditioned(XtX)
    out["n_singular"] = int((~good).sum())
    inv = np.full_like(XtX, np.nan)
    inv[good] = np.linalg.inv(XtX[good])
    Xg = Gr @ Y.T  # (m, P)
    Xgi = GIr @ Y.T
    Xi = (Y @ ir)[None, :]
    yy = np.einsum("ij,ij->i", Y, Y)[None, :]
    b = [inv[:, k, 0, None] * Xg + inv[:, k, 1, None] * Xi + inv[:, k, 2, None] * Xgi for k in range(3)]
    rss = np.maximum(yy - (b[0] * Xg + b[1] * Xi + b[2] * Xgi), 0.0)
    se = [np.sqrt(inv[:, k, k, None] * rss / dof) for k in range(3)]
    with np.errstate(invalid="ignore", divide="ignore"):
        t_gi = b[2] / se[2]
    gv = idx + v0
    excluded = (gv[:, None] >= excl_lo[None, :]) & (gv[:, None] < excl_hi[None, :])
    tested = good[:, None] & ~excluded
    out["n_tests"] = int(tested.sum())
    p_gi = np.ones_like(t_gi)
    fin = np.isfinite(t_gi) & tested
    p_gi[fin] = pval_from_t(t_gi[fin], dof)
    vv, pp = np.nonzero(fin & (p_gi <= pval_threshold))
    pairs: dict[str, np.ndarray] = {
        "variant_id": np.asarray(variant_id).astype(str)[idx[vv]],
        "phenotype_id": np.asarray(phenotype_id).astype(str)[pp],
    }
    for k, name in enumerate(("g", "i", "gi")):
        bk, sk = b[k][vv, pp], se[k][vv, pp]
        pairs[f"pval_{name}"] = pval_from_t(bk / sk, dof) if vv.size else np.zeros(0)
        pairs[f"b_{name}"], pairs[f"b_{name}_se"] = bk, sk
    pairs["af"] = dec.af[idx[vv]]
    out["pairs"] = {c: pairs[c] for c in TRANS_INTERACTION_COLUMNS}
    return out


def map_trans_interaction(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    interaction: Any,
    *,
    pval_threshold: float = 1e-5,
    cis_window: int = 5_000_000,
    maf_threshold: float = 0.0,
    maf_threshold_interaction: float = 0.05,
    variants_per_block: int | None = None,
    memory_limit: int = 1 << 30,
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
) -> pd.DataFrame:
    """trans genotype x interaction scan (one term): pairs with ``p_gi <= pval_threshold`` outside
    each phenotype's cis window, with ``qval`` (BH on ``p_gi`` over every test); ``attrs`` hold
    the number of tests and the counters.

    Examples
    --------
    >>> import dqtl
    >>> sim = dqtl.simulate(n_samples=100, n_variants=400, n_phenotypes=20, seed=3)
    >>> sex = pd.Series(np.arange(100) % 2, index=sim.sample_id.values.astype(str), name="sex")
    >>> hits = map_trans_interaction(sim, sim, sim, sex, pval_threshold=1e-3, cis_window=0)
    >>> hits.attrs["n_tests"] > 0, list(hits.columns[-2:])
    (True, ['af', 'qval'])
    """
    from dqtl.association.interaction import interaction_terms
    from dqtl.multitest.bh import bh

    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=cis_window, cis=False,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    values, names = interaction_terms(plan, interaction)
    if values.shape[1] != 1:
        raise InputError(f"trans --interaction takes one term; the file has {values.shape[1]}")
    if len(plan.groups) != 1 or plan.groups[0].sample_index is not None:
        raise InputError("trans --interaction needs phenotypes without missing values (every "
                         "phenotype measured on every sample)")
    grp = plan.groups[0]
    order = np.asarray(grp.index)
    Y = grp.P_hat * grp.p_norm[:, None]
    n_phen = Y.shape[0]
    if variants_per_block is None:
        variants_per_block = int(max(64, min(20_000, memory_limit // (12 * 8 * max(n_phen, 1)))))
    arr = plan.genotype_array(variants_per_block)
    vid = plan.genotypes["variant_id"].data
    kernel = dask.delayed(trans_interaction_kernel, pure=True)
    dof = int(grp.dof) - 2
    tasks = []
    for v0 in range(0, plan.n_variants, variants_per_block):
        v1 = min(v0 + variants_per_block, plan.n_variants)
        tasks.append(kernel(delayed_rows(arr, slice(v0, v1)), v0, plan.genotype_sample_index, Y, grp.basis, values[:, 0],
                            plan.window_lo[order], plan.window_hi[order], delayed_rows(vid, slice(v0, v1)),
                            plan.phenotype_id[order], ploidy=plan.ploidy,
                            maf_threshold=plan.maf_threshold,
                            maf_threshold_interaction=maf_threshold_interaction,
                            pval_threshold=pval_threshold, dof=dof))
    log.info("trans interaction: %d variants x %d phenotypes, term %s, dof %d, %d tasks",
             plan.n_variants, n_phen, names[0], dof, len(tasks))
    parts = compute(tasks, label="trans interaction blocks")
    df = pd.DataFrame({c: np.concatenate([p["pairs"][c] for p in parts]) for c in
                       TRANS_INTERACTION_COLUMNS})
    n_tests = int(sum(p["n_tests"] for p in parts))
    df["qval"] = bh(df["pval_gi"].to_numpy(dtype=float), n_tests=max(n_tests, 1)) if len(df) else []
    df = df.sort_values(["pval_gi", "variant_id", "phenotype_id"], kind="stable").reset_index(drop=True)
    df.attrs.update(n_tests=n_tests, dof=dof, pval_threshold=pval_threshold,
                    **{c: int(sum(p[c] for p in parts)) for c in
                       ("n_monomorphic", "n_interaction_maf_filtered", "n_singular")})
    return df
