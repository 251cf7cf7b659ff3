"""Mediation of a variant's effect on a target through candidate mediators (pure numpy).

For a variant ``g``, a target ``t`` and mediators ``M`` (k, n), all residualized on the covariate
basis ``[1, C]`` (Frisch-Waugh-Lovell: each estimate equals its full regression with the
covariates):

- total effect ``c``: ``t ~ g + C``; ``a``: ``m ~ g + C`` (with its standard error);
- direct effect ``c'`` and ``b``: ``t ~ g + m + C`` (``b`` with its standard error);
- indirect ``a b`` (``= c - c'`` exactly), proportion mediated ``a b / c``;
- Sobel ``z = a b / sqrt(b^2 se_a^2 + a^2 se_b^2)`` and its two-sided normal p;
- the permutation null of ``|t_b|`` (GMAC's scheme): the mediator permuted within the genotype
  classes of ``g`` (its association with ``g`` kept, its association with ``t`` given ``g`` broken),
  re-residualized on the covariates, ``t_b`` recomputed.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["mediation_stats", "class_permutations", "mediation_perm_tb"]


def mediation_stats(g: np.ndarray, t: np.ndarray, M: np.ndarray, dof: int) -> dict[str, np.ndarray]:
    """Estimates for one (variant, target) and mediators ``M`` (k, n); ``g``, ``t``, ``M``
    residualized on the covariates; ``dof`` the residual dof of ``m ~ g + C`` (``n - rank - 1``).

    >>> rng = np.random.default_rng(0)
    >>> g = rng.normal(size=500); m = 0.5 * g + rng.normal(size=500); t = 0.4 * m + rng.normal(size=500)
    >>> g, m, t = g - g.mean(), m - m.mean(), t - t.mean()
    >>> out = mediation_stats(g, t, m[None, :], 498)
    >>> bool(abs(out["beta_total"][0] - out["beta_direct"][0] - out["beta_indirect"][0]) < 1e-12)
    True
    """
    M = np.atleast_2d(M)
    gg = float(g @ g)
    c = float(g @ t) / gg
    c_direct, b, se_b, gm, mm = _fit_g_and_m(g, t, M, dof)
    a = gm / gg
    rss_a = np.maximum(mm - a * gm, 0.0)
    se_a = np.sqrt(rss_a / dof / gg)
    with np.errstate(invalid="ignore", divide="ignore"):
        ab = a * b
        z = ab / np.sqrt(b * b * se_a * se_a + a * a * se_b * se_b)
        prop = ab / c
    return {"beta_total": np.full(M.shape[0], c), "beta_a": a, "se_a": se_a, "beta_b": b,
            "se_b": se_b, "t_b": b / se_b, "beta_direct": c_direct, "beta_indirect": ab,
            "prop_mediated": prop, "z_sobel": z, "pval_sobel": 2.0 * special.ndtr(-np.abs(z))}


def class_permutations(classes: np.ndarray, nperm: int, rng: np.random.Generator) -> np.ndarray:
    """(nperm, n) sample permutations that move samples only within their class (genotype).

    >>> p = class_permutations(np.array([0, 0, 1, 1, 1]), 3, np.random.default_rng(0))
    >>> bool(np.all(np.sort(p[:, :2], axis=1) == [0, 1])), bool(np.all(np.sort(p[:, 2:], axis=1) == [2, 3, 4]))
    (True, True)
    """
    n = classes.size
    out = np.tile(np.arange(n), (nperm, 1))
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        if idx.size > 1:
            shuffled = np.argsort(rng.random((nperm, idx.size)), axis=1)
            out[:, idx] = idx[shuffled]
    return out


def mediation_perm_tb(g: np.ndarray, t: np.ndarray, m: np.ndarray, Q: np.ndarray, dof: int,
                      perms: np.ndarray) -> np.ndarray:
    """``|t_b|`` of ``t ~ g + m* + C`` for each permuted mediator ``m* = P m`` (re-residualized
    on the basis ``Q``, (n, r) orthonormal); ``g``, ``t``, ``m`` residualized."""
    Mp = m[perms]  # (N, n)
    Mp = Mp - (Mp @ Q) @ Q.T
    _, b, se_b, _, _ = _fit_g_and_m(g, t, Mp, dof)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(b / se_b)


def _fit_g_and_m(g: np.ndarray, t: np.ndarray, M: np.ndarray, dof: int
                 ) -> tuple[np.ndarray, ...]:
    """OLS of ``t ~ g + m`` for each row ``m`` of ``M`` (all residualized, ``dof`` of the
    single-regressor fit): the direct effect of ``g``, the effect ``b`` of ``m`` and its SE, and
    ``g . m``, ``m . m`` (the mediator model reuses them)."""
    gg = float(g @ g)
    gt = float(g @ t)
    tt = float(t @ t)
    gm = M @ g
    mm = np.einsum("ij,ij->i", M, M)
    mt = M @ t
    det = gg * mm - gm * gm
    with np.errstate(invalid="ignore", divide="ignore"):
        c_direct = (mm * gt - gm * mt) / det
        b = (gg * mt - gm * gt) / det
        rss = np.maximum(tt - c_direct * gt - b * mt, 0.0)
        se_b = np.sqrt(rss / (dof - 1) * gg / det)
    return c_direct, b, se_b, gm, mm
