"""Inverse-variance meta-analysis of effect estimates (pure numpy, vectorized over pairs).

metafor 3.8 ``rma.uni(yi, sei, method = "FE")`` and ``method = "DL"`` per row of ``(beta, se)``
(studies in columns, NaN where a study lacks the row):

- fixed effect: ``w = 1 / se^2``, ``beta_fe = sum(w beta) / sum(w)``, ``se_fe = 1 / sqrt(sum(w))``,
  Wald z and two-sided normal p;
- Cochran's ``Q = sum(w (beta - beta_fe)^2)`` on ``k - 1`` df, its upper-tail chi-square p
  (``k = 1``: ``Q = 0``, p = 1, as metafor);
- DerSimonian-Laird ``tau2 = max(0, (Q - (k - 1)) / (sum(w) - sum(w^2) / sum(w)))`` (0 for
  ``k = 1``), random-effects weights ``1 / (se^2 + tau2)``;
- ``I^2 = 100 tau2 / (tau2 + s^2)`` with metafor's typical within-study variance
  ``s^2 = (k - 1) sum(w) / (sum(w)^2 - sum(w^2))`` (equal to ``max(0, (Q - df) / Q)`` here).
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["meta_analysis", "META_COLUMNS"]

#: output columns of :func:`meta_analysis`, in order
META_COLUMNS = ("n_studies", "beta_fe", "se_fe", "z_fe", "pval_fe", "beta_re", "se_re", "z_re",
                "pval_re", "tau2", "q_het", "pval_het", "i2")


def _norm_p(z: np.ndarray) -> np.ndarray:
    return 2.0 * special.ndtr(-np.abs(z))


def meta_analysis(beta: np.ndarray, se: np.ndarray) -> dict[str, np.ndarray]:
    """Fixed- and random-effects meta-analysis of each row of ``beta`` (pairs, studies) with
    standard errors ``se``; NaN entries are studies that lack the pair. Rows with no study give
    NaN (``n_studies`` 0).

    >>> out = meta_analysis(np.array([[0.1, 0.3, np.nan]]), np.array([[0.1, 0.1, np.nan]]))
    >>> [round(float(out[k][0]), 6) for k in ("beta_fe", "se_fe", "q_het", "tau2", "i2")]
    [0.2, 0.070711, 2.0, 0.01, 50.0]
    """
    beta = np.atleast_2d(np.asarray(beta, dtype=np.float64))
    se = np.atleast_2d(np.asarray(se, dtype=np.float64))
    present = np.isfinite(beta) & np.isfinite(se)
    k = present.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(present, 1.0 / np.where(present, se, 1.0) ** 2, 0.0)
        b = np.where(present, beta, 0.0)
        sw = w.sum(axis=1)
        beta_fe = (w * b).sum(axis=1) / sw
        se_fe = 1.0 / np.sqrt(sw)
        z_fe = beta_fe / se_fe
        dev = np.where(present, b - beta_fe[:, None], 0.0)
        q = (w * dev * dev).sum(axis=1)
        df = k - 1
        c = sw - (w * w).sum(axis=1) / sw
        tau2 = np.where(df > 0, np.maximum(0.0, (q - df) / c), 0.0)
        wr = np.where(present, 1.0 / (np.where(present, se, 1.0) ** 2 + tau2[:, None]), 0.0)
        swr = wr.sum(axis=1)
        beta_re = (wr * b).sum(axis=1) / swr
        se_re = 1.0 / np.sqrt(swr)
        z_re = beta_re / se_re
        s2 = np.where(df > 0, df * sw / (sw * sw - (w * w).sum(axis=1)), 0.0)
        i2 = np.where(tau2 > 0, 100.0 * tau2 / (tau2 + s2), 0.0)
        pval_het = np.where(df > 0, special.chdtrc(np.maximum(df, 1), q), 1.0)
    none = k == 0
    out = {
        "n_studies": k.astype(np.int64), "beta_fe": beta_fe, "se_fe": se_fe, "z_fe": z_fe,
        "pval_fe": _norm_p(z_fe), "beta_re": beta_re, "se_re": se_re, "z_re": z_re,
        "pval_re": _norm_p(z_re), "tau2": tau2, "q_het": np.where(df > 0, q, 0.0),
        "pval_het": pval_het, "i2": i2,
    }
    for key in META_COLUMNS[1:]:
        out[key] = np.where(none, np.nan, out[key])
    return out
