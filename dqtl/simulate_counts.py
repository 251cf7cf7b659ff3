"""Seeded RNA-seq count simulator with planted QC truth (tests, benchmarks).

:func:`simulate_counts` draws negative-binomial (gamma-Poisson) read counts for genes on
autosomes, chrX (with XIST) and chrY, with:

* log-normal baseline abundances (a fraction of genes barely expressed, to exercise filters);
* per-gene biological dispersion ``phi`` (variance ``mu + phi mu^2``);
* library sizes varying log-normally around ``mean_library_size``;
* sex-specific expression: XIST high in females, chrY genes high in males;
* planted **outlier samples**: one shared shifted profile (log2 fold changes on a fraction of
  autosomal genes) times a per-outlier strength in [0.8, 1.2];
* planted **swapped reported sexes** (on non-outlier samples).

It returns counts and TPM (genes x samples DataFrames), the gene annotation (as
:func:`dqtl.io.annotation.read_gene_annotation` returns it), the reported sex and the truth.

Random streams: ``np.random.default_rng(SeedSequence(seed, spawn_key=k))`` with ``k = (0,)`` for
genes, ``(1,)`` for samples and ``(2, b)`` for the counts of sample block ``b`` (fixed blocks of
``SAMPLE_BLOCK`` samples), so a sample's counts do not depend on how many samples follow it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dqtl.errors import InputError

__all__ = ["CountSimulation", "simulate_counts", "SAMPLE_BLOCK"]

log = logging.getLogger(__name__)

#: Samples per random-stream block of counts.
SAMPLE_BLOCK = 256

_LEAK = 20000.0  # expression of the sex-specific genes in the other sex: 1/_LEAK

_CHRY_NAMES = ("RPS4Y1", "DDX3Y", "UTY", "KDM5D", "EIF1AY", "ZFY", "USP9Y", "NLGN4Y", "TXLNGY",
               "PRKY")


@dataclass(frozen=True)
class CountSimulation:
    """Output of :func:`simulate_counts`.

    Attributes
    ----------
    counts
        (genes, samples) int64 read counts, index ``gene_id``.
    tpm
        (genes, samples) float64 TPM (counts / transcript length, scaled to 1e6 per sample).
    annotation
        Index ``gene_id``; ``gene_name``, ``chr``, ``start``, ``end``, ``strand``, ``tss``
        (1-based), plus ``length`` (transcript length used for TPM).
    reported_sex
        (samples,) ``"F"``/``"M"`` as a sample sheet would report it (swaps planted).
    truth
        Indexed by sample: ``true_sex``, ``reported_sex``, ``sex_swapped``, ``outlier``,
        ``outlier_strength``, ``library_size``.
    """

    counts: pd.DataFrame
    tpm: pd.DataFrame
    annotation: pd.DataFrame
    reported_sex: pd.Series
    truth: pd.DataFrame


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def simulate_counts(
    n_genes: int,
    n_samples: int,
    *,
    seed: int,
    n_outliers: int = 0,
    n_sex_swaps: int = 0,
    fraction_female: float = 0.5,
    n_autosomes: int = 3,
    n_chrx_genes: int | None = None,
    n_chry_genes: int = 8,
    mean_library_size: float = 2e7,
    library_size_cv: float = 0.3,
    dispersion: float = 0.08,
    fraction_low: float = 0.25,
    outlier_log2fc: float = 1.5,
    outlier_gene_fraction: float = 0.3,
    xist_cpm: float = 200.0,
    chry_cpm: float = 40.0,
    contig_prefix: str = "chr",
) -> CountSimulation:
    """Simulate an RNA-seq count matrix with planted outlier samples and swapped reported sexes.

    Parameters
    ----------
    n_genes
        Total genes (>= n_chry_genes + 10), including XIST and the chrY genes.
    n_samples
        Samples (>= 3).
    seed
        Seed (>= 0); equal seeds give equal output.
    n_outliers
        Outlier samples with a shifted expression profile.
    n_sex_swaps
        Non-outlier samples whose reported sex is flipped.
    fraction_female
        Fraction of females (true sex), in [0, 1].
    n_autosomes
        Autosomes (named ``1..n``, with ``contig_prefix``).
    n_chrx_genes
        Genes on chrX besides XIST (default 4% of genes).
    n_chry_genes
        Genes on chrY (male-specific).
    mean_library_size, library_size_cv
        Mean and coefficient of variation of the (log-normal) sequencing depth: reads of a
        whole transcriptome of ~20,000 genes (expected gene CPMs are drawn on that scale), so a
        matrix of fewer genes holds proportionally fewer reads.
    dispersion
        Median negative-binomial dispersion (per-gene values vary log-normally around it).
    fraction_low
        Fraction of genes with very low expression (mostly filtered out).
    outlier_log2fc
        SD of the log2 fold changes of the outlier profile.
    outlier_gene_fraction
        Fraction of autosomal genes shifted in outliers.
    xist_cpm, chry_cpm
        Expected CPM (whole-transcriptome scale) of XIST in females and of each chrY gene in
        males; the other sex gets 1/20000 of it.
    contig_prefix
        Prefix of contig names (``"chr"`` or ``""``).

    Returns
    -------
    CountSimulation

    Examples
    --------
    >>> sim = simulate_counts(200, 20, seed=0, n_outliers=1, n_sex_swaps=1)
    >>> sim.counts.shape, int(sim.truth["outlier"].sum()), int(sim.truth["sex_swapped"].sum())
    ((200, 20), 1, 1)
    """
    _check(n_genes, n_samples, seed, n_outliers, n_sex_swaps, fraction_female, n_chry_genes,
           n_autosomes, library_size_cv, dispersion, fraction_low, outlier_gene_fraction)
    g = _rng(seed, 0)
    n_x = int(round(0.04 * n_genes)) if n_chrx_genes is None else int(n_chrx_genes)
    n_auto = n_genes - 1 - n_x - n_chry_genes
    if n_auto < 1:
        raise InputError(f"n_genes: too few genes ({n_genes}) for {n_x} chrX and {n_chry_genes} chrY genes")

    # ---- genes: contigs, positions, strands, names, lengths
    auto_contig = np.sort(g.integers(0, n_autosomes, size=n_auto))
    chrom = np.concatenate([
        np.array([f"{contig_prefix}{c + 1}" for c in auto_contig], dtype=object),
        np.full(n_x + 1, f"{contig_prefix}X", dtype=object),
        np.full(n_chry_genes, f"{contig_prefix}Y", dtype=object),
    ])
    gene_ids = np.array([f"G{i:06d}" for i in range(1, n_genes + 1)], dtype=object)
    names = np.array([f"GENE{i}" for i in range(1, n_genes + 1)], dtype=object)
    xist_i = n_auto + g.integers(0, n_x + 1)
    names[xist_i] = "XIST"
    chry_idx = np.arange(n_auto + n_x + 1, n_genes)
    for k, i in enumerate(chry_idx):
        names[i] = _CHRY_NAMES[k] if k < len(_CHRY_NAMES) else f"CHRY{k + 1}"
    body = g.integers(1_000, 100_000, size=n_genes)
    start = g.integers(10_000, 50_000_000, size=n_genes)
    strand = np.where(g.random(n_genes) < 0.5, "+", "-").astype(object)
    end = start + body - 1
    length = np.exp(g.normal(np.log(2500.0), 0.6, size=n_genes))

    # ---- baseline abundances (expected CPM) and dispersions
    log_cpm = g.normal(np.log(25.0), 1.4, size=n_genes)
    low = g.random(n_genes) < fraction_low
    log_cpm[low] = g.normal(np.log(0.05), 1.0, size=int(low.sum()))
    base = np.exp(log_cpm)  # expected CPM in a whole transcriptome of ~20,000 genes
    base[xist_i] = 0.0
    base[chry_idx] = 0.0
    phi = dispersion * np.exp(g.normal(0.0, 0.5, size=n_genes))
    auto_rows = np.arange(n_auto)
    shifted = auto_rows[g.random(n_auto) < outlier_gene_fraction]
    shift = np.zeros(n_genes)
    shift[shifted] = g.normal(0.0, outlier_log2fc, size=shifted.size)

    # ---- samples: sex, library sizes, outliers, swaps
    s = _rng(seed, 1)
    sample_ids = np.array([f"S{j:05d}" for j in range(1, n_samples + 1)], dtype=object)
    female = s.random(n_samples) < fraction_female
    sigma = np.sqrt(np.log1p(library_size_cv**2))
    lib = mean_library_size * np.exp(s.normal(-sigma**2 / 2, sigma, size=n_samples))
    order = s.permutation(n_samples)
    outliers = np.zeros(n_samples, dtype=bool)
    outliers[order[:n_outliers]] = True
    swapped = np.zeros(n_samples, dtype=bool)
    swapped[order[n_outliers:n_outliers + n_sex_swaps]] = True
    strength = np.where(outliers, s.uniform(0.8, 1.2, size=n_samples), 0.0)
    reported = np.where(female ^ swapped, "F", "M").astype(object)

    # ---- counts, by fixed sample blocks
    counts = np.empty((n_genes, n_samples), dtype=np.int64)
    for b0 in range(0, n_samples, SAMPLE_BLOCK):
        cols = np.arange(b0, min(b0 + SAMPLE_BLOCK, n_samples))
        r = _rng(seed, 2, b0 // SAMPLE_BLOCK)
        prop = np.repeat(base[:, None], cols.size, axis=1)
        prop[xist_i] = np.where(female[cols], xist_cpm, xist_cpm / _LEAK)
        prop[chry_idx] = np.where(female[cols], chry_cpm / _LEAK, chry_cpm)[None, :]
        if outliers[cols].any():
            prop *= np.exp2(shift[:, None] * strength[cols][None, :])
        mu = prop * (lib[cols][None, :] / 1e6)
        shape = 1.0 / phi[:, None]
        lam = r.gamma(np.broadcast_to(shape, mu.shape), mu / shape)
        counts[:, cols] = r.poisson(lam)

    rate = counts / length[:, None]
    tpm = rate / rate.sum(axis=0, keepdims=True) * 1e6
    gidx = pd.Index(gene_ids, name="gene_id")
    sidx = pd.Index(sample_ids, dtype=object)
    tss = np.where(strand == "+", start, end)
    annotation = pd.DataFrame({"gene_name": names, "chr": chrom, "start": start.astype(np.int64),
                               "end": end.astype(np.int64), "strand": strand,
                               "tss": tss.astype(np.int64), "length": length}, index=gidx)
    truth = pd.DataFrame({
        "true_sex": np.where(female, "F", "M").astype(object),
        "reported_sex": reported,
        "sex_swapped": swapped,
        "outlier": outliers,
        "outlier_strength": strength,
        "library_size": counts.sum(axis=0),
    }, index=pd.Index(sample_ids, name="sample"))
    return CountSimulation(
        counts=pd.DataFrame(counts, index=gidx, columns=sidx),
        tpm=pd.DataFrame(tpm, index=gidx.copy(), columns=sidx.copy()),
        annotation=annotation,
        reported_sex=pd.Series(reported, index=pd.Index(sample_ids, name="sample"), name="reported_sex"),
        truth=truth,
    )


def _check(n_genes: int, n_samples: int, seed: int, n_outliers: int, n_sex_swaps: int,
           fraction_female: float, n_chry_genes: int, n_autosomes: int, cv: float,
           dispersion: float, fraction_low: float, outlier_fraction: float) -> None:
    def ints(name: str, v: object, lo: int) -> None:
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < lo:
            raise InputError(f"{name}: expected an integer >= {lo}, found {v!r}")

    ints("n_samples", n_samples, 3)
    ints("n_chry_genes", n_chry_genes, 0)
    ints("n_genes", n_genes, n_chry_genes + 10)
    ints("seed", seed, 0)
    ints("n_outliers", n_outliers, 0)
    ints("n_sex_swaps", n_sex_swaps, 0)
    ints("n_autosomes", n_autosomes, 1)
    if n_outliers + n_sex_swaps > n_samples:
        raise InputError(f"n_outliers + n_sex_swaps: expected at most n_samples ({n_samples}), "
                         f"found {n_outliers + n_sex_swaps}")
    for name, v in (("fraction_female", fraction_female), ("fraction_low", fraction_low),
                    ("outlier_gene_fraction", outlier_fraction)):
        if not 0 <= v <= 1:
            raise InputError(f"{name}: expected a fraction in [0, 1], found {v!r}")
    if not cv >= 0 or not dispersion > 0:
        raise InputError(f"library_size_cv >= 0 and dispersion > 0 expected, found {cv!r}, {dispersion!r}")
