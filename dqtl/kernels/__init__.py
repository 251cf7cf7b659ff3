"""Pure array kernels shared by every method (numpy, or cupy through the same calls).

No xarray, no dask, no I/O: arrays in, arrays (or a small dataclass) out. One dosage decoder
(:func:`~dqtl.kernels.genotypes.dosage_from_calls`), one imputation
(:func:`~dqtl.kernels.genotypes.impute_mean`), one block decoder with the allele statistics and
filters (:func:`~dqtl.kernels.genotypes.decode_block`), one covariate basis
(:class:`~dqtl.kernels.linalg.Residualizer`) and one residual norm
(:func:`~dqtl.kernels.linalg.residual_norm2`) serve cis, permutations, independent, trans,
genotype QC and PCA alike.
"""

from dqtl.kernels.genotypes import (
    DecodedBlock,
    allele_stats,
    call_counts,
    decode_block,
    dosage_from_calls,
    get_array_module,
    impute_mean,
    to_host,
)
from dqtl.kernels.linalg import Residualizer, residual_norm2
from dqtl.kernels.stats import (
    float32_tolerance,
    pval_from_t,
    r_threshold,
    stats_from_r,
    t_from_r,
)

__all__ = [
    "DecodedBlock",
    "Residualizer",
    "allele_stats",
    "call_counts",
    "decode_block",
    "dosage_from_calls",
    "float32_tolerance",
    "get_array_module",
    "impute_mean",
    "pval_from_t",
    "r_threshold",
    "residual_norm2",
    "stats_from_r",
    "t_from_r",
    "to_host",
]
