"""dqtl in an xarray session (a notebook, cell by cell): Datasets in, Datasets out.

    python examples/xarray_session.py OUTDIR
"""
# %% inputs: the bundled GEUVADIS data as xarray Datasets
import os
import sys

import numpy as np

import dqtl

out = sys.argv[1] if len(sys.argv) > 1 else "xarray_session"
os.makedirs(out, exist_ok=True)
data = os.path.join(os.path.dirname(dqtl.__file__), "data", "geuvadis")
geno = dqtl.load_genotypes(os.path.join(data, "geuvadis_ceu90_maf01.pgen"))  # lazy, dask-backed
phen = dqtl.read_phenotype_bed(os.path.join(data, "expression.bed.gz"))
cov = dqtl.read_covariates(os.path.join(data, "covariates.txt"), sample_ids=phen.sample_id.values)
print(geno.sizes, phen.sizes, cov.sizes, sep="\n")

# %% cis nominal: every pair within 1 Mb, as a Dataset with spelled-out names
pairs = dqtl.map_cis_nominal(geno, phen, cov, window=1_000_000)
print(pairs)
best = pairs.isel(pairs=int(np.argmin(pairs.p_value.values)))
print("strongest pair:", str(best.phenotype_id.values), str(best.variant_id.values),
      float(best.p_value))

# %% permutations: gene-level p-values and q-values
genes = dqtl.map_cis_permutations(geno, phen, cov, permutations=1000, seed=1)
print(int((genes.q_value <= 0.05).sum()), "eGenes at FDR 0.05")

# %% pictures: a QQ plot with lambda_GC, saved next to the results
from dqtl.plot import PValueSketch, plot_qq_sketch, save_figure  # noqa: E402

sketch = PValueSketch()
sketch.add(pairs.p_value.values)
save_figure(plot_qq_sketch(sketch, label="cis nominal"), os.path.join(out, "qq.png"))
print(f"lambda_GC {sketch.lambda_gc():.3f}; wrote {os.path.join(out, 'qq.png')}")
