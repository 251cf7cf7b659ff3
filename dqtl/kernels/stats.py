"""Statistics from partial correlations: t, p, slope and its standard error; thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from dqtl.kernels.genotypes import get_array_module, to_host

__all__ = ["t_from_r", "pval_from_t", "stats_from_r", "r_threshold", "float32_tolerance"]

#: float32 unit roundoff
U32 = float(np.finfo(np.float32).eps) / 2.0


def t_from_r(r: Any, dof: Any) -> Any:
    """t statistic from a partial correlation: ``r sqrt(dof / (1 - r^2))`` (float64)."""
    xp = get_array_module(r)
    r = r.astype(xp.float64, copy=False)
    r2 = xp.minimum(r * r, 1.0)
    with np.errstate(divide="ignore"):
        return r * xp.sqrt(dof / (1.0 - r2))


def pval_from_t(t: Any, dof: Any) -> np.ndarray:
    """Two-sided p-value of a t statistic with ``dof`` degrees of freedom (float64, on host)."""
    t = np.asarray(to_host(t), dtype=np.float64)
    dof = np.asarray(dof, dtype=np.float64)
    # scipy.stats.t.sf(x, dof) is special.stdtr(dof, -x) for dof > 0 (NaN otherwise), bit for
    # bit, without the distribution machinery (or importing scipy.stats: 0.3 s at start-up)
    with np.errstate(invalid="ignore"):
        return 2.0 * np.where(dof > 0, special.stdtr(dof, -np.abs(t)), np.nan)


def stats_from_r(
    r: Any, dof: Any, g_norm: Any, p_norm: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """t, p, slope and slope_se from correlations ``r`` and residual norms.

    ``slope = r ||p_res|| / ||g_res||`` (the OLS coefficient of the genotype given covariates),
    ``slope_se = slope / t`` (``sqrt(rss / dof) / ||g_res||`` where ``r == 0``). All float64,
    returned on the host.

    >>> t, p, b, se = stats_from_r(np.array([0.5]), 10, np.array([2.0]), np.array([4.0]))
    >>> round(float(t[0]), 6), round(float(b[0]), 6)
    (1.825742, 1.0)
    """
    r = np.asarray(to_host(r), dtype=np.float64)
    t = t_from_r(r, dof)
    p = pval_from_t(t, dof)
    pn = np.asarray(to_host(p_norm), dtype=np.float64)
    gn = np.asarray(to_host(g_norm), dtype=np.float64)
    slope = r * pn / gn
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(t != 0, slope / t, np.nan)
        zero = t == 0
        if zero.any():
            se_zero = pn / np.sqrt(np.broadcast_to(dof, r.shape).astype(np.float64)) / gn
            se = np.where(zero, se_zero, se)
    return t, p, slope, se


def r_threshold(pval_threshold: float, dof: Any) -> np.ndarray:
    """Correlation threshold of a two-sided t-test p-value threshold.

    ``t* = t.isf(p / 2, dof)`` and ``r* = t* / sqrt(dof + t*^2)``: ``|r| >= r*`` if and only if
    ``p <= pval_threshold`` (float64; one value per ``dof``).

    >>> round(float(r_threshold(1e-5, 83)), 6)
    0.458901
    """
    dof = np.asarray(dof, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # scipy.stats.t.isf(q, dof) = -stdtrit(dof, q)
        t = np.where(dof > 0, -special.stdtrit(dof, np.float64(pval_threshold) / 2.0), np.nan)
    return t / np.sqrt(dof + t * t)


def float32_tolerance(n_samples: int) -> float:
    """Bound on ``|r32 - r|`` for a float32 product of two float64 unit vectors of length ``n``.

    Rounding both inputs to float32 changes the product by at most ``2u + u^2``, and any
    summation order of ``n`` float32 products errs by at most ``gamma_n = n u / (1 - n u)``
    times ``sum |a_i b_i| <= 1`` (Cauchy-Schwarz), with ``u = 2^-24`` (Higham, *Accuracy and
    Stability of Numerical Algorithms*, 2nd ed., section 3.1, DOI 10.1137/1.9780898718027).
    The bound holds for blocked, pairwise, FMA or GPU summation alike, so relaxing the float32
    hit test by it never loses a hit; candidates are then re-checked exactly in float64.
    """
    nu = (n_samples + 3) * U32
    if nu >= 0.5:
        return float("inf")
    return 1.01 * (nu / (1.0 - nu) + 2.0 * U32)
