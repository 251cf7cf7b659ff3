"""Colocalization of eQTL genes with a GWAS: allele harmonisation, then per gene ``coloc.abf``
and/or ``coloc.susie`` (SuSiE-RSS fits with LD from the genotype store), as a graph over genes.

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
import xarray as xr

from dqtl.errors import InputError
from dqtl.finemap.coloc import coloc_abf
from dqtl.io.genotypes import normalize_contig
from dqtl.io.variant_ids import take_rows

__all__ = ["harmonise_gwas", "gwas_site_variants", "coloc_genes", "coloc_graph", "coloc_batch_kernel", "SUMMARY_COLUMNS"]

log = logging.getLogger(__name__)

_AMBIGUOUS = {("A", "T"), ("T", "A"), ("C", "G"), ("G", "C")}


def gwas_site_variants(genotypes: xr.Dataset, gwas: pd.DataFrame) -> pd.DataFrame:
    """The store's variants at the GWAS rows' positions (contig names normalized as
    :func:`harmonise_gwas` does): ``variant_id``, ``contig``, ``position``, ``ref``, ``alt``.
    Only their rows' chunks of IDs and alleles are read, as Python strings (never the whole
    columns as fixed-width arrays sized by the longest indel)."""
    contigs = np.asarray(genotypes["contig_id"].values, dtype=object).astype(str)
    vc = np.asarray(genotypes["variant_contig"].values).astype(np.int64)
    pos = np.asarray(genotypes["variant_position"].values).astype(np.int64)
    index = {normalize_contig(c): i for i, c in enumerate(contigs)}
    gc = np.array([index.get(normalize_contig(c), -1) for c in gwas["chromosome"]], dtype=np.int64)
    gpos = gwas["base_pair_location"].to_numpy(dtype=np.int64)
    ok = gc >= 0
    rows = np.flatnonzero(np.isin((vc << 32) | pos, (gc[ok] << 32) | gpos[ok]))
    ids = take_rows(genotypes, "variant_id", rows) if rows.size else np.zeros(0, dtype=object)
    al = (take_rows(genotypes, "variant_allele", rows) if rows.size
          else np.zeros((0, genotypes.sizes.get("alleles", 2)), dtype=object))
    return pd.DataFrame({
        "variant_id": np.asarray(ids, dtype=object), "contig": contigs[vc[rows]], "position": pos[rows],
        "ref": np.asarray(al[:, 0], dtype=object),
        "alt": np.asarray(al[:, 1], dtype=object) if al.shape[1] > 1 else "",
    })


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


def _abf_gene(pid: str, d: pd.DataFrame, gw: pd.DataFrame, *, n_samples: int, eqtl_sdY: float,
              gwas_type: str, gwas_s: float | None, gwas_n: float | None, p1: float, p2: float,
              p12: float) -> tuple[dict[str, Any], pd.DataFrame]:
    """``coloc.abf`` of one gene: the summary row and the per-SNP table."""
    af = d["af"].to_numpy(float)
    eqtl = {"snp": d["variant_id"].astype(str).to_numpy(), "beta": d["beta"].to_numpy(float),
            "varbeta": d["beta_se"].to_numpy(float) ** 2, "MAF": np.minimum(af, 1 - af),
            "N": n_samples, "type": "quant", "sdY": float(eqtl_sdY)}
    trait: dict[str, Any] = {"snp": gw.index.astype(str).to_numpy(), "beta": gw["beta"].to_numpy(float),
                             "varbeta": gw["varbeta"].to_numpy(float), "type": gwas_type}
    if "MAF" in gw:
        trait["MAF"] = gw["MAF"].to_numpy(float)
    n = _gwas_n(gw, gwas_n)
    if n is not None:
        trait["N"] = n
    if gwas_type == "cc":
        trait["s"] = gwas_s
    elif "MAF" not in trait or n is None:
        trait["sdY"] = 1.0  # no MAF/N to estimate it: a standardized trait is assumed
    res = coloc_abf(eqtl, trait, p1=p1, p2=p2, p12=p12)
    t = res.results
    top = t.loc[t["SNP.PP.H4"].idxmax()]
    row = {"phenotype_id": pid, "method": "abf", **res.summary.to_dict(), "top_snp": top["snp"],
           "top_snp_pp_h4": float(top["SNP.PP.H4"]),
           "hit_eqtl": t["snp"].iloc[int(np.argmax(t["lABF.df1"].to_numpy()))],
           "hit_gwas": t["snp"].iloc[int(np.argmax(t["lABF.df2"].to_numpy()))]}
    return row, t


def _gwas_n(gw: pd.DataFrame, gwas_n: float | None) -> float | None:
    if gwas_n is not None:
        return float(gwas_n)
    return float(np.nanmedian(gw["N"])) if "N" in gw else None


def _ld_from_dosages(G: np.ndarray) -> np.ndarray:
    """Signed correlations of the rows of ``G`` (variants x samples)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(G)


