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

__all__ = ["SusieResult", "susie", "susie_suff_stat", "susie_rss", "brent_fmin",
           "single_effect_regression"]

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


class _SerLikelihood:
    """The SER log likelihood as a function of the prior variance, for the Brent search: the
    per-variable quantities that do not depend on ``V`` (``z^2``, ``1 / s^2``, the prior's log)
    computed once, work buffers reused (the values of :func:`_lbf` and the log of the
    prior-weighted sum of the Bayes factors, to rounding)."""

    def __init__(self, betahat: np.ndarray, shat2: np.ndarray, prior: np.ndarray) -> None:
        with np.errstate(divide="ignore", invalid="ignore"):
            self.z2 = betahat * betahat / shat2
            self.inv = 1.0 / shat2
        self.inf = np.isinf(shat2)
        self.any_inf = bool(self.inf.any())
        self.uniform = bool(np.all(prior == prior[0]))
        self.log_p0 = math.log(float(prior[0]))
        self.prior = prior
        self.t = np.empty_like(betahat)
        self.u = np.empty_like(betahat)

    def __call__(self, V: float) -> float:
        t, u = self.t, self.u
        with np.errstate(divide="ignore", invalid="ignore"):
            np.multiply(self.inv, V, out=t)
            np.add(t, 1.0, out=u)
            np.divide(t, u, out=u)          # t / (1 + t)
            np.multiply(u, self.z2, out=u)
            np.log1p(t, out=t)
            np.subtract(u, t, out=u)
            u *= 0.5                        # lbf
        if self.any_inf:
            u[self.inf] = 0.0
        m = float(u.max())
        u -= m
        np.exp(u, out=u)
        if self.uniform:
            return math.log(float(u.sum())) + self.log_p0 + m
        return math.log(float(np.dot(u, self.prior))) + m


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
        loglik = _SerLikelihood(betahat, shat2, prior)

        def nll(lv: float) -> float:
            return -loglik(math.exp(lv))

        lv = brent_fmin(nll, -30.0, 15.0)
        if V > 0 and nll(lv) > nll(math.log(V)):  # keep the current V when it is better
            lv = math.log(V)
        V = math.exp(lv)
        if loglik(0.0) + check_null_threshold >= loglik(V):
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


class _SerCache:
    """Reuses work between consecutive single effects whose residuals are bitwise the same (an
    effect with ``V = 0`` has fitted values exactly 0, so the effects after it see the same
    residuals): the product ``X'r`` and, for the same ``V``, ``sigma2``, the whole SER. The fit is
    identical to recomputing; genes with few signals and ``L = 10`` skip most products and prior
    variance searches."""

    def __init__(self) -> None:
        self._xtr: np.ndarray | None = None
        self._ser: dict[tuple[float, float], dict[str, np.ndarray | float]] = {}

    def changed(self) -> None:
        self._xtr = None
        self._ser.clear()

    def regression(self, xtr, d: np.ndarray, V: float, sigma2: float, prior: np.ndarray, *,  # noqa: ANN001
                   estimate_prior: bool, check_null_threshold: float
                   ) -> dict[str, np.ndarray | float]:
        if self._xtr is None:
            self._xtr = xtr()
            self._ser.clear()
        key = (V, sigma2)
        if key not in self._ser:
            self._ser[key] = single_effect_regression(
                self._xtr, d, V, sigma2, prior, estimate_prior=estimate_prior,
                check_null_threshold=check_null_threshold)
        return self._ser[key]


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


