"""GTEx reference outputs for dqtl prepare-expression (run in the tensorQTL virtualenv, which has
GTEx's pyqtl 0.1.10, from the repo root):

    /work/tqvenv/bin/python tests/reference/gtex_prepare_expression/generate.py

What it computes is the body of ``prepare_expression(counts_df, tpm_df, mode='tmm')`` of
gtex-pipeline ``qtl/src/eqtl_prepare_expression.py`` (GTEx v8), with its defaults
(sample_frac_threshold=0.2, count_threshold=6, tpm_threshold=0.1), written out step by step
with the same pyqtl functions that script calls (``qtl.norm.edger_cpm``,
``qtl.norm.inverse_normal_transform``), and ``qtl.io.gtf_to_tss_bed`` on the GTF fixture.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import qtl
import qtl.io
import qtl.norm

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "data" / "expression"

counts_df = pd.read_csv(HERE / "counts.tsv.gz", sep="\t", index_col=0)
tpm_df = pd.read_csv(HERE / "tpm.tsv.gz", sep="\t", index_col=0)

ns = tpm_df.shape[1]
mask = (
    (np.sum(tpm_df >= 0.1, axis=1) >= 0.2 * ns) & (np.sum(counts_df >= 6, axis=1) >= 0.2 * ns)
).values
tmm = qtl.norm.edger_calcnormfactors(counts_df)
tmm_counts_df = qtl.norm.edger_cpm(counts_df, normalized_lib_sizes=True)
norm_df = qtl.norm.inverse_normal_transform(tmm_counts_df[mask])

pd.Series(mask, index=counts_df.index, name="expressed").to_csv(HERE / "expressed.tsv", sep="\t")
pd.Series(tmm, index=counts_df.columns, name="norm_factor").to_csv(
    HERE / "norm_factors.tsv", sep="\t", float_format="%.17g")
norm_df.to_csv(HERE / "expected_int.tsv.gz", sep="\t", float_format="%.17g")

bed = qtl.io.gtf_to_tss_bed(str(DATA / "genes.gtf"), feature="gene")
bed.to_csv(HERE / "gtf_tss.tsv", sep="\t", index=False)
(HERE / "VERSIONS.txt").write_text(
    f"qtl (pyqtl) {qtl.__version__ if hasattr(qtl, '__version__') else '0.1.10'}\n"
    f"pandas {pd.__version__}\nnumpy {np.__version__}\n"
)
print(int(mask.sum()), "genes pass;", norm_df.shape)
