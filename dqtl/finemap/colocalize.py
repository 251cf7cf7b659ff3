"""Colocalization of eQTL genes with a GWAS: allele harmonisation and ``coloc.abf`` per gene.

Harmonisation against the genotype store (whose dosages count the ALT allele), by contig
(``chr1`` and ``1`` match) and position:

- ``effect_allele == ALT`` and ``other_allele == REF``: kept as is;
- ``effect_allele == REF`` and ``other_allele == ALT``: swapped, so ``beta`` changes sign and the
  effect allele frequency becomes ``1 - f``;
- strand-ambiguous pairs (A/T, T/A, C/G, G/C) are dropped: their orientation cannot be told from
  the alleles alone;
- anything else (other alleles, multiallelic mismatch, no variant at the position) is dropped.

Each case is counted in the returned report (and logged by the caller).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from dqtl.errors import InputError
from dqtl.finemap.coloc import coloc_abf
from dqtl.io.genotypes import normalize_contig

__all__ = ["harmonise_gwas", "coloc_genes"]

log = logging.getLogger(__name__)

_AMBIGUOUS = {("A", "T"), ("T", "A"), ("C", "G"), ("G", "C")}


def harmonise_gwas(gwas: pd.DataFrame, variants: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Align GWAS rows to the store's variants (see the module docstring).

    Parameters
    ----------
    gwas
        From :func:`dqtl.io.sumstats.read_gwas_sumstats`.
    variants
        The store's ``variant_id``, ``contig``, ``position``, ``ref``, ``alt``.

    Returns
    -------
    (harmonised, report)
        ``harmonised``: ``variant_id`` (the store's), ``beta`` (per ALT allele), ``varbeta``,
        and ``MAF`` / ``N`` / ``p_value`` when the GWAS has them; ``report``: counts per case.
    """
    g = gwas.copy()
    g["_contig"] = [normalize_contig(c) for c in g["chromosome"]]
    v = variants.copy()
    v["_contig"] = [normalize_contig(c) for c in v["contig"]]
    m = g.merge(v, left_on=["_contig", "base_pair_location"], right_on=["_contig", "position"],
                how="left")
    ea, oa = m["effect_allele"].astype(str).to_numpy(), m["other_allele"].astype(str).to_numpy()
    ref, alt = m["ref"].fillna("").astype(str).to_numpy(), m["alt"].fillna("").astype(str).to_numpy()
    no_variant = m["variant_id"].isna().to_numpy()
    ambiguous = np.array([(a, b) in _AMBIGUOUS for a, b in zip(ea, oa, strict=True)])
    same = (ea == alt) & (oa == ref) & ~no_variant
    swapped = (ea == ref) & (oa == alt) & ~no_variant
    keep = (same | swapped) & ~ambiguous
    report = {
        "gwas_variants": int(len(g)),
        "not_in_genotypes": int(no_variant.sum()),
        "strand_ambiguous_dropped": int((ambiguous & ~no_variant).sum()),
        "allele_mismatch_dropped": int((~no_variant & ~ambiguous & ~same & ~swapped).sum()),
        "swapped_alleles_flipped": int((swapped & ~ambiguous).sum()),
        "kept": int(keep.sum()),
    }
    sign = np.where(swapped, -1.0, 1.0)
    out = pd.DataFrame({
        "variant_id": m["variant_id"].astype(str).to_numpy(),
        "beta": m["beta"].to_numpy(float) * sign,
        "varbeta": m["standard_error"].to_numpy(float) ** 2,
    })
    if "effect_allele_frequency" in m:
        f = m["effect_allele_frequency"].to_numpy(float)
        f = np.where(swapped, 1.0 - f, f)
        out["MAF"] = np.minimum(f, 1.0 - f)
    if "n" in m:
        out["N"] = m["n"].to_numpy(float)
    if "p_value" in m:
        out["p_value"] = m["p_value"].to_numpy(float)
    out = out[keep].reset_index(drop=True)
    if out["variant_id"].duplicated().any():
        dup = out["variant_id"][out["variant_id"].duplicated()].iloc[0]
        raise InputError(f"summary statistics: two GWAS rows align to the store's variant {dup}; "
                         "remove the duplicate")
    return out, report


def coloc_genes(
    pairs: pd.DataFrame,
    gwas: pd.DataFrame,
    *,
    n_samples: int,
    eqtl_sdY: float = 1.0,
    gwas_type: str = "quant",
    gwas_s: float | None = None,
    gwas_n: float | None = None,
    p1: float = 1e-4,
    p2: float = 1e-4,
    p12: float = 1e-5,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """``coloc.abf`` of each gene's cis eQTL statistics with the harmonised GWAS.

    Parameters
    ----------
    pairs
        eQTL nominal pairs (dqtl names: ``phenotype_id``, ``variant_id``, ``beta``, ``beta_se``,
        ``af``).
    gwas
        From :func:`harmonise_gwas`.
    eqtl_sdY
        Standard deviation of the phenotypes (1 for inverse-normal transformed expression).

    Returns
    -------
    (summary, per_snp)
        One row per gene: ``phenotype_id``, ``nsnps``, ``PP.H0.abf`` ... ``PP.H4.abf``,
        ``top_snp`` (largest ``SNP.PP.H4``), ``top_snp_pp_h4``; and each gene's per-SNP table.
    """
    g = gwas.set_index("variant_id")
    rows: list[dict[str, Any]] = []
    tables: dict[str, pd.DataFrame] = {}
    for pid, d in pairs.groupby("phenotype_id", sort=False):
        d = d[d["variant_id"].isin(g.index)]
        if d.empty:
            log.info("coloc: %s shares no variant with the GWAS; skipped", pid)
            continue
        gw = g.loc[d["variant_id"]]
        af = d["af"].to_numpy(float)
        eqtl = {"snp": d["variant_id"].astype(str).to_numpy(), "beta": d["beta"].to_numpy(float),
                "varbeta": d["beta_se"].to_numpy(float) ** 2, "MAF": np.minimum(af, 1 - af),
                "N": n_samples, "type": "quant", "sdY": float(eqtl_sdY)}
        trait: dict[str, Any] = {"snp": gw.index.astype(str).to_numpy(), "beta": gw["beta"].to_numpy(float),
                                 "varbeta": gw["varbeta"].to_numpy(float), "type": gwas_type}
        if "MAF" in gw:
            trait["MAF"] = gw["MAF"].to_numpy(float)
        n = gwas_n if gwas_n is not None else (float(np.nanmedian(gw["N"])) if "N" in gw else None)
        if n is not None:
            trait["N"] = n
        if gwas_type == "cc":
            trait["s"] = gwas_s
        elif "MAF" not in trait or n is None:
            trait["sdY"] = 1.0  # no MAF/N to estimate it: a standardized trait is assumed
        res = coloc_abf(eqtl, trait, p1=p1, p2=p2, p12=p12)
        top = res.results.loc[res.results["SNP.PP.H4"].idxmax()]
        rows.append({"phenotype_id": str(pid), **res.summary.to_dict(), "top_snp": top["snp"],
                     "top_snp_pp_h4": float(top["SNP.PP.H4"])})
        tables[str(pid)] = res.results
    summary = pd.DataFrame(rows, columns=["phenotype_id", "nsnps", "PP.H0.abf", "PP.H1.abf",
                                          "PP.H2.abf", "PP.H3.abf", "PP.H4.abf", "top_snp",
                                          "top_snp_pp_h4"])
    if not summary.empty:
        summary["nsnps"] = summary["nsnps"].astype(int)
    return summary, tables