def _purity(idx: np.ndarray, Xc: np.ndarray | None = None, n_purity: int = 100, *,
            corr: np.ndarray | None = None) -> tuple[float, float, float]:
    """(min, mean, median) absolute correlation over the set's pairs, from the data ``Xc`` or a
    correlation matrix ``corr``; sets larger than ``n_purity`` are subsampled as susieR does (a
    seeded draw here; R's ``sample`` there, so only such large, diffuse sets, which fail any
    purity threshold in practice, may differ)."""
    if idx.size == 1:
        return (1.0, 1.0, 1.0)
    if idx.size > n_purity:
        idx = np.sort(np.random.default_rng(0).choice(idx, size=n_purity, replace=False))
    if corr is not None:
        C = corr[np.ix_(idx, idx)]
    else:
        assert Xc is not None
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
    Xs = X - cm
    csd = np.sqrt(np.einsum("ij,ij->j", Xs, Xs) / (n - 1))  # sd, as R's two-pass colSds
    csd[csd == 0] = 1.0
    Xs /= csd
    d = np.einsum("ij,ij->j", Xs, Xs)
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
    ser = _SerCache()
    for it in range(1, max_iter + 1):  # noqa: B007  (it is the iteration count after the loop)
        for k in range(L):
            if Xb[k].any():  # a null effect's fitted values are exactly 0: Xr (and r) unchanged
                Xr -= Xb[k]
                ser.changed()
            r = y - Xr
            res = ser.regression(lambda r=r: Xs.T @ r, d, float(V[k]), sigma2, prior,
                                 estimate_prior=estimate_prior_variance,
                                 check_null_threshold=check_null_threshold)
            alpha[k], mu[k], mu2[k] = res["alpha"], res["mu"], res["mu2"]
            V[k], lbf[k], lbf_variable[k] = res["V"], res["lbf_model"], res["lbf"]
            loglik = float(res["lbf_model"]) + float(np.sum(_log_dnorm(r, sigma2)))
            Eb = alpha[k] * mu[k]
            XEb = Xs @ Eb if Eb.any() else np.zeros(n)
            Xb[k] = XEb
            e_loglik = (-0.5 * n * math.log(2 * math.pi * sigma2)
                        - 0.5 / sigma2 * (float(r @ r) - 2 * float(r @ XEb)
                                          + float(d @ (alpha[k] * mu2[k]))))
            KL[k] = -loglik + e_loglik
            if XEb.any():
                Xr += XEb
                ser.changed()
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


def _credible_sets(fit: SusieResult, X: np.ndarray | None, *, coverage: float, min_abs_corr: float,
                   corr: np.ndarray | None = None) -> None:
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
    pur = {k: _purity(sets[k], X, corr=corr) for k in cand}
    pure = [k for k in cand if pur[k][0] >= min_abs_corr]
    order = sorted(range(len(pure)), key=lambda i: -pur[pure[i]][0])  # stable, decreasing
    for i in order:
        k = pure[i]
        fit.credible_sets.append(sets[k])
        fit.cs_index.append(k)
        fit.cs_coverage.append(float(fit.alpha[k][sets[k]].sum()))
        fit.cs_purity.append(pur[k])


