"""trans hotspots and the trans scan's pictures (``dqtl trans`` writes them after the scan).

A hotspot is a variant with at least ``min_targets`` trans targets at ``qval <= fdr``; hotspot
variants closer than ``clump_window`` bp on one contig form one locus (LD clumping by distance:
the locus lead is its variant with the most targets, then the smallest p). Each row lists the
targets and the candidate mediators (phenotypes whose TSS lies within ``mediator_window`` of the
variant: the genes to test with ``dqtl mediate``). Pictures: the trans plot (variant position
against target position, genome-wide, hotspots marked) and a Manhattan plot of the kept pairs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["trans_hotspots", "plot_trans", "plot_trans_manhattan", "write_hotspots"]

log = logging.getLogger(__name__)


def _genome_positions(contigs: np.ndarray, positions: np.ndarray, order: list[str],
                      lengths: dict[str, int]) -> np.ndarray:
    offset, acc = {}, 0
    for c in order:
        offset[c] = acc
        acc += lengths[c]
    return np.array([offset.get(str(c), 0) for c in contigs], dtype=np.int64) + positions


def trans_hotspots(pairs: pd.DataFrame, variants: pd.DataFrame, phenotypes: pd.DataFrame, *,
                   min_targets: int = 5, fdr: float = 0.05, clump_window: int = 1_000_000,
                   mediator_window: int = 1_000_000) -> pd.DataFrame:
    """Hotspot variants of a trans scan.

    ``pairs``: ``variant_id, phenotype_id, pval, qval``; ``variants``: ``variant_id, contig,
    position``; ``phenotypes``: ``phenotype_id, contig, start, end``.

    >>> pairs = pd.DataFrame({"variant_id": ["v1"] * 3 + ["v2"], "phenotype_id": ["a", "b", "c", "a"],
    ...                       "pval": [1e-9] * 4, "qval": [1e-6] * 4})
    >>> variants = pd.DataFrame({"variant_id": ["v1", "v2"], "contig": ["1", "2"], "position": [100, 50]})
    >>> genes = pd.DataFrame({"phenotype_id": ["a", "b", "c", "m"], "contig": ["2", "2", "2", "1"],
    ...                       "start": [10, 20, 30, 150], "end": [11, 21, 31, 151]})
    >>> trans_hotspots(pairs, variants, genes, min_targets=3)[["variant_id", "n_targets", "mediators"]].values.tolist()
    [['v1', 3, 'm']]
    """
    sig = pairs[pairs["qval"] <= fdr]
    counts = sig.groupby("variant_id").agg(n_targets=("phenotype_id", "nunique"),
                                           min_pval=("pval", "min"),
                                           targets=("phenotype_id", lambda s: ",".join(sorted(set(s)))))
    hot = counts[counts["n_targets"] >= max(min_targets, 1)].reset_index()
    cols = ["locus", "variant_id", "contig", "position", "n_targets", "min_pval", "targets",
            "mediators", "is_locus_lead"]
    if hot.empty:
        return pd.DataFrame(columns=cols)
    hot = hot.merge(variants, on="variant_id", how="left").sort_values(["contig", "position"])
    locus, cur, last = [], -1, (None, -np.inf)
    for c, p in zip(hot["contig"], hot["position"], strict=True):
        if c != last[0] or p - last[1] > clump_window:
            cur += 1
        locus.append(cur)
        last = (c, p)
    hot["locus"] = locus
    genes = phenotypes.assign(contig=phenotypes["contig"].astype(str))
    meds = []
    for c, p in zip(hot["contig"].astype(str), hot["position"], strict=True):
        near = genes[(genes["contig"] == c) & (genes["start"] + 1 - mediator_window <= p)
                     & (p <= genes["end"] + mediator_window)]
        meds.append(",".join(near["phenotype_id"].astype(str)))
    hot["mediators"] = meds
    lead = hot.sort_values(["n_targets", "min_pval"], ascending=[False, True]).groupby("locus").head(1)
    hot["is_locus_lead"] = hot.index.isin(lead.index)
    return hot[cols].reset_index(drop=True)


def plot_trans(pairs: pd.DataFrame, variants: pd.DataFrame, phenotypes: pd.DataFrame,
               hotspots: pd.DataFrame, *, ax: Any = None) -> Any:
    """Variant position against target position (genome-wide), hotspot variants in red."""
    from dqtl.plot import new_axes

    if ax is None:
        ax = new_axes(figsize=(6.5, 6))
    order = list(dict.fromkeys([*variants["contig"].astype(str), *phenotypes["contig"].astype(str)]))
    lengths = {c: int(max(variants.loc[variants["contig"].astype(str) == c, "position"].max()
                          if (variants["contig"].astype(str) == c).any() else 0,
                          phenotypes.loc[phenotypes["contig"].astype(str) == c, "end"].max()
                          if (phenotypes["contig"].astype(str) == c).any() else 0) + 1) for c in order}
    v = pairs.merge(variants, on="variant_id")
    g = v.merge(phenotypes.rename(columns={"contig": "pcontig"}), on="phenotype_id")
    x = _genome_positions(g["contig"].astype(str).to_numpy(), g["position"].to_numpy(), order, lengths)
    y = _genome_positions(g["pcontig"].astype(str).to_numpy(), g["start"].to_numpy() + 1, order, lengths)
    hot = g["variant_id"].isin(set(hotspots["variant_id"])).to_numpy()
    ax.scatter(x[~hot] / 1e6, y[~hot] / 1e6, s=6, color="0.4", label="trans pair")
    ax.scatter(x[hot] / 1e6, y[hot] / 1e6, s=10, color="C3", label="hotspot variant")
    ax.set_xlabel("variant position (Mb, genome-wide)")
    ax.set_ylabel("target TSS (Mb, genome-wide)")
    ax.legend(fontsize=8, frameon=False)
    return ax


def plot_trans_manhattan(pairs: pd.DataFrame, variants: pd.DataFrame, *, ax: Any = None) -> Any:
    """-log10 p of the kept trans pairs against genome-wide variant position, contigs alternating."""
    from dqtl.plot import neg_log10, new_axes

    if ax is None:
        ax = new_axes(figsize=(9, 3.5))
    v = pairs.merge(variants, on="variant_id")
    order = list(dict.fromkeys(variants["contig"].astype(str)))
    lengths = {c: int(variants.loc[variants["contig"].astype(str) == c, "position"].max()) + 1 for c in order}
    x = _genome_positions(v["contig"].astype(str).to_numpy(), v["position"].to_numpy(), order, lengths)
    colour = np.array([order.index(c) % 2 for c in v["contig"].astype(str)])
    ax.scatter(x / 1e6, neg_log10(v["pval"]), s=5,
               c=np.where(colour == 0, "C0", "C1"))
    ax.set_xlabel("variant position (Mb, genome-wide)")
    ax.set_ylabel("-log10 p (kept trans pairs)")
    return ax


def write_hotspots(output_prefix: str, pairs: pd.DataFrame, variants: pd.DataFrame,
                   phenotypes: pd.DataFrame, *, min_targets: int = 5, fdr: float = 0.05) -> pd.DataFrame:
    """``{prefix}.trans_hotspots.txt.gz``, ``{prefix}.trans_plot.png`` and
    ``{prefix}.trans_manhattan.png``, published together."""
    from dqtl.io.fs import Publication
    from dqtl.plot import save_figure
    from dqtl.workflows import write_table_gz

    hot = trans_hotspots(pairs, variants, phenotypes, min_targets=min_targets, fdr=fdr)
    with Publication() as pub:
        write_table_gz(hot, pub.stage(f"{output_prefix}.trans_hotspots.txt.gz"))
        for name, ax in (("trans_plot", plot_trans(pairs, variants, phenotypes, hot)),
                         ("trans_manhattan", plot_trans_manhattan(pairs, variants))):
            ax.set_title(f"{len(pairs)} trans pairs, {hot['locus'].nunique() if len(hot) else 0} "
                         f"hotspot loci (>= {min_targets} targets at q <= {fdr:g})", fontsize=9)
            save_figure(ax, pub.stage(f"{output_prefix}.{name}.png"))
    log.info("trans hotspots: %d variants in %d loci with >= %d targets at q <= %g", len(hot),
             hot["locus"].nunique() if len(hot) else 0, min_targets, fdr)
    return hot
