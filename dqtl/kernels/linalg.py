"""Covariate basis and residual norms: an orthonormal basis of ``[1, C]`` from a pivoted QR.

The intercept is always in the model. Covariates are centred (which removes the intercept
direction), scaled to unit norm and factored with a column-pivoted QR; columns beyond the
numerical rank are collinear with the others (or constant) and are dropped with a log line
naming them. ``dof = n - rank([1, C]) - 1``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from dqtl.errors import InputError
from dqtl.kernels.genotypes import get_array_module

__all__ = ["Residualizer", "residual_norm2", "row_dots"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Residualizer:
    """Projection onto the orthogonal complement of the covariate space (with intercept).

    Attributes
    ----------
    Q
        (samples, rank) float64 orthonormal basis of ``[1, C]``; column 0 is ``1/sqrt(n)``.
    dof
        Residual degrees of freedom for a test of one extra regressor: ``n - rank - 1``.
    kept, dropped
        Covariate IDs kept in, and dropped from, the basis (collinear or constant).
    """

    Q: np.ndarray
    dof: int
    kept: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.Q.shape[0])

    @property
    def rank(self) -> int:
        return int(self.Q.shape[1])

    @classmethod
    def from_covariates(
        cls,
        covariates: np.ndarray | None,
        *,
        n_samples: int | None = None,
        covariate_ids: Sequence[str] | None = None,
        rtol: float = 1e-8,
        min_dof: int = 1,
        where: str = "",
    ) -> Residualizer:
        """Build the residualizer of intercept + ``covariates`` (samples, covariates).

        Raises
        ------
        InputError
            If fewer than ``min_dof`` residual degrees of freedom remain.
        """
        if covariates is None or np.asarray(covariates).size == 0:
            if n_samples is None:
                raise ValueError("n_samples is needed when there are no covariates")
            C = np.zeros((n_samples, 0))
        else:
            C = np.asarray(covariates, dtype=np.float64)
            if C.ndim != 2:
                raise InputError(f"covariates must be 2-D (samples, covariates), got shape {C.shape}")
        n, k = C.shape
        ids = list(covariate_ids) if covariate_ids is not None else [f"cov{i + 1}" for i in range(k)]
        intercept = np.full((n, 1), 1.0 / np.sqrt(n))
        kept: list[str] = []
        dropped: list[str] = []
        if k:
            Cc = C - C.mean(axis=0)
            norms = np.linalg.norm(Cc, axis=0)
            scale = np.where(norms > 0, norms, 1.0)
            Cs = Cc / scale
            const = norms <= rtol * np.sqrt(n) * np.maximum(np.abs(C).max(axis=0), 1e-300)
            Cs[:, const] = 0.0
            q, r, piv = scipy.linalg.qr(Cs, mode="economic", pivoting=True)
            d = np.abs(np.diag(r))
            rank = int(np.sum(d > rtol * max(d[0] if d.size else 0.0, 1e-300))) if d.size else 0
            kept_idx = sorted(piv[:rank].tolist())
            kept = [ids[i] for i in kept_idx]
            dropped = [ids[i] for i in range(k) if i not in set(kept_idx)]
            Q = np.hstack([intercept, q[:, :rank]])
        else:
            Q = intercept
        if dropped:
            log.warning(
                "%scovariates %s are constant or collinear with the other covariates; dropped",
                f"{where}: " if where else "", ", ".join(dropped),
            )
        dof = n - Q.shape[1] - 1
        if dof < min_dof:
            raise InputError(
                f"{where + ': ' if where else ''}too few samples: {n} samples with intercept + "
                f"{Q.shape[1] - 1} independent covariates leave {dof} degrees of freedom; need at "
                f"least {min_dof}: add samples or use fewer covariates"
            )
        return cls(Q=Q, dof=dof, kept=tuple(kept), dropped=tuple(dropped))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Residualize the rows of ``X`` (m, samples): ``X - (X Q) Q^T`` (float64)."""
        X = np.asarray(X, dtype=np.float64)
        Y = (X @ self.Q) @ self.Q.T
        return np.subtract(X, Y, out=Y)  # X - Y into the product's memory (one matrix fewer)

    def extend(self, extra: np.ndarray, *, ids: Sequence[str] | None = None, rtol: float = 1e-8,
               min_dof: int = 1, where: str = "") -> Residualizer:
        """The basis of ``[1, C, extra]`` from this one: ``extra`` (samples, m) is residualized
        on ``Q`` and factored with a pivoted QR; columns in the span of the others are dropped
        (reported by their ``ids``). ``dof`` drops by the number of columns added.
        """
        E = np.asarray(extra, dtype=np.float64).reshape(self.n_samples, -1)
        m = E.shape[1]
        names = list(ids) if ids is not None else [f"extra{i + 1}" for i in range(m)]
        if m == 0:
            return self
        En = np.linalg.norm(E, axis=0)
        E = E - self.Q @ (self.Q.T @ E)
        norms = np.linalg.norm(E, axis=0)
        E = E / np.where(norms > 0, norms, 1.0)
        E[:, norms <= rtol * np.maximum(En, 1e-300)] = 0.0
        q, r, piv = scipy.linalg.qr(E, mode="economic", pivoting=True)
        d = np.abs(np.diag(r))
        rank = int(np.sum(d > rtol)) if d.size else 0
        added = sorted(piv[:rank].tolist())
        dropped = [names[i] for i in range(m) if i not in set(added)]
        if dropped:
            log.warning("%s%s are collinear with the model; dropped",
                        f"{where}: " if where else "", ", ".join(dropped))
        Q = np.hstack([self.Q, q[:, :rank]])
        dof = self.n_samples - Q.shape[1] - 1
        if dof < min_dof:
            raise InputError(
                f"{where + ': ' if where else ''}{self.n_samples} samples leave {dof} degrees of "
                f"freedom after {Q.shape[1] - 1} covariates; need at least {min_dof}"
            )
        return Residualizer(Q=Q, dof=dof, kept=self.kept + tuple(names[i] for i in added),
                            dropped=self.dropped + tuple(dropped))

    def subset(self, covariates: np.ndarray | None, sample_index: np.ndarray, **kwargs: object) -> Residualizer:
        """Residualizer of the same covariates restricted to ``sample_index``."""
        C = None if covariates is None else np.asarray(covariates)[sample_index]
        return Residualizer.from_covariates(C, n_samples=len(sample_index), **kwargs)  # type: ignore[arg-type]


