"""Plots of results people look at (matplotlib; each function takes ``ax=None`` and returns ``ax``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_cis_distance", "plot_qq", "plot_permutation_pvalues", "plot_locus"]


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


def plot_locus(region: pd.DataFrame, *, lead: str, title: str = "", axes: Any = None) -> Any:
    """Colocalization locus plot: GWAS (top) and eQTL (bottom) -log10 p against position.

    ``region`` has ``variant_id``, ``position``, ``p_gwas``, ``p_eqtl``, ``r2`` (LD with the lead
    variant, the colour) and optionally ``in_cs`` (bool: in a SuSiE credible set, ringed) and
    ``pip_eqtl`` / ``pip_gwas`` (SuSiE PIPs: a third panel). ``axes``: two axes, or three with
    PIPs (default: a new figure); returns them.
    """
    has_pip = "pip_eqtl" in region or "pip_gwas" in region
    if axes is None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        axes = plt.subplots(3 if has_pip else 2, 1, figsize=(7, 7.5 if has_pip else 5.5),
                            sharex=True)[1]
    pos = region["position"].to_numpy(dtype=float) / 1e6
    r2 = np.clip(region["r2"].to_numpy(dtype=float), 0, 1)
    is_lead = (region["variant_id"] == lead).to_numpy()
    in_cs = region["in_cs"].to_numpy(dtype=bool) if "in_cs" in region else np.zeros(len(region), bool)
    for ax, col, label in ((axes[0], "p_gwas", "GWAS"), (axes[1], "p_eqtl", "eQTL")):
        y = -np.log10(np.clip(region[col].to_numpy(dtype=float), 1e-300, 1))
        sc = ax.scatter(pos[~is_lead], y[~is_lead], c=r2[~is_lead], cmap="viridis", vmin=0, vmax=1,
                        s=12)
        ax.scatter(pos[is_lead], y[is_lead], marker="D", s=50, color="C3", label=f"lead {lead}")
        if in_cs.any():
            ax.scatter(pos[in_cs], y[in_cs], s=80, facecolors="none", edgecolors="k",
                       label="SuSiE credible set")
        ax.set_ylabel(f"{label} -log10 p")
        ax.legend(loc="upper right", fontsize=7, frameon=False)
    if has_pip:
        for col, label, marker in (("pip_gwas", "GWAS", "o"), ("pip_eqtl", "eQTL", "^")):
            if col in region:
                pip = region[col].to_numpy(dtype=float)
                ok = np.isfinite(pip)
                axes[2].scatter(pos[ok], pip[ok], s=14, marker=marker, label=f"{label} PIP",
                                alpha=0.8)
        if in_cs.any():
            top = np.fmax(region.get("pip_eqtl", np.nan), region.get("pip_gwas", np.nan))
            top = np.nan_to_num(np.asarray(top, dtype=float))
            axes[2].scatter(pos[in_cs], top[in_cs], s=80, facecolors="none", edgecolors="k",
                            label="credible set")
        axes[2].set_ylim(-0.03, 1.05)
        axes[2].set_ylabel("SuSiE PIP")
        axes[2].legend(loc="upper right", fontsize=7, frameon=False)
    axes[-1].set_xlabel("position (Mb)")
    axes[0].figure.colorbar(sc, ax=list(axes), label="r² with lead", shrink=0.8)
    if title:
        axes[0].set_title(title)
    return axes
