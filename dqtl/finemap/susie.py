"""SuSiE fine-mapping: the sum of single effects model fitted by IBSS (susieR 0.12.35 semantics).

Wang, Sarkar, Carbonetto, Stephens (2020), J R Stat Soc B 82:1273, DOI 10.1111/rssb.12388.
:func:`susie` follows ``susieR::susie(X, y, L)`` with its defaults: columns of ``X`` centred and
scaled (``d = colSums(X_std^2)``), ``y`` centred, initial prior variance
``0.2 var(y)``, residual variance ``var(y)``; each iteration updates every single effect in turn
(Bayesian single-effect regression of the partial residuals, its prior variance re-estimated by
maximising the SER likelihood over ``log V`` in ``[-30, 15]`` with R's Brent minimiser,
``optim(method = "Brent")``, and set to 0 when that is no better than ``V = 0``), then the ELBO;
iterations stop when the ELBO gains less than ``tol``; the residual variance is re-estimated
after each iteration that does not stop. PIPs exclude effects with ``V <= 1e-9``; credible sets
are the smallest sets reaching ``coverage`` per effect (ties broken as R's ``order``), kept when
their purity (the minimum absolute correlation of their variables) is at least
``min_abs_corr``, de-duplicated and ordered by purity as ``susie_get_cs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dqtl.errors import InputError

__all__ = ["SusieResult", "susie", "brent_fmin", "single_effect_regression"]

_LOG_2PI = math.log(2.0 * math.pi)


def brent_fmin(f, a: float, b: float, tol: float = 1.4901161193847656e-08) -> float:  # noqa: ANN001
    """Minimise ``f`` on ``[a, b]`` by Brent's method, as R's ``optimize`` (C ``Brent_fmin``).

    ``tol`` defaults to R ``optim``'s ``reltol`` (``sqrt(.Machine$double.eps)``), which
    ``optim(method = "Brent")`` passes on.

    >>> round(brent_fmin(lambda x: (x - 1.5) ** 2, -30, 15), 6)
    1.5
    """
    c = (3.0 - math.sqrt(5.0)) * 0.5
    eps = math.sqrt(np.finfo(float).eps)
    v = a + c * (b - a)
    w = x = v
    d = e = 0.0
    fx = f(x)
    fv = fw = fx
    tol3 = tol / 3.0
    while True:
        xm = (a + b) * 0.5
        tol1 = eps * abs(x) + tol3
        t2 = tol1 * 2.0
        if abs(x - xm) <= t2 - (b - a) * 0.5:
            break
        p = q = r = 0.0
        if abs(e) > tol1:  # fit a parabola
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = (q - r) * 2.0
            if q > 0.0:
                p = -p
            else:
                q = -q
            r = e
            e = d
        if abs(p) >= abs(q * 0.5 * r) or p <= q * (a - x) or p >= q * (b - x):
            e = (b - x) if x < xm else (a - x)  # golden-section step
            d = c * e
        else:  # parabolic-interpolation step
            d = p / q
            u = x + d
            if u - a < t2 or b - u < t2:
                d = tol1 if x < xm else -tol1
        if abs(d) >= tol1:
            u = x + d
        elif d > 0.0:
            u = x + tol1
        else:
            u = x - tol1
        fu = f(u)
        if fu <= fx:
            if u < x:
                b = x
            else:
                a = x
            v, w, x = w, x, u
            fv, fw, fx = fw, fx, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv, w, fw = w, fw, u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu
    return x


def _log_dnorm(x: np.ndarray, var: np.ndarray | float) -> np.ndarray:
    return -0.5 * (_LOG_2PI + np.log(var)) - 0.5 * x * x / var


def _lbf(V: float, betahat: np.ndarray, shat2: np.ndarray) -> np.ndarray:
    """``log N(b; 0, V + s^2) - log N(b; 0, s^2)`` as ``(z^2 t / (1 + t) - log(1 + t)) / 2`` with
    ``t = V / s^2``, ``z^2 = b^2 / s^2`` (the same quantity, fewer operations than two densities)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = V / shat2
        lbf = 0.5 * (betahat * betahat / shat2 * t / (1.0 + t) - np.log1p(t))
    lbf[np.isinf(shat2)] = 0.0
    return lbf


def _ser_loglik(V: float, betahat: np.ndarray, shat2: np.ndarray, prior: np.ndarray) -> float:
    lbf = _lbf(V, betahat, shat2)
    m = float(lbf.max())
    return math.log(float(np.sum(np.exp(lbf - m) * prior))) + m