def susie_suff_stat(
    XtX: np.ndarray,
    Xty: np.ndarray,
    yty: float,
    n: float,
    L: int = 10,
    *,
    scaled_prior_variance: float = 0.2,
    residual_variance: float | None = None,
    estimate_residual_variance: bool = True,
    estimate_prior_variance: bool = True,
    standardize: bool = True,
    max_iter: int = 100,
    tol: float = 1e-3,
    coverage: float = 0.95,
    min_abs_corr: float = 0.5,
    prior_tol: float = 1e-9,
    check_null_threshold: float = 0.0,
    check_prior: bool = False,
) -> SusieResult:
    """Fit SuSiE from sufficient statistics ``X'X``, ``X'y``, ``y'y`` and ``n``
    (``susieR::susie_suff_stat`` 0.12.35, its defaults; ``X`` and ``y`` centred).

    The same IBSS as :func:`susie`, on ``X'X`` (``X'Xr`` kept per effect as susieR does); the
    residual variance has no lower bound here (as in susieR); credible-set purity comes from
    ``cov2cor(X'X)``. ``intercept`` is NaN (no column means are given).
    """
    XtX = np.array(XtX, dtype=np.float64)
    Xty = np.array(Xty, dtype=np.float64).ravel()
    if XtX.ndim != 2 or XtX.shape[0] != XtX.shape[1] or XtX.shape[1] != Xty.size:
        raise InputError(f"susie: the dimension of XtX {XtX.shape} does not agree with "
                         f"expected ({Xty.size} x {Xty.size})")
    if not n > 1:
        raise InputError(f"susie: n must be greater than 1, found {n}")
    if np.isnan(XtX).any():
        raise InputError("susie: the LD / XtX matrix contains missing values")
    if np.isinf(Xty).any() or np.isinf(XtX).any():
        raise InputError("susie: XtX and Xty must be finite")
    if not np.allclose(XtX, XtX.T, rtol=0, atol=100 * np.finfo(float).eps * max(
            1.0, float(np.abs(XtX).max(initial=0.0)))):
        XtX = (XtX + XtX.T) / 2  # susieR: forced symmetric (with a warning)
    Xty = np.where(np.isnan(Xty), 0.0, Xty)
    p = Xty.size
    if scaled_prior_variance < 0 or (scaled_prior_variance > 1 and standardize):
        raise InputError("susie: the scaled prior variance must be in [0, 1] when standardizing")
    L = min(L, p)
    if standardize:
        csd = np.sqrt(np.diag(XtX) / (n - 1))
        csd[csd == 0] = 1.0
        XtX = (XtX * (1.0 / csd)[None, :]) / csd[:, None]
        Xty = Xty / csd
    else:
        csd = np.ones(p)
    d = np.diag(XtX).copy()
    var_y = yty / (n - 1)
    sigma2 = var_y if residual_variance is None else float(residual_variance)
    if not sigma2 > 0:
        raise InputError("susie: the residual variance must be positive (is var(y) zero?)")
    prior = np.full(p, 1.0 / p)
    alpha = np.full((L, p), 1.0 / p)
    mu = np.zeros((L, p))
    mu2 = np.zeros((L, p))
    lbf_variable = np.full((L, p), np.nan)
    lbf = np.full(L, np.nan)
    KL = np.full(L, np.nan)
    V = np.full(L, scaled_prior_variance * var_y)
    XtXr = np.zeros(p)
    ser = _SerCache()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (Xty / d) / np.sqrt(sigma2 / d)
    zm = float(np.max(np.abs(z[~np.isnan(z)]), initial=0.0))
    elbo = [-np.inf]
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        for k in range(L):
            Eb = alpha[k] * mu[k]
            if Eb.any():  # a null effect adds exactly 0 to X'Xr: skip the product
                XtXr = XtXr - XtX @ Eb
                ser.changed()
            XtR = Xty - XtXr
            res = ser.regression(lambda XtR=XtR: XtR, d, float(V[k]), sigma2, prior,
                                 estimate_prior=estimate_prior_variance,
                                 check_null_threshold=check_null_threshold)
            alpha[k], mu[k], mu2[k] = res["alpha"], res["mu"], res["mu2"]
            V[k], lbf[k], lbf_variable[k] = res["V"], res["lbf_model"], res["lbf"]
            KL[k] = -float(res["lbf_model"]) - 0.5 / sigma2 * (
                -2.0 * float(np.sum(alpha[k] * mu[k] * XtR)) + float(np.sum(d * (alpha[k] * mu2[k]))))
            Eb = alpha[k] * mu[k]
            if Eb.any():
                XtXr = XtXr + XtX @ Eb
                ser.changed()
        if check_prior and np.any(V > 100 * zm * zm):
            raise InputError(
                "susie_rss: the estimated prior variance is unreasonably large; this is usually "
                "caused by a mismatch between the summary statistics and the LD matrix (check "
                "the allele coding and that the LD comes from the same variants)")
        er2 = _er2_ss(XtX, Xty, alpha, mu, mu2, yty, d)
        elbo.append(-n / 2 * math.log(2 * math.pi * sigma2) - er2 / (2 * sigma2) - float(KL.sum()))
        if not np.isfinite(elbo[-1]):
            raise InputError("susie: the objective became infinite; check the input")
        if elbo[-1] - elbo[-2] < tol:
            converged = True
            break
        if estimate_residual_variance:
            sigma2 = er2 / n
            if sigma2 < 0:
                raise InputError("susie: estimating the residual variance failed (negative)")
    keep = V > prior_tol
    pip = 1.0 - np.prod(1.0 - alpha[keep], axis=0) if keep.any() else np.zeros(p)
    out = SusieResult(alpha=alpha, mu=mu, mu2=mu2, lbf_variable=lbf_variable, lbf=lbf, V=V, KL=KL,
                      sigma2=sigma2, elbo=np.array(elbo[1:]), niter=it, converged=converged,
                      pip=pip, intercept=float("nan"), coef=(alpha * mu).sum(axis=0) / csd)
    dd = np.diag(XtX)
    if np.all((dd == 0) | (dd == 1)):
        corr = XtX
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            s = 1.0 / np.sqrt(dd)
            corr = s[:, None] * XtX * s[None, :]
        np.fill_diagonal(corr, 1.0)
    _credible_sets(out, None, coverage=coverage, min_abs_corr=min_abs_corr, corr=corr)
    return out


