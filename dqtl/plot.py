"""Plots of results people look at (matplotlib; each function takes ``ax=None`` and returns ``ax``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_cis_distance", "plot_qq"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4))[1]


def plot_cis_distance(pairs: pd.DataFrame, *, ax: Any = None, max_points: int = 200_000) -> Any:
    """-log10 nominal p-value against the variant's distance to the TSS (cis pairs table).

    ``pairs`` has tensorQTL columns ``start_distance`` and ``pval_nominal``; the top pair of each
    phenotype is highlighted.
    """
    ax = _axes(ax)
    df = pairs
    if len(df) > max_points:
        df = df.sample(max_points, random_state=0)
    ax.scatter(df["start_distance"] / 1e3, -np.log10(df["pval_nominal"]), s=2, alpha=0.3,
               color="0.5", rasterized=True, label="pairs")
    top = pairs.loc[pairs.groupby("phenotype_id")["pval_nominal"].idxmin()]
    ax.scatter(top["start_distance"] / 1e3, -np.log10(top["pval_nominal"]), s=8, color="C3",
               label="top variant per phenotype")
    ax.set_xlabel("distance to TSS (kb)")
    ax.set_ylabel("-log10 nominal p")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_qq(pvalues: np.ndarray, *, ax: Any = None, label: str | None = None) -> Any:
    """QQ plot of p-values against the uniform distribution (log scale)."""
    ax = _axes(ax)
    p = np.sort(np.asarray(pvalues, dtype=float)[np.isfinite(pvalues)])
    n = len(p)
    exp = -np.log10((np.arange(1, n + 1) - 0.5) / n)
    ax.plot(exp, -np.log10(p), ".", ms=2, label=label)
    lim = float(exp.max()) if n else 1.0
    ax.plot([0, lim], [0, lim], color="k", lw=0.8)
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel("observed -log10 p")
    if label:
        ax.legend(fontsize=8)
    return ax


def plot_permutation_pvalues(cis_df: pd.DataFrame, *, fdr: float = 0.05, ax: Any = None) -> Any:
    """Beta-approximated against empirical permutation p-values (one point per phenotype),
    eGenes at ``fdr`` highlighted; the diagonal marks agreement."""
    ax = _axes(ax)
    sig = cis_df["qval"] <= fdr if "qval" in cis_df else np.zeros(len(cis_df), bool)
    ax.loglog(cis_df["pval_perm"][~sig], cis_df["pval_beta"][~sig], ".", ms=3, color="0.5", label="not significant")
    ax.loglog(cis_df["pval_perm"][sig], cis_df["pval_beta"][sig], ".", ms=5, color="C3", label=f"q <= {fdr:g}")
    lo = float(np.nanmin(cis_df["pval_beta"].to_numpy())) if len(cis_df) else 1e-6
    ax.plot([max(lo, 1e-300), 1], [max(lo, 1e-300), 1], color="k", lw=0.8)
    ax.set_xlabel("empirical p (permutations)")
    ax.set_ylabel("beta-approximated p")
    ax.legend(fontsize=8)
    return ax