def residual_norm2(G: Any, Q: Any, *, centred: bool = False) -> Any:
    """Squared norm of each row of ``G`` after projecting out the columns of ``Q``.

    ``||g||^2 - sum_k (q_k . g)^2`` in float64, clipped at 0 (``Q`` orthonormal,
    (samples, k), spanning the intercept). Rows are centred first (unless ``centred``), which
    changes nothing mathematically but avoids cancellation. The dot products are ``np.einsum``
    sums of products, accumulated over the samples in order for each row, so a row's value does
    not depend on how many rows are passed (BLAS GEMM kernels change their summation order with
    the matrix shape; tested); no temporary of the size of ``G``.

    >>> Q = np.full((4, 1), 0.5)  # the intercept on 4 samples
    >>> residual_norm2(np.array([[1.0, 2.0, 3.0, 4.0]]), Q).round(12).tolist()
    [5.0]
    """
    xp = get_array_module(G)
    Gc = G.astype(xp.float64, copy=False)
    if not centred:
        Gc = Gc - Gc.mean(axis=1, keepdims=True)
    D = xp.einsum("ij,jk->ik", Gc, Q)
    out = xp.einsum("ij,ij->i", Gc, Gc) - xp.einsum("ij,ij->i", D, D)
    return xp.maximum(out, 0.0)


def row_dots(A: Any, B: Any, *, rows: int = 256) -> Any:
    """``(A * B).sum(axis=1)`` bit for bit (each row the same reduction of the same products),
    ``rows`` rows at a time in one reused buffer: no temporary of the size of ``A`` (160 MB at
    20,000 phenotypes x 1,000 samples). ``B``: a row broadcast against every row of ``A``, or
    an array of ``A``'s shape (``row_dots(X, X)``: the squared row norms of
    ``np.linalg.norm(X, axis=1)``)."""
    xp = get_array_module(A)
    m = int(A.shape[0])
    out = xp.empty(m, dtype=xp.result_type(A, B))
    if m == 0:
        return out
    buf = xp.empty((min(rows, m), A.shape[1]), dtype=out.dtype)
    each = B.ndim == A.ndim
    for a in range(0, m, rows):
        b = min(a + rows, m)
        out[a:b] = xp.multiply(A[a:b], B[a:b] if each else B, out=buf[: b - a]).sum(axis=1)
    return out