def single_effect_regression(
    Xty: np.ndarray, d: np.ndarray, V: float, sigma2: float, prior: np.ndarray, *,
    estimate_prior: bool = True, check_null_threshold: float = 0.0,
) -> dict[str, np.ndarray | float]:
    """One Bayesian single-effect regression from ``X^T r`` and ``d = colSums(X^2)``.

    Returns ``alpha``, ``mu``, ``mu2``, ``lbf`` (per variable), ``lbf_model``, ``V`` and the
    part of the log likelihood that does not involve ``r`` (``loglik`` minus ``sum log N(r; 0,
    sigma2)``, which the caller adds).
    """
    betahat = Xty / d
    shat2 = sigma2 / d
    if estimate_prior:
        def nll(lv: float) -> float:
            return -_ser_loglik(math.exp(lv), betahat, shat2, prior)

        lv = brent_fmin(nll, -30.0, 15.0)
        if V > 0 and nll(lv) > nll(math.log(V)):  # keep the current V when it is better
            lv = math.log(V)
        V = math.exp(lv)
        if _ser_loglik(0.0, betahat, shat2, prior) + check_null_threshold >= _ser_loglik(
                V, betahat, shat2, prior):
            V = 0.0
    lbf = _lbf(V, betahat, shat2)
    maxlbf = float(lbf.max())
    w = np.exp(lbf - maxlbf) * prior
    wsum = float(w.sum())
    alpha = w / wsum
    with np.errstate(divide="ignore"):
        post_var = 1.0 / (1.0 / V + d / sigma2) if V > 0 else np.zeros_like(d)
    mu = post_var * Xty / sigma2
    return {"alpha": alpha, "mu": mu, "mu2": post_var + mu * mu, "lbf": lbf,
            "lbf_model": maxlbf + math.log(wsum), "V": V}


@dataclass
class SusieResult:
    """A SuSiE fit (susieR's names; matrices are (L, p), on the standardized X scale).

    ``credible_sets`` holds 0-based variable indices (ascending, as susieR's ``which``), in
    susieR's order (decreasing purity), with ``cs_index`` (0-based effect), ``coverage`` and
    ``purity`` (min, mean, median absolute correlation) alongside.
    """

    alpha: np.ndarray
    mu: np.ndarray
    mu2: np.ndarray
    lbf_variable: np.ndarray
    lbf: np.ndarray
    V: np.ndarray
    KL: np.ndarray
    sigma2: float
    elbo: np.ndarray
    niter: int
    converged: bool
    pip: np.ndarray
    intercept: float
    coef: np.ndarray  # (p,) posterior mean effects on the original X scale
    credible_sets: list[np.ndarray] = field(default_factory=list)
    cs_index: list[int] = field(default_factory=list)
    cs_coverage: list[float] = field(default_factory=list)
    cs_purity: list[tuple[float, float, float]] = field(default_factory=list)


def _in_cs(alpha_row: np.ndarray, coverage: float) -> np.ndarray:
    """susieR's ``in_CS_x``: the top variables (R's stable decreasing order) reaching coverage."""
    order = np.argsort(-alpha_row, kind="stable")
    n = int(np.sum(np.cumsum(alpha_row[order]) < coverage)) + 1
    return np.sort(order[:n])


def _purity(idx: np.ndarray, Xc: np.ndarray, n_purity: int = 100) -> tuple[float, float, float]:
    """(min, mean, median) absolute correlation over the set's pairs; sets larger than
    ``n_purity`` are subsampled as susieR does (a seeded draw here; R's ``sample`` there, so
    only such large, diffuse sets, which fail any purity threshold in practice, may differ)."""
    if idx.size == 1:
        return (1.0, 1.0, 1.0)
    if idx.size > n_purity:
        idx = np.sort(np.random.default_rng(0).choice(idx, size=n_purity, replace=False))
    C = np.corrcoef(Xc[:, idx], rowvar=False)
    v = np.abs(C[np.triu_indices(idx.size, k=1)])
    return (float(v.min()), float(v.mean()), float(np.median(v)))


