"""Genotype principal components: LD-pruned common variants, randomized SVD on a dask array.

Pipeline of :func:`genotype_pcs`:

1. **One parallel pass over the genotypes** (one task per variant chunk, reading the chunk and
   the ``ld_prune_window`` variants before it): per-variant call counts and allele sums, the
   common-variant mask (``MAF >= maf_min``, call rate ``>= min_call_rate``), and, between each
   common variant and the common variants up to ``ld_prune_window`` positions before it on the
   same contig, whether ``r^2 > r2_max`` (``r`` = correlation of mean-imputed dosages),
   computed as banded products of unit-norm rows.
2. **Greedy pruning**, in variant order (as PLINK ``--indep-pairwise`` with step 1): a common
   variant is kept unless it is in LD (``r^2 > r2_max``) with a variant already kept within the
   window. It reads only the small boolean band from step 1, and its result does not depend on
   the chunking.
3. **Randomized SVD** (Halko et al. 2011; :func:`dask.array.linalg.svd_compressed`, QR power
   iterations) of the standardised matrix ``X`` (kept variants x samples), with EIGENSOFT's
   standardisation ``x = (g - P f) / sqrt(P f (1 - f))`` (``P`` ploidy, ``f`` ALT frequency
   among called alleles) and missing calls set to 0 (the mean). ``X`` is persisted in memory
   when it fits ``persist_bytes``; otherwise each pass recomputes it from the store.

Scores are ``X^T U`` (= ``V S``), so :func:`project_samples` applied to the fitted samples
returns their scores, and applied to new samples puts them in the same coordinates.

References
----------
Patterson N, Price AL, Reich D (2006). Population structure and eigenanalysis. PLoS Genet
2:e190. doi:10.1371/journal.pgen.0020190

Halko N, Martinsson PG, Tropp JA (2011). Finding structure with randomness: probabilistic
algorithms for constructing approximate matrix decompositions. SIAM Rev 53:217-288.
doi:10.1137/090771806
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy.special import ndtri

from dqtl.compute import compute, single_threaded_blas
from dqtl.errors import InputError
from dqtl.io.variant_ids import ids_at, variant_rows
from dqtl.kernels.genotypes import dosage_from_calls

__all__ = [
    "compute_rows",
    "GenotypePCA",
    "genotype_pcs",
    "ld_prune",
    "project_samples",
    "simulate_populations",
]

log = logging.getLogger(__name__)

_POP_BLOCK = 256  # variants per random-stream block of simulate_populations


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------


def _dosage(block: np.ndarray) -> np.ndarray:
    """(variants, samples) float32 ALT dosage with NaN for missing, from calls or dosages."""
    if block.ndim == 3:
        return dosage_from_calls(block, dtype=np.float32)
    return np.array(block, dtype=np.float32, copy=True)


def _row_stats(d: np.ndarray) -> np.ndarray:
    """(variants, 3) float64: called samples, sum and sum of squares of called dosages."""
    called = ~np.isnan(d)
    z = np.where(called, d, np.float32(0))
    return np.stack([called.sum(axis=1).astype(np.float64), z.sum(axis=1, dtype=np.float64),
                     np.einsum("ij,ij->i", z, z, dtype=np.float64)], axis=1)


def _common_mask(stats: np.ndarray, n_samples: int, ploidy: int, maf_min: float,
                 min_call_rate: float) -> np.ndarray:
    n_called = stats[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        f = stats[:, 1] / (ploidy * n_called)
        var = stats[:, 2] / n_called - (stats[:, 1] / n_called) ** 2
    maf = np.minimum(f, 1 - f)
    ok = (n_called > 0) & (n_called >= min_call_rate * n_samples) & (maf >= maf_min)
    return ok & (maf > 0) & (var > 1e-12)


def _unit_rows(d: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Rows centred on their called mean, missing set to 0, scaled to unit norm (float32)."""
    n = np.maximum(stats[:, 0], 1)
    mean = (stats[:, 1] / n).astype(np.float32)[:, None]
    z = d - mean
    z[np.isnan(z)] = 0.0
    # sum of squares of the centred called values from the sums (exact in float64)
    ss = stats[:, 2] - stats[:, 1] ** 2 / n
    scale = np.where(ss > 1e-12, 1.0 / np.sqrt(np.maximum(ss, 1e-300)), 0.0).astype(np.float32)
    z *= scale[:, None]
    return z


