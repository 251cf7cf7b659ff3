"""Genotype x interaction kernels: the per-pair OLS of ``y ~ C + g + i + g:i``, tensorQTL's
per-half MAF filter and eigenMT's effective number of tests (pure numpy, no T/O).

The model follows tensorQTL's ``calculate_interaction_nominal``: ``g``, each interaction term
``i_j`` and each product ``g * i_j`` (of the raw dosage and the raw term) are residualized on the
covariate basis ``[1, C]``, as is ``y``; by the Frisch-Waugh-Lovell theorem the OLS of the
residualized ``y`` on ``X = [g, i_1..i_k, g i_1..g i_k]`` gives the coefficients of the full model,
with ``dof = n - rank([1, C]) - 1 - 2k``. Here in float64, from per-variant Gram blocks shared by
every phenotype of a batch.
"""

from __future__ import annotations

import numpy as np

from dqtl.kernels.stats import pval_from_t

__all__ = ["InteractionGram", "interaction_gram", "interaction_ols", "half_maf_mask",
           "eigenmt_tests", "lw_shrunk_cov", "well_conditioned", "FreedmanLane"]


class InteractionGram:
    """Per-variant quantities of the design ``X_v = [g_v, T, g_v T]`` (residualized), for
    ``m`` variants and ``k`` terms: ``Gr`` (m, n), ``Ir`` (k, n), ``GIr`` (k, m, n) and the
    Gram matrices ``XtX`` (m, 1+2k, 1+2k)."""

    def __init__(self, Gr: np.ndarray, Ir: np.ndarray, GIr: np.ndarray) -> None:
        self.Gr, self.Ir, self.GIr = Gr, Ir, GIr
        m, k = Gr.shape[0], Ir.shape[0]
        p = 1 + 2 * k
        XtX = np.empty((m, p, p))
        XtX[:, 0, 0] = np.einsum("ij,ij->i", Gr, Gr)
        gI = Gr @ Ir.T  # (m, k)
        XtX[:, 0, 1:1 + k] = gI
        XtX[:, 1:1 + k, 0] = gI
        XtX[:, 1:1 + k, 1:1 + k] = Ir @ Ir.T
        for a in range(k):
            gga = np.einsum("ij,ij->i", Gr, GIr[a])
            XtX[:, 0, 1 + k + a] = XtX[:, 1 + k + a, 0] = gga
            iga = GIr[a] @ Ir.T  # (m, k): <gi_a, i_b>
            XtX[:, 1:1 + k, 1 + k + a] = iga
            XtX[:, 1 + k + a, 1:1 + k] = iga
            for b in range(a, k):
                v = np.einsum("ij,ij->i", GIr[a], GIr[b])
                XtX[:, 1 + k + a, 1 + k + b] = XtX[:, 1 + k + b, 1 + k + a] = v
        self.XtX = XtX
        self.k = k


