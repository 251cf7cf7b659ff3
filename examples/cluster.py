"""dqtl on a dask cluster from Python: connect a Client and every dqtl graph runs there.

    dask scheduler --scheduler-file s.json &  dask worker --scheduler-file s.json --nthreads 1 &
    python examples/cluster.py tcp://HOST:8786 OUTDIR
Without an address, a LocalCluster of two single-thread worker processes is started.
"""
import os
import sys

from distributed import Client, LocalCluster

import dqtl

address = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "local" else None
out = sys.argv[2] if len(sys.argv) > 2 else "cluster_results"
data = os.path.join(os.path.dirname(dqtl.__file__), "data", "geuvadis")

if __name__ == "__main__":
    cluster = None if address else LocalCluster(n_workers=2, threads_per_worker=1)
    with Client(address or cluster) as client, dqtl.show_progress():
        print("dashboard:", client.dashboard_link)
        geno = dqtl.load_genotypes(os.path.join(data, "geuvadis_ceu90_maf01.pgen"),
                                   cache_dir=os.path.join(out, "genotype-cache"))
        phen = dqtl.read_phenotype_bed(os.path.join(data, "expression.bed.gz"))
        cov = dqtl.read_covariates(os.path.join(data, "covariates.txt"), sample_ids=phen.sample_id.values)
        summary = dqtl.run_cis_nominal(geno, phen, cov, os.path.join(out, "geuvadis"))
        print(summary.n_pairs, "pairs in", summary.files)
    if cluster is not None:
        cluster.close()
