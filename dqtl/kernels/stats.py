"""Statistics from partial correlations: t, p, slope and its standard error; thresholds; exact sums."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from dqtl.kernels.genotypes import get_array_module, to_host

__all__ = ["t_from_r", "pval_from_t", "stats_from_r", "r_threshold", "float32_tolerance", "exact_sum",
           "exact_sums"]

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


_EXP_BINS = 1100  # np.frexp exponents of finite float64 lie in [-1073, 1024]
_N_BINS = 2 * _EXP_BINS


def exact_sums(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Correctly rounded sum of the finite float64 ``values`` of each group (``math.fsum`` of
    each group's values; 0.0 for an empty group), vectorised over all groups at once.

    Each value is ``M * 2^(e - 53)`` with an integer significand ``M`` (``np.frexp``); ``M`` splits
    into a top part below ``2^26`` and a bottom part below ``2^27``, whose sums per group and
    exponent are exact in float64 (``np.bincount``) while a group has fewer than ``2^26`` values.
    The per-exponent sums are combined in Python integers and rounded once (int-to-float and
    int/int division round correctly). Order independent; an exact zero is +0.0 (as ``math.fsum`` in CPython 3.11);
    +-inf where the rounded sum overflows.

    >>> exact_sums(np.array([1e16, 1.0, -1e16, 0.1]), np.array([0, 0, 0, 1]), 3).tolist()
    [1.0, 0.1, 0.0]
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    g = np.asarray(groups, dtype=np.intp).ravel()
    out = np.zeros(n_groups, dtype=np.float64)
    if a.size == 0:
        return out
    if int(np.bincount(g, minlength=n_groups).max()) >= 2**26:
        for k in range(n_groups):
            out[k] = math.fsum(a[g == k].tolist())
        return out
    m, e = np.frexp(a)
    big = (m * 9007199254740992.0).astype(np.int64)  # 2^53 M: exact integers
    idx = g * _N_BINS
    idx += e
    idx += _EXP_BINS
    size = n_groups * _N_BINS
    hs = np.bincount(idx, weights=(big >> 27).astype(np.float64), minlength=size)  # |top| < 2^26
    ls = np.bincount(idx, weights=(big & 134217727).astype(np.float64), minlength=size)  # < 2^27
    nz = np.flatnonzero((hs != 0) | (ls != 0))
    totals: dict[int, tuple[int, int]] = {}  # group -> (integer sum, exponent bin of its unit)
    for k, h, low in zip(nz.tolist(), hs[nz].tolist(), ls[nz].tolist(), strict=True):
        grp, b = divmod(k, _N_BINS)
        part = (int(h) << 27) + int(low)
        if grp in totals:  # bins ascend within a group: shift the new part up to the first bin
            tot, b0 = totals[grp]
            totals[grp] = (tot + (part << (b - b0)), b0)
        else:
            totals[grp] = (part, b)
    for grp, (tot, b0) in totals.items():
        scale = b0 - _EXP_BINS - 53
        try:
            out[grp] = float(tot << scale) if scale >= 0 else tot / (1 << -scale)
        except OverflowError:
            out[grp] = math.inf if tot > 0 else -math.inf
    return out


def exact_sum(a: np.ndarray) -> float:
    """Correctly rounded sum of finite float64 values (``math.fsum``), vectorised: see
    :func:`exact_sums`.

    >>> exact_sum(np.array([1e16, 1.0, -1e16]))
    1.0
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    return float(exact_sums(a, np.zeros(a.size, dtype=np.intp), 1)[0])
