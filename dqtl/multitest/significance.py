"""Gene-level significance of a cis permutation pass: q-values, the global p threshold and the
per-gene nominal thresholds (as tensorQTL's ``post.calculate_qvalues``, without R)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from dqtl.multitest.beta import min_pvalue_threshold, nominal_threshold
from dqtl.multitest.qvalue import qvalue

__all__ = ["add_significance"]

log = logging.getLogger(__name__)


def add_significance(
    df: pd.DataFrame, *, fdr: float = 0.05, qvalue_lambda: float | None = None
) -> pd.DataFrame:
    """Add ``q_value`` and ``p_value_nominal_threshold`` to a permutation table (a copy).

    q-values are Storey's over genes from ``p_value_beta`` (``p_value_perm`` where no beta fit
    exists at all); pi0 by the smoother over lambda = 0.05..0.95, or at ``qvalue_lambda``. The
    global threshold is the midpoint between the largest significant and the smallest
    non-significant ``p_value_beta``; each gene's nominal threshold is ``BetaPPF(threshold;
    shape1, shape2)``. Genes without a beta fit fall back to ``p_value_perm`` (logged).
    """
    out = df.copy()
    if not 0 < fdr < 1:
        raise ValueError(f"--fdr must be in (0, 1), got {fdr}")
    pb = out["p_value_beta"].to_numpy(dtype=float)
    use_beta = np.isfinite(pb).any()
    pp = out["p_value_perm"].to_numpy(dtype=float)
    p = np.where(np.isfinite(pb), pb, pp) if use_beta else pp
    n_fallback = int((~np.isfinite(pb)).sum()) if use_beta else len(pb)
    if n_fallback:
        log.warning("%d phenotypes have no beta approximation; their q-values use pval_perm", n_fallback)
    if use_beta and len(out) > 2:
        r = float(np.corrcoef(pp[np.isfinite(pb)], pb[np.isfinite(pb)])[0, 1])
        log.info("correlation between beta-approximated and empirical p-values: %.4f", r)
    lam = None if qvalue_lambda is None else qvalue_lambda
    q = qvalue(p, lambda_=lam)
    out["q_value"] = q.qvalues
    n_sig = int((out["q_value"] <= fdr).sum())
    threshold = min_pvalue_threshold(p, q.qvalues, fdr)
    out["p_value_nominal_threshold"] = (
        nominal_threshold(threshold, out["beta_shape1"].to_numpy(float), out["beta_shape2"].to_numpy(float))
        if np.isfinite(threshold) else np.nan
    )
    out.attrs.update(pi0=float(q.pi0), fdr=fdr, pval_threshold=float(threshold), n_significant=n_sig)
    log.info(
        "%d of %d phenotypes significant at FDR %.2g (pi0 = %.3f, min p-value threshold = %.4g)",
        n_sig, len(out), fdr, q.pi0, threshold,
    )
    return out
