"""Write the inputs of the GTEx reference case (run with the project's Python, from the repo root):

    python tests/reference/gtex_prepare_expression/make_inputs.py
"""

from pathlib import Path

from dqtl.simulate_counts import simulate_counts

HERE = Path(__file__).resolve().parent

sim = simulate_counts(400, 60, seed=7, n_outliers=1, n_sex_swaps=1, fraction_low=0.35)
sim.counts.to_csv(HERE / "counts.tsv.gz", sep="\t")
sim.tpm.to_csv(HERE / "tpm.tsv.gz", sep="\t", float_format="%.17g")
