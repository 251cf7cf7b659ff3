"""Fine-map cis-eQTL genes with SuSiE: a graph over genes on the study plan.

For each selected phenotype, its cis window's genotypes (decoded, mean-imputed, testable
variants) and its values are residualized on the plan's covariate basis (tensorQTL's
``susie.map`` does the same), then :func:`dqtl.finemap.susie.susie` fits ``L`` single effects.
Genes are batched as cis nominal batches them (:func:`dqtl.association.cis.cis_batches`): one
task decodes its batch's variant range once and fits its genes; no genotype matrix is ever held
whole. The result is an ``xarray.Dataset`` with the PIP of every variant of every fine-mapped
gene (dim ``pips``) and one row per variant of every credible set (dim ``cs_variants``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr

from dqtl.association.cis import cis_batches
from dqtl.compute import compute
from dqtl.errors import InputError
from dqtl.finemap.susie import susie
from dqtl.kernels.genotypes import decode_block
from dqtl.kernels.linalg import Residualizer
from dqtl.study import StudyPlan, delayed_rows, plan_study

__all__ = ["finemap_batch_kernel", "finemap_graph", "map_finemap"]

log = logging.getLogger(__name__)


def finemap_batch_kernel(
    block: np.ndarray,
    v0: int,
    sample_index: np.ndarray,
    genes: Sequence[tuple[str, np.ndarray | None, np.ndarray, Residualizer, int, int]],
    variant_id: np.ndarray,
    *,
    ploidy: int,
    maf_threshold: float,
    L: int,
    coverage: float,
    min_abs_corr: float,
) -> dict[str, np.ndarray]:
    """Fit SuSiE to each gene of a batch.

    Parameters
    ----------
    genes
        ``(phenotype_id, sample_index, y_res, basis, lo, hi)``: the gene's samples among the
        analysis samples (None: all), its residualized values, the covariate basis on its
        samples (the plan's), and its window (global variant indices ``[lo, hi)``).

    Returns
    -------
    dict of 1-D arrays: ``pip_phenotype_id``, ``pip_variant_id``, ``pip`` (every testable
    variant of every gene), and ``cs_phenotype_id``, ``cs_id``, ``cs_variant_id``, ``cs_pip``,
    ``cs_coverage``, ``cs_min_abs_corr``, ``cs_size`` (one row per variant of a credible set).
    """
    dec = decode_block(block, sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
    vid = np.asarray(variant_id).astype(str)
    pips: dict[str, list[Any]] = {"pip_phenotype_id": [], "pip_variant_id": [], "pip": []}
    cs: dict[str, list[Any]] = {k: [] for k in ("cs_phenotype_id", "cs_id", "cs_variant_id",
                                                "cs_pip", "cs_coverage", "cs_min_abs_corr",
                                                "cs_size")}
    for pid, sidx, y, basis, lo, hi in genes:
        a, b = lo - v0, hi - v0
        G = dec.G[a:b] if sidx is None else dec.G[a:b][:, sidx]
        ok = dec.valid[a:b] & (G.max(axis=1) > G.min(axis=1))
        if not ok.any():
            continue
        Gk = G[ok]
        Xr = basis.transform(Gk)  # residualized on intercept + covariates
        keep = np.linalg.norm(Xr, axis=1) > 1e-8 * np.sqrt(Xr.shape[1])
        if not keep.any():
            continue
        idx = np.flatnonzero(ok)[keep]
        fit = susie(Xr[keep].T, y, L=L, coverage=coverage, min_abs_corr=min_abs_corr)
        names = vid[a:b][idx]
        pips["pip_phenotype_id"].append(np.full(idx.size, pid, dtype=object))
        pips["pip_variant_id"].append(names)
        pips["pip"].append(fit.pip)
        for j, (members, eff) in enumerate(zip(fit.credible_sets, fit.cs_index, strict=True)):
            cs["cs_phenotype_id"].append(np.full(members.size, pid, dtype=object))
            cs["cs_id"].append(np.full(members.size, f"{pid}_L{eff + 1}", dtype=object))
            cs["cs_variant_id"].append(names[members])
            cs["cs_pip"].append(fit.pip[members])
            cs["cs_coverage"].append(np.full(members.size, fit.cs_coverage[j]))
            cs["cs_min_abs_corr"].append(np.full(members.size, fit.cs_purity[j][0]))
            cs["cs_size"].append(np.full(members.size, members.size, dtype=np.int64))
    out: dict[str, np.ndarray] = {}
    for part in (pips, cs):
        for name, v in part.items():
            out[name] = np.concatenate(v) if v else np.zeros(0, dtype=object if "id" in name else float)
    return out


def finemap_graph(
    plan: StudyPlan,
    phenotype_ids: Sequence[str] | None = None,
    *,
    L: int = 10,
    coverage: float = 0.95,
    min_abs_corr: float = 0.5,
) -> list[Any]:
    """Delayed tasks, one per batch of the selected phenotypes (all tested ones by default)."""
    if phenotype_ids is not None:
        wanted = np.asarray(phenotype_ids).astype(str)
        missing = sorted(set(wanted.tolist()) - set(plan.phenotype_id.tolist()))
        if missing:
            raise InputError(f"finemap: {len(missing)} requested phenotypes are not tested with "
                             f"these inputs (e.g. {', '.join(missing[:3])}): check the IDs, "
                             "their contigs and windows")
        plan = plan.select(wanted)
    if plan.n_phenotypes == 0:
        raise InputError("finemap: no phenotype to fine-map")
    arr = plan.genotype_array()
    vid = plan.genotypes["variant_id"].data
    where = plan.group_of()
    kernel = dask.delayed(finemap_batch_kernel, pure=True)
    tasks = []
    for batch in cis_batches(plan):
        genes = []
        for i in batch.rows:
            grp = plan.groups[int(where[i])]
            j = int(np.searchsorted(grp.index, i))
            y = grp.P_hat[j] * grp.p_norm[j]  # residualized values on the group's samples
            genes.append((str(plan.phenotype_id[i]), grp.sample_index, y, grp.basis,
                          int(plan.window_lo[i]), int(plan.window_hi[i])))
        tasks.append(kernel(delayed_rows(arr, slice(batch.v0, batch.v1)), batch.v0, plan.genotype_sample_index, genes,
                            delayed_rows(vid, slice(batch.v0, batch.v1)), ploidy=plan.ploidy,
                            maf_threshold=plan.maf_threshold, L=L, coverage=coverage,
                            min_abs_corr=min_abs_corr))
    return tasks


def map_finemap(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None = None,
    *,
    phenotype_ids: Sequence[str] | None = None,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    max_effects: int = 10,
    coverage: float = 0.95,
    min_abs_corr: float = 0.5,
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
) -> xr.Dataset:
    """SuSiE fine-mapping of the cis window of each phenotype (or of ``phenotype_ids``).

    Returns
    -------
    xarray.Dataset
        Dim ``pips``: ``pip_phenotype_id``, ``pip_variant_id``, ``pip``. Dim ``cs_variants``:
        ``cs_phenotype_id``, ``cs_id`` (``<phenotype>_L<k>``), ``cs_variant_id``, ``cs_pip``,
        ``cs_coverage``, ``cs_min_abs_corr``, ``cs_size``.

    Examples
    --------
    >>> import dqtl
    >>> sim = dqtl.simulate(n_samples=200, n_variants=600, n_phenotypes=4, effect_size=1.0,
    ...                     fraction_egenes=1.0, seed=4)
    >>> res = map_finemap(sim, sim, sim, window=100_000, max_effects=3)
    >>> res.sizes["pips"] > 0
    True
    """
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    tasks = finemap_graph(plan, phenotype_ids, L=max_effects, coverage=coverage,
                          min_abs_corr=min_abs_corr)
    parts = compute(tasks, label="finemap batches", blas_threads=1)
    data: dict[str, Any] = {}
    for k in parts[0]:
        dim = "pips" if k.startswith("pip") else "cs_variants"
        vals = np.concatenate([p[k] for p in parts])
        data[k] = (dim, vals.astype(str) if vals.dtype == object else vals)
    ds = xr.Dataset(data)
    ds.attrs.update(max_effects=max_effects, coverage=coverage, min_abs_corr=min_abs_corr,
                    window=plan.window, n_phenotypes=plan.n_phenotypes if phenotype_ids is None
                    else len(phenotype_ids))
    return ds
