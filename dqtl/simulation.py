"""Seeded eQTL data simulator with planted truth (tests, benchmarks, power studies).

:func:`simulate` builds one :class:`xarray.Dataset` in the dqtl data model: lazily generated
genotypes with linkage disequilibrium (LD), phenotypes in BED coordinates driven by covariates,
hidden confounders and planted cis-eQTLs, and the planted truth itself.
:func:`write_simulation` writes it as the files other tools read (VCF Zarr, tensorQTL phenotype
BED and covariates, PLINK 2 pgen, VCF), so dqtl and tensorQTL/QTLtools can run on the same data.

Random streams
--------------
Every random number comes from ``np.random.default_rng`` on a ``np.random.SeedSequence(seed)``
child with a fixed ``spawn_key`` (equivalent to ``SeedSequence(seed).spawn``), one per purpose:

====================  ==============================================================
spawn key             draws
====================  ==============================================================
``(0,)``              variant metadata (positions, REF/ALT alleles)
``(1,)``              phenotypes (coordinates, eGenes, covariates, hidden factors, noise)
``(2, b)``            genotype block ``b``: ALT frequencies, then latent haplotypes
``(3, b)``            missing genotype calls of block ``b``
``(4,)``              missing phenotype values
====================  ==============================================================

Genotype blocks are fixed runs of ``GENOTYPE_BLOCK`` variants by global variant index, so the
genotypes do not depend on ``variants_chunk_size`` or on which chunks are read, and switching the
missing rates on leaves every non-missing value unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import ndtri

from dqtl.errors import InputError

__all__ = [
    "GENOTYPE_BLOCK",
    "SIMULATION_FORMATS",
    "check_simulation_parameters",
    "simulate",
    "plant_interaction",
    "plant_mediation",
    "DEFAULT_FORMATS",
]

log = logging.getLogger(__name__)

#: Variants per internal genotype generation block (random stream unit and LD restart point).
GENOTYPE_BLOCK = 128

#: File formats understood by :func:`write_simulation`.
SIMULATION_FORMATS = ("zarr", "bed", "covariates", "truth", "hidden", "vcf", "pgen")

DEFAULT_FORMATS = ("zarr", "bed", "covariates", "truth")
_STREAM_META, _STREAM_PHENO, _STREAM_GENO, _STREAM_GMISS, _STREAM_PMISS = range(5)
_BASES = np.array(["A", "C", "G", "T"], dtype=object)
_GENE_BODY_FRACTION = 0.2
_GENE_BODY_LENGTH = (1_000, 100_000)

GENOTYPE_VARIABLES = (
    "call_genotype",
    "call_genotype_mask",
    "variant_contig",
    "variant_position",
    "variant_id",
    "variant_allele",
    "sample_id",
    "contig_id",
    "contig_length",
)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


# --------------------------------------------------------------------------------------------
# parameter checks
# --------------------------------------------------------------------------------------------


def check_simulation_parameters(
    params: Mapping[str, Any], *, names: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`~dqtl.errors.InputError` for an impossible :func:`simulate` parameter.

    Parameters
    ----------
    params
        Keyword arguments of :func:`simulate` (any subset).
    names
        Display name per parameter in messages (the CLI passes its option names).
    """
    names = dict(names or {})

    def fail(key: str, expected: str, fix: str) -> None:
        shown = names.get(key, key)
        raise InputError(
            f"{shown}: expected {expected}, found {params[key]!r}; {fix}"
        )

    def is_int(v: Any) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    def is_num(v: Any) -> bool:
        return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)

    minimum = {
        "n_samples": 3,
        "n_variants": 1,
        "n_phenotypes": 1,
        "n_contigs": 1,
        "n_covariates": 0,
        "n_hidden": 0,
        "ploidy": 1,
        "contig_length": 1,
        "window": 0,
        "seed": 0,
        "variants_chunk_size": 1,
    }
    for key, lo in minimum.items():
        if key in params and (not is_int(params[key]) or params[key] < lo):
            fail(key, f"an integer >= {lo}", f"pass a whole number of at least {lo}")
    if params.get("ploidy", 2) > 127:
        fail("ploidy", "at most 127", "use a smaller ploidy")
    for key, low, high, closed in (
        ("fraction_egenes", 0.0, 1.0, True),
        ("ld_rho", 0.0, 1.0, False),
        ("missing_genotype_rate", 0.0, 1.0, False),
        ("missing_phenotype_rate", 0.0, 1.0, False),
    ):
        if key in params:
            v = params[key]
            ok = is_num(v) and low <= v and (v <= high if closed else v < high)
            if not ok:
                rng_txt = f"[{low:g}, {high:g}{']' if closed else ')'}"
                fail(key, f"a number in {rng_txt}", f"pass a value in {rng_txt}")
    for key in ("effect_size", "hidden_effect"):
        if key in params and not (is_num(params[key]) and np.isfinite(params[key])):
            fail(key, "a finite number", "pass a finite number")
    if "maf_range" in params:
        mr = params["maf_range"]
        ok = (
            isinstance(mr, Sequence)
            and len(mr) == 2
            and all(is_num(x) for x in mr)
            and 0.0 < mr[0] <= mr[1] <= 0.5
        )
        if not ok:
            fail("maf_range", "two numbers (low, high) with 0 < low <= high <= 0.5",
                 "pass e.g. (0.05, 0.5)")
    if "contig_prefix" in params and (
        not isinstance(params["contig_prefix"], str)
        or any(c.isspace() for c in params["contig_prefix"])
    ):
        fail("contig_prefix", "a string without whitespace", "pass e.g. '' or 'chr'")
    if {"n_variants", "n_contigs"} <= params.keys() and params["n_variants"] < params["n_contigs"]:
        fail("n_variants", f"at least one variant per contig (>= {params['n_contigs']})",
             "raise the variant count or lower the contig count")
    if {"n_variants", "n_contigs", "contig_length"} <= params.keys():
        per_contig = -(-params["n_variants"] // params["n_contigs"])
        if per_contig > params["contig_length"]:
            fail("contig_length", f"room for {per_contig} distinct positions per contig",
                 "raise the contig length or lower the variant count")


# --------------------------------------------------------------------------------------------
# genotypes
# --------------------------------------------------------------------------------------------


def _block_alt_frequency(rng: np.random.Generator, n: int, maf_range: Sequence[float]) -> np.ndarray:
    return rng.uniform(maf_range[0], maf_range[1], size=n)


def _block_haplotypes(
    block: int,
    *,
    seed: int,
    n_variants: int,
    contig_starts: Sequence[int],
    n_samples: int,
    ploidy: int,
    ld_rho: float,
    maf_range: Sequence[float],
    rows: int | None = None,
) -> np.ndarray:
    """ALT indicator (block variants, samples, ploidy) bool of one generation block.

    The latent Gaussian AR(1) process restarts at the block start and at every contig start.
    ``rows`` limits the output to the block's first rows: the generator fills arrays in C order,
    so a shorter draw is a prefix of the full one.
    """
    lo = block * GENOTYPE_BLOCK
    hi = min(lo + GENOTYPE_BLOCK, n_variants)
    rng = _rng(seed, _STREAM_GENO, block)
    thresholds = ndtri(_block_alt_frequency(rng, hi - lo, maf_range))
    n = hi - lo if rows is None else min(rows, hi - lo)
    z = rng.standard_normal((n, n_samples * ploidy))
    if ld_rho > 0:
        innovation = np.sqrt(1.0 - ld_rho * ld_rho)
        restart = {s - lo for s in contig_starts if lo <= s < hi}
        for i in range(1, n):
            if i not in restart:
                z[i] *= innovation
                z[i] += ld_rho * z[i - 1]
    return (z < thresholds[:n, None]).reshape(n, n_samples, ploidy)


def _genotype_range(start: int, stop: int, *, missing_rate: float, **kw: Any) -> np.ndarray:
    """Calls (stop - start, samples, ploidy) int8 for global variants ``[start, stop)``."""
    n_samples, ploidy = kw["n_samples"], kw["ploidy"]
    out = np.empty((stop - start, n_samples, ploidy), dtype=np.int8)
    for block in range(start // GENOTYPE_BLOCK, (stop - 1) // GENOTYPE_BLOCK + 1):
        lo = block * GENOTYPE_BLOCK
        calls = _block_haplotypes(block, **kw).astype(np.int8)
        if missing_rate > 0:
            miss = _rng(kw["seed"], _STREAM_GMISS, block).random(calls.shape[:2]) < missing_rate
            calls[miss] = -1
        a, b = max(start, lo), min(stop, lo + calls.shape[0])
        out[a - start : b - start] = calls[a - lo : b - lo]
    return out


def _genotype_chunk(index: np.ndarray, *, missing_rate: float, **kw: Any) -> np.ndarray:
    if index.size == 0:
        return np.empty((0, kw["n_samples"], kw["ploidy"]), dtype=np.int8)
    return _genotype_range(int(index[0]), int(index[-1]) + 1, missing_rate=missing_rate, **kw)


def _true_dosages(variants: np.ndarray, **kw: Any) -> np.ndarray:
    """Complete (no missing) ALT dosages (len(variants), samples) float64 of chosen variants."""
    out = np.empty((variants.size, kw["n_samples"]), dtype=np.float64)
    blocks = variants // GENOTYPE_BLOCK
    for block in np.unique(blocks):
        sel = np.flatnonzero(blocks == block)
        rows = variants[sel] - block * GENOTYPE_BLOCK
        hap = _block_haplotypes(int(block), rows=int(rows.max()) + 1, **kw)
        out[sel] = hap[rows].sum(axis=2)
    return out


# --------------------------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------------------------


def _even_split(total: int, parts: int) -> np.ndarray:
    return np.array([total // parts + (i < total % parts) for i in range(parts)], dtype=np.int64)


def _ids(prefix: str, n: int, *, start: int = 1) -> np.ndarray:
    width = max(len(str(n - 1 + start)), 1)
    return np.array([f"{prefix}{i + start:0{width}d}" for i in range(n)], dtype=object)


def simulate(
    *,
    n_samples: int = 200,
    n_variants: int = 5000,
    n_phenotypes: int = 200,
    n_contigs: int = 2,
    n_covariates: int = 3,
    n_hidden: int = 2,
    ploidy: int = 2,
    maf_range: tuple[float, float] = (0.05, 0.5),
    ld_rho: float = 0.6,
    fraction_egenes: float = 0.3,
    effect_size: float = 0.5,
    hidden_effect: float = 1.0,
    missing_genotype_rate: float = 0.0,
    missing_phenotype_rate: float = 0.0,
    contig_length: int = 10_000_000,
    window: int = 1_000_000,
    contig_prefix: str = "",
    seed: int = 0,
    variants_chunk_size: int = 10_000,
) -> xr.Dataset:
    """Simulate genotypes with LD and expression with planted cis-eQTLs, lazily and seeded.

    Genotypes: each haplotype is a latent Gaussian AR(1) process along the variants,
    ``z_i = rho z_(i-1) + sqrt(1 - rho^2) e_i``, thresholded at the ALT frequency quantile
    ``z_i < Phi^-1(f_i)`` with ``f_i ~ Uniform(maf_range)`` (so ALT is the minor allele),
    giving an adjacent-variant latent correlation ``rho`` decaying as ``rho^k``. The process
    restarts at every contig and every ``GENOTYPE_BLOCK`` variants. Calls are generated per block
    from derived seeds (module docstring), so ``call_genotype`` is a dask array that never holds
    more than one chunk in memory and is identical for any ``variants_chunk_size``.

    Phenotypes: genes spread evenly over the contigs with uniform TSS; about 20 % are gene-body
    entries (``end > start + 1``, 1-100 kb). ``round(fraction_egenes * n_phenotypes)`` genes with at
    least one variant within ``window`` of the TSS (1-based ``start + 1``) get one causal variant
    drawn uniformly from that window and an effect ``+-effect_size`` (random sign) on its ALT
    dosage. Expression (phenotypes, samples)::

        y = C @ gamma + H @ lambda + beta * dosage + e,   e ~ N(0, 1)

    with covariates ``C ~ N(0, 1)`` (given), hidden factors ``H ~ N(0, 1)`` (NOT given as
    covariates), ``gamma ~ N(0, 1)`` and ``lambda ~ N(0, hidden_effect^2)``. The planted effect
    uses the complete dosage, before genotype calls are masked as missing.

    Parameters
    ----------
    n_samples, n_variants, n_phenotypes, n_contigs, n_covariates, n_hidden
        Dataset sizes (``n_samples >= 3``; variants split evenly over contigs).
    ploidy
        Haplotypes per sample.
    maf_range
        ``(low, high)`` range of the ALT (minor) allele frequency, ``0 < low <= high <= 0.5``.
    ld_rho
        Latent correlation of adjacent variants, in ``[0, 1)``.
    fraction_egenes
        Fraction of phenotypes with a planted causal variant, in ``[0, 1]``.
    effect_size
        Absolute effect of one ALT allele on expression (noise SD is 1).
    hidden_effect
        SD of the hidden-factor loadings.
    missing_genotype_rate, missing_phenotype_rate
        Probability that a call (all alleles of a sample at a variant: -1) or a phenotype value
        (NaN) is missing, in ``[0, 1)``.
    contig_length
        Contig length in bp; positions are distinct, sorted, in ``[1, contig_length]``.
    window
        Planted causal variants lie within ``+-window`` bp of the TSS.
    contig_prefix
        Contig names are ``f"{contig_prefix}{i}"``, e.g. ``"1"`` or ``"chr1"``.
    seed
        Non-negative seed; the only source of randomness.
    variants_chunk_size
        Dask chunk length of the genotype arrays along ``variants``.

    Returns
    -------
    xarray.Dataset
        Genotypes: ``call_genotype`` (variants, samples, ploidy) int8 (dask, -1 missing),
        ``call_genotype_mask`` (same, bool), ``variant_contig`` (variants,) int index into
        ``contig_id`` (contigs,) str, ``contig_length`` (contigs,) int64, ``variant_position``
        (variants,) int32 1-based, ``variant_id`` (``f"{contig}_{pos}_{ref}_{alt}"``),
        ``variant_allele`` (variants, alleles) str [REF, ALT], ``variant_simulated_alt_frequency``
        (variants,) float64, ``sample_id`` (samples,) str.
        Phenotypes: ``phenotype_id``, ``phenotype_contig`` (str), ``phenotype_start``,
        ``phenotype_end`` (int64, BED 0-based half-open), ``phenotype_values`` (phenotypes,
        samples) float64 (NaN missing). Covariates: ``covariate_id``, ``covariate_values``
        (samples, covariates) float64. Hidden: ``hidden_factor_id``, ``hidden_factor_values``
        (samples, factors) float64. Truth: ``phenotype_is_egene`` bool,
        ``phenotype_causal_variant`` int64 (variant index, -1 if none), ``phenotype_effect_size``
        float64 (beta per ALT allele, 0 if none). Attributes ``seed`` and ``simulation`` (the
        parameters).

    Raises
    ------
    dqtl.errors.InputError
        For an impossible parameter value.

    Examples
    --------
    >>> from dqtl.simulation import simulate
    >>> ds = simulate(n_samples=10, n_variants=50, n_phenotypes=4, n_contigs=1, seed=1)
    >>> ds.call_genotype.shape, ds.phenotype_values.shape
    ((50, 10, 2), (4, 10))
    >>> int(ds.phenotype_is_egene.sum()), str(ds.contig_id.values[0])
    (1, '1')
    >>> bool((ds.call_genotype.values == simulate(n_samples=10, n_variants=50,
    ...     n_phenotypes=4, n_contigs=1, seed=1, variants_chunk_size=7).call_genotype.values).all())
    True
    """
    params: dict[str, Any] = dict(
        n_samples=n_samples, n_variants=n_variants, n_phenotypes=n_phenotypes,
        n_contigs=n_contigs, n_covariates=n_covariates, n_hidden=n_hidden, ploidy=ploidy,
        maf_range=maf_range, ld_rho=ld_rho, fraction_egenes=fraction_egenes,
        effect_size=effect_size, hidden_effect=hidden_effect,
        missing_genotype_rate=missing_genotype_rate,
        missing_phenotype_rate=missing_phenotype_rate, contig_length=contig_length,
        window=window, contig_prefix=contig_prefix, seed=seed,
        variants_chunk_size=variants_chunk_size,
    )
    check_simulation_parameters(params)
    seed = int(seed)
    maf_range = (float(maf_range[0]), float(maf_range[1]))

    # ---- variant metadata
    meta = _rng(seed, _STREAM_META)
    contig_sizes = _even_split(n_variants, n_contigs)
    contig_starts = np.concatenate([[0], np.cumsum(contig_sizes)[:-1]]).astype(np.int64)
    contig_id = np.array([f"{contig_prefix}{i + 1}" for i in range(n_contigs)], dtype=object)
    variant_contig = np.repeat(np.arange(n_contigs, dtype=np.int16), contig_sizes)
    position = np.concatenate(
        [np.sort(meta.choice(contig_length, size=int(m), replace=False)) + 1 for m in contig_sizes]
    ).astype(np.int32)
    ref = meta.integers(0, 4, size=n_variants)
    alt = (ref + meta.integers(1, 4, size=n_variants)) % 4
    alleles = np.stack([_BASES[ref], _BASES[alt]], axis=1)
    variant_id = np.array(
        [f"{contig_id[c]}_{p}_{r}_{a}" for c, p, r, a in
         zip(variant_contig, position, alleles[:, 0], alleles[:, 1], strict=True)],
        dtype=object,
    )
    n_blocks = -(-n_variants // GENOTYPE_BLOCK)
    alt_frequency = np.concatenate([
        _block_alt_frequency(_rng(seed, _STREAM_GENO, b),
                             min(GENOTYPE_BLOCK, n_variants - b * GENOTYPE_BLOCK), maf_range)
        for b in range(n_blocks)
    ])

    geno_kw: dict[str, Any] = dict(
        seed=seed, n_variants=n_variants, contig_starts=tuple(int(s) for s in contig_starts),
        n_samples=n_samples, ploidy=ploidy, ld_rho=float(ld_rho), maf_range=maf_range,
    )
    index = da.arange(n_variants, chunks=variants_chunk_size, dtype=np.int64)
    call_genotype = da.map_blocks(
        _genotype_chunk, index, new_axis=[1, 2],
        chunks=(index.chunks[0], (n_samples,), (ploidy,)), dtype=np.int8,
        meta=np.empty((0, 0, 0), dtype=np.int8),
        missing_rate=float(missing_genotype_rate), **geno_kw,
    )

    # ---- phenotypes
    rng = _rng(seed, _STREAM_PHENO)
    pheno_sizes = _even_split(n_phenotypes, n_contigs)
    pheno_contig = np.repeat(np.arange(n_contigs), pheno_sizes)
    start = np.concatenate(
        [np.sort(rng.integers(0, contig_length, size=int(m))) for m in pheno_sizes]
    ).astype(np.int64)
    body = rng.random(n_phenotypes) < _GENE_BODY_FRACTION
    length = rng.integers(*_GENE_BODY_LENGTH, size=n_phenotypes, endpoint=True)
    end = np.where(body, np.minimum(start + length, contig_length), start + 1)
    end = np.maximum(end, start + 1)

    tss = start + 1  # 1-based TSS, comparable with variant_position
    lo_idx = np.empty(n_phenotypes, dtype=np.int64)
    hi_idx = np.empty(n_phenotypes, dtype=np.int64)
    for c in range(n_contigs):
        sel = pheno_contig == c
        pos_c = position[contig_starts[c] : contig_starts[c] + contig_sizes[c]].astype(np.int64)
        lo_idx[sel] = contig_starts[c] + np.searchsorted(pos_c, tss[sel] - window, side="left")
        hi_idx[sel] = contig_starts[c] + np.searchsorted(pos_c, tss[sel] + window, side="right")
    eligible = np.flatnonzero(hi_idx > lo_idx)
    n_egenes = int(round(fraction_egenes * n_phenotypes))
    if n_egenes > eligible.size:
        log.warning(
            "simulate: only %d of %d phenotypes have a variant within %d bp of the TSS; "
            "planting %d eGenes instead of %d", eligible.size, n_phenotypes, window,
            eligible.size, n_egenes,
        )
        n_egenes = eligible.size
    egenes = np.sort(rng.choice(eligible, size=n_egenes, replace=False))
    is_egene = np.zeros(n_phenotypes, dtype=bool)
    is_egene[egenes] = True
    causal = np.full(n_phenotypes, -1, dtype=np.int64)
    causal[egenes] = rng.integers(lo_idx[egenes], hi_idx[egenes])
    beta = np.zeros(n_phenotypes, dtype=np.float64)
    beta[egenes] = rng.choice([-1.0, 1.0], size=n_egenes) * float(effect_size)

    covariates = rng.standard_normal((n_samples, n_covariates))
    gamma = rng.standard_normal((n_phenotypes, n_covariates))
    hidden = rng.standard_normal((n_samples, n_hidden))
    loadings = rng.normal(0.0, abs(float(hidden_effect)), size=(n_phenotypes, n_hidden))
    values = rng.standard_normal((n_phenotypes, n_samples))
    values += gamma @ covariates.T + loadings @ hidden.T
    if n_egenes:
        values[egenes] += beta[egenes, None] * _true_dosages(causal[egenes], **geno_kw)
    if missing_phenotype_rate > 0:
        miss = _rng(seed, _STREAM_PMISS).random(values.shape) < missing_phenotype_rate
        values[miss] = np.nan

    ds = xr.Dataset(
        {
            "contig_id": ("contigs", contig_id),
            "contig_length": ("contigs", np.full(n_contigs, contig_length, dtype=np.int64)),
            "sample_id": ("samples", _ids("S", n_samples)),
            "variant_contig": ("variants", variant_contig),
            "variant_position": ("variants", position),
            "variant_id": ("variants", variant_id),
            "variant_allele": (("variants", "alleles"), alleles),
            "variant_simulated_alt_frequency": ("variants", alt_frequency),
            "call_genotype": (("variants", "samples", "ploidy"), call_genotype),
            "call_genotype_mask": (("variants", "samples", "ploidy"), call_genotype < 0),
            "phenotype_id": ("phenotypes", _ids("gene", n_phenotypes)),
            "phenotype_contig": ("phenotypes", contig_id[pheno_contig]),
            "phenotype_start": ("phenotypes", start),
            "phenotype_end": ("phenotypes", end.astype(np.int64)),
            "phenotype_values": (("phenotypes", "samples"), values),
            "covariate_id": ("covariates", _ids("cov", n_covariates)),
            "covariate_values": (("samples", "covariates"), covariates),
            "hidden_factor_id": ("factors", _ids("hidden", n_hidden)),
            "hidden_factor_values": (("samples", "factors"), hidden),
            "phenotype_is_egene": ("phenotypes", is_egene),
            "phenotype_causal_variant": ("phenotypes", causal),
            "phenotype_effect_size": ("phenotypes", beta),
        },
        attrs={
            "source": "dqtl.simulation",
            "seed": seed,
            "simulation": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
        },
    )
    ds["variant_simulated_alt_frequency"].attrs["description"] = (
        "ALT allele frequency the genotypes were drawn with"
    )
    ds["hidden_factor_values"].attrs["description"] = (
        "hidden confounders that drive expression but are not among the covariates"
    )
    return ds


def plant_interaction(sim: xr.Dataset, *, seed: int, gi_effect: float = 0.0, main_g: float = 1.0,
                      main_i: float = 1.5, planted_fraction: float = 0.5
                      ) -> tuple[xr.Dataset, pd.Series, np.ndarray]:
    """Replace a simulation's phenotypes by unit-noise ones with a genotype main effect
    ``main_g`` (the phenotype's causal variant, centred), a binary context ("sex", ~half the
    samples) main effect ``main_i`` and, on the first ``planted_fraction`` of the phenotypes, a
    genotype x context effect ``gi_effect * g * (2 sex - 1)``. Returns the simulation, the
    context as a Series indexed by sample and the planted mask.

    >>> sim = simulate(n_samples=50, n_variants=200, n_phenotypes=4, fraction_egenes=1.0, seed=1)
    >>> out, sex, planted = plant_interaction(sim, seed=1, gi_effect=0.5)
    >>> planted.tolist(), sorted(set(sex.tolist()))
    ([True, True, False, False], [0.0, 1.0])
    """
    from dqtl.kernels.genotypes import dosage_from_calls

    n = sim.sizes["samples"]
    n_genes = sim.sizes["phenotypes"]
    rng = np.random.default_rng(seed)
    sex = (rng.random(n) < 0.5).astype(float)
    G = dosage_from_calls(np.asarray(sim.call_genotype.values))
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    causal = np.asarray(sim.phenotype_causal_variant.values)
    Y = rng.normal(size=(n_genes, n))
    planted = np.zeros(n_genes, dtype=bool)
    planted[: int(round(planted_fraction * n_genes))] = bool(gi_effect)
    for j in range(n_genes):
        g = G[causal[j]] - G[causal[j]].mean()
        Y[j] += main_g * g + main_i * sex
        if planted[j]:
            Y[j] += gi_effect * g * (2 * sex - 1)
    out = sim.copy()
    out["phenotype_values"] = (sim.phenotype_values.dims, Y)
    return out, pd.Series(sex, index=sim.sample_id.values.astype(str), name="sex"), planted


def plant_mediation(*, seed: int, n_samples: int = 300, n_each: int = 5, a: float = 0.8,
                    b: float = 0.5, direct: float = 0.5, confounder: float = 1.0
                    ) -> tuple[xr.Dataset, pd.DataFrame]:
    """A simulation with trans effects of known mechanism (the generator behind the mediation
    tests): 40 genes on two contigs; unit-noise expression plus, ``n_each`` times each:

    - ``mediated``: variant ``v`` (the cis causal variant of gene M, effect ``a``) reaches a
      gene T on the other contig only through M (``T += b M``);
    - ``direct``: ``v`` (cis-eQTL of a bystander gene B, effect ``a``) acts on T directly
      (``T += direct g``); B has no effect on T;
    - ``confounded``: as ``direct``, and a covariate ``h`` (in the covariates) drives both the
      cis gene and T (``confounder`` each): M and T correlate without mediation.

    Returns the Dataset (genotypes, phenotypes, covariates with ``h``) and the truth: one row per
    planted trans pair with ``variant_id``, ``phenotype_id``, ``cis_gene``, ``kind``.
    """
    from dqtl.kernels.genotypes import dosage_from_calls

    sim = simulate(n_samples=n_samples, n_variants=2000, n_phenotypes=40, n_contigs=2,
                   n_covariates=2, n_hidden=0, fraction_egenes=1.0, effect_size=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    G = dosage_from_calls(np.asarray(sim.call_genotype.values))
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    causal = np.asarray(sim.phenotype_causal_variant.values)
    contig = np.asarray(sim.phenotype_contig.values).astype(str)
    first = np.flatnonzero(contig == contig[0])
    second = np.flatnonzero(contig != contig[0])
    if first.size < 3 * n_each or second.size < 3 * n_each:
        raise InputError("plant_mediation: too few genes per contig for the planted trios")
    h = rng.normal(size=n_samples)
    Y = rng.normal(size=(sim.sizes["phenotypes"], n_samples))
    pid = np.asarray(sim.phenotype_id.values).astype(str)
    vid = np.asarray(sim.variant_id.values).astype(str)
    rows = []
    for k, kind in enumerate(("mediated", "direct", "confounded")):
        for r in range(n_each):
            cis_gene = first[k * n_each + r]
            target = second[k * n_each + r]
            v = causal[cis_gene]
            g = G[v] - G[v].mean()
            Y[cis_gene] += a * g
            if kind == "confounded":
                Y[cis_gene] += confounder * h
                Y[target] += confounder * h
            if kind == "mediated":
                Y[target] += b * (Y[cis_gene] - Y[cis_gene].mean())
            else:
                Y[target] += direct * g
            rows.append({"variant_id": vid[v], "phenotype_id": pid[target], "cis_gene": pid[cis_gene],
                         "kind": kind})
    out = sim.copy()
    out["phenotype_values"] = (sim.phenotype_values.dims, Y)
    cov = np.column_stack([np.asarray(sim.covariate_values.values), h])
    out = out.drop_vars(["covariate_values", "covariate_id"])
    out["covariate_values"] = (sim.covariate_values.dims, cov)
    out["covariate_id"] = (sim.covariate_id.dims, np.append(np.asarray(sim.covariate_id.values).astype(str), "h"))
    return out, pd.DataFrame(rows)