def _susie_gene(pid: str, d: pd.DataFrame, gw: pd.DataFrame, ld_eqtl: np.ndarray,
                ld_gwas: pd.DataFrame | None, *, n_samples: int, gwas_n: float | None,
                L: int, p1: float, p2: float, p12: float
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``coloc.susie`` of one gene: SuSiE-RSS of the eQTL (LD from the store) and of the GWAS
    (the user's LD matrix, else the store's); one row per pair of credible sets."""
    from dqtl.finemap.coloc import coloc_susie
    from dqtl.finemap.susie import susie_rss

    snp = d["variant_id"].astype(str).to_numpy()
    base = {"phenotype_id": pid, "method": "susie"}
    detail: dict[str, Any] = {"snp": snp, "pip_eqtl": np.full(snp.size, np.nan),
                              "pip_gwas": np.full(snp.size, np.nan), "cs_eqtl": set(), "cs_gwas": set()}
    ok = np.isfinite(ld_eqtl).all(axis=1)
    n_gwas = _gwas_n(gw, gwas_n)
    if n_gwas is None:
        raise InputError("coloc --method susie needs the GWAS sample size: an n column or --gwas-n")
    fits = []
    try:
        z1 = d["beta"].to_numpy(float) / d["beta_se"].to_numpy(float)
        f1 = susie_rss(z1[ok], ld_eqtl[np.ix_(ok, ok)], n=float(n_samples), L=L)
        fits.append((f1, snp[ok]))
        if ld_gwas is not None:
            in_ld = np.isin(snp, ld_gwas.index.to_numpy().astype(str))
            if not in_ld.any():
                return [{**base, "nsnps": 0, "note": "no variant of this gene in the --ld matrix"}], detail
            g_snp = snp[in_ld]
            R2 = ld_gwas.loc[g_snp, g_snp].to_numpy(dtype=float)
        else:
            in_ld, g_snp, R2 = ok, snp[ok], ld_eqtl[np.ix_(ok, ok)]
        z2 = (gw["beta"].to_numpy(float) / np.sqrt(gw["varbeta"].to_numpy(float)))[in_ld]
        f2 = susie_rss(z2, R2, n=n_gwas, L=L)
        fits.append((f2, g_snp))
    except InputError as e:  # e.g. summary statistics that disagree with the LD
        log.warning("coloc: %s: SuSiE not fitted: %s", pid, e)
        return [{**base, "nsnps": int(ok.sum()), "note": f"susie_rss failed: {e}"}], detail
    for (fit, names), key in zip(fits, ("eqtl", "gwas"), strict=True):
        pos = pd.Index(snp).get_indexer(names)
        detail[f"pip_{key}"][pos] = fit.pip
        detail[f"cs_{key}"] = {str(v) for cs in fit.credible_sets for v in names[cs]}
    res = coloc_susie(fits[0], fits[1], p1=p1, p2=p2, p12=p12)
    if res.summary.empty:
        n1, n2 = len(fits[0][0].credible_sets), len(fits[1][0].credible_sets)
        return [{**base, "nsnps": int(ok.sum()),
                 "note": f"no credible set to colocalise (eQTL {n1}, GWAS {n2})"}], detail
    rows = []
    for k, r in enumerate(res.summary.to_dict("records")):
        pp_col = "SNP.PP.H4.abf" if len(res.summary) == 1 else f"SNP.PP.H4.row{k + 1}"
        if pp_col in res.results:
            top = int(np.nanargmax(res.results[pp_col].to_numpy(dtype=float)))
            top_snp, top_pp = str(res.results["snp"].iloc[top]), float(res.results[pp_col].iloc[top])
        else:
            top_snp, top_pp = None, np.nan
        rows.append({**base, "nsnps": int(r["nsnps"]),
                     **{f"PP.H{h}.abf": r[f"PP.H{h}.abf"] for h in range(5)},
                     "top_snp": top_snp, "top_snp_pp_h4": top_pp, "hit_eqtl": r["hit1"],
                     "hit_gwas": r["hit2"], "cs_eqtl": f"L{int(r['idx1']) + 1}",
                     "cs_gwas": f"L{int(r['idx2']) + 1}"})
    return rows, detail


SUMMARY_COLUMNS = ["phenotype_id", "method", "nsnps", "PP.H0.abf", "PP.H1.abf", "PP.H2.abf",
                   "PP.H3.abf", "PP.H4.abf", "top_snp", "top_snp_pp_h4", "hit_eqtl", "hit_gwas",
                   "cs_eqtl", "cs_gwas", "note"]


def coloc_batch_kernel(
    block: np.ndarray | None,
    v0: int,
    genes: list[tuple[str, pd.DataFrame, pd.DataFrame, np.ndarray]],
    *,
    methods: tuple[str, ...],
    ploidy: int,
    n_samples: int,
    ld_gwas: pd.DataFrame | None = None,
    eqtl_sdY: float = 1.0,
    gwas_type: str = "quant",
    gwas_s: float | None = None,
    gwas_n: float | None = None,
    p1: float = 1e-4,
    p2: float = 1e-4,
    p12_abf: float = 1e-5,
    p12_susie: float = 5e-6,
    L: int = 10,
) -> dict[str, Any]:
    """Colocalise a batch of genes: ``genes`` holds ``(phenotype_id, eqtl_pairs, gwas_rows,
    store_rows)`` with the eQTL pairs and harmonised GWAS rows on the same SNPs in the same
    order, and their global variant rows; ``block`` the store's variants ``[v0, ...)`` covering
    them (needed for ``susie``: the LD). Returns the summary rows and, per gene, the SuSiE PIPs
    and credible-set members of both traits (for the locus plots)."""
    from dqtl.kernels.genotypes import decode_block

    dec = None
    if "susie" in methods:
        assert block is not None
        dec = decode_block(block, np.arange(block.shape[1]), ploidy=ploidy)
    rows: list[dict[str, Any]] = []
    details: dict[str, dict[str, Any]] = {}
    for pid, d, gw, vrows in genes:
        if "abf" in methods:
            row, _ = _abf_gene(pid, d, gw, n_samples=n_samples, eqtl_sdY=eqtl_sdY,
                                         gwas_type=gwas_type, gwas_s=gwas_s, gwas_n=gwas_n, p1=p1,
                                         p2=p2, p12=p12_abf)
            rows.append(row)
        if dec is not None:
            G = dec.G[np.asarray(vrows) - v0]
            srows, details[pid] = _susie_gene(pid, d, gw, _ld_from_dosages(G), ld_gwas,
                                              n_samples=n_samples, gwas_n=gwas_n, L=L, p1=p1,
                                              p2=p2, p12=p12_susie)
            rows.extend(srows)
    return {"rows": rows, "details": details}


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
    """``coloc.abf`` of each gene's cis eQTL statistics with the harmonised GWAS (in-process;
    ``dqtl coloc`` runs the same per-gene computation as a graph, see :func:`coloc_graph`).

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
        row, tables[str(pid)] = _abf_gene(str(pid), d, g.loc[d["variant_id"]], n_samples=n_samples,
                                          eqtl_sdY=eqtl_sdY, gwas_type=gwas_type, gwas_s=gwas_s,
                                          gwas_n=gwas_n, p1=p1, p2=p2, p12=p12)
        rows.append(row)
    summary = pd.DataFrame(rows, columns=["phenotype_id", "nsnps", "PP.H0.abf", "PP.H1.abf",
                                          "PP.H2.abf", "PP.H3.abf", "PP.H4.abf", "top_snp",
                                          "top_snp_pp_h4"])
    if not summary.empty:
        summary["nsnps"] = summary["nsnps"].astype(int)
    return summary, tables


