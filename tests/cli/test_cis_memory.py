"""``dqtl cis --mode nominal`` writes pairs where they are computed: the process's peak memory
does not grow with the number of pairs (on threads: 2x pairs through a 2x window, once the
decoded blocks have reached their budget; with a real dask cluster the client's peak for 1x vs
~10x pairs), and the files are those of the in-memory API."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import dqtl
from dqtl.simulation import simulate
from dqtl.simulation_files import write_simulation
from tests.cli.test_trans_cli import _MEASURE

N_SAMPLES = 300
N_VARIANTS = 40_000
N_PHENOTYPES = 600


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cis-memory")
    ds = simulate(n_samples=N_SAMPLES, n_variants=N_VARIANTS, n_phenotypes=N_PHENOTYPES,
                  n_contigs=2, contig_length=20_000_000, seed=3, variants_chunk_size=5000)
    files = write_simulation(ds, tmp, formats=("zarr", "bed", "covariates"), prefix="sim")
    return {k: str(p[0]) for k, p in files.items()}


def _peak_and_pairs(study, prefix, window, *extra):
    cmd = ["-q", "cis", study["zarr"], study["bed"], str(prefix), "--covariates", study["covariates"],
           "--window", str(window), "--no-progress", *extra]
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    peak = int([x for x in proc.stdout.splitlines() if x.startswith("VmHWM")][-1].split()[1]) * 1024
    n = sum(len(pd.read_parquet(f"{prefix}.cis_qtl_pairs.{c}.parquet", columns=["pval_nominal"]))
            for c in ("1", "2"))
    return peak, n


def test_cli_cis_nominal__peak_memory_flat_when_pairs_double(study, tmp_path):
    """From a 2.5 Mb to a 5 Mb window the pairs double (~2.8M -> ~5.6M): holding them would add
    ~90 bytes per pair (~250 MB); the peak must stay flat. (From 250 kb to 2.5 Mb the peak rises
    once, by the decoded genotype blocks reaching their per-task budget, DECODED_BYTES_PER_TASK:
    a fixed cost, not a per-pair one.)"""
    p10, n10 = _peak_and_pairs(study, tmp_path / "w10", 2_500_000)
    p20, n20 = _peak_and_pairs(study, tmp_path / "w20", 5_000_000)
    assert n20 >= 1.8 * n10, (n10, n20)
    assert p20 - p10 <= 80 * 2**20, (p10 / 2**20, p20 / 2**20, n10, n20)


@pytest.mark.distributed
def test_cli_cis_nominal__cluster_client_memory_flat_and_files_identical(study, tmp_path, dask_cluster):
    p1, n1 = _peak_and_pairs(study, tmp_path / "d1", 250_000, "--scheduler-address", dask_cluster.address)
    p10, n10 = _peak_and_pairs(study, tmp_path / "d10", 2_500_000, "--scheduler-address",
                               dask_cluster.address)
    assert n10 >= 9 * n1
    assert p10 <= 1.3 * p1, (p1 / 2**20, p10 / 2**20)  # the client never receives pairs
    geno = dqtl.open_genotypes(study["zarr"])
    phen = dqtl.read_phenotype_bed(study["bed"])
    cov = dqtl.read_covariates(study["covariates"], sample_ids=phen.sample_id.values)
    api = dqtl.to_tensorqtl_pairs(dqtl.map_cis_nominal(geno, phen, cov, window=250_000))
    files = pd.concat([pd.read_parquet(f"{tmp_path}/d1.cis_qtl_pairs.{c}.parquet") for c in ("1", "2")],
                      ignore_index=True)
    assert len(files) == len(api) == n1
    for col in api.columns:
        a, b = files[col].to_numpy(), api[col].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=col)
        else:
            assert (a.astype(str) == b.astype(str)).all(), col
