"""Storey q-values, pi0 and local FDR reproducing R ``qvalue`` 2.30.0 (``pi0est``, ``qvalue``, ``lfdr``).

Semantics copied from qvalue 2.30.0 (R 4.2.2):

* ``pi0(lambda) = #{p >= lambda} / (m (1 - lambda))`` over ``lambda = seq(0.05, 0.95, 0.05)``
  (R's doubles, e.g. 0.60000000000000009).
* ``"smoother"``: ``smooth.spline(lambda, pi0(lambda), df = 3)`` evaluated at lambda, then
  ``pi0 = min(fit at max(lambda), 1)``; see :mod:`dqtl.multitest.spline` for the exact R spline.
* ``"bootstrap"`` (deterministic in 2.30.0, no resampling): ``W = #{p >= lambda}``,
  ``mse = W / (m^2 (1 - lambda)^2) (1 - W / m) + (pi0(lambda) - q10)^2`` with ``q10`` the 10%
  (type 7) quantile of ``pi0(lambda)``; ``pi0 = min(pi0(lambda) at minimal mse, 1)``.
* A single lambda gives the fixed-lambda estimator ``min(mean(p >= lambda) / (1 - lambda), 1)``.
* q-values: ``pi0 * min(1, cummin(p m / i))`` over p in decreasing order (``pfdr`` divides by
  ``1 - (1 - p)^m``).
* lfdr: ``x = qnorm(clip(p, 1e-8, 1 - 1e-8))``, ``density(x, adjust = 1.5)``, a GCV
  ``smooth.spline`` through the density, ``lfdr = pi0 dnorm(x) / fit``, values > 1 set to 1,
  made monotone in p.

Where R stops with an error because pi0 cannot be estimated from the data (``max(p) <
max(lambda)``, an estimate <= 0 or non-finite, the smoother failing, no p-values), this
implementation logs a warning and falls back to ``pi0 = 1``, i.e. Benjamini-Hochberg q-values
(``QValueResult.pi0_method == "bh_fallback"``). Invalid *options* (lambda outside [0, 1) or with 2
or 3 values, an unknown method, fdr outside (0, 1]) raise :class:`~dqtl.errors.InputError`.

Accuracy against R (``tests/reference/qvalue``, measured): pi0, the smoothed pi0 curve and the
q-values ~2e-13 relative with the smoother (bit-identical with the bootstrap), lfdr ~1e-12
relative; BH (:func:`dqtl.multitest.bh`) bit-identical.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from dqtl.errors import InputError
from dqtl.multitest.bh import as_pvalues, bh
from dqtl.multitest.spline import SmoothingError, r_density, r_quantile7, smooth_spline

__all__ = ["QValueResult", "Pi0Estimate", "qvalue", "pi0est", "lfdr", "DEFAULT_LAMBDA"]

logger = logging.getLogger(__name__)

#: R's ``seq(0.05, 0.95, 0.05)`` (``from + (0:n) * by``, capped at ``to``), bit for bit.
DEFAULT_LAMBDA: np.ndarray = np.minimum(0.05 + np.arange(19) * 0.05, 0.95)
DEFAULT_LAMBDA.setflags(write=False)

_SQRT_2PI_INV = 0.398942280401432677939946059934  # R's M_1_SQRT_2PI


class _Pi0Failure(Exception):
    """pi0 cannot be estimated from these data (R would stop); triggers the BH fallback."""


@dataclass(frozen=True, eq=False)
class Pi0Estimate:
    """Result of :func:`pi0est`.

    Attributes
    ----------
    pi0 : float
        Estimated proportion of true null hypotheses, in (0, 1].
    pi0_lambda : np.ndarray
        Raw ``pi0(lambda)`` at each lambda (length 1 for the fixed-lambda estimator).
    lambda_ : np.ndarray
        The sorted lambda values used.
    pi0_smooth : np.ndarray or None
        Smoothing-spline fit at each lambda (``"smoother"`` only).
    method : str
        ``"smoother"``, ``"bootstrap"`` or ``"fixed_lambda"``.
    """

    pi0: float
    pi0_lambda: np.ndarray
    lambda_: np.ndarray
    pi0_smooth: np.ndarray | None
    method: str


@dataclass(frozen=True, eq=False)
class QValueResult:
    """Result of :func:`qvalue`.

    Attributes
    ----------
    qvalues : np.ndarray
        q-values, same shape as the input; NaN where the input was NaN.
    pi0 : float
        pi0 used (1.0 for the BH fallback).
    lfdr : np.ndarray or None
        Local FDR (None when ``lfdr=False``; all NaN if it could not be computed).
    pi0_lambda, lambda_, pi0_smooth : np.ndarray or None
        Diagnostics from :func:`pi0est` (None when pi0 was given or for the BH fallback).
    significant : np.ndarray or None
        ``qvalues <= fdr`` (False for NaN) when ``fdr`` was given.
    fdr : float or None
        The FDR level requested.
    pi0_method : str
        How pi0 was obtained: ``"smoother"``, ``"bootstrap"``, ``"fixed_lambda"``, ``"given"`` or
        ``"bh_fallback"``.
    """

    qvalues: np.ndarray
    pi0: float
    lfdr: np.ndarray | None
    pi0_lambda: np.ndarray | None
    lambda_: np.ndarray | None
    pi0_smooth: np.ndarray | None
    significant: np.ndarray | None
    fdr: float | None
    pi0_method: str


def _check_lambda(lambda_: float | Sequence[float] | np.ndarray | None) -> np.ndarray:
    if lambda_ is None:
        return DEFAULT_LAMBDA.copy()
    try:
        lam = np.sort(np.atleast_1d(np.asarray(lambda_, dtype=np.float64)).ravel())
    except (TypeError, ValueError):
        raise InputError(
            f"qvalue(lambda_): expected a number or a list of numbers in [0, 1), got {lambda_!r}."
        ) from None
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise InputError(f"qvalue(lambda_): expected finite values in [0, 1), got {lambda_!r}.")
    if 1 < lam.size < 4:
        raise InputError(
            f"qvalue(lambda_): expected one value (fixed-lambda estimator) or at least 4 values "
            f"(smoother/bootstrap), got {lam.size}; add grid points or pass a single lambda."
        )
    if lam.min() < 0 or lam.max() >= 1:
        raise InputError(
            f"qvalue(lambda_): expected values in [0, 1), got range [{lam.min()}, {lam.max()}]."
        )
    return lam


def _check_method(pi0_method: str) -> str:
    if pi0_method not in ("smoother", "bootstrap"):
        raise InputError(
            f"qvalue(pi0_method): expected 'smoother' or 'bootstrap', got {pi0_method!r}."
        )
    return pi0_method


def _pi0est_core(
    p: np.ndarray, lam: np.ndarray, method: str, smooth_df: float, smooth_log_pi0: bool
) -> Pi0Estimate:
    """pi0est on non-missing, validated p; raises _Pi0Failure where R would stop."""
    m = p.size
    if m == 0:
        raise _Pi0Failure("no p-values")
    if p.max() < lam.max():
        raise _Pi0Failure(
            f"the largest p-value ({p.max():.6g}) is below the largest lambda ({lam.max():.6g})"
        )
    ll = lam.size
    pi0_smooth = None
    if ll == 1:
        pi0_l = float(np.count_nonzero(p >= lam[0]) / m) / (1.0 - lam[0])
        pi0_lambda = np.array([pi0_l])
        pi0 = min(pi0_l, 1.0)
        used = "fixed_lambda"
    else:
        counts = np.array([np.count_nonzero(p >= lv) for lv in lam], dtype=np.float64)
        pi0_lambda = counts / (m * (1.0 - lam))
        if method == "smoother":
            target = pi0_lambda
            if smooth_log_pi0:
                with np.errstate(divide="ignore"):
                    target = np.log(pi0_lambda)
                if not np.all(np.isfinite(target)):
                    raise _Pi0Failure("log(pi0(lambda)) is not finite (some pi0(lambda) == 0)")
            try:
                fit = smooth_spline(lam, target, df=smooth_df)
            except SmoothingError as exc:
                raise _Pi0Failure(f"smoothing spline failed: {exc}") from None
            pi0_smooth = fit.predict(lam)
            if smooth_log_pi0:
                pi0_smooth = np.exp(pi0_smooth)
            pi0 = min(float(pi0_smooth[-1]), 1.0)
        else:
            minpi0 = r_quantile7(pi0_lambda, 0.1)
            w = counts
            mse = (w / ((m * m) * ((1.0 - lam) * (1.0 - lam)))) * (1.0 - w / m) + (
                pi0_lambda - minpi0
            ) * (pi0_lambda - minpi0)
            pi0 = min(float(np.min(pi0_lambda[mse == mse.min()])), 1.0)
        used = method
    if not (math.isfinite(pi0) and pi0 > 0):
        raise _Pi0Failure(f"the estimated pi0 is {pi0!r} (must be in (0, 1])")
    return Pi0Estimate(
        pi0=float(pi0), pi0_lambda=pi0_lambda, lambda_=lam, pi0_smooth=pi0_smooth, method=used
    )


def pi0est(
    p: np.ndarray,
    *,
    lambda_: float | Sequence[float] | np.ndarray | None = None,
    pi0_method: str = "smoother",
    smooth_df: float = 3,
    smooth_log_pi0: bool = False,
) -> Pi0Estimate:
    """Estimate the proportion of true nulls, as qvalue 2.30.0's ``pi0est``.

    Parameters
    ----------
    p : array_like
        P-values in [0, 1]; NaN values are ignored.
    lambda_ : float or sequence, optional
        Tuning grid (default R's ``seq(0.05, 0.95, 0.05)``); one value = fixed-lambda estimator.
    pi0_method : {"smoother", "bootstrap"}
    smooth_df : float
        Degrees of freedom of the smoothing spline (``1 < df <= len(lambda_)``).
    smooth_log_pi0 : bool
        Smooth ``log(pi0(lambda))`` instead.

    Returns
    -------
    Pi0Estimate

    Raises
    ------
    InputError
        Invalid options or p-values, or data from which pi0 cannot be estimated (this function
        does not fall back; :func:`qvalue` does).
    """
    arr = as_pvalues(p, "pi0est(p)").ravel()
    lam = _check_lambda(lambda_)
    method = _check_method(pi0_method)
    _check_df(smooth_df, lam)
    try:
        return _pi0est_core(arr[~np.isnan(arr)], lam, method, smooth_df, smooth_log_pi0)
    except _Pi0Failure as exc:
        raise InputError(
            f"pi0est(p): cannot estimate pi0: {exc}; use a smaller lambda range, a fixed lambda, "
            f"or BH (pi0 = 1)."
        ) from None


def _check_df(smooth_df: float, lam: np.ndarray) -> None:
    if lam.size > 1 and not (1 < smooth_df <= lam.size):
        raise InputError(
            f"qvalue(smooth_df): expected 1 < smooth_df <= number of lambda values ({lam.size}), "
            f"got {smooth_df!r}."
        )


def _lfdr_core(
    p: np.ndarray,
    pi0: float,
    *,
    trunc: bool = True,
    monotone: bool = True,
    transf: str = "probit",
    adj: float = 1.5,
    eps: float = 1e-8,
) -> np.ndarray:
    """qvalue::lfdr on non-missing p (raises SmoothingError if the smoothers cannot run)."""
    if transf == "probit":
        pc = np.minimum(np.maximum(p, eps), 1.0 - eps)
        x = special.ndtri(pc)
        grid, dens = r_density(x, adjust=adj)
        fit = smooth_spline(grid, dens)
        y = fit.predict(x)
        dx = _SQRT_2PI_INV * np.exp(-0.5 * x * x)
    elif transf == "logit":
        pc = p
        x = np.log((p + eps) / (1.0 - p + eps))
        grid, dens = r_density(x, adjust=adj)
        fit = smooth_spline(grid, dens)
        y = fit.predict(x)
        ex = np.exp(x)
        dx = ex / (1.0 + ex) ** 2
    else:
        raise InputError(f"lfdr(transf): expected 'probit' or 'logit', got {transf!r}.")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pi0 * dx / y
    if trunc:
        out[out > 1] = 1.0
    if monotone:
        order = np.argsort(pc, kind="stable")
        res = np.empty_like(out)
        res[order] = np.maximum.accumulate(out[order])
        out = res
    return out


def lfdr(
    p: np.ndarray,
    *,
    pi0: float,
    trunc: bool = True,
    monotone: bool = True,
    transf: str = "probit",
    adj: float = 1.5,
    eps: float = 1e-8,
) -> np.ndarray:
    """Local false discovery rate as qvalue 2.30.0's ``lfdr``.

    Parameters
    ----------
    p : array_like
        P-values in [0, 1]; NaN kept as NaN.
    pi0 : float
        Proportion of true nulls, in (0, 1].
    trunc, monotone, transf, adj, eps
        As in R (probit transform, ``density(adjust = 1.5)``, cap at 1, monotone in p).

    Returns
    -------
    np.ndarray
        Local FDR, same shape as ``p``.

    Notes
    -----
    Depends on R's kernel density (FFT binning) and a GCV smoothing spline; agreement with R is
    ~1e-12 relative rather than bit-exact.
    """
    arr = as_pvalues(p, "lfdr(p)")
    if not (0 < pi0 <= 1):
        raise InputError(f"lfdr(pi0): expected a value in (0, 1], got {pi0!r}.")
    flat = arr.ravel()
    keep = ~np.isnan(flat)
    out = flat.copy()
    out[keep] = _lfdr_core(
        flat[keep], pi0, trunc=trunc, monotone=monotone, transf=transf, adj=adj, eps=eps
    )
    return out.reshape(arr.shape)


def qvalue(
    p: np.ndarray,
    *,
    pi0_method: str = "smoother",
    lambda_: float | Sequence[float] | np.ndarray | None = None,
    fdr: float | None = None,
    smooth_df: float = 3,
    smooth_log_pi0: bool = False,
    pfdr: bool = False,
    lfdr: bool = True,
    pi0: float | None = None,
) -> QValueResult:
    """Storey q-values as R's ``qvalue::qvalue`` 2.30.0, with a BH fallback.

    Parameters
    ----------
    p : array_like
        P-values in [0, 1]; NaN kept as NaN. Any shape.
    pi0_method : {"smoother", "bootstrap"}
        pi0 estimator over the lambda grid.
    lambda_ : float or sequence, optional
        Default ``seq(0.05, 0.95, 0.05)``; a single value gives the fixed-lambda estimator.
    fdr : float, optional
        FDR level in (0, 1]; fills ``significant``.
    smooth_df : float
        Spline degrees of freedom for the smoother (default 3).
    smooth_log_pi0 : bool
        Smooth ``log(pi0(lambda))``.
    pfdr : bool
        Positive-FDR q-values (divide by ``1 - (1 - p)^m``).
    lfdr : bool
        Also compute the local FDR.
    pi0 : float, optional
        Use this pi0 (in (0, 1]) instead of estimating it.

    Returns
    -------
    QValueResult

    Raises
    ------
    InputError
        Invalid p-values or options. Data from which pi0 cannot be estimated do not raise: a
        warning is logged and ``pi0 = 1`` (BH) is used.
    """
    arr = as_pvalues(p, "qvalue(p)")
    if fdr is not None and not (0 < fdr <= 1):
        raise InputError(f"qvalue(fdr): expected an FDR level in (0, 1], got {fdr!r}.")
    lam = _check_lambda(lambda_)
    method = _check_method(pi0_method)
    _check_df(smooth_df, lam)
    flat = arr.ravel()
    keep = ~np.isnan(flat)
    pv = flat[keep]
    m = pv.size

    est: Pi0Estimate | None = None
    if pi0 is not None:
        if not (0 < pi0 <= 1):
            raise InputError(f"qvalue(pi0): expected a value in (0, 1], got {pi0!r}.")
        pi0_used, used = float(pi0), "given"
    else:
        try:
            est = _pi0est_core(pv, lam, method, smooth_df, smooth_log_pi0)
            pi0_used, used = est.pi0, est.method
        except _Pi0Failure as exc:
            logger.warning(
                "qvalue: cannot estimate pi0 (%s); falling back to pi0 = 1 (Benjamini-Hochberg) "
                "for %d p-values",
                exc,
                m,
            )
            pi0_used, used = 1.0, "bh_fallback"

    qflat = np.full(flat.shape, np.nan)
    if m:
        if used == "bh_fallback" and not pfdr:
            q = bh(pv)
        else:
            order = np.argsort(-pv, kind="stable")
            po = pv[order]
            i = np.arange(m, 0, -1, dtype=np.float64)
            if pfdr:
                denom = i * (1.0 - (1.0 - po) ** m)
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = po * m / denom
            else:
                ratio = po * m / i
            q = np.empty(m)
            q[order] = pi0_used * np.minimum(1.0, np.minimum.accumulate(ratio))
        qflat[keep] = q
    qvals = qflat.reshape(arr.shape)

    lf = None
    if lfdr:
        lflat = np.full(flat.shape, np.nan)
        if m:
            try:
                lflat[keep] = _lfdr_core(pv, pi0_used)
            except SmoothingError as exc:
                logger.warning("qvalue: local FDR could not be computed (%s); returning NaN", exc)
        lf = lflat.reshape(arr.shape)

    sig = None
    if fdr is not None:
        with np.errstate(invalid="ignore"):
            sig = np.where(np.isnan(qvals), False, qvals <= fdr)
    return QValueResult(
        qvalues=qvals,
        pi0=pi0_used,
        lfdr=lf,
        pi0_lambda=None if est is None else est.pi0_lambda,
        lambda_=None if est is None else est.lambda_,
        pi0_smooth=None if est is None else est.pi0_smooth,
        significant=sig,
        fdr=None if fdr is None else float(fdr),
        pi0_method=used,
    )