def _ld_band_kernel(
    *blocks: np.ndarray,
    n_halo: int,
    contig: np.ndarray,
    window: int,
    r2_max: float,
    maf_min: float,
    min_call_rate: float,
    ploidy: int,
    sub_block: int,
) -> dict[str, np.ndarray]:
    """Per-variant statistics and the LD band of one chunk.

    ``blocks`` are the previous chunks then the chunk; the last ``n_halo`` variants before the
    chunk are its halo. ``contig`` holds the contig codes of halo + chunk variants.
    Returns ``stats`` (v, 3), ``common`` (v,) and ``band`` (v, window) bool where
    ``band[i, d - 1]`` is ``r^2(i, i - d) > r2_max`` for common same-contig pairs.
    """
    raw = np.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
    d = _dosage(raw[raw.shape[0] - (n_halo + blocks[-1].shape[0]):])  # halo tail + chunk only
    n_samples = d.shape[1]
    stats = _row_stats(d)
    common = _common_mask(stats, n_samples, ploidy, maf_min, min_call_rate)
    z = _unit_rows(d, stats)
    z[~common] = 0.0
    n_own = d.shape[0] - n_halo
    band = np.zeros((n_own, window), dtype=bool)
    thr = np.float32(np.sqrt(r2_max))
    for a in range(n_halo, d.shape[0], sub_block):
        b = min(a + sub_block, d.shape[0])
        lo = max(a - window, 0)
        r = z[a:b] @ z[lo:b].T  # (b - a, b - lo)
        rows = np.arange(a, b)[:, None]
        cols = np.arange(lo, b)[None, :]
        dist = rows - cols
        hit = (np.abs(r) > thr) & (dist >= 1) & (dist <= window)
        hit &= contig[a:b, None] == contig[None, lo:b]
        ii, jj = np.nonzero(hit)
        band[ii + a - n_halo, dist[ii, jj] - 1] = True
    return {"stats": stats[n_halo:], "common": common[n_halo:], "band": band}


