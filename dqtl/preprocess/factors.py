"""Hidden factors of expression: expression PCs and a PEER-equivalent Bayesian factor analysis.

:func:`peer_factors` fits the model of PEER (Stegle et al. 2010, 2012) by mean-field
variational Bayes, in numpy::

    Y = C B + X W + E        Y: samples x genes (centred per gene)
    x_n ~ N(0, I_K)                                  hidden factors (samples x K)
    w_gk ~ N(0, 1 / alpha_k),  alpha_k ~ Gamma(a_alpha, b_alpha)     ARD prior per factor
    e_ng ~ N(0, 1 / tau_g),    tau_g ~ Gamma(a_tau, b_tau)           noise precision per gene

The known covariates ``C`` (centred, scaled to unit variance) enter as factors whose values are
fixed; their weights ``B`` share the ARD prior, as in PEER. The posterior is
``q(X) q(W) q(alpha) q(tau)`` with ``q(w_g) = N(m_g, Sigma_g)`` per gene; all ``Sigma_g`` share the
eigenvectors of ``A^{-1/2} E[F^T F] A^{-1/2}`` (``F = [C, X]``, ``A = diag(E alpha)``), so each
iteration costs ``O(N G D)`` for ``D = k_C + K`` instead of ``G`` matrix inversions. Updates run
in the order W, X, alpha, tau; the evidence lower bound (ELBO) is returned per iteration and
never decreases (tested). Priors default to GTEx's PEER settings (``PEER_setPriorAlpha(0.001,
0.1)``, ``PEER_setPriorEps(0.1, 10)``; Gamma shape and rate).

Choosing K: :func:`gtex_n_factors` (GTEx v8 rule by sample size) or
:func:`choose_n_factors_by_discovery` (eGenes discovered on a gene subset per K, a discovery
curve, :func:`plot_discovery_curve`).

References
----------
Stegle O, Parts L, Durbin R, Winn J (2010). A Bayesian framework to account for complex
non-genetic factors in gene expression levels greatly increases power in eQTL studies. PLoS
Comput Biol 6:e1000770. doi:10.1371/journal.pcbi.1000770

Stegle O, Parts L, Piipari M, Winn J, Durbin R (2012). Using probabilistic estimation of
expression residuals (PEER) to obtain increased power and interpretability of gene expression
analyses. Nat Protoc 7:500-507. doi:10.1038/nprot.2011.457

Bishop CM (1999). Variational principal components. ICANN 99. doi:10.1049/cp:19991160

GTEx Consortium (2020). The GTEx Consortium atlas of genetic regulatory effects across human
tissues. Science 369:1318-1330. doi:10.1126/science.aaz1776
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import digamma, gammaln

from dqtl.errors import InputError
from dqtl.io.samples import index_samples

__all__ = [
    "FactorResult",
    "expression_pcs",
    "peer_factors",
    "gtex_n_factors",
    "combine_covariates",
    "known_covariate_matrix",
]

log = logging.getLogger(__name__)

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class FactorResult:
    """Hidden factors of expression and the fitted model.

    Attributes
    ----------
    factors
        (samples, K) float64: posterior means of the hidden factors (or expression PC scores).
    factor_id
        K names (``InferredCov1``.. for PEER, ``ExprPC1``.. for PCA).
    weights
        (genes, K) float64 posterior mean weights (PC loadings for PCA).
    alpha
        (K,) posterior mean ARD precisions of the factors' weights (PEER; small = relevant).
    noise_precision
        (genes,) posterior mean noise precisions (PEER).
    covariate_weights
        (genes, covariates) weights of the known covariates (PEER), or None.
    elbo
        ELBO per iteration (PEER).
    explained_variance_ratio
        (K,) fraction of expression variance per factor.
    sample_id
        (samples,) str, when the input was labelled.
    method
        ``"peer"`` or ``"pca"``.
    n_iter, converged
        Iterations run and whether the ELBO change fell below ``tol``.
    """

    factors: np.ndarray
    factor_id: list[str]
    weights: np.ndarray
    method: str
    alpha: np.ndarray | None = None
    noise_precision: np.ndarray | None = None
    covariate_weights: np.ndarray | None = None
    elbo: np.ndarray = field(default_factory=lambda: np.zeros(0))
    explained_variance_ratio: np.ndarray | None = None
    sample_id: np.ndarray | None = None
    n_iter: int = 0
    converged: bool = True

    @property
    def n_factors(self) -> int:
        return int(self.factors.shape[1])

    def to_covariates(self) -> xr.Dataset:
        """The factors as a covariate Dataset (``covariate_values`` (samples, covariates))."""
        n = self.factors.shape[0]
        sid = self.sample_id if self.sample_id is not None else np.array(
            [f"sample{i + 1}" for i in range(n)])
        return xr.Dataset(
            {
                "covariate_values": (("samples", "covariates"), self.factors),
                "covariate_id": ("covariates", np.array(self.factor_id, dtype=str)),
                "sample_id": ("samples", np.asarray(sid).astype(str)),
            },
            attrs={"method": self.method},
        )

    def to_frame(self) -> pd.DataFrame:
        """tensorQTL covariate layout: factors x samples, first column ``id``."""
        cov = self.to_covariates()
        df = pd.DataFrame(self.factors.T, columns=cov["sample_id"].values.astype(str))
        df.insert(0, "id", self.factor_id)
        return df


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def _expression_matrix(phenotypes: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(samples, genes) float64 and sample IDs from an array or a phenotype Dataset."""
    if isinstance(phenotypes, xr.Dataset):
        if "phenotype_values" not in phenotypes:
            raise InputError(
                "phenotypes: expected a Dataset with phenotype_values (phenotypes, samples), found "
                f"{sorted(map(str, phenotypes.data_vars))}; read it with "
                "dqtl.io.phenotypes.read_phenotype_bed"
            )
        Y = np.asarray(phenotypes["phenotype_values"].values, dtype=np.float64).T
        sid = np.asarray(phenotypes["sample_id"].values).astype(str) \
            if "sample_id" in phenotypes else None
    else:
        try:
            Y = np.array(phenotypes, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(
                f"Y: expected a numeric (samples, genes) array, found {type(phenotypes).__name__}"
            ) from None
        sid = None
    if Y.ndim != 2 or Y.shape[0] < 3 or Y.shape[1] < 2:
        raise InputError(
            f"Y: expected a (samples, genes) matrix with at least 3 samples and 2 genes, found "
            f"shape {Y.shape}"
        )
    if np.isinf(Y).any():
        raise InputError("Y: expression holds infinite values; replace them with finite values or NaN")
    miss = np.isnan(Y)
    if miss.any():
        all_missing = miss.all(axis=0)
        if all_missing.any():
            raise InputError(
                f"Y: {int(all_missing.sum())} genes have no observed value; drop them first"
            )
        log.info("factors: %d missing expression values imputed by their gene's mean",
                 int(miss.sum()))
        Y = np.where(miss, np.nanmean(Y, axis=0, keepdims=True), Y)
    return Y, sid


def known_covariate_matrix(covariates: Any, n: int, sample_id: np.ndarray | None
                      ) -> tuple[np.ndarray | None, list[str]]:
    if covariates is None:
        return None, []
    if isinstance(covariates, xr.Dataset):
        C = np.asarray(covariates["covariate_values"].values, dtype=np.float64)
        ids = [str(x) for x in covariates["covariate_id"].values]
        if sample_id is not None and "sample_id" in covariates:
            C = C[index_samples(sample_id, covariates["sample_id"].values, where="covariates",
                                problem="have no covariates", fix="give covariates for every sample")]
    else:
        C = np.asarray(covariates, dtype=np.float64)
        if C.ndim == 1:
            C = C[:, None]
        ids = [f"cov{i + 1}" for i in range(C.shape[1])]
    if C.ndim != 2 or C.shape[0] != n:
        raise InputError(
            f"covariates: expected a (samples, covariates) matrix with {n} rows, found shape "
            f"{C.shape}"
        )
    if not np.isfinite(C).all():
        raise InputError("covariates: missing or infinite values; covariates must be complete")
    return C, ids


def _standardize_covariates(C: np.ndarray | None) -> np.ndarray:
    if C is None or C.shape[1] == 0:
        return np.zeros((0, 0)) if C is None else C
    Cc = C - C.mean(axis=0)
    sd = Cc.std(axis=0)
    keep = sd > 1e-12 * np.maximum(np.abs(C).max(axis=0), 1e-300)
    if not keep.all():
        log.info("factors: %d constant covariates ignored", int((~keep).sum()))
    return Cc[:, keep] / sd[keep]


# --------------------------------------------------------------------------------------------
# expression PCs
# --------------------------------------------------------------------------------------------


def expression_pcs(phenotypes: Any, n: int) -> FactorResult:
    """Principal components of expression (genes centred), as hidden-factor covariates.

    Parameters
    ----------
    phenotypes
        (samples, genes) array or a phenotype Dataset (``phenotype_values`` (phenotypes,
        samples)). Missing values are imputed by the gene mean.
    n
        Number of PCs (``1 <= n < samples``).

    Returns
    -------
    FactorResult
        ``factors`` = PC scores ``U S`` (samples, n), ``weights`` = loadings (genes, n),
        ``explained_variance_ratio``; ``factor_id`` ``ExprPC1..``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Y = rng.normal(size=(30, 1)) @ rng.normal(size=(1, 50)) + rng.normal(size=(30, 50))
    >>> expression_pcs(Y, 2).factors.shape
    (30, 2)
    """
    Y, sid = _expression_matrix(phenotypes)
    _check_k(n, Y.shape[0], "n")
    Yc = Y - Y.mean(axis=0)
    U, s, Vt = np.linalg.svd(Yc, full_matrices=False)
    # deterministic signs: largest-|loading| gene positive
    sign = np.sign(Vt[np.arange(Vt.shape[0]), np.abs(Vt).argmax(axis=1)])
    sign[sign == 0] = 1
    U, Vt = U * sign, Vt * sign[:, None]
    total = float((s**2).sum())
    return FactorResult(
        factors=U[:, :n] * s[:n], factor_id=[f"ExprPC{i + 1}" for i in range(n)],
        weights=Vt[:n].T, method="pca",
        explained_variance_ratio=s[:n] ** 2 / total if total > 0 else np.zeros(n),
        sample_id=sid,
    )


def _check_k(k: Any, n_samples: int, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"{name}: expected a positive number of factors, found {k!r}")
    if k >= n_samples:
        raise InputError(
            f"{name}: {k} factors need more than {k} samples, found {n_samples}; use fewer factors"
        )
    return int(k)


# --------------------------------------------------------------------------------------------
# PEER-equivalent variational Bayes
# --------------------------------------------------------------------------------------------


@dataclass
class _WPosterior:
    """q(W): means and the shared eigen-structure of the per-gene covariances."""

    M: np.ndarray  # (G, D) posterior means
    V: np.ndarray  # (D, D) eigenvectors of A^-1/2 S A^-1/2
    lam: np.ndarray  # (D,) eigenvalues
    a_isqrt: np.ndarray  # (D,) 1 / sqrt(E alpha) used for this posterior
    Dg: np.ndarray  # (D, G) 1 / (1 + tau_g lam_i)

    def diag_cov(self) -> np.ndarray:
        """(D, G) diagonal of every Sigma_g."""
        return (self.a_isqrt**2)[:, None] * ((self.V**2) @ self.Dg)

    def cov_tau_sum(self, tau: np.ndarray) -> np.ndarray:
        """sum_g tau_g Sigma_g, (D, D)."""
        Va = self.a_isqrt[:, None] * self.V
        return (Va * (self.Dg @ tau)) @ Va.T

    def trace_with(self, S: np.ndarray) -> np.ndarray:
        """(G,) tr(S Sigma_g) for a (D, D) matrix S."""
        Va = self.a_isqrt[:, None] * self.V
        q = np.einsum("ki,kl,li->i", Va, S, Va)
        return q @ self.Dg

    def logdet(self) -> np.ndarray:
        """(G,) log det Sigma_g."""
        return 2 * np.log(self.a_isqrt).sum() + np.log(self.Dg).sum(axis=0)


def _gamma_entropy(a: Any, b: Any) -> Any:
    return a - np.log(b) + gammaln(a) + (1 - a) * digamma(a)


def _gamma_prior_term(a0: float, b0: float, e: Any, elog: Any) -> Any:
    return a0 * np.log(b0) - gammaln(a0) + (a0 - 1) * elog - b0 * e


class _Peer:
    """State and updates of the variational Bayes factor model (see the module docstring)."""

    def __init__(self, Y: np.ndarray, C: np.ndarray, K: int, *, alpha_prior: tuple[float, float],
                 noise_prior: tuple[float, float], init: str, seed: int) -> None:
        self.Y = Y
        self.C = C
        self.N, self.G = Y.shape
        self.Kc = C.shape[1]
        self.K = K
        self.D = self.Kc + K
        self.a0, self.b0 = alpha_prior
        self.c0, self.d0 = noise_prior
        self.yy = (Y * Y).sum(axis=0)  # (G,)
        # initial q(X): PCs of Y after regressing out C (or random), unit variance
        if self.Kc:
            beta, *_ = np.linalg.lstsq(C, Y, rcond=None)
            R = Y - C @ beta
        else:
            R = Y
        if init == "pca":
            U, _, _ = np.linalg.svd(R, full_matrices=False)
            X = U[:, :K] * np.sqrt(self.N)
        elif init == "random":
            X = np.random.default_rng(seed).standard_normal((self.N, K))
        else:
            raise InputError(f"init: expected 'pca' or 'random', found {init!r}")
        self.mu = X
        self.Sx = np.eye(K) * 1e-3
        self.Ealpha = np.ones(self.D)
        self.Elogalpha = np.zeros(self.D)
        var = R.var(axis=0)
        self.Etau = 1.0 / np.maximum(var, 1e-12 * max(float(var.max()), 1e-300))
        self.Elogtau = np.log(self.Etau)
        self.b_alpha = np.full(self.D, self.b0)
        self.d_tau = np.full(self.G, self.d0)
        self.W: _WPosterior | None = None

    # expectations of F = [C, X]
    def EF(self) -> np.ndarray:
        return np.hstack([self.C, self.mu])

    def EFtF(self) -> np.ndarray:
        F = self.EF()
        S = F.T @ F
        S[self.Kc:, self.Kc:] += self.N * self.Sx
        return S

    def update_w(self) -> None:
        S = self.EFtF()
        B = self.EF().T @ self.Y  # (D, G)
        a_isqrt = 1.0 / np.sqrt(self.Ealpha)
        Sp = a_isqrt[:, None] * S * a_isqrt[None, :]
        lam, V = np.linalg.eigh((Sp + Sp.T) / 2)
        lam = np.maximum(lam, 0.0)
        Dg = 1.0 / (1.0 + lam[:, None] * self.Etau[None, :])  # (D, G)
        Bt = V.T @ (a_isqrt[:, None] * B)
        Bt *= Dg * self.Etau[None, :]
        M = (a_isqrt[:, None] * (V @ Bt)).T  # (G, D)
        self.W = _WPosterior(M=M, V=V, lam=lam, a_isqrt=a_isqrt, Dg=Dg)

    def update_x(self) -> None:
        W = self.W
        assert W is not None
        tau = self.Etau
        Mt = W.M * tau[:, None]  # (G, D)
        WtW = W.M.T @ Mt + W.cov_tau_sum(tau)  # sum_g tau_g E[w_g w_g^T]
        kc = self.Kc
        prec = np.eye(self.K) + WtW[kc:, kc:]
        self.Sx = np.linalg.inv(prec)
        self.Sx = (self.Sx + self.Sx.T) / 2
        rhs = self.Y @ Mt[:, kc:]
        if kc:
            rhs -= self.C @ WtW[:kc, kc:]
        self.mu = rhs @ self.Sx

    def expected_sq_residual(self) -> np.ndarray:
        """(G,) E ||y_g - F w_g||^2 under the current q."""
        W = self.W
        assert W is not None
        S = self.EFtF()
        B = self.EF().T @ self.Y
        M = W.M
        return (self.yy - 2 * np.einsum("gd,dg->g", M, B)
                + np.einsum("gd,de,ge->g", M, S, M) + W.trace_with(S))

    def update_alpha(self) -> None:
        W = self.W
        assert W is not None
        Ew2 = (W.M**2).sum(axis=0) + W.diag_cov().sum(axis=1)
        a = self.a0 + self.G / 2
        self.b_alpha = self.b0 + Ew2 / 2
        self.Ealpha = a / self.b_alpha
        self.Elogalpha = digamma(a) - np.log(self.b_alpha)

    def update_tau(self) -> None:
        c = self.c0 + self.N / 2
        self.d_tau = self.d0 + self.expected_sq_residual() / 2
        self.Etau = c / self.d_tau
        self.Elogtau = digamma(c) - np.log(self.d_tau)

    def elbo(self) -> float:
        W = self.W
        assert W is not None
        N, G, K, D = self.N, self.G, self.K, self.D
        lik = (N / 2 * (self.Elogtau - _LOG_2PI) - self.Etau / 2 * self.expected_sq_residual()).sum()
        sign, logdet_sx = np.linalg.slogdet(self.Sx)
        x_terms = -0.5 * ((self.mu**2).sum() + N * np.trace(self.Sx)) + N / 2 * logdet_sx + N * K / 2
        Ew2 = W.M**2 + W.diag_cov().T  # (G, D)
        w_terms = (0.5 * G * self.Elogalpha.sum() - 0.5 * (Ew2 * self.Ealpha).sum()
                   + G * D / 2 + 0.5 * W.logdet().sum())
        a = self.a0 + G / 2
        alpha_terms = (_gamma_prior_term(self.a0, self.b0, self.Ealpha, self.Elogalpha).sum()
                       + _gamma_entropy(a, self.b_alpha).sum())
        c = self.c0 + N / 2
        tau_terms = (_gamma_prior_term(self.c0, self.d0, self.Etau, self.Elogtau).sum()
                     + _gamma_entropy(c, self.d_tau).sum())
        return float(lik + x_terms + w_terms + alpha_terms + tau_terms)


def peer_factors(
    Y: Any,
    *,
    n_factors: int,
    covariates: Any = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    seed: int = 0,
    alpha_prior: tuple[float, float] = (0.001, 0.1),
    noise_prior: tuple[float, float] = (0.1, 10.0),
    init: str = "pca",
) -> FactorResult:
    """PEER-equivalent hidden factors by variational Bayes factor analysis with ARD.

    Parameters
    ----------
    Y
        Expression, (samples, genes) array, or a phenotype Dataset (``phenotype_values``
        (phenotypes, samples), ``sample_id``). Usually normalised (e.g. inverse-normal
        transformed) values; genes are centred here, missing values imputed by the gene mean.
    n_factors
        Number of hidden factors K (``1 <= K < samples``); see :func:`gtex_n_factors`.
    covariates
        Known covariates, (samples, covariates) array or covariate Dataset (aligned by
        ``sample_id``); included in the model as fixed factors (centred, unit variance).
    max_iter
        Maximum variational iterations.
    tol
        Stop when the relative ELBO change falls below this.
    seed
        Seed of the random initialisation (``init="random"``).
    alpha_prior, noise_prior
        Gamma (shape, rate) priors of the ARD precisions and the noise precisions.
    init
        ``"pca"`` (factors start at the PCs of the covariate-residualised expression) or
        ``"random"``.

    Returns
    -------
    FactorResult
        ``factors`` (samples, K) posterior means ordered by decreasing relevance (``1/alpha``),
        ``weights`` (genes, K), ``alpha`` (K,), ``noise_precision`` (genes,),
        ``covariate_weights``, ``elbo`` trace, ``factor_id`` ``InferredCov1..``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> H = rng.normal(size=(80, 2))
    >>> Y = H @ rng.normal(size=(2, 300)) + rng.normal(size=(80, 300))
    >>> res = peer_factors(Y, n_factors=4, max_iter=200)
    >>> res.factors.shape, bool(np.all(np.diff(res.elbo) > -1e-6 * abs(res.elbo[-1])))
    ((80, 4), True)
    >>> int((res.alpha < 10 * res.alpha.min()).sum())  # two relevant factors
    2
    """
    Ym, sid = _expression_matrix(Y)
    K = _check_k(n_factors, Ym.shape[0], "n_factors")
    C, cov_ids = known_covariate_matrix(covariates, Ym.shape[0], sid)
    Cs = _standardize_covariates(C) if C is not None else np.zeros((Ym.shape[0], 0))
    for name, prior in (("alpha_prior", alpha_prior), ("noise_prior", noise_prior)):
        if len(prior) != 2 or not all(np.isfinite(prior)) or min(prior) <= 0:
            raise InputError(f"{name}: expected two positive numbers (shape, rate), found {prior!r}")
    if max_iter < 1 or not tol > 0:
        raise InputError(f"max_iter, tol: expected max_iter >= 1 and tol > 0, found {max_iter}, {tol}")
    if K + Cs.shape[1] >= Ym.shape[0]:
        raise InputError(
            f"n_factors: {K} factors + {Cs.shape[1]} covariates need more samples than "
            f"{Ym.shape[0]}; use fewer factors"
        )
    Yc = Ym - Ym.mean(axis=0)
    model = _Peer(Yc, Cs, K, alpha_prior=(float(alpha_prior[0]), float(alpha_prior[1])),
                  noise_prior=(float(noise_prior[0]), float(noise_prior[1])), init=init,
                  seed=int(seed))
    trace: list[float] = []
    converged = False
    for it in range(int(max_iter)):
        model.update_w()
        model.update_x()
        model.update_alpha()
        model.update_tau()
        trace.append(model.elbo())
        if it > 0 and abs(trace[-1] - trace[-2]) <= tol * abs(trace[-1]):
            converged = True
            break
    if not converged:
        log.warning("peer_factors: no convergence in %d iterations (last relative ELBO change "
                    "%.2e > tol %.1e); raise max_iter", max_iter,
                    abs(trace[-1] - trace[-2]) / abs(trace[-1]) if len(trace) > 1 else np.nan, tol)
    # final weights for the final q(X), alpha, tau
    model.update_w()
    kc = model.Kc
    alpha = model.Ealpha[kc:]
    order = np.argsort(alpha, kind="stable")
    W = model.W
    assert W is not None
    X = model.mu[:, order]
    Wx = W.M[:, kc:][:, order]
    var_y = float((Yc**2).sum())
    evr = np.array([float(np.sum(np.outer(X[:, k], Wx[:, k]) ** 2)) / var_y for k in range(K)]) \
        if var_y > 0 else np.zeros(K)
    log.info("peer_factors: %d factors, %d covariates, %d iterations, ELBO %.6g",
             K, kc, len(trace), trace[-1])
    return FactorResult(
        factors=X, factor_id=[f"InferredCov{i + 1}" for i in range(K)], weights=Wx,
        method="peer", alpha=alpha[order], noise_precision=model.Etau.copy(),
        covariate_weights=W.M[:, :kc] if kc else None, elbo=np.asarray(trace),
        explained_variance_ratio=evr, sample_id=sid, n_iter=len(trace), converged=converged,
    )


def gtex_n_factors(n_samples: int) -> int:
    """Number of PEER factors by the GTEx rule: <150 samples 15, <250 30, <350 45, else 60.

    >>> [gtex_n_factors(n) for n in (80, 150, 249, 250, 349, 350, 1000)]
    [15, 30, 30, 45, 45, 60, 60]
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise InputError(f"n_samples: expected a positive integer, found {n_samples!r}")
    if n_samples < 150:
        return 15
    if n_samples < 250:
        return 30
    if n_samples < 350:
        return 45
    return 60


# --------------------------------------------------------------------------------------------
# combining covariates
# --------------------------------------------------------------------------------------------


def combine_covariates(
    *covariates: xr.Dataset,
    sample_id: Sequence[str] | None = None,
    drop_collinear: bool = True,
    names: Sequence[str] | None = None,
) -> xr.Dataset:
    """Concatenate covariate Datasets column-wise, aligned by sample ID.

    Parameters
    ----------
    *covariates
        Covariate Datasets (``covariate_values`` (samples, covariates), ``covariate_id``,
        ``sample_id``), e.g. known covariates, genotype PCs and hidden factors.
    sample_id
        The samples of the result, in order (default: those of the first Dataset). Every
        Dataset must hold all of them (extra samples are ignored with a log line).
    drop_collinear
        Drop constant covariates and covariates collinear with the others, as chosen by the
        column-pivoted QR of :class:`dqtl.kernels.linalg.Residualizer` (which logs
        their names).
    names
        Names of the inputs for messages (default ``covariates 1``, ``covariates 2``, ...).

    Returns
    -------
    xarray.Dataset
        ``covariate_values`` (samples, covariates) float64, ``covariate_id``, ``sample_id``;
        ``attrs["dropped"]`` lists dropped covariates.

    Raises
    ------
    InputError
        No input, duplicated covariate IDs across inputs, or samples missing from an input.
    """
    from dqtl.kernels.linalg import Residualizer

    if not covariates:
        raise InputError("covariates: nothing to combine; give at least one covariate source")
    labels = list(names) if names is not None else [f"covariates {i + 1}" for i in range(len(covariates))]
    sid = (np.asarray(sample_id).astype(str) if sample_id is not None
           else np.asarray(covariates[0]["sample_id"].values).astype(str))
    blocks: list[np.ndarray] = []
    ids: list[str] = []
    for label, cov in zip(labels, covariates, strict=True):
        cs = np.asarray(cov["sample_id"].values).astype(str)
        pos = pd.Index(cs).get_indexer(sid)
        if (pos < 0).any():
            miss = sid[pos < 0]
            raise InputError(
                f"{label}: {miss.size} of the {sid.size} samples are missing (e.g. "
                f"{', '.join(miss[:3])}); every covariate source must describe the same samples"
            )
        if cs.size > sid.size:
            log.info("%s: %d extra samples ignored", label, cs.size - sid.size)
        blocks.append(np.asarray(cov["covariate_values"].values, dtype=np.float64)[pos])
        ids.extend(str(x) for x in cov["covariate_id"].values)
    dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique().tolist()
    if dup:
        raise InputError(
            f"covariates: IDs {', '.join(dup[:5])} appear in more than one source; rename them "
            "so every covariate ID is unique"
        )
    C = np.hstack(blocks) if blocks else np.zeros((sid.size, 0))
    dropped: list[str] = []
    if drop_collinear and C.shape[1]:
        res = Residualizer.from_covariates(C, n_samples=sid.size, covariate_ids=ids,
                                           min_dof=0, where="combined covariates")
        dropped = list(res.dropped)
        if dropped:
            keep = [i for i, c in enumerate(ids) if c not in set(dropped)]
            C = C[:, keep]
            ids = [ids[i] for i in keep]
    return xr.Dataset(
        {
            "covariate_values": (("samples", "covariates"), C),
            "covariate_id": ("covariates", np.array(ids, dtype=str)),
            "sample_id": ("samples", sid),
        },
        attrs={"dropped": dropped},
    )
