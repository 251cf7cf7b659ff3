"""Beta approximation of cis permutation p-values (FastQTL / tensorQTL ``beta_approx``).

For one phenotype, each of ``nperm`` sample permutations gives the maximum ``r^2`` over the cis
window. Converted to nominal p-values, these per-permutation minimum p-values follow roughly a
``Beta(a, b)`` distribution, *if* the p-values are computed with an effective number of degrees
of freedom ``true_df`` chosen so that ``a ~ 1`` (FastQTL, Ongen et al. 2016). The procedure,
following tensorQTL 1.0.10 (``core.fit_beta_parameters`` / ``calculate_beta_approx_pval``):

1. ``true_df``: root in ``log(df)`` of ``log(a_mom(df)) = 0``, where ``a_mom`` is the
   method-of-moments Beta shape1 of ``pval_from_r2(r2_perm, df)``. tensorQTL uses a secant
   iteration from ``log(dof)`` with ``tol = 1e-4``; we run the secant iteration from ``log(dof)``
   until its error estimate is ~1e-10 (about five evaluations; on p-values interpolated in r2,
   within 1e-12 of the exact ones, when the interpolant passes its checks, see
   :class:`_LogPInterpolant`; the phenotypes of one call iterate together, each on its own
   values, so a task's genes cost a few dozen array operations, not a few hundred per gene,
   while their results equal those of each gene fitted alone), and where it fails (an iterate out of range or
   not finite) bracket the root around ``log(dof)`` (expanding up to a factor ``1e4`` either way)
   and solve it with Brent's method to ``1e-8``; so our ``true_df`` is the root to ~1e-8
   (tensorQTL's is within its ``1e-4`` tolerance). No root in range: ``df`` minimising
   ``|a_mom - 1|`` on that range, ``converged = False``.
2. ``(a, b)``: maximum-likelihood Beta fit to those p-values from the method-of-moments start
   (tensorQTL: Nelder-Mead, ``tol = 1e-4``; we use Newton's method on the concave
   log-likelihood to ``1e-10``, vectorised over phenotypes).
3. ``pval_beta = BetaCDF(pval_from_r2(r2_obs, true_df); a, b)``.

Agreement with tensorQTL on ``tests/reference/tensorqtl_beta`` is limited by tensorQTL's own
optimiser tolerances (about 1e-3 relative on shapes, see the test module).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
from scipy import special

from dqtl.errors import InputError

__all__ = [
    "pval_from_r2",
    "fit_beta_mle",
    "fit_true_df",
    "beta_approx_pval",
    "nominal_threshold",
    "min_pvalue_threshold",
]

logger = logging.getLogger(__name__)

#: Largest factor by which the effective dof may differ from the nominal dof.
DF_SEARCH_FACTOR = 1e4
_LOG_RANGE = math.log(DF_SEARCH_FACTOR)


def pval_from_r2(r2: np.ndarray | float, dof: np.ndarray | float) -> np.ndarray:
    """Two-sided t-test p-value of a correlation with squared value ``r2`` and ``dof`` degrees of freedom.

    ``t^2 = dof r2 / (1 - r2)`` and ``p = 2 P(T_dof > |t|) = I_{1 - r2}(dof / 2, 1 / 2)`` (regularised
    incomplete beta function; no cancellation for tiny p). ``r2`` is clipped to [0, 1].

    Parameters
    ----------
    r2 : array_like
        Squared correlations.
    dof : array_like
        Degrees of freedom (> 0, may be non-integer); broadcast against ``r2``.

    Returns
    -------
    np.ndarray
        float64 p-values (NaN where ``r2`` or ``dof`` is NaN).
    """
    r2 = np.clip(np.asarray(r2, dtype=np.float64), 0.0, 1.0)
    dof = np.asarray(dof, dtype=np.float64)
    return special.betainc(0.5 * dof, 0.5, 1.0 - r2)


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance (``ddof=0``, as ``np.var``) along the last axis, NaN-skipping."""
    valid = ~np.isnan(x)
    n = valid.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.all(valid):
            mean = np.mean(x, axis=-1) if x.shape[-1] else np.full(x.shape[:-1], np.nan)
            var = np.var(x, axis=-1) if x.shape[-1] else np.full(x.shape[:-1], np.nan)
        else:
            xz = np.where(valid, x, 0.0)
            mean = xz.sum(axis=-1) / n
            dev = np.where(valid, x - mean[..., None], 0.0)
            var = (dev * dev).sum(axis=-1) / n
    return mean, var


