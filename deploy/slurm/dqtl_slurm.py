"""cis-eQTL nominal scan on a SLURM cluster through dask-jobqueue.

    pip install "dqtl[jobqueue]"   (dask-jobqueue)
    python dqtl_slurm.py cohort.vcz expression.bed.gz covariates.txt out/cohort --jobs 20
"""

from __future__ import annotations

import argparse

from dask_jobqueue import SLURMCluster
from distributed import Client

import dqtl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("genotypes")
    ap.add_argument("phenotypes")
    ap.add_argument("covariates")
    ap.add_argument("output_prefix")
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--memory", default="32GB")
    ap.add_argument("--walltime", default="04:00:00")
    ap.add_argument("--queue", default=None)
    a = ap.parse_args()
    cluster = SLURMCluster(cores=a.cores, processes=1, memory=a.memory, walltime=a.walltime, queue=a.queue)
    cluster.scale(jobs=a.jobs)
    with Client(cluster), dqtl.show_progress():  # the active Client runs every dqtl graph
        geno = dqtl.open_genotypes(a.genotypes)
        phen = dqtl.read_phenotype_bed(a.phenotypes)
        cov = dqtl.read_covariates(a.covariates, sample_ids=phen.sample_id.values)
        dqtl.run_cis_nominal(geno, phen, cov, a.output_prefix)


if __name__ == "__main__":
    main()
