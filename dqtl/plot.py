"""Plots of results people look at (matplotlib; each function takes ``ax=None`` and returns ``ax``)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plot_cis_distance", "plot_qq", "plot_permutation_pvalues", "plot_locus",
           "PValueSketch", "genomic_inflation", "plot_qq_sketch", "plot_pvalue_histogram",
           "plot_gene_manhattan", "save_figure", "new_axes", "close_figure", "lambda_from_log_counts", "plot_qq_sampled", "neg_log10"]


#: figures of one 6 x 4 in panel made here (``ax=None``): fixed margins, saved without
#: ``bbox_inches="tight"``, whose extra layout pass is a third to half of drawing such a figure
_FIXED_MARGINS: weakref.WeakSet[Any] = weakref.WeakSet()


def neg_log10(p: Any) -> np.ndarray:
    """``-log10 p`` of p-values (array-like) for plotting, p clipped to ``[1e-300, 1]``."""
    return -np.log10(np.clip(np.asarray(p, dtype=float), 1e-300, 1))


def _axes(ax: Any) -> Any:
    """``ax``, or the axes of a new 6 x 4 in figure with fixed margins (room for tick labels,
    axis labels and a one-line title)."""
    if ax is not None:
        return ax
    ax = new_axes(figsize=(6, 4))
    ax.figure.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    _FIXED_MARGINS.add(ax.figure)
    return ax


def new_axes(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> Any:
    """``plt.subplots(...)[1]``: in a session that uses pyplot (a notebook) the figure is
    pyplot's, so it shows; otherwise (the command line) a plain Agg ``Figure``, without importing
    pyplot (0.2 s of start-up)."""
    import sys

    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        return plt.subplots(nrows, ncols, **kwargs)[1]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig.subplots(nrows, ncols, **kwargs)


def close_figure(fig: Any) -> None:
    """Release a figure made by :func:`new_axes` (pyplot keeps its own until closed)."""
    import sys

    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close(fig)


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


def genomic_inflation(pvalues: np.ndarray) -> float:
    """lambda_GC: the median of the 1-df chi-square statistics of ``pvalues`` over its null
    median (0.4549364).

    >>> round(genomic_inflation(np.linspace(0.001, 0.999, 999)), 6)
    1.0
    """
    p = np.asarray(pvalues, dtype=float)
    p = p[np.isfinite(p)]
    return _lambda_of_median(float(np.median(p))) if p.size else float("nan")


def _lambda_of_median(median_p: float) -> float:
    """``chi2.isf(median_p, 1) / chi2.ppf(0.5, 1)`` by the special functions scipy.stats calls
    (the same numbers, without importing scipy.stats: 0.3 s at start-up)."""
    from scipy import special

    return float(special.chdtri(1.0, median_p) / (2 * special.gammaincinv(0.5, 0.5)))


class PValueSketch:
    """Streaming summary of many p-values (billions of pairs) for a QQ plot and lambda_GC: counts
    in 0.01-wide bins of -log10 p (to 1e-320) and in 1e-5-wide bins of p (the median, for lambda,
    to 1e-5). Feed it blocks with :meth:`add`; memory is fixed (~1 MB)."""

    LOG_BINS = 32_000
    LIN_BINS = 100_000

    def __init__(self) -> None:
        self.log_counts = np.zeros(self.LOG_BINS, dtype=np.int64)
        self.lin_counts = np.zeros(self.LIN_BINS, dtype=np.int64)
        self.n = 0

    def add(self, pvalues: Any) -> None:
        p = np.asarray(pvalues, dtype=np.float64)
        p = p[np.isfinite(p)]
        if not p.size:
            return
        lp = -np.log10(np.clip(p, 1e-320, 1.0))
        self.log_counts += np.bincount(np.minimum((lp * 100).astype(np.int64), self.LOG_BINS - 1),
                                       minlength=self.LOG_BINS)
        self.lin_counts += np.bincount(np.minimum((p * self.LIN_BINS).astype(np.int64),
                                                  self.LIN_BINS - 1), minlength=self.LIN_BINS)
        self.n += int(p.size)

    @classmethod
    def merged(cls, sketches: Any) -> PValueSketch:
        """One sketch of the p-values of several (e.g. one per contig task)."""
        out = cls()
        for s in sketches:
            out.log_counts += s.log_counts
            out.lin_counts += s.lin_counts
            out.n += s.n
        return out

    def lambda_gc(self) -> float:
        """lambda_GC from the median p (to 1e-5 in p)."""
        if not self.n:
            return float("nan")
        cum = np.cumsum(self.lin_counts)
        k = int(np.searchsorted(cum, (self.n + 1) / 2))
        return _lambda_of_median((k + 0.5) / self.LIN_BINS)


def plot_qq_sketch(sketch: PValueSketch, *, ax: Any = None, label: str | None = None,
                   lambda_gc: float | None = None) -> Any:
    """QQ plot from a :class:`PValueSketch` (one point per occupied 0.01 bin of -log10 p), with
    lambda_GC in the legend (``lambda_gc``: the sketch's, computed already)."""
    ax = _axes(ax)
    counts = sketch.log_counts
    occupied = np.flatnonzero(counts)[::-1]  # strongest first
    if occupied.size:
        rank = np.cumsum(counts[occupied])  # rank of the last p-value in each bin, from the top
        exp = -np.log10((rank - 0.5) / sketch.n)
        obs = (occupied + 0.5) / 100
        lam = sketch.lambda_gc() if lambda_gc is None else lambda_gc
        name = f"{label}: " if label else ""
        ax.plot(exp, obs, ".", ms=3, label=f"{name}{sketch.n:,} p-values, λ = {lam:.3f}")
        lim = float(max(exp.max(), 1.0))
        ax.plot([0, lim], [0, lim], color="k", lw=0.8)
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel("observed -log10 p")
    return ax


def lambda_from_log_counts(counts: np.ndarray, step: float = 0.001) -> float:
    """lambda_GC from counts of p-values in bins of -log10 p of width ``step`` (bin 0 first)."""
    n = int(counts.sum())
    if not n:
        return float("nan")
    k = int(np.searchsorted(np.cumsum(counts[::-1]), (n + 1) / 2))  # from the largest p down
    return _lambda_of_median(10 ** -((counts.size - 1 - k + 0.5) * step))


def plot_qq_sampled(counts: np.ndarray, p_tail: np.ndarray, n_tests: int, threshold: float, *,
                    step: float = 0.001, ax: Any = None, label: str = "trans") -> Any:
    """QQ plot of a scan whose p-values are known exactly in the tail (``p_tail``: every p <=
    ``threshold`` of ``n_tests`` tests) and through a sample below it (``counts`` of -log10 p in
    bins of ``step``); lambda_GC from the sample's median."""
    ax = _axes(ax)
    n_s = int(counts.sum())
    lam = lambda_from_log_counts(counts, step)
    top = -np.log10(threshold)
    occupied = np.flatnonzero(counts)[::-1]
    occupied = occupied[(occupied + 0.5) * step < top]
    if n_s and occupied.size:
        frac = (np.cumsum(counts[::-1])[::-1])[occupied] / n_s  # share of the sample with p <= bin
        ax.plot(-np.log10(frac), (occupied + 0.5) * step, ".", ms=3, color="C0",
                label=f"{n_s:,} sampled tests, λ = {lam:.3f}")
    p = np.sort(np.asarray(p_tail, dtype=float))
    if p.size:
        exp = -np.log10((np.arange(1, p.size + 1) - 0.5) / max(n_tests, p.size))
        ax.plot(exp, neg_log10(p), ".", ms=3, color="C3",
                label=f"{p.size:,} pairs with p <= {threshold:g} (exact)")
    lim = -np.log10(0.5 / max(n_tests, 1))
    ax.plot([0, lim], [0, lim], color="k", lw=0.8)
    ax.set_xlabel(f"expected -log10 p ({n_tests:,} {label} tests)")
    ax.set_ylabel("observed -log10 p")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_pvalue_histogram(pvalues: Any, *, pi0: float | None = None, ax: Any = None,
                          label: str = "p-value") -> Any:
    """Histogram of p-values (density); ``pi0`` drawn as the flat null level (Storey).

    The bars are one collection (what ``ax.hist`` draws as 50 patches, the same picture): 70
    against 100 ms to draw and write the figure, on the tail of a permutation run."""
    from matplotlib.collections import PolyCollection

    ax = _axes(ax)
    p = np.asarray(pvalues, dtype=float)
    p = p[np.isfinite(p)]
    if p.size:
        dens, edges = np.histogram(p, bins=50, range=(0, 1), density=True)
    else:  # as ax.hist: empty bars
        dens, edges = np.zeros(50), np.linspace(0, 1, 51)
    bars = PolyCollection([[(a, 0.0), (a, h), (b, h), (b, 0.0)] for a, b, h in zip(edges[:-1], edges[1:], dens,
                                                                                  strict=True)],
                          facecolors="0.6", edgecolors="white")
    bars.sticky_edges.y.append(0.0)  # as bars: no margin below 0
    ax.add_collection(bars)
    ax.autoscale_view()
    if pi0 is not None and np.isfinite(pi0):
        ax.axhline(pi0, color="C3", lw=1.2, label=f"π0 = {pi0:.3f}")
        ax.legend(fontsize=8)
    ax.set_xlabel(label)
    ax.set_ylabel("density")
    return ax


def plot_gene_manhattan(genes: pd.DataFrame, *, fdr: float = 0.05, ax: Any = None,
                        pcol: str = "pval_beta") -> Any:
    """Gene-level Manhattan plot: ``-log10 pcol`` of each gene at its position (``contig``,
    ``position`` columns), contigs side by side, genes with ``qval <= fdr`` in colour."""
    ax = _axes(ax)
    if genes.empty:
        return ax
    df = genes.copy()
    df["contig"] = df["contig"].astype(str)
    order = sorted(df["contig"].unique(), key=lambda c: (0, int(c)) if c.isdigit() else (1, c))
    offset, ticks = 0.0, []
    y = neg_log10(df[pcol])
    sig = (df["qval"] <= fdr).to_numpy() if "qval" in df else np.zeros(len(df), bool)
    for i, c in enumerate(order):
        m = (df["contig"] == c).to_numpy()
        x = df["position"].to_numpy(dtype=float)[m] + offset
        ax.scatter(x[~sig[m]], y[m][~sig[m]], s=6, color="0.45" if i % 2 else "0.7")
        ax.scatter(x[sig[m]], y[m][sig[m]], s=10, color="C3")
        ticks.append((offset + (x.max() if x.size else offset)) / 2)
        offset = (x.max() if x.size else offset) + 1e6
    ax.set_xticks(ticks, order, fontsize=7)
    ax.set_xlabel("contig")
    ax.set_ylabel(f"-log10 {pcol}")
    return ax


def save_figure(ax: Any, path: Any) -> None:
    """Write ``ax``'s figure as PNG to a local path, a URL or a binary file object; close it."""
    from dqtl.io.fs import open_file

    fig = ax.figure if hasattr(ax, "figure") else ax[0].figure
    bbox = None if fig in _FIXED_MARGINS else "tight"
    try:
        if hasattr(path, "write"):
            fig.savefig(path, dpi=110, bbox_inches=bbox, format="png")
        else:
            with open_file(path, "wb") as f:
                fig.savefig(f, dpi=110, bbox_inches=bbox, format="png")
    finally:
        close_figure(fig)


def plot_permutation_pvalues(cis_df: pd.DataFrame, *, fdr: float = 0.05, ax: Any = None) -> Any:
    """Beta-approximated against empirical permutation p-values, both as -log10 p (one point per
    phenotype), eGenes at ``fdr`` highlighted; the diagonal marks agreement."""
    ax = _axes(ax)
    sig = (cis_df["qval"] <= fdr).to_numpy() if "qval" in cis_df else np.zeros(len(cis_df), bool)
    x = neg_log10(cis_df["pval_perm"])
    y = neg_log10(cis_df["pval_beta"])
    ax.plot(x[~sig], y[~sig], ".", ms=3, color="0.5", label="not significant")
    ax.plot(x[sig], y[sig], ".", ms=5, color="C3", label=f"q <= {fdr:g}")
    finite = np.isfinite(x)  # the diagonal up to the smallest empirical p (1 / (B + 1))
    hi = float(max(x[finite].max() if finite.any() else 1.0, 1.0))
    ax.plot([0, hi], [0, hi], color="k", lw=0.8)
    ax.set_xlabel("-log10 empirical p (permutations)")
    ax.set_ylabel("-log10 beta-approximated p")
    ax.legend(fontsize=8, loc="upper left")
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
        axes = new_axes(3 if has_pip else 2, 1, figsize=(7, 7.5 if has_pip else 5.5), sharex=True)
    pos = region["position"].to_numpy(dtype=float) / 1e6
    r2 = np.clip(region["r2"].to_numpy(dtype=float), 0, 1)
    is_lead = (region["variant_id"] == lead).to_numpy()
    in_cs = region["in_cs"].to_numpy(dtype=bool) if "in_cs" in region else np.zeros(len(region), bool)
    for ax, col, label in ((axes[0], "p_gwas", "GWAS"), (axes[1], "p_eqtl", "eQTL")):
        y = neg_log10(region[col])
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
