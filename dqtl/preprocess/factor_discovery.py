"""How many hidden factors: the count that maximizes eGene discovery on a gene subset (GTEx's
practice), with the discovery curve and its plot."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dqtl.errors import InputError
from dqtl.preprocess.factors import (
    combine_covariates,
    expression_pcs,
    known_covariate_matrix,
    peer_factors,
)

__all__ = ["DiscoveryCurve", "count_egenes", "choose_n_factors_by_discovery", "plot_discovery_curve"]

log = logging.getLogger(__name__)

@dataclass
class DiscoveryCurve:
    """eGenes discovered on a gene subset per number of hidden factors."""

    n_factors: np.ndarray  # (candidates,) int
    n_egenes: np.ndarray  # (candidates,) int
    phenotype_id: np.ndarray  # genes mapped
    method: str
    fdr: float

    @property
    def best(self) -> int:
        """The number of factors with the most eGenes (the smallest on ties)."""
        return int(self.n_factors[int(np.argmax(self.n_egenes))])

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"n_factors": self.n_factors, "n_egenes": self.n_egenes})


def count_egenes(pairs: xr.Dataset, *, fdr: float = 0.05) -> pd.DataFrame:
    """Gene-level calls from nominal cis pairs: Bonferroni over each gene's window, then BH.

    ``p_gene = min(1, n_tests * min p)`` per phenotype; genes with BH-adjusted ``p_gene <= fdr``
    are eGenes. A fast, conservative stand-in for the permutation pass (LD makes the window
    Bonferroni conservative), good for comparing settings on the same data.

    Returns
    -------
    pandas.DataFrame
        Index phenotype_id; columns ``min_p``, ``n_tests``, ``p_gene``, ``q_gene``, ``is_egene``.
    """
    from dqtl.multitest import bh

    df = pd.DataFrame({"phenotype_id": pairs["phenotype_id"].values.astype(str),
                       "p": pairs["p_value"].values.astype(np.float64)})
    g = df.groupby("phenotype_id", sort=False)["p"].agg(["min", "size"])
    g.columns = ["min_p", "n_tests"]
    g["p_gene"] = np.minimum(1.0, g["min_p"] * g["n_tests"])
    g["q_gene"] = bh(g["p_gene"].to_numpy()) if len(g) else np.zeros(0)
    g["is_egene"] = g["q_gene"] <= fdr
    return g


def choose_n_factors_by_discovery(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    candidates: Sequence[int],
    *,
    subset: int | float = 500,
    method: str = "peer",
    fdr: float = 0.05,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> DiscoveryCurve:
    """Number of hidden factors maximizing the eGenes discovered on a gene subset.

    For each K in ``candidates``, hidden factors are learned from *all* genes (with the known
    covariates in the model), then a random subset of genes is mapped with
    :func:`dqtl.association.cis.map_cis_nominal` using covariates + factors, and eGenes are
    counted by :func:`count_egenes` (window Bonferroni, then BH at ``fdr``).

    Parameters
    ----------
    genotypes, phenotypes, covariates
        As for :func:`dqtl.association.cis.map_cis_nominal`.
    candidates
        Numbers of factors to try (0 = covariates only).
    subset
        Genes to map: a count (``int``) or a fraction (``float`` in (0, 1]); drawn with ``seed``.
    method
        ``"peer"`` (:func:`peer_factors`) or ``"pca"`` (:func:`expression_pcs`).
    fdr, window, maf_threshold
        Mapping settings (run on the session's distributed Client when one is active).
    seed, max_iter, tol
        Gene subset seed and PEER settings.

    Returns
    -------
    DiscoveryCurve
        ``n_factors``, ``n_egenes`` and ``best``; plot it with :func:`plot_discovery_curve`.
    """
    from dqtl.association.cis import map_cis_nominal

    if method not in ("peer", "pca"):
        raise InputError(f"method: expected 'peer' or 'pca', found {method!r}")
    cands = sorted({int(k) for k in candidates})
    if not cands or cands[0] < 0:
        raise InputError(f"candidates: expected non-negative numbers of factors, found {candidates!r}")
    n_genes = phenotypes.sizes["phenotypes"]
    n_sub = int(round(subset * n_genes)) if isinstance(subset, float) else int(subset)
    if not 1 <= n_sub:
        raise InputError(f"subset: expected a positive gene count or fraction, found {subset!r}")
    n_sub = min(n_sub, n_genes)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(11,)))
    pick = np.sort(rng.choice(n_genes, size=n_sub, replace=False))
    phen_sub = phenotypes.isel(phenotypes=pick)
    sid = np.asarray(phenotypes["sample_id"].values).astype(str)
    known = None
    if covariates is not None:
        C, ids = known_covariate_matrix(covariates, len(sid), sid)
        known = xr.Dataset({"covariate_values": (("samples", "covariates"), C),
                            "covariate_id": ("covariates", np.array(ids, dtype=str)),
                            "sample_id": ("samples", sid)})
    counts = []
    for K in cands:
        if K == 0:
            cov = known
        else:
            res = (peer_factors(phenotypes, n_factors=K, covariates=known, max_iter=max_iter,
                                tol=tol, seed=seed) if method == "peer"
                   else expression_pcs(phenotypes, K))
            fac = res.to_covariates()
            cov = fac if known is None else combine_covariates(known, fac, drop_collinear=False)
        pairs = map_cis_nominal(genotypes, phen_sub, cov, window=window,
                                maf_threshold=maf_threshold)
        n_e = int(count_egenes(pairs, fdr=fdr)["is_egene"].sum())
        log.info("discovery curve: %d factors -> %d eGenes of %d genes", K, n_e, n_sub)
        counts.append(n_e)
    return DiscoveryCurve(n_factors=np.array(cands), n_egenes=np.array(counts),
                          phenotype_id=np.asarray(phen_sub["phenotype_id"].values).astype(str),
                          method=method, fdr=float(fdr))


def plot_discovery_curve(curve: DiscoveryCurve, *, ax: Any = None) -> Any:
    """eGenes discovered against the number of hidden factors; the best K is marked.

    Returns the matplotlib ``Axes``.
    """
    if ax is None:
        from dqtl.plot import new_axes

        ax = new_axes(figsize=(5, 3.5))
    ax.plot(curve.n_factors, curve.n_egenes, "o-", color="C0")
    best = curve.best
    ax.axvline(best, color="C3", ls="--", lw=1, label=f"best: {best} factors")
    ax.set_xlabel(f"hidden factors ({curve.method.upper()})")
    ax.set_ylabel(f"eGenes (FDR {curve.fdr:g}) of {curve.phenotype_id.size} genes")
    ax.legend(frameon=False)
    return ax
