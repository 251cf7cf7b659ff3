"""dqtl on SLURM (or PBS/SGE/LSF with the matching dask-jobqueue class) through dask-jobqueue.

    pip install "daskqtl[jobqueue]"
    python dqtl_slurm.py cohort.vcz expression.bed.gz covariates.txt out/cohort --jobs 20 \\
        --account mylab --local-directory '$TMPDIR' --interface ib0
    python dqtl_slurm.py ... --print-job-script   # the batch script each worker job runs
"""

from __future__ import annotations

import argparse
from typing import Any


def make_cluster(a: argparse.Namespace) -> Any:
    """A SLURMCluster: one single-process worker per job, spilling to node-local disk."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        cores=a.cores, processes=1, memory=a.memory, walltime=a.walltime, queue=a.queue,
        account=a.account, local_directory=a.local_directory, interface=a.interface,
        log_directory=a.log_directory, job_name="dqtl-worker",
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("genotypes")
    ap.add_argument("phenotypes")
    ap.add_argument("covariates")
    ap.add_argument("output_prefix")
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--memory", default="32GB")
    ap.add_argument("--walltime", default="04:00:00")
    ap.add_argument("--queue", default=None)
    ap.add_argument("--account", default=None, help="SLURM account to charge (-A)")
    ap.add_argument("--local-directory", default="$TMPDIR", help="node-local spill folder")
    ap.add_argument("--interface", default=None, help="network interface of the workers (e.g. ib0)")
    ap.add_argument("--log-directory", default="dask-logs")
    ap.add_argument("--print-job-script", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    cluster = make_cluster(a)
    if a.print_job_script:
        print(cluster.job_script())
        cluster.close()
        return
    import dqtl
    from distributed import Client

    cluster.scale(jobs=a.jobs)
    with Client(cluster) as client, dqtl.show_progress():  # the active Client runs every graph
        print(f"dashboard: {client.dashboard_link}")
        geno = dqtl.open_genotypes(a.genotypes)
        phen = dqtl.read_phenotype_bed(a.phenotypes)
        cov = dqtl.read_covariates(a.covariates, sample_ids=phen.sample_id.values)
        dqtl.run_cis_nominal(geno, phen, cov, a.output_prefix)
    cluster.close()


if __name__ == "__main__":
    main()
