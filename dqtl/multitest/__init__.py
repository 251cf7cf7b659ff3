"""Multiple-testing corrections: BH (incl. blockwise), Storey q-values, beta approximation.

Pure numpy/scipy reimplementations of R ``p.adjust(..., "BH")``, R ``qvalue`` 2.30.0 and the
FastQTL/tensorQTL beta approximation of permutation p-values.
"""

from __future__ import annotations

from dqtl.multitest.beta import (
    beta_approx_pval,
    fit_beta_mle,
    fit_true_df,
    min_pvalue_threshold,
    nominal_threshold,
    pval_from_r2,
)
from dqtl.multitest.bh import bh
from dqtl.multitest.qvalue import DEFAULT_LAMBDA, Pi0Estimate, QValueResult, lfdr, pi0est, qvalue

__all__ = [
    "DEFAULT_LAMBDA",
    "Pi0Estimate",
    "QValueResult",
    "beta_approx_pval",
    "bh",
    "fit_beta_mle",
    "fit_true_df",
    "lfdr",
    "min_pvalue_threshold",
    "nominal_threshold",
    "pi0est",
    "pval_from_r2",
    "qvalue",
]