def susie(
    X: np.ndarray,
    y: np.ndarray,
    L: int = 10,
    *,
    scaled_prior_variance: float = 0.2,
    estimate_residual_variance: bool = True,
    estimate_prior_variance: bool = True,
    max_iter: int = 100,
    tol: float = 1e-3,
    coverage: float = 0.95,
    min_abs_corr: float = 0.5,
    prior_tol: float = 1e-9,
    check_null_threshold: float = 0.0,
) -> SusieResult:
    """Fit SuSiE to individual-level data (``susieR::susie`` defaults).

    Parameters
    ----------
    X : (n, p) array
        Genotype dosages (any real matrix); columns are centred and scaled internally.
    y : (n,) array
        Phenotype (e.g. covariate-residualized expression).
    L : int
        Maximum number of single effects.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> X = rng.binomial(2, 0.3, size=(300, 50)).astype(float)
    >>> y = 0.8 * X[:, 7] + rng.normal(size=300)
    >>> fit = susie(X, y, L=5)
    >>> [cs.tolist() for cs in fit.credible_sets], bool(fit.pip[7] > 0.99)
    ([[7]], True)
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] != y.size:
        raise InputError(f"susie: X must be (n, p) with n = len(y) = {y.size}, found {X.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise InputError("susie: X and y must be finite (impute missing genotypes first)")
    n, p = X.shape
    if n < 2 or p < 1 or L < 1:
        raise InputError(f"susie: need n >= 2, p >= 1 and L >= 1, found n={n}, p={p}, L={L}")
    L = min(L, p)
    mean_y = float(y.mean())
    y = y - mean_y
    cm = X.mean(axis=0)
    csd = X.std(axis=0, ddof=1)
    csd[csd == 0] = 1.0
    Xs = (X - cm) / csd
    d = (Xs * Xs).sum(axis=0)
    var_y = float(np.var(y, ddof=1))
    prior = np.full(p, 1.0 / p)
    alpha = np.full((L, p), 1.0 / p)
    mu = np.zeros((L, p))
    mu2 = np.zeros((L, p))
    lbf_variable = np.zeros((L, p))
    lbf = np.zeros(L)
    KL = np.zeros(L)
    V = np.full(L, scaled_prior_variance * var_y)
    sigma2 = var_y
    lower = var_y / 1e4
    Xr = np.zeros(n)
    Xb = np.zeros((L, n))  # each effect's fitted values X (alpha * mu), kept between updates
    elbo = [-np.inf]
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007  (it is the iteration count after the loop)
        for k in range(L):
            Xr -= Xb[k]
            r = y - Xr
            res = single_effect_regression(Xs.T @ r, d, float(V[k]), sigma2, prior,
                                           estimate_prior=estimate_prior_variance,
                                           check_null_threshold=check_null_threshold)
            alpha[k], mu[k], mu2[k] = res["alpha"], res["mu"], res["mu2"]
            V[k], lbf[k], lbf_variable[k] = res["V"], res["lbf_model"], res["lbf"]
            loglik = float(res["lbf_model"]) + float(np.sum(_log_dnorm(r, sigma2)))
            Eb = alpha[k] * mu[k]
            XEb = Xs @ Eb
            Xb[k] = XEb
            e_loglik = (-0.5 * n * math.log(2 * math.pi * sigma2)
                        - 0.5 / sigma2 * (float(r @ r) - 2 * float(r @ XEb)
                                          + float(d @ (alpha[k] * mu2[k]))))
            KL[k] = -loglik + e_loglik
            Xr += XEb
        er2 = _er2(Xb, y, Xr, alpha, mu2, d)
        elbo.append(-(n / 2) * math.log(2 * math.pi * sigma2) - er2 / (2 * sigma2) - float(KL.sum()))
        if elbo[-1] - elbo[-2] < tol:
            converged = True
            break
        if estimate_residual_variance:
            sigma2 = max(lower, er2 / n)
    keep = V > prior_tol
    pip = 1.0 - np.prod(1.0 - alpha[keep], axis=0) if keep.any() else np.zeros(p)
    b = (alpha * mu).sum(axis=0) / csd
    out = SusieResult(alpha=alpha, mu=mu, mu2=mu2, lbf_variable=lbf_variable, lbf=lbf, V=V, KL=KL,
                      sigma2=sigma2, elbo=np.array(elbo[1:]), niter=it, converged=converged,
                      pip=pip, intercept=mean_y - float(cm @ b), coef=b)
    _credible_sets(out, X, coverage=coverage, min_abs_corr=min_abs_corr)
    return out


def _er2(Xb: np.ndarray, y: np.ndarray, Xr: np.ndarray, alpha: np.ndarray, mu2: np.ndarray,
         d: np.ndarray) -> float:
    """Expected residual sum of squares (susieR's ``get_ER2``); ``Xb`` (L, n) the effects'
    fitted values."""
    XrL = Xb
    res = y - Xr
    return float(res @ res) - float((XrL * XrL).sum()) + float((d * (alpha * mu2)).sum())


def _credible_sets(fit: SusieResult, X: np.ndarray, *, coverage: float, min_abs_corr: float) -> None:
    L = fit.alpha.shape[0]
    sets = [_in_cs(fit.alpha[k], coverage) for k in range(L)]
    include = [bool(fit.V[k] > 1e-9) for k in range(L)]
    seen: list[tuple[int, ...]] = []
    for k in range(L):  # de-duplicate (R's duplicated: later copies dropped)
        key = tuple(sets[k].tolist())
        if key in seen:
            include[k] = False
        seen.append(key)
    cand = [k for k in range(L) if include[k]]
    pur = {k: _purity(sets[k], X) for k in cand}
    pure = [k for k in cand if pur[k][0] >= min_abs_corr]
    order = sorted(range(len(pure)), key=lambda i: -pur[pure[i]][0])  # stable, decreasing
    for i in order:
        k = pure[i]
        fit.credible_sets.append(sets[k])
        fit.cs_index.append(k)
        fit.cs_coverage.append(float(fit.alpha[k][sets[k]].sum()))
        fit.cs_purity.append(pur[k])