def _greedy_prune(common: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Keep each common variant unless in LD with an already kept one before it in the window."""
    keep = common.copy()
    # in index order, every predecessor's decision is final when v is visited; variants
    # without any LD partner before them are kept without a visit
    for v in np.flatnonzero(common & band.any(axis=1)):
        d = np.flatnonzero(band[v]) + 1
        if keep[v - d].any():
            keep[v] = False
    return keep


def _standardize_block(block: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    d = _dosage(block)
    x = (d - mean.reshape(-1, 1).astype(np.float32)) / scale.reshape(-1, 1).astype(np.float32)
    x[np.isnan(x)] = 0.0
    return x


# --------------------------------------------------------------------------------------------
# graph helpers
# --------------------------------------------------------------------------------------------


def _genotype_array(ds: xr.Dataset, chunks: int | None) -> tuple[da.Array, int]:
    if "call_genotype" in ds:
        var = ds["call_genotype"]
        ploidy = int(var.shape[2])
    elif "call_dosage" in ds:
        var = ds["call_dosage"]
        ploidy = 2
    else:
        raise InputError(
            "genotypes: expected call_genotype (variants, samples, ploidy) or call_dosage "
            f"(variants, samples), found {sorted(map(str, ds.data_vars))}; open the store with "
            "dqtl.io.genotypes.open_genotypes"
        )
    arr = var.data
    if not isinstance(arr, da.Array):
        arr = da.from_array(np.asarray(arr), chunks=(chunks or 10_000,) + (-1,) * (arr.ndim - 1))
    # the products run on a partition fixed by the number of samples, never by the store's or
    # the user's chunking: the same inputs give the same bytes (see compute_rows)
    arr = arr.rechunk({0: compute_rows(int(arr.shape[1])), **{i: -1 for i in range(1, arr.ndim)}})
    return arr, ploidy


def compute_rows(n_samples: int) -> int:
    """Variants per block of the genotype PCA's products: about 32 MiB of float32 per block, a
    multiple of 256 between 256 and 16,384. It depends on the number of samples only, so that
    the blocks (and so the summation order of every product) are the same at any chunking.

    >>> compute_rows(500), compute_rows(100_000)
    (16384, 256)
    """
    rows = (32 << 20) // (4 * max(n_samples, 1))
    return int(min(16_384, max(256, rows // 256 * 256)))


def _halo_blocks(blocks: Sequence[Any], sizes: Sequence[int], b: int, window: int) -> tuple[list[Any], int]:
    """Previous blocks covering ``window`` variants before block ``b``, and the halo length."""
    prev: list[Any] = []
    have = 0
    i = b - 1
    while i >= 0 and have < window:
        prev.insert(0, blocks[i])
        have += sizes[i]
        i -= 1
    return prev, min(have, window)


# --------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------


@dataclass
class LDPruneResult:
    """Outcome of :func:`ld_prune`: variant masks and the per-variant allele statistics."""

    keep: np.ndarray  # (variants,) bool: common and pruned in
    common: np.ndarray  # (variants,) bool: passed the MAF and call-rate filters
    n_called: np.ndarray  # (variants,) float64
    alt_sum: np.ndarray  # (variants,) float64 sum of called dosages
    alt_sumsq: np.ndarray  # (variants,) float64 sum of squared called dosages
    ploidy: int
    n_samples: int


def ld_prune(
    ds: xr.Dataset,
    *,
    maf_min: float = 0.05,
    min_call_rate: float = 0.95,
    ld_prune_window: int = 200,
    r2_max: float = 0.2,
    variants_chunk_size: int | None = None,
) -> LDPruneResult:
    """Common variants in approximate linkage equilibrium (windowed greedy r^2 pruning).

    Parameters
    ----------
    ds
        Genotype Dataset (``call_genotype`` or ``call_dosage``; ``variant_contig``).
    maf_min, min_call_rate
        Common-variant filters: minor allele frequency and fraction of samples called.
    ld_prune_window
        Window length in variants; pairs further apart (or on different contigs) are not
        compared.
    r2_max
        Squared correlation above which the later variant of a pair is pruned.
    variants_chunk_size
        Variants per chunk when ``ds`` holds numpy arrays (reading only): the products run on
        blocks of :func:`compute_rows` variants at any chunking.

    Returns
    -------
    LDPruneResult
    """
    if not 0 <= maf_min < 0.5:
        raise InputError(f"maf_min: expected a number in [0, 0.5), found {maf_min!r}; pass e.g. 0.05")
    if not 0 <= min_call_rate <= 1:
        raise InputError(f"min_call_rate: expected a number in [0, 1], found {min_call_rate!r}")
    if not 0 < r2_max <= 1:
        raise InputError(f"r2_max: expected a number in (0, 1], found {r2_max!r}; pass e.g. 0.2")
    if isinstance(ld_prune_window, bool) or not isinstance(ld_prune_window, int | np.integer) \
            or ld_prune_window < 1:
        raise InputError(f"ld_prune_window: expected a positive number of variants, found "
                         f"{ld_prune_window!r}")
    arr, ploidy = _genotype_array(ds, variants_chunk_size)
    contig = np.asarray(ds["variant_contig"].values).astype(np.int64) if "variant_contig" in ds \
        else np.zeros(arr.shape[0], dtype=np.int64)
    sizes = [int(c) for c in arr.chunks[0]]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    blocks = arr.to_delayed().reshape(-1).tolist()
    kernel = dask.delayed(_ld_band_kernel, pure=True)
    tasks = []
    for b, blk in enumerate(blocks):
        prev, n_halo = _halo_blocks(blocks, sizes, b, int(ld_prune_window))
        lo = bounds[b] - n_halo
        tasks.append(kernel(*prev, blk, n_halo=n_halo, contig=contig[lo:bounds[b + 1]],
                            window=int(ld_prune_window), r2_max=float(r2_max),
                            maf_min=float(maf_min), min_call_rate=float(min_call_rate),
                            ploidy=ploidy, sub_block=max(int(ld_prune_window), 256)))
    parts = compute(tasks, label="LD pruning blocks")  # the session's Client when one is active
    stats = np.concatenate([p["stats"] for p in parts])
    common = np.concatenate([p["common"] for p in parts])
    band = np.concatenate([p["band"] for p in parts])
    keep = _greedy_prune(common, band)
    log.info("LD pruning: %d variants, %d common (MAF >= %g, call rate >= %g), %d kept "
             "(r^2 <= %g within %d variants)", arr.shape[0], int(common.sum()), maf_min,
             min_call_rate, int(keep.sum()), r2_max, ld_prune_window)
    return LDPruneResult(keep=keep, common=common, n_called=stats[:, 0], alt_sum=stats[:, 1],
                         alt_sumsq=stats[:, 2], ploidy=ploidy, n_samples=int(arr.shape[1]))


@dataclass
class GenotypePCA:
    """Genotype principal components and what is needed to project new samples.

    Attributes
    ----------
    scores
        (samples, components) float64: ``X^T U``, the samples' coordinates.
    loadings
        (pca_variants, components) float64: left singular vectors ``U``.
    singular_values
        (components,) float64.
    explained_variance_ratio
        (components,) ``s^2 / ||X||_F^2``.
    variant_index
        (pca_variants,) int64 indices of the variants used, into the input variants.
    variant_id
        (pca_variants,) str.
    variant_allele
        (pca_variants, 2) str ``[REF, ALT]`` or None.
    means, scales
        (pca_variants,) float64 standardisation ``x = (g - mean) / scale``.
    sample_id
        (samples,) str.
    ploidy
        Alleles per call.
    report
        Counts of variants (total, common, kept) and the settings.
    """

    scores: np.ndarray
    loadings: np.ndarray
    singular_values: np.ndarray
    explained_variance_ratio: np.ndarray
    variant_index: np.ndarray
    variant_id: np.ndarray
    variant_allele: np.ndarray | None
    means: np.ndarray
    scales: np.ndarray
    sample_id: np.ndarray
    ploidy: int = 2
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        return int(self.scores.shape[1])

    def component_ids(self, prefix: str = "PC") -> list[str]:
        return [f"{prefix}{i + 1}" for i in range(self.n_components)]

    def to_dataset(self) -> xr.Dataset:
        """sgkit-style Dataset: ``sample_pca_projection`` (samples, components) and friends."""
        return xr.Dataset(
            {
                "sample_id": ("samples", self.sample_id.astype(object)),
                "sample_pca_projection": (("samples", "components"), self.scores),
                "sample_pca_loading": (("pca_variants", "components"), self.loadings),
                "sample_pca_singular_value": ("components", self.singular_values),
                "sample_pca_explained_variance_ratio": ("components",
                                                        self.explained_variance_ratio),
                "pca_variant_index": ("pca_variants", self.variant_index),
                "pca_variant_id": ("pca_variants", self.variant_id.astype(object)),
                "pca_variant_mean": ("pca_variants", self.means),
                "pca_variant_scale": ("pca_variants", self.scales),
            },
            attrs={k: v for k, v in self.report.items() if isinstance(v, int | float | str)},
        )

    def to_covariates(self, prefix: str = "PC") -> xr.Dataset:
        """Scores as a covariate Dataset (``covariate_values`` (samples, covariates))."""
        return xr.Dataset(
            {
                "covariate_values": (("samples", "covariates"), self.scores),
                "covariate_id": ("covariates", np.array(self.component_ids(prefix), dtype=str)),
                "sample_id": ("samples", self.sample_id.astype(str)),
            }
        )


def genotype_pcs(
    ds: xr.Dataset,
    *,
    n_components: int = 10,
    maf_min: float = 0.05,
    min_call_rate: float = 0.95,
    ld_prune_window: int = 200,
    r2_max: float = 0.2,
    n_power_iter: int = 4,
    n_oversamples: int = 10,
    seed: int = 0,
    variants_chunk_size: int | None = None,
    persist_bytes: int = 2 << 30,
) -> GenotypePCA:
    """Principal components of LD-pruned common variants by randomized SVD (dask).

    Parameters
    ----------
    ds
        Genotype Dataset in the VCF Zarr model (``call_genotype`` (variants, samples, ploidy)
        int8 or ``call_dosage``), lazily backed by dask.
    n_components
        Number of PCs.
    maf_min, min_call_rate, ld_prune_window, r2_max
        Variant selection (see :func:`ld_prune`).
    n_power_iter, n_oversamples
        Randomized SVD accuracy: QR-orthonormalised power iterations and extra sampled
        dimensions (Halko et al. 2011).
    seed
        Seed of the random test matrix (the only randomness).
    variants_chunk_size
        As in :func:`ld_prune`.
    persist_bytes
        Persist the standardised matrix (float32) in (cluster) memory when it is at most this
        large; above, each SVD pass recomputes it from the genotypes.

    Returns
    -------
    GenotypePCA
        Scores (samples, components), loadings, the variants used and their standardisation.

    Raises
    ------
    InputError
        Too few samples or variants left for ``n_components``.

    Examples
    --------
    >>> ds = simulate_populations(n_samples=60, n_variants=600, fst=0.1, seed=1)
    >>> pca = genotype_pcs(ds, n_components=3, seed=0)
    >>> pca.scores.shape
    (60, 3)
    >>> pop = ds.sample_population.values
    >>> bool(abs(np.corrcoef(pca.scores[:, 0], pop)[0, 1]) > 0.9)
    True
    """
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer) \
            or n_components < 1:
        raise InputError(f"n_components: expected a positive integer, found {n_components!r}")
    pruned = ld_prune(ds, maf_min=maf_min, min_call_rate=min_call_rate,
                      ld_prune_window=ld_prune_window, r2_max=r2_max,
                      variants_chunk_size=variants_chunk_size)
    idx = np.flatnonzero(pruned.keep)
    n_samples = pruned.n_samples
    if n_components > min(idx.size, n_samples) - 1 or idx.size < 2:
        raise InputError(
            f"n_components: {n_components} PCs need more than {n_components} samples and "
            f"variants; found {n_samples} samples and {idx.size} variants after filtering "
            f"(MAF >= {maf_min}, call rate >= {min_call_rate}, r^2 <= {r2_max}); lower "
            "n_components or relax the filters"
        )
    P = pruned.ploidy
    n_called = pruned.n_called[idx]
    freq = pruned.alt_sum[idx] / (P * n_called)
    means = P * freq
    scales = np.sqrt(P * freq * (1 - freq))
    # ||X||_F^2 from the sums: sum over called samples of ((g - mean) / scale)^2
    ss = (pruned.alt_sumsq[idx] - 2 * means * pruned.alt_sum[idx] + n_called * means**2) / scales**2
    total_ss = float(ss.sum())

    X = _standardized_matrix(ds, idx, means, scales, variants_chunk_size)
    fits = X.nbytes <= persist_bytes
    with single_threaded_blas():
        if fits:
            X = X.persist()
        u, s, v = da.linalg.svd_compressed(
            X, int(n_components), iterator="QR", n_power_iter=int(n_power_iter),
            n_oversamples=int(n_oversamples), seed=int(seed), compute=not fits,
        )
        u, s, v = dask.compute(u, s, v)
    u = np.asarray(u, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    # signs fixed: each component's largest-magnitude variant loading is positive
    flip = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
    flip[flip == 0] = 1
    u, v = u * flip, v * flip[:, None]
    scores = v.T * s
    # the PCA variants' IDs and alleles from their own chunks (not the whole columns)
    vid = ids_at(ds, idx) if "variant_id" in ds else idx.astype(str)
    alleles = (np.asarray(ds["variant_allele"].data[np.asarray(idx)][:, :2]).astype(str)
               if "variant_allele" in ds else None)
    report = {
        "n_variants": int(pruned.keep.size),
        "n_variants_common": int(pruned.common.sum()),
        "n_variants_pca": int(idx.size),
        "n_samples": int(n_samples),
        "maf_min": float(maf_min),
        "min_call_rate": float(min_call_rate),
        "ld_prune_window": int(ld_prune_window),
        "r2_max": float(r2_max),
        "n_power_iter": int(n_power_iter),
        "seed": int(seed),
        "persisted": bool(fits),
    }
    log.info("genotype PCA: %d samples x %d LD-pruned variants; PC1-%d explain %.1f%% of the "
             "variance", n_samples, idx.size, n_components, 100 * float((s**2).sum()) / total_ss)
    return GenotypePCA(
        scores=scores, loadings=u, singular_values=s,
        explained_variance_ratio=s**2 / total_ss, variant_index=idx, variant_id=vid,
        variant_allele=alleles, means=means, scales=scales,
        sample_id=np.asarray(ds["sample_id"].values).astype(str), ploidy=P, report=report,
    )


def _standardized_matrix(ds: xr.Dataset, idx: np.ndarray, means: np.ndarray, scales: np.ndarray,
                         chunks: int | None, *, flip: np.ndarray | None = None) -> da.Array:
    """Lazy (len(idx), samples) float32 standardised dosages of the variants ``idx``."""
    arr, ploidy = _genotype_array(ds, chunks)
    sel = arr[idx]
    if flip is not None and flip.any():
        # REF/ALT swapped relative to the fit: g_fit = P - g, so x = (g - (P - mean)) / -scale
        means = np.where(flip, ploidy - means, means)
        scales = np.where(flip, -scales, scales)
    sel = sel.rechunk({0: compute_rows(int(sel.shape[1]))})
    shape = (-1,) + (1,) * (sel.ndim - 1)
    chunks_1 = (sel.chunks[0],) + ((1,),) * (sel.ndim - 1)
    m = da.from_array(means.reshape(shape), chunks=chunks_1)
    s = da.from_array(scales.reshape(shape), chunks=chunks_1)
    kw: dict[str, Any] = {"drop_axis": 2} if sel.ndim == 3 else {}
    return da.map_blocks(_standardize_block, sel, m, s, dtype=np.float32,
                         meta=np.empty((0, 0), dtype=np.float32), **kw)


def project_samples(
    result: GenotypePCA,
    ds: xr.Dataset,
    *,
    allow_missing_variants: bool = False,
    variants_chunk_size: int | None = None,
) -> xr.Dataset:
    """Coordinates of (new) samples on fitted genotype PCs: ``X_new^T U``.

    Variants are matched by ``variant_id``; with ``variant_allele`` in both, a variant whose
    REF and ALT are swapped is counted on the fitted ALT allele. Each variant is standardised
    with the fitted mean and scale, and missing calls contribute 0 (the fitted mean).

    Parameters
    ----------
    result
        Output of :func:`genotype_pcs`.
    ds
        Genotype Dataset of the samples to project.
    allow_missing_variants
        Treat fitted variants absent from ``ds`` as missing (0) instead of failing.

    Returns
    -------
    xarray.Dataset
        ``sample_pca_projection`` (samples, components) float64 and ``sample_id``.
    """
    pos = variant_rows(ds, result.variant_id, source="the PCA variants")
    missing = pos < 0
    if missing.any():
        msg = (f"genotypes: {int(missing.sum())} of the {pos.size} PCA variants are not in the "
               f"genotypes to project (e.g. {', '.join(result.variant_id[missing][:3])})")
        if not allow_missing_variants:
            raise InputError(msg + "; project genotypes typed on the same variants, or pass "
                             "allow_missing_variants=True to treat them as missing")
        log.warning("%s; they are treated as missing (contribute 0)", msg)
    flip = np.zeros(pos.size, dtype=bool)
    if result.variant_allele is not None and "variant_allele" in ds:
        al = np.asarray(ds["variant_allele"].values)[np.where(missing, 0, pos)][:, :2].astype(str)
        same = (al == result.variant_allele).all(axis=1)
        swapped = (al == result.variant_allele[:, ::-1]).all(axis=1)
        bad = ~missing & ~same & ~swapped
        if bad.any():
            raise InputError(
                f"genotypes: {int(bad.sum())} PCA variants have other alleles in the genotypes to "
                f"project (e.g. {result.variant_id[bad][0]}); use genotypes on the same alleles"
            )
        flip = ~missing & swapped
        if flip.any():
            log.info("%d PCA variants have REF/ALT swapped; counted on the fitted ALT allele",
                     int(flip.sum()))
    keep = np.flatnonzero(~missing)
    X = _standardized_matrix(ds, pos[keep], result.means[keep], result.scales[keep],
                             variants_chunk_size, flip=flip[keep])
    U = da.from_array(result.loadings[keep].astype(np.float32), chunks=(X.chunks[0], -1))
    proj = da.dot(X.T, U)
    scores = proj.compute()
    return xr.Dataset(
        {
            "sample_id": ("samples", np.asarray(ds["sample_id"].values).astype(object)),
            "sample_pca_projection": (("samples", "components"), np.asarray(scores, np.float64)),
        }
    )


# --------------------------------------------------------------------------------------------
# a small structured-population simulator (tests, benchmarks)
# --------------------------------------------------------------------------------------------


def _population_block(
    block: int, *, seed: int, n_variants: int, population: np.ndarray, n_populations: int,
    fst: float, ld_rho: float, ploidy: int,
) -> np.ndarray:
    lo = block * _POP_BLOCK
    hi = min(lo + _POP_BLOCK, n_variants)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7, block)))
    m = hi - lo
    p = rng.uniform(0.1, 0.9, size=m)
    # Balding-Nichols population frequencies
    a = p * (1 - fst) / fst
    b = (1 - p) * (1 - fst) / fst
    fp = np.clip(rng.beta(a[:, None], b[:, None], size=(m, n_populations)), 0.005, 0.995)
    n_hap = population.size * ploidy
    z = rng.standard_normal((m, n_hap), dtype=np.float32)
    if ld_rho > 0:  # stationary AR(1) along the variants, in place
        z[1:] *= np.float32(np.sqrt(1 - ld_rho**2))
        rho = np.float32(ld_rho)
        for i in range(1, m):
            z[i] += rho * z[i - 1]
    thr = ndtri(fp).astype(np.float32)  # (m, populations)
    out = np.empty((m, n_hap), dtype=bool)
    # populations are contiguous groups of samples: compare block by block
    bounds = np.searchsorted(population, np.arange(n_populations + 1)) * ploidy
    for k in range(n_populations):
        lo, hi = bounds[k], bounds[k + 1]
        np.less(z[:, lo:hi], thr[:, k:k + 1], out=out[:, lo:hi])
    return out.view(np.int8).reshape(m, population.size, ploidy)


def _population_chunk(index: np.ndarray, **kw: Any) -> np.ndarray:
    if index.size == 0:
        return np.empty((0, kw["population"].size, kw["ploidy"]), dtype=np.int8)
    start, stop = int(index[0]), int(index[-1]) + 1
    out = np.empty((stop - start, kw["population"].size, kw["ploidy"]), dtype=np.int8)
    for block in range(start // _POP_BLOCK, (stop - 1) // _POP_BLOCK + 1):
        lo = block * _POP_BLOCK
        calls = _population_block(block, **kw)
        a, b = max(start, lo), min(stop, lo + calls.shape[0])
        out[a - start:b - start] = calls[a - lo:b - lo]
    return out


def simulate_populations(
    *,
    n_samples: int = 200,
    n_variants: int = 2000,
    n_populations: int = 2,
    fst: float = 0.05,
    ld_rho: float = 0.5,
    ploidy: int = 2,
    contig_length: int = 100_000_000,
    seed: int = 0,
    variants_chunk_size: int = 10_000,
) -> xr.Dataset:
    """Lazily simulated genotypes of structured populations (Balding-Nichols), with LD.

    Ancestral ALT frequencies ``p ~ U(0.1, 0.9)``; each population's frequency
    ``~ Beta(p (1 - F) / F, (1 - p) (1 - F) / F)`` (``F = fst``). Haplotypes threshold a latent
    Gaussian AR(1) process along the variants (correlation ``ld_rho`` between neighbours,
    restarting every 256 variants) at the population's frequency quantile. Samples are assigned
    to populations in equal, contiguous groups. Generated per chunk from seeds derived per
    256-variant block, so the result does not depend on ``variants_chunk_size``.

    Returns
    -------
    xarray.Dataset
        The genotype model (one contig ``"1"``) plus ``sample_population`` (samples,) int64.
    """
    if not 0 < fst < 1:
        raise InputError(f"fst: expected a number in (0, 1), found {fst!r}")
    if not 0 <= ld_rho < 1:
        raise InputError(f"ld_rho: expected a number in [0, 1), found {ld_rho!r}")
    if n_samples < n_populations or n_populations < 1 or n_variants < 1:
        raise InputError(
            f"n_samples, n_populations, n_variants: expected n_variants >= 1 and n_samples >= "
            f"n_populations >= 1, found {n_samples}, {n_populations}, {n_variants}"
        )
    population = np.repeat(np.arange(n_populations), -(-n_samples // n_populations))[:n_samples]
    kw: dict[str, Any] = dict(seed=int(seed), n_variants=int(n_variants), population=population,
                              n_populations=int(n_populations), fst=float(fst),
                              ld_rho=float(ld_rho), ploidy=int(ploidy))
    index = da.arange(n_variants, chunks=variants_chunk_size, dtype=np.int64)
    calls = da.map_blocks(_population_chunk, index, new_axis=[1, 2],
                          chunks=(index.chunks[0], (n_samples,), (ploidy,)), dtype=np.int8,
                          meta=np.empty((0, 0, 0), dtype=np.int8), **kw)
    step = max(contig_length // max(n_variants, 1), 1)
    pos = (np.arange(n_variants, dtype=np.int64) * step + 1).astype(np.int64)
    width = len(str(n_samples))
    return xr.Dataset(
        {
            "call_genotype": (("variants", "samples", "ploidy"), calls),
            "variant_contig": ("variants", np.zeros(n_variants, dtype=np.int16)),
            "variant_position": ("variants", pos),
            "variant_id": ("variants", np.array([f"1_{p}" for p in pos], dtype=object)),
            "variant_allele": (("variants", "alleles"),
                               np.tile(np.array([["A", "G"]], dtype=object), (n_variants, 1))),
            "contig_id": ("contigs", np.array(["1"], dtype=object)),
            "sample_id": ("samples", np.array([f"P{i:0{width}d}" for i in range(n_samples)],
                                              dtype=object)),
            "sample_population": ("samples", population.astype(np.int64)),
        },
        attrs={"source": "dqtl.preprocess.pca.simulate_populations", "seed": int(seed)},
    )