def _shape1_mom(pvals: np.ndarray) -> np.ndarray:
    """Method-of-moments Beta shape1 along the last axis."""
    mean, var = _moments(pvals)
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean * (mean * (1.0 - mean) / var - 1.0)


def _shape1_mom_rows(p: np.ndarray) -> np.ndarray:
    """:func:`_shape1_mom` of each row of a 2-D array without NaN, bit for bit (``np.mean`` and
    ``np.var``'s own operations, the means computed once, no NaN masks: the secant's ~6
    evaluations per gene). Each row's value depends on that row alone."""
    n = p.shape[1]
    mean = p.sum(axis=1) / n
    dev = p - mean[:, None]
    dev *= dev
    var = dev.sum(axis=1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean * (mean * (1.0 - mean) / var - 1.0)


def _log_shape1_rows(p: np.ndarray) -> np.ndarray:
    """``log`` of :func:`_shape1_mom_rows` (NaN where the shape is not positive): the secant's
    ``g`` and the exact check of its roots."""
    a = _shape1_mom_rows(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), np.nan)


def fit_beta_mle(
    x: np.ndarray, *, maxiter: int = 100, tol: float = 1e-10
) -> tuple[float | np.ndarray, float | np.ndarray, bool | np.ndarray]:
    """Maximum-likelihood fit of ``Beta(shape1, shape2)`` along the last axis of ``x``.

    Parameters
    ----------
    x : array_like
        Values in [0, 1] (e.g. per-permutation minimum p-values), shape ``(n,)`` or
        ``(..., n)``; NaN values are ignored.
    maxiter : int
        Maximum Newton iterations.
    tol : float
        Convergence when every relative parameter step is below ``tol``.

    Returns
    -------
    (shape1, shape2, converged)
        Floats for 1-D input, arrays of shape ``x.shape[:-1]`` otherwise.

    Notes
    -----
    Start values are the method-of-moments estimates ``a = m (m (1 - m) / v - 1)``,
    ``b = a (1 / m - 1)`` (as tensorQTL/FastQTL). The Beta log-likelihood depends on the data only
    through ``mean(log x)`` and ``mean(log(1 - x))`` and is concave in ``(a, b)``, so a damped
    Newton iteration converges from any positive start. Fallbacks (never raise, ``converged`` is
    False): fewer than 2 values or zero variance (all equal, or only 0s and 1s) give NaN shapes;
    values exactly 0 or 1 (log-likelihood unbounded) give the method-of-moments estimates;
    no convergence within ``maxiter`` gives the last iterate.
    """
    arr = np.asarray(x, dtype=np.float64)
    scalar = arr.ndim == 1
    arr2 = np.atleast_2d(arr)
    lead = arr2.shape[:-1]
    g = math.prod(lead)
    if arr2.shape[-1] == 0:
        arr2 = np.full((g, 1), np.nan)
    arr2 = arr2.reshape(g, arr2.shape[-1])
    nvalid = np.sum(~np.isnan(arr2), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean, var = _moments(arr2)
        a0 = mean * (mean * (1.0 - mean) / var - 1.0)
        b0 = a0 * (1.0 / mean - 1.0)
    with np.errstate(invalid="ignore"):
        constant = np.fmax.reduce(arr2, axis=1) == np.fmin.reduce(arr2, axis=1)
    bad = (
        (nvalid < 2)
        | constant
        | ~(var > 0)
        | ~np.isfinite(a0)
        | ~np.isfinite(b0)
        | ~(a0 > 0)
        | ~(b0 > 0)
    )
    edge = np.any((arr2 <= 0) | (arr2 >= 1), axis=1) & ~bad
    shape1 = np.where(bad, np.nan, a0)
    shape2 = np.where(bad, np.nan, b0)
    converged = np.zeros(g, dtype=bool)
    fit = ~bad & ~edge
    if np.any(fit):
        sub = arr2[fit]
        valid = ~np.isnan(sub)
        cnt = valid.sum(axis=1)
        s1 = np.where(valid, np.log(np.where(valid, sub, 0.5)), 0.0).sum(axis=1) / cnt
        s2 = np.where(valid, np.log1p(-np.where(valid, sub, 0.5)), 0.0).sum(axis=1) / cnt
        a, b, conv = _newton_beta(a0[fit], b0[fit], s1, s2, maxiter=maxiter, tol=tol)
        shape1[fit] = a
        shape2[fit] = b
        converged[fit] = conv
    n_bad = int(np.count_nonzero(bad))
    n_edge = int(np.count_nonzero(edge))
    if n_bad or n_edge:
        logger.debug(
            "fit_beta_mle: %d fit(s) degenerate (NaN shapes), %d with values at 0/1 (moments)",
            n_bad,
            n_edge,
        )
    if scalar:
        return float(shape1[0]), float(shape2[0]), bool(converged[0])
    return shape1.reshape(lead), shape2.reshape(lead), converged.reshape(lead)


def _negloglik(a: np.ndarray, b: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Mean negative Beta log-likelihood from the sufficient statistics."""
    return special.betaln(a, b) - (a - 1.0) * s1 - (b - 1.0) * s2


def _newton_beta(
    a: np.ndarray, b: np.ndarray, s1: np.ndarray, s2: np.ndarray, *, maxiter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Damped Newton for the Beta MLE, vectorised; returns (a, b, converged)."""
    a = a.copy()
    b = b.copy()
    conv = np.zeros(a.shape, dtype=bool)
    f = _negloglik(a, b, s1, s2)
    active = np.ones(a.shape, dtype=bool)
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        ai, bi, fi = a[idx], b[idx], f[idx]
        with np.errstate(all="ignore"):
            dab = special.digamma(ai + bi)
            ga = special.digamma(ai) - dab - s1[idx]  # gradient of the mean negative log-lik
            gb = special.digamma(bi) - dab - s2[idx]
            tab = special.polygamma(1, ai + bi)
            haa = special.polygamma(1, ai) - tab
            hbb = special.polygamma(1, bi) - tab
            hab = -tab
            det = haa * hbb - hab * hab
            da = -(hbb * ga - hab * gb) / det
            db = -(haa * gb - hab * ga) / det
            # keep the parameters positive: at most halve either one per step
            lim = np.minimum(
                np.where(da < 0, -0.5 * ai / da, np.inf), np.where(db < 0, -0.5 * bi / db, np.inf)
            )
            step = np.minimum(1.0, lim)
            # a full step below 1e-4 (relative) is in Newton's quadratic region of this convex
            # objective: taken as it is. The line search on f only guards larger steps: f cannot
            # tell points ~1e-8 apart (round-off), so it stopped fits short of the root of the
            # score equations (gradient ~1e-7; shapes ~1e-7 off, moved as much by input changes
            # of 1e-14)
            near = (np.abs(da) <= 1e-4 * ai) & (np.abs(db) <= 1e-4 * bi)
            na, nb = ai + step * da, bi + step * db
            nf = _negloglik(na, nb, s1[idx], s2[idx])
            for _ in range(60):  # backtracking: no increase beyond round-off
                worse = ~(nf <= fi + 1e-15 * np.abs(fi)) & ~near
                if not np.any(worse):
                    break
                step = np.where(worse, step * 0.5, step)
                na, nb = ai + step * da, bi + step * db
                nf = np.where(worse, _negloglik(na, nb, s1[idx], s2[idx]), nf)
            done = (np.abs(step * da) <= tol * na) & (np.abs(step * db) <= tol * nb)
        # a non-finite Newton step (singular Hessian) or no descent: stop, keep the last point
        bad = ~(np.isfinite(na) & np.isfinite(nb) & np.isfinite(nf)) | (~(
            nf <= fi + 1e-15 * np.abs(fi)
        ) & ~near)
        a[idx] = np.where(bad, ai, na)
        b[idx] = np.where(bad, bi, nb)
        f[idx] = np.where(bad, fi, nf)
        conv[idx[done & ~bad]] = True
        active[idx[done | bad]] = False
    return a, b, conv


#: first secant step: a Newton step with this slope of ``g(x) = log a_mom(exp x)`` (at 500
#: samples and 400-4,000 variants per window the slope at the root is -1.7 to -2.0 for 90% of
#: genes; any value only moves the start, clipped to ``_FIRST_STEP_MAX``)
_FIRST_SLOPE = -1.82
_FIRST_STEP_MAX = 0.5


#: Chebyshev points of the interpolant of ``log p`` in ``r2`` the secant iterates use
_INTERP_NODES = 32
#: largest relative error of the interpolated p-values at its check points (else exact p-values)
_INTERP_MAX_ERROR = 1e-12
#: an interpolated root is kept when the exact ``|g|`` there is at most this (the exact secant's
#: roots have ``|g| ~ 1e-10``; an interpolant's error of 1e-12 moves the root by about as much)
_INTERP_ROOT_G = 1e-9


class _LogPInterpolant:
    """The p-values ``pval_from_r2(r2, df)`` of phenotypes' permutation ``r2`` (one row each)
    for any df, from ``log p`` at :data:`_INTERP_NODES` Chebyshev points (second kind) of each
    row's ``[log min r2, log max r2]`` by barycentric interpolation in ``log r2``: 32 incomplete
    beta functions and a (nperm x 32) product per row and evaluation instead of ``nperm``
    incomplete beta functions (~165 us per 1,000 on this machine; they were 70% of the true_df
    fit, ~15% of a permutation run at array density). The rows are evaluated together, each
    from its own values only (a row's p-values do not depend on the other rows).

    ``log p`` is analytic in ``log r2`` (near ``r2 = 0``, ``1 - p ~ sqrt(r2)``, a singularity in
    ``r2`` itself); on permutation maxima of 2-20,000 variants at 30-1,000 samples the interpolant
    is within 1e-13 (relative) of the exact p-values, 2e-10 to 1e-8 with 1-2 variants (wide
    ranges of r2 down to 1e-10). :meth:`build` checks each row at 17 of its r2 (the smallest and
    16 at evenly spaced ranks) at the starting df against :data:`_INTERP_MAX_ERROR`; the caller
    also checks the root it leads to with exact p-values.
    """

    def __init__(self, r2: np.ndarray) -> None:
        """``r2``: (rows, nperm), every value in (0, 1)."""
        u = np.log(r2)
        lo, hi = u.min(axis=1, keepdims=True), u.max(axis=1, keepdims=True)
        j = np.arange(_INTERP_NODES)
        nodes = lo + (hi - lo) * ((np.cos(np.pi * j / (_INTERP_NODES - 1)) + 1.0) / 2.0)
        self.nodes = np.exp(nodes)  # (rows, 32) the r2 of the nodes
        w = np.where(j % 2 == 0, 1.0, -1.0)
        w[0] *= 0.5
        w[-1] *= 0.5
        c = u[:, :, None] - nodes[:, None, :]  # in place from here: no more (rows, nperm, 32) temporaries
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(w, c, out=c)
            total = c.sum(axis=2)
            c /= total[:, :, None]
        gi, mi = np.nonzero(~np.isfinite(total))  # an r2 at a node: that node's value
        c[gi, mi] = u[gi, mi, None] == nodes[gi]
        self.weights = c  # (rows, nperm, 32)

    @staticmethod
    def usable(r2: np.ndarray) -> np.ndarray:
        """(rows,) the rows an interpolant may serve: more r2 than twice the nodes (else as cheap
        to evaluate exactly), all in (0, 1) (log r2 and log p finite)."""
        if r2.shape[1] <= 2 * _INTERP_NODES:
            return np.zeros(r2.shape[0], dtype=bool)
        return (r2.min(axis=1) > 0) & (r2.max(axis=1) < 1)

    @classmethod
    def build(cls, r2: np.ndarray, dof: np.ndarray) -> tuple[_LogPInterpolant, np.ndarray]:
        """The interpolant of the rows of ``r2`` (all :meth:`usable`) and (rows,) whether each
        row is within :data:`_INTERP_MAX_ERROR` of the exact p-values at its ``dof``."""
        interp = cls(r2)
        m = r2.shape[1]
        check = np.concatenate([np.argmin(r2, axis=1)[:, None],
                                np.argsort(r2, axis=1)[:, np.linspace(0, m - 1, 16).astype(int)]], axis=1)
        rows = np.arange(r2.shape[0])[:, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            logp = np.log(pval_from_r2(interp.nodes, dof[:, None]))
            approx = np.exp(np.matmul(interp.weights[rows, check], logp[:, :, None])[:, :, 0])
            err = np.abs(approx / pval_from_r2(r2[rows, check], dof[:, None]) - 1.0)
        return interp, np.all(err <= _INTERP_MAX_ERROR, axis=1)

    def __call__(self, df: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(len(rows), nperm) p-values of ``rows`` at ``df`` (one per row)."""
        every = rows.size == self.weights.shape[0]  # the rows are always increasing
        nodes = self.nodes if every else self.nodes[rows]
        weights = self.weights if every else self.weights[rows]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            logp = np.log(pval_from_r2(nodes, df[:, None]))
            return np.exp(np.matmul(weights, logp[:, :, None])[:, :, 0])


def _secant_true_df(r2: np.ndarray, dof: np.ndarray,
                    evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The roots of ``g(x) = log a_mom(exp x)`` by the secant method from ``x0 = log(dof)``,
    for each row of ``r2`` (rows, nperm) with its own ``dof`` (rows,), all rows in lockstep.

    ``g`` is smooth and monotone in ``x`` and the root is usually within a few percent of
    ``log(dof)``. The second point is a Newton step from ``x0`` with the typical slope
    (:data:`_FIRST_SLOPE`); the secant steps then converge superlinearly, the error of a new
    iterate ``x_c`` being ``~ C |x_c - x_b| |x_c - x_a|`` with ``C = g'' / (2 g')`` (0.11-0.24
    on 2,000 simulated genes): a row stops when that product is below ``1e-10`` or a step is
    below ``1e-8``, so the root is found to ~1e-10 in log(df) (about 4.7 evaluations of the
    ``nperm`` p-values per gene; 5.9 with a fixed first step of 0.05 and the step rule alone).
    A row fails (the caller then brackets and uses Brent's method) when an iterate leaves the
    search range or is not finite, or 16 steps do not converge. Each row's iterates depend on
    its own values only.

    ``evaluate(df, rows)``: the (len(rows), nperm) p-values of ``rows`` at ``df`` (default
    exact; an interpolant, :class:`_LogPInterpolant`). Returns ``(true_df, p-values at
    true_df, found)``, (rows,), (rows, nperm) (the last evaluation, reused by the caller) and
    (rows,) bool; ``true_df`` and the p-values hold only where ``found``.
    """
    if evaluate is None:
        def evaluate(df: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return pval_from_r2(r2[rows], df[:, None])

    def g(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = evaluate(np.exp(x), rows)
        return _log_shape1_rows(p), p  # r2 has no NaN here

    dof = np.asarray(dof, dtype=np.float64)
    k = dof.size
    true_df, found = np.full(k, np.nan), np.zeros(k, dtype=bool)
    x0 = np.log(dof)
    ga, pvals = g(x0, np.arange(k))
    zero = ga == 0
    true_df[zero], found[zero] = dof[zero], True
    act = np.nonzero(np.isfinite(ga) & ~zero)[0]
    xa, ga = x0[act], ga[act]
    step = np.clip(-ga / _FIRST_SLOPE, -_FIRST_STEP_MAX, _FIRST_STEP_MAX)
    # x0 all but the root: a step the secant can still resolve
    step = np.where(np.abs(step) < 1e-4, np.copysign(1e-4, step), step)
    xb = x0[act] + step
    gb, pb = g(xb, act)
    for _ in range(16):
        if act.size == 0:
            break
        keep = np.isfinite(gb) & (gb != ga)
        zero = keep & (gb == 0)
        true_df[act[zero]], pvals[act[zero]], found[act[zero]] = np.exp(xb[zero]), pb[zero], True
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            xc = xb - gb * (xb - xa) / (gb - ga)
        keep &= ~zero & np.isfinite(xc) & (np.abs(xc - x0[act]) <= _LOG_RANGE)
        act, xa, ga, xb, gb, xc = act[keep], xa[keep], ga[keep], xb[keep], gb[keep], xc[keep]
        if act.size == 0:
            break
        gc, pc = g(xc, act)
        stop = (np.abs(xc - xb) <= 1e-8) | (np.abs(xc - xb) * np.abs(xc - xa) <= 1e-10)
        done = stop & np.isfinite(gc)
        true_df[act[done]], pvals[act[done]], found[act[done]] = np.exp(xc[done]), pc[done], True
        go = ~stop
        act, xa, ga, xb, gb, pb = act[go], xb[go], gb[go], xc[go], gc[go], pc[go]
    return true_df, pvals, found


#: the most (rows x nperm x nodes) float64 weights of one interpolant (8 MiB): genes in chunks
_INTERP_VALUES = 1 << 20


def _fit_true_df_interpolated(r2: np.ndarray, dof: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The interpolated secant (:class:`_LogPInterpolant`) on rows of ``r2`` with ``dof``
    (rows NaN-free, usable by an interpolant), in chunks of genes: ``(true_df, p-values at
    true_df, found)``; a row is found where its interpolant passed its check, the secant
    converged and the exact p-values at the root satisfy ``|g| <= _INTERP_ROOT_G``."""
    k, m = r2.shape
    true_df, pvals, found = np.full(k, np.nan), np.empty((k, m)), np.zeros(k, dtype=bool)
    step = max(1, _INTERP_VALUES // (m * _INTERP_NODES))
    for s in range(0, k, step):
        e = min(s + step, k)
        interp, ok = _LogPInterpolant.build(r2[s:e], dof[s:e])
        sub = np.nonzero(ok)[0]  # iterates on interpolated p-values; the roots checked exactly
        if not sub.size:
            continue
        def evaluate(d: np.ndarray, rows: np.ndarray, sub: np.ndarray = sub,
                     interp: _LogPInterpolant = interp) -> np.ndarray:
            return interp(d, sub[rows])

        df, _, hit = _secant_true_df(r2[s:e][sub], dof[s:e][sub], evaluate)
        rows = s + sub[hit]
        p = pval_from_r2(r2[rows], df[hit][:, None])
        with np.errstate(invalid="ignore"):
            good = np.abs(_log_shape1_rows(p)) <= _INTERP_ROOT_G  # (NaN: not good)
        true_df[rows[good]], pvals[rows[good]], found[rows[good]] = df[hit][good], p[good], True
    return true_df, pvals, found


def _fit_true_df_brent(r2: np.ndarray, dof: float) -> tuple[float, bool]:
    """Effective dof by bracketing around ``log(dof)`` and Brent's method (the fallback)."""
    r2 = r2[~np.isnan(r2)]
    if r2.size < 2 or r2.min() == r2.max() or not (dof > 0) or not math.isfinite(dof):
        return float(dof), False
    x0 = math.log(dof)

    def g(x: float) -> float:
        a = float(_shape1_mom(pval_from_r2(r2, math.exp(x))))
        return math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)

    g0 = g(x0)
    if not math.isfinite(g0):
        return float(dof), False
    if g0 == 0:
        return float(dof), True
    # g decreases with df: a larger dof makes the p-values smaller and shape1 smaller.
    direction = 1.0 if g0 > 0 else -1.0
    lo_x = x0
    step = 0.25
    hi_x: float | None = None
    hi_g = math.nan
    while True:
        x1 = x0 + direction * min(step, _LOG_RANGE)
        g1 = g(x1)
        if math.isfinite(g1) and (g1 == 0 or (g1 > 0) != (g0 > 0)):
            hi_x, hi_g = x1, g1
            break
        if not math.isfinite(g1) or step >= _LOG_RANGE:
            break
        lo_x = x1
        step *= 2.0
    # the fallback only (scipy.optimize takes 0.11 s to import, inside the first permutation tasks)
    from scipy import optimize

    if hi_x is not None:
        if hi_g == 0:
            return math.exp(hi_x), True
        try:
            root = optimize.brentq(g, min(lo_x, hi_x), max(lo_x, hi_x), xtol=1e-8, rtol=1e-12)
            return math.exp(root), True
        except (ValueError, RuntimeError):
            pass

    # no sign change in range: minimise |a - 1| on the search range
    def dist(x: float) -> float:
        gx = g(x)
        return abs(math.expm1(gx)) if math.isfinite(gx) else math.inf

    res = optimize.minimize_scalar(
        dist,
        bounds=(x0 - _LOG_RANGE, x0 + _LOG_RANGE),
        method="bounded",
        options={"xatol": 1e-8},
    )
    if res.success and math.isfinite(res.fun):
        return math.exp(float(res.x)), False
    return float(dof), False


def _broadcast_dof(dof: np.ndarray | float, g: int) -> np.ndarray:
    d = np.asarray(dof, dtype=np.float64).ravel()
    if d.size == 1:
        return np.full(g, d[0])
    if d.size != g:
        raise InputError(
            f"dof: expected a scalar or one value per phenotype ({g}), got {d.size} values; "
            f"pass one dof per row of r2_perm."
        )
    return d


def _fit_true_df_many(
    r2_perm: np.ndarray, dof: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(true_df, converged, p-values at true_df)`` per row of ``r2_perm``: the interpolated
    secant on the rows it serves, the exact secant on the others and where that fails (both
    over all such rows at once), Brent's method gene by gene. A row's results depend on that
    row (and its dof) alone."""
    r2 = np.asarray(r2_perm, dtype=np.float64)
    r2 = r2.reshape(-1, r2.shape[-1])
    g, m = r2.shape
    d = _broadcast_dof(dof, g)
    out = np.empty(g)
    conv = np.zeros(g, dtype=bool)
    pvals = np.empty(r2.shape)
    todo = np.ones(g, dtype=bool)
    if m >= 2:
        with np.errstate(invalid="ignore"):
            lo, hi = r2.min(axis=1), r2.max(axis=1)
        secant = ~np.isnan(lo) & (lo != hi) & (d > 0) & np.isfinite(d)  # (NaN min: a NaN row)
        rows = np.nonzero(secant & _LogPInterpolant.usable(r2))[0]
        for exact in (False, True):
            if rows.size:
                df, p, hit = (_secant_true_df(r2[rows], d[rows]) if exact
                              else _fit_true_df_interpolated(r2[rows], d[rows]))
                done = rows[hit]
                out[done], conv[done], pvals[done], todo[done] = df[hit], True, p[hit], False
            rows = np.nonzero(secant & todo)[0]
    for i in np.nonzero(todo)[0]:
        out[i], conv[i] = _fit_true_df_brent(r2[i], float(d[i]))
        pvals[i] = pval_from_r2(r2[i], out[i])
    return out, conv, pvals


def fit_true_df(r2_perm: np.ndarray, dof: np.ndarray | float) -> float | np.ndarray:
    """Effective degrees of freedom at which permutation minimum p-values fit ``Beta(a ~ 1, b)``.

    Parameters
    ----------
    r2_perm : array_like
        Max ``r^2`` per permutation, shape ``(nperm,)`` or ``(genes, nperm)``.
    dof : float or array_like
        Nominal residual degrees of freedom (scalar or one per gene); the search starts here.

    Returns
    -------
    float or np.ndarray
        ``true_df`` (float for 1-D input). Where no root exists within a factor
        ``DF_SEARCH_FACTOR`` of ``dof``, the df minimising ``|a - 1|`` in that range; where even
        that is impossible (fewer than 2 values, zero variance), ``dof`` itself.
    """
    r2 = np.asarray(r2_perm, dtype=np.float64)
    out, _, _ = _fit_true_df_many(r2, dof)
    return float(out[0]) if r2.ndim == 1 else out.reshape(r2.shape[:-1])


def beta_approx_pval(
    r2_perm: np.ndarray, r2_obs: np.ndarray | float, dof: np.ndarray | float
) -> dict[str, np.ndarray | float | bool]:
    """Beta-approximated permutation p-values (tensorQTL's ``calculate_beta_approx_pval``).

    Parameters
    ----------
    r2_perm : array_like
        Max ``r^2`` over the cis window per permutation, shape ``(nperm,)`` or ``(genes, nperm)``.
    r2_obs : float or array_like
        Observed (nominal) max ``r^2`` per gene.
    dof : float or array_like
        Nominal residual degrees of freedom (scalar or per gene).

    Returns
    -------
    dict
        ``true_df``, ``pval_true_df`` (nominal p of ``r2_obs`` at ``true_df``), ``beta_shape1``,
        ``beta_shape2``, ``pval_beta`` (``BetaCDF(pval_true_df; a, b)``) and ``converged``
        (both the df search and the MLE converged). Scalars for 1-D ``r2_perm``, arrays of
        shape ``(genes,)`` otherwise. NaN shapes (degenerate permutations) give NaN ``pval_beta``.
    """
    r2 = np.asarray(r2_perm, dtype=np.float64)
    one = r2.ndim == 1
    r2m = r2.reshape(-1, r2.shape[-1])
    g = r2m.shape[0]
    obs = np.asarray(r2_obs, dtype=np.float64).ravel()
    if obs.size == 1:
        obs = np.full(g, obs[0])
    if obs.size != g:
        raise InputError(
            f"r2_obs: expected a scalar or one value per phenotype ({g}), got {obs.size} values; "
            f"pass one observed r2 per row of r2_perm."
        )
    true_df, conv_df, pvals = _fit_true_df_many(r2m, dof)
    a, b, conv_mle = fit_beta_mle(pvals)
    a = np.asarray(a).reshape(g)
    b = np.asarray(b).reshape(g)
    p_true = pval_from_r2(obs, true_df)
    pval_beta = special.betainc(a, b, p_true)
    res = {
        "true_df": true_df,
        "pval_true_df": p_true,
        "beta_shape1": a,
        "beta_shape2": b,
        "pval_beta": pval_beta,
        "converged": conv_df & np.asarray(conv_mle).reshape(g),
    }
    if one:
        return {k: (bool(v[0]) if k == "converged" else float(v[0])) for k, v in res.items()}
    return res


def nominal_threshold(
    p_t: float | np.ndarray, shape1: float | np.ndarray, shape2: float | np.ndarray
) -> np.ndarray:
    """Per-gene nominal p-value threshold ``BetaPPF(p_t; shape1, shape2)`` (NaN for NaN shapes)."""
    return special.betaincinv(
        np.asarray(shape1, dtype=np.float64),
        np.asarray(shape2, dtype=np.float64),
        np.asarray(p_t, dtype=np.float64),
    )


def min_pvalue_threshold(pval_beta: np.ndarray, qvalues: np.ndarray, fdr: float) -> float:
    """Genome-wide ``pval_beta`` threshold at FDR ``fdr``, as tensorQTL's ``calculate_qvalues``.

    The midpoint between the largest ``pval_beta`` with ``q <= fdr`` and the smallest with
    ``q > fdr`` (or the former if every gene is significant); NaN if no gene is significant.
    """
    pb = np.asarray(pval_beta, dtype=np.float64)
    q = np.asarray(qvalues, dtype=np.float64)
    ok = ~np.isnan(pb) & ~np.isnan(q)
    sig = ok & (q <= fdr)
    if not np.any(sig):
        return math.nan
    lb = float(np.max(pb[sig]))
    rest = ok & ~(q <= fdr)
    if not np.any(rest):
        return lb
    return 0.5 * (lb + float(np.min(pb[rest])))