def _er2_ss(XtX: np.ndarray, Xty: np.ndarray, alpha: np.ndarray, mu: np.ndarray, mu2: np.ndarray,
            yty: float, d: np.ndarray) -> float:
    """susieR's ``get_ER2_ss``: the expected residual sum of squares from sufficient statistics."""
    B = alpha * mu
    XB2 = float(np.sum((B @ XtX) * B))
    betabar = B.sum(axis=0)
    return (yty - 2.0 * float(betabar @ Xty) + float(betabar @ (XtX @ betabar)) - XB2
            + float(np.sum(d * (alpha * mu2))))


def susie_rss(
    z: np.ndarray | None = None,
    R: np.ndarray | None = None,
    n: float | None = None,
    *,
    bhat: np.ndarray | None = None,
    shat: np.ndarray | None = None,
    var_y: float | None = None,
    L: int = 10,
    estimate_residual_variance: bool = False,
    prior_variance: float = 50.0,
    check_prior: bool = True,
    **kwargs,  # noqa: ANN003  (passed to susie_suff_stat: coverage, min_abs_corr, max_iter, ...)
) -> SusieResult:
    """Fit SuSiE from z-scores (or ``bhat``/``shat``) and an LD matrix ``R``
    (``susieR::susie_rss`` 0.12.35 semantics and defaults).

    With ``n``, the z-scores are PVE-adjusted (``z * sqrt((n-1) / (z^2 + n - 2))``) and the fit
    uses ``X'X = (n-1) R``, ``X'y = sqrt(n-1) z``, ``y'y = n-1`` (or the original scale when
    ``bhat``, ``shat`` and ``var_y`` are all given); without ``n``, the unadjusted z-scores with
    ``X'X = R``, ``n = 2``, ``y'y = 1`` and the prior variance ``prior_variance`` (susieR warns
    that n should be given). The residual variance is fixed at 1 unless
    ``estimate_residual_variance`` (then ``R`` must be the in-sample LD).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> X = rng.binomial(2, 0.3, size=(400, 40)).astype(float)
    >>> y = 0.5 * X[:, 3] + rng.normal(size=400)
    >>> Xc, yc = X - X.mean(0), y - y.mean()
    >>> b = Xc.T @ yc / (Xc * Xc).sum(0)
    >>> se = np.sqrt(((yc[:, None] - Xc * b) ** 2).sum(0) / 398 / (Xc * Xc).sum(0))
    >>> fit = susie_rss(b / se, np.corrcoef(X, rowvar=False), n=400)
    >>> [cs.tolist() for cs in fit.credible_sets]
    [[3]]
    """
    if R is None:
        raise InputError("susie_rss: the LD matrix R is required")
    if (z is None) == (bhat is None or shat is None):
        raise InputError("susie_rss: give either z or (bhat, shat), not both")
    if z is None:
        bhat = np.asarray(bhat, dtype=np.float64).ravel()
        shat = np.broadcast_to(np.asarray(shat, dtype=np.float64).ravel(), bhat.shape)
        if np.isnan(bhat).any() or np.isnan(shat).any():
            raise InputError("susie_rss: bhat and shat cannot have missing values")
        if (shat <= 0).any():
            raise InputError("susie_rss: shat cannot have zero or negative elements")
        z = bhat / shat
    z = np.array(z, dtype=np.float64).ravel()
    if z.size == 0:
        raise InputError("susie_rss: z has length zero")
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != z.size:
        raise InputError(f"susie_rss: the dimension of R {R.shape} does not agree with expected "
                         f"({z.size} x {z.size})")
    if n is not None and not n > 1:
        raise InputError(f"susie_rss: n must be greater than 1, found {n}")
    z[np.isnan(z)] = 0.0
    if n is None:
        return susie_suff_stat(R, z, 1.0, 2.0, L, scaled_prior_variance=prior_variance,
                               estimate_residual_variance=estimate_residual_variance,
                               standardize=False, check_prior=check_prior, **kwargs)
    adj = (n - 1) / (z * z + n - 2)
    z = np.sqrt(adj) * z
    if shat is not None and var_y is not None:
        xtx_diag = var_y * adj / (shat * shat)
        sq = np.sqrt(xtx_diag)
        XtX = (R * sq[:, None]).T * sq[:, None]
        XtX = (XtX + XtX.T) / 2
        Xty = z * np.sqrt(adj) * var_y / shat
    else:
        XtX = (n - 1) * R
        Xty = math.sqrt(n - 1) * z
        var_y = 1.0
    return susie_suff_stat(XtX, Xty, (n - 1) * var_y, n, L,
                           estimate_residual_variance=estimate_residual_variance,
                           check_prior=check_prior, **kwargs)
