"""tensorQTL 1.0.10 cis permutation pass on a dqtl.simulate dataset (reference for planted-eGene recovery).

Run from the repository root with the project's Python (dqtl installed):

    python tests/reference/tensorqtl_sim/generate.py --tensorqtl-python /work/tqvenv/bin/python

Step 1 (this interpreter): simulate with SIM_PARAMS and write pgen + BED + covariates to a scratch dir.
Step 2 (the tensorQTL interpreter, same script with --stage tensorqtl): tensorQTL map_cis with
NPERM permutations and SEED, then post.calculate_qvalues (R qvalue via rpy2), written to
sim.cis_qtl.txt.gz beside this file. The BED is read with the pandas-3-safe reader of
tests/reference/tensorqtl/generate.py (tensorQTL 1.0.10's own reader fails under pandas 3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIM_PARAMS = dict(n_samples=200, n_variants=4000, n_phenotypes=300, n_contigs=2, n_covariates=3,
                  n_hidden=0, fraction_egenes=0.3, effect_size=0.5, seed=11)
NPERM = 1000
SEED = 2024


def stage_simulate(outdir: Path) -> None:
    import dqtl

    ds = dqtl.simulate(**SIM_PARAMS)
    dqtl.write_simulation(ds, outdir, formats=("bed", "covariates", "pgen", "truth"), prefix="sim")


def stage_tensorqtl(outdir: Path) -> None:
    import pandas as pd

    sys.path.insert(0, str(HERE.parent / "tensorqtl"))
    import tensorqtl  # noqa: F401  (puts tensorqtl's own folder on sys.path: cis, core, ...)
    from generate import read_phenotype_bed  # our pandas-3-safe BED reader

    import cis
    import genotypeio
    import post

    phenotype_df, pos_df = read_phenotype_bed(outdir / "sim.expression.bed.gz")
    covariates_df = pd.read_csv(outdir / "sim.covariates.txt", sep="\t", index_col=0).T
    genotype_df, variant_df = genotypeio.load_genotypes(str(outdir / "sim"), select_samples=phenotype_df.columns)
    t0 = time.time()
    cis_df = cis.map_cis(genotype_df, variant_df, phenotype_df, pos_df, covariates_df=covariates_df,
                         nperm=NPERM, seed=SEED)
    runtime = time.time() - t0
    post.calculate_qvalues(cis_df, fdr=0.05, qvalue_lambda=None)
    cis_df.to_csv(HERE / "sim.cis_qtl.txt.gz", sep="\t", float_format="%.17g")
    (HERE / "summary.json").write_text(json.dumps({
        "sim_params": SIM_PARAMS, "nperm": NPERM, "seed": SEED, "map_cis_seconds": runtime,
        "n_egenes_fdr05": int((cis_df["qval"] <= 0.05).sum()), "n_phenotypes": len(cis_df),
    }, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=["all", "tensorqtl"], default="all")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--tensorqtl-python", default="/work/tqvenv/bin/python")
    a = ap.parse_args()
    if a.stage == "tensorqtl":
        stage_tensorqtl(Path(a.workdir))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stage_simulate(Path(tmp))
        subprocess.run([a.tensorqtl_python, __file__, "--stage", "tensorqtl", "--workdir", tmp], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
