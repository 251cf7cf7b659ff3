"""Pure array kernels of the association engine (numpy, or cupy through the same calls).

No xarray, no dask, no I/O. Shapes are written ``(variants, samples)`` for genotypes and
``(phenotypes, samples)`` for phenotypes.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import scipy.stats

__all__ = [
    "get_array_module",
    "dosage_from_calls",
    "impute_mean",
    "allele_stats",
    "residual_norm2",
    "t_from_r",
    "pval_from_t",
    "stats_from_r",
]


def get_array_module(x: Any) -> ModuleType:
    """Return ``cupy`` for cupy arrays, else ``numpy``."""
    mod = type(x).__module__
    if mod.startswith("cupy"):
        import cupy  # noqa: PLC0415  (optional dependency)

        return cupy
    return np


def dosage_from_calls(gt: Any, dtype: Any = np.float64) -> Any:
    """ALT allele dosage from calls (variants, samples, ploidy) int8.

    An allele index > 0 counts as ALT; -1 marks a missing allele (the whole call becomes NaN);
    -2 marks a non-present allele (mixed ploidy) and is ignored.

    Returns
    -------
    (variants, samples) array of ``dtype`` with NaN for missing calls.
    """
    xp = get_array_module(gt)
    d = (gt > 0).sum(axis=-1).astype(dtype)
    missing = (gt == -1).any(axis=-1)
    d[missing] = xp.nan
    return d


def impute_mean(G: Any) -> tuple[Any, Any]:
    """Replace NaN in each row by the mean of the row's non-missing values (in place).

    Returns ``(G, n_missing)``; an all-missing row becomes all zeros.
    """
    xp = get_array_module(G)
    miss = xp.isnan(G)
    n_missing = miss.sum(axis=1)
    if int(n_missing.sum()):
        n_obs = G.shape[1] - n_missing
        sums = xp.where(miss, 0, G).sum(axis=1)
        means = xp.where(n_obs > 0, sums / xp.maximum(n_obs, 1), 0)
        rows, cols = xp.nonzero(miss)
        G[rows, cols] = means[rows]
    return G, n_missing


def allele_stats(G: Any, ploidy: int = 2) -> tuple[Any, Any, Any]:
    """ALT allele frequency, minor-allele samples and minor-allele count per variant.

    Follows tensorQTL: ``af = sum(g) / (ploidy n)``; if ``af <= 0.5`` the minor allele is ALT:
    ``ma_samples = #{g > 0.5}``, ``ma_count = trunc(sum(g[g > 0.5]))``; otherwise REF:
    ``ma_samples = #{g < ploidy - 0.5}``, ``ma_count = ploidy n - trunc(sum(g[g > 0.5]))``.
    Computed on (mean-imputed) dosages, so imputed calls contribute fractional counts.
    """
    xp = get_array_module(G)
    n = G.shape[1]
    s = G.sum(axis=1, dtype=xp.float64)
    af = s / (ploidy * n)
    alt_minor = af <= 0.5
    m_alt = G > 0.5
    m_ref = G < ploidy - 0.5
    ma_samples = xp.where(alt_minor, m_alt.sum(axis=1), m_ref.sum(axis=1)).astype(xp.int32)
    c_alt = xp.trunc(xp.where(m_alt, G, 0).sum(axis=1, dtype=xp.float64))
    ma_count = xp.where(alt_minor, c_alt, ploidy * n - c_alt).astype(xp.int32)
    return af, ma_samples, ma_count


def residual_norm2(G: Any, Q: Any) -> Any:
    """Squared norm of each row of ``G`` after projecting out the columns of ``Q``.

    ``||g||^2 - ||Q^T g||^2`` in float64, clipped at 0 (``Q`` orthonormal, (samples, k)).
    Rows are centred first for accuracy (``Q`` spans the intercept, so this changes nothing
    mathematically but avoids cancellation).
    """
    xp = get_array_module(G)
    G64 = G.astype(xp.float64, copy=False)
    Gc = G64 - G64.mean(axis=1, keepdims=True)
    GQ = Gc @ Q
    out = (Gc * Gc).sum(axis=1) - (GQ * GQ).sum(axis=1)
    return xp.maximum(out, 0.0)


def t_from_r(r: Any, dof: Any) -> Any:
    """t statistic from a partial correlation: ``r sqrt(dof / (1 - r^2))`` (float64)."""
    xp = get_array_module(r)
    r = r.astype(xp.float64, copy=False)
    r2 = xp.minimum(r * r, 1.0)
    with np.errstate(divide="ignore"):
        return r * xp.sqrt(dof / (1.0 - r2))


def pval_from_t(t: Any, dof: Any) -> Any:
    """Two-sided p-value of a t statistic with ``dof`` degrees of freedom (float64, on host)."""
    t = np.asarray(_to_host(t), dtype=np.float64)
    return 2.0 * scipy.stats.t.sf(np.abs(t), dof)


def stats_from_r(
    r: Any, dof: Any, g_norm: Any, p_norm: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """t, p, slope and slope_se from correlations ``r`` and residual norms.

    ``slope = r ||p_res|| / ||g_res||`` (the OLS coefficient of the genotype given covariates),
    ``slope_se = slope / t``. All float64, returned on the host.
    """
    r = np.asarray(_to_host(r), dtype=np.float64)
    t = t_from_r(r, dof)
    p = pval_from_t(t, dof)
    slope = r * np.asarray(_to_host(p_norm), dtype=np.float64) / np.asarray(_to_host(g_norm), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(t != 0, slope / t, np.nan)
        # r == 0: slope 0, se from the closed form sqrt(rss / dof) / ||g_res||
        zero = t == 0
        if zero.any():
            se_zero = np.asarray(_to_host(p_norm), dtype=np.float64) / np.sqrt(
                np.broadcast_to(dof, r.shape).astype(np.float64)
            ) / np.asarray(_to_host(g_norm), dtype=np.float64)
            se = np.where(zero, se_zero, se)
    return t, p, slope, se


def _to_host(x: Any) -> Any:
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return x