def coloc_graph(
    pairs: pd.DataFrame,
    gwas: pd.DataFrame,
    genotype_array: Any,
    *,
    methods: tuple[str, ...],
    ploidy: int,
    max_span: int = 20_000,
    max_genes: int = 64,
    ld_gwas: pd.DataFrame | None = None,
    **options: Any,
) -> list[Any]:
    """Delayed tasks of :func:`coloc_batch_kernel` (``pairs``: the eQTL pairs with the store row
    of each variant, ``variant_row``): genes ordered by their first variant and
    batched while their variants span at most ``max_span`` store rows (``max_genes`` genes);
    a ``susie`` task reads only its span of the store. Genes sharing no variant with the GWAS
    are logged and skipped."""
    import dask

    g = gwas.set_index("variant_id")
    genes = []
    for pid, d in pairs.groupby("phenotype_id", sort=False):
        d = d[d["variant_id"].isin(g.index)]
        if d.empty:
            log.info("coloc: %s shares no variant with the GWAS; skipped", pid)
            continue
        vrows = d["variant_row"].to_numpy(dtype=np.int64)
        order = np.argsort(vrows, kind="stable")
        d = d.iloc[order].reset_index(drop=True)
        vrows = vrows[order]
        genes.append((str(pid), d, g.loc[d["variant_id"]], vrows))
    genes.sort(key=lambda t: int(t[3][0]))
    kernel = dask.delayed(coloc_batch_kernel, pure=True)
    ld = dask.delayed(ld_gwas, pure=True) if ld_gwas is not None else None
    need_block = "susie" in methods
    tasks: list[Any] = []
    batch: list[Any] = []
    lo = hi = 0

    def flush() -> None:
        if batch:
            block = genotype_array[lo:hi] if need_block else None
            tasks.append(kernel(block, lo, list(batch), methods=methods, ploidy=ploidy, ld_gwas=ld,
                                **options))
            batch.clear()

    for gene in genes:
        glo, ghi = int(gene[3].min()), int(gene[3].max()) + 1
        if batch and (max(hi, ghi) - lo > max_span or len(batch) >= max_genes):
            flush()
        if not batch:
            lo, hi = glo, ghi
        batch.append(gene)
        hi = max(hi, ghi)
    flush()
    return tasks