def interaction_gram(G: np.ndarray, T: np.ndarray, basis: object) -> InteractionGram:
    """Residualize ``G`` (m, n) raw dosages, ``T`` (n, k) raw terms and their products on
    ``basis`` (a :class:`~dqtl.kernels.linalg.Residualizer`) and form the Gram blocks."""
    G = np.asarray(G, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    Gr = basis.transform(G)  # type: ignore[attr-defined]
    Ir = basis.transform(T.T)  # type: ignore[attr-defined]
    GIr = np.stack([basis.transform(G * T[:, a][None, :])  # type: ignore[attr-defined]
                    for a in range(T.shape[1])]) if G.shape[0] else np.zeros((T.shape[1], 0, G.shape[1]))
    return InteractionGram(Gr, Ir, GIr)


def well_conditioned(XtX: np.ndarray) -> np.ndarray:
    """(m,) whether each Gram matrix (m, p, p) can be inverted with a few digits to spare: its
    unit-diagonal scaling has a condition number below 1e13 (float64 keeps ~3 digits of the
    coefficients there); a zero or non-finite diagonal is not."""
    scale = np.sqrt(np.einsum("ijj->ij", XtX))
    with np.errstate(divide="ignore", invalid="ignore"):
        S = XtX / (scale[:, :, None] * scale[:, None, :])
    cond = np.full(XtX.shape[0], np.inf)
    finite = np.isfinite(S).all(axis=(1, 2)) & (scale > 0).all(axis=1)
    if finite.any():
        cond[finite] = np.linalg.cond(S[finite])
    return cond < 1e13


def interaction_ols(gram: InteractionGram, rows: np.ndarray, y: np.ndarray, dof: int
                    ) -> dict[str, np.ndarray]:
    """OLS of the residualized phenotype ``y`` (n,) on each variant ``rows`` of ``gram``.

    Returns ``b``, ``se``, ``t``, ``p`` (len(rows), 1+2k) in the order ``[g, i_1..i_k, gi_1..gi_k]``
    and ``ok`` (len(rows),): False where ``X'X`` is singular or its (unit-diagonal) condition
    number reaches 1e13 (the row's statistics are NaN).

    >>> from dqtl.kernels.linalg import Residualizer
    >>> rng = np.random.default_rng(0)
    >>> n = 200
    >>> C = rng.normal(size=(n, 2)); i = rng.normal(size=(n, 1)); g = rng.binomial(2, .3, size=n)
    >>> y = 0.5 * g + 0.3 * i[:, 0] + 0.4 * g * i[:, 0] + C @ [0.2, -0.1] + rng.normal(size=n)
    >>> basis = Residualizer.from_covariates(C)
    >>> res = interaction_ols(interaction_gram(g[None, :], i, basis), np.array([0]),
    ...                       basis.transform(y[None, :])[0], basis.dof - 2)
    >>> X = np.column_stack([np.ones(n), C, g, i, g * i[:, 0]])
    >>> bols = np.linalg.lstsq(X, y, rcond=None)[0]
    >>> bool(np.allclose(res["b"][0], bols[3:], rtol=1e-10))
    True
    """
    rows = np.asarray(rows, dtype=np.int64)
    k = gram.k
    p = 1 + 2 * k
    y = np.asarray(y, dtype=np.float64)
    Xty = np.empty((rows.size, p))
    Xty[:, 0] = gram.Gr[rows] @ y
    Xty[:, 1:1 + k] = (gram.Ir @ y)[None, :]
    for a in range(k):
        Xty[:, 1 + k + a] = gram.GIr[a][rows] @ y
    XtX = gram.XtX[rows]
    ok = well_conditioned(XtX)
    b = np.full((rows.size, p), np.nan)
    se = np.full((rows.size, p), np.nan)
    if ok.any():
        inv = np.linalg.inv(XtX[ok])
        bo = np.einsum("ijk,ik->ij", inv, Xty[ok])
        rss = float(y @ y) - np.einsum("ij,ij->i", bo, Xty[ok])
        rss = np.maximum(rss, 0.0)
        b[ok] = bo
        se[ok] = np.sqrt(np.einsum("ijj->ij", inv) * (rss / dof)[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = b / se
    pv = np.full_like(t, np.nan)
    fin = np.isfinite(t)
    pv[fin] = pval_from_t(t[fin], dof)
    return {"b": b, "se": se, "t": t, "p": pv, "ok": ok}


def half_maf_mask(G: np.ndarray, values: np.ndarray, threshold: float, ploidy: int = 2
                  ) -> np.ndarray:
    """tensorQTL's interaction MAF filter for one term: samples split on ``values`` (the
    ``n // 2`` smallest, stable order, are the lower half); a variant passes when its minor
    allele frequency is at least ``threshold`` (less 1e-7) in both halves."""
    n = values.size
    lower = np.zeros(n, dtype=bool)
    lower[np.argsort(values, kind="mergesort")[: n // 2]] = True
    out = np.ones(G.shape[0], dtype=bool)
    for half in (lower, ~lower):
        if half.sum() == 0:
            return np.zeros(G.shape[0], dtype=bool)
        af = G[:, half].sum(axis=1) / (ploidy * half.sum())
        maf = np.where(af > 0.5, 1.0 - af, af)
        out &= maf >= threshold - 1e-7
    return out


def lw_shrunk_cov(X: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of ``X`` (samples, features), as scikit-learn's
    ``ledoit_wolf`` (the estimator tensorQTL's eigenMT uses)."""
    n, p = X.shape
    X = X - X.mean(axis=0)
    X2 = X * X
    emp_cov_trace_sum = X2.sum() / n
    XtX = X.T @ X
    delta_ = float((XtX * XtX).sum()) / n**2
    beta_ = float((X2.T @ X2).sum())
    beta = 1.0 / (p * n) * (beta_ / n - delta_)
    delta = (delta_ - emp_cov_trace_sum**2 / p) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    emp_cov = XtX / n
    mu = np.trace(emp_cov) / p
    out = (1.0 - shrinkage) * emp_cov
    out[np.diag_indices(p)] += shrinkage * mu
    return out


def eigenmt_tests(G: np.ndarray, *, variant_window: int = 200, var_thresh: float = 0.99) -> int:
    """eigenMT's effective number of tests (Davis et al. 2016) of the variants ``G``
    (m, samples) in window order, as tensorQTL computes it: consecutive windows of
    ``variant_window`` variants; per window the Ledoit-Wolf shrunk correlation, its eigenvalues
    (negatives set to 0) counted from the largest until they reach ``var_thresh`` x the window
    size; summed over windows.

    >>> rng = np.random.default_rng(0)
    >>> base = rng.binomial(2, 0.3, size=(1, 500)).astype(float)
    >>> near_copies = base + rng.normal(scale=0.01, size=(20, 500))
    >>> independent = rng.binomial(2, 0.3, size=(20, 500)).astype(float)
    >>> eigenmt_tests(near_copies) < 5 < 15 < eigenmt_tests(independent)
    True
    """
    m = G.shape[0]
    total = 0
    for s in range(0, m, variant_window):
        W = np.asarray(G[s:s + variant_window], dtype=np.float64).T  # samples x variants
        cov = lw_shrunk_cov(W)
        d = 1.0 / np.sqrt(np.diag(cov))
        cor = cov * d[:, None] * d[None, :]
        ev = np.sort(np.linalg.eigvalsh(cor))[::-1]
        ev[ev < 0] = 0
        target = W.shape[1] * var_thresh
        run = 0.0
        count = 0
        while run < target and count < ev.size:
            run += ev[count]
            count += 1
        total += count
    return total


class FreedmanLane:
    """Window-maximum permutation null of the genotype x interaction test by Freedman-Lane.

    For each variant ``v`` the null model ``y ~ C + g_v + i`` is fitted and its residuals
    ``e_v`` are permuted (``perms``, (N, n) sample indices); each permuted ``P e_v`` is tested
    for ``g_v i`` in the full model. As the null fit lies in the full model's span, the
    statistic on ``yhat_v + P e_v`` equals that on ``P e_v``: with ``w_v`` the product residualized
    on ``[C, g_v, i]`` (unit norm) and ``a = w_v . P e_v``, the partial ``r^2 = a^2 / (a^2 + rss)``,
    ``rss = |e_v|^2 - |[Q_C, u_g, u_i, w_v]' P e_v|^2``. Exact under exchangeable errors whatever
    the main effects of ``g`` and ``i``.

    Parameters: ``G`` (m, n) raw dosages of the window's testable variants; ``i`` (n,) the raw
    term; ``y`` (n,) the phenotype residualized on ``basis``; ``dof`` the full model's residual
    dof. Attributes ``r2`` (m,) observed partial r^2 of the interaction, ``b_gi``, ``b_gi_se``,
    ``ok`` (testable); :meth:`max_r2` gives the window maximum per permutation.
    """

    def __init__(self, G: np.ndarray, i: np.ndarray, y: np.ndarray, basis: object, dof: int, *,
                 work_bytes: int = 64 << 20) -> None:
        G = np.asarray(G, dtype=np.float64)
        Gt = basis.transform(G)  # type: ignore[attr-defined]
        it = basis.transform(np.asarray(i, dtype=np.float64)[None, :])[0]  # type: ignore[attr-defined]
        W = basis.transform(G * np.asarray(i, dtype=np.float64)[None, :])  # type: ignore[attr-defined]
        n = G.shape[1]
        tiny = 1e-10 * np.sqrt(n)
        gn = np.sqrt(np.einsum("ij,ij->i", Gt, Gt))
        ok = gn > tiny
        u1 = Gt / np.where(ok, gn, 1.0)[:, None]
        iv = it[None, :] - (u1 @ it)[:, None] * u1
        inn = np.sqrt(np.einsum("ij,ij->i", iv, iv))
        ok &= inn > tiny
        u2 = iv / np.where(inn > tiny, inn, 1.0)[:, None]
        e = y[None, :] - (u1 @ y)[:, None] * u1 - (u2 @ y)[:, None] * u2
        W = W - np.einsum("ij,ij->i", W, u1)[:, None] * u1 - np.einsum("ij,ij->i", W, u2)[:, None] * u2
        wn = np.sqrt(np.einsum("ij,ij->i", W, W))
        ok &= wn > tiny * np.maximum(1.0, np.abs(G).max(axis=1))
        wbar = W / np.where(ok, wn, 1.0)[:, None]
        a = np.einsum("ij,ij->i", wbar, e)
        ee = np.einsum("ij,ij->i", e, e)
        rss = np.maximum(ee - a * a, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.r2 = np.where(ok, a * a / ee, np.nan)
            self.b_gi = np.where(ok, a / wn, np.nan)
            self.b_gi_se = np.where(ok, np.sqrt(rss / dof) / wn, np.nan)
        self.ok = ok
        idx = np.flatnonzero(ok)
        QC = np.asarray(basis.Q)[:, 1:]  # type: ignore[attr-defined]  # e sums to 0: no intercept term
        m = idx.size
        # every projection a permuted residual needs, per variant: (m, n, 3 + covariates), float32
        # (the window maximum of r^2 under permutation needs no more digits): one gather and one
        # batched GEMM per chunk of permutations
        self.V = np.empty((m, n, 3 + QC.shape[1]), dtype=np.float32)
        self.V[:, :, 0], self.V[:, :, 1], self.V[:, :, 2] = wbar[idx], u1[idx], u2[idx]
        self.V[:, :, 3:] = QC[None, :, :]
        self.e32 = e[idx].astype(np.float32)
        self.ee32 = ee[idx].astype(np.float32)[:, None]
        self.step = max(1, int(work_bytes // (4 * max(m, 1) * n * 2)))

    def max_r2(self, perms: np.ndarray) -> np.ndarray:
        """The window maximum of the permuted partial r^2, one per row of ``perms``."""
        N = perms.shape[0]
        out = np.zeros(N)
        if self.e32.shape[0] == 0:
            return out
        for s in range(0, N, self.step):
            proj = np.matmul(self.e32[:, perms[s:s + self.step]], self.V)  # (m, p, 3 + c)
            proj *= proj
            ap2 = proj[:, :, 0]
            rssp = self.ee32 - proj.sum(axis=2)
            with np.errstate(invalid="ignore", divide="ignore"):
                r2p = ap2 / (ap2 + np.maximum(rssp, 0.0))
            out[s:s + self.step] = np.nanmax(r2p, axis=0)
        return out
