"""The trans scan on a real ``dask scheduler`` + ``dask worker`` cluster: identical output to
the threaded run for any worker count, and after losing a worker mid-scan."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest
import xarray as xr
from distributed import Client

from dqtl.association.trans import run_trans
from tests.association.test_trans import make_data

pytestmark = pytest.mark.distributed

KW = dict(pval_threshold=1e-2, cis_window=300_000, permutations=20, phenotypes_per_block=40)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Genotypes in a Zarr store on disk (workers stream their chunks from it)."""
    tmp = tmp_path_factory.mktemp("trans-dist")
    G, P, Cv, _ = make_data(seed=31, n=200, v=6000, p=80, chunks=500)
    G.to_zarr(tmp / "g.zarr", zarr_format=3, consolidated=False)
    geno = xr.open_zarr(tmp / "g.zarr", consolidated=False)
    for name in ("variant_position", "variant_contig", "contig_id", "sample_id"):
        geno[name] = geno[name].load()
    return geno, P, Cv


@pytest.fixture(scope="module")
def threaded(inputs, tmp_path_factory):
    geno, P, Cv = inputs
    prefix = tmp_path_factory.mktemp("threaded") / "t"
    run_trans(geno, P, Cv, str(prefix), variants_per_block=1000, **KW)
    return pd.read_parquet(f"{prefix}.trans_qtl_pairs.parquet")


def test_run_trans__distributed_identical_to_threads(dask_cluster, inputs, threaded, tmp_path):
    geno, P, Cv = inputs
    with Client(dask_cluster.address) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        run_trans(geno, P, Cv, str(tmp_path / "d"), variants_per_block=500, **KW)
        done = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert all(v > 0 for v in done.values())  # both workers scanned blocks
    got = pd.read_parquet(tmp_path / "d.trans_qtl_pairs.parquet")
    assert len(got) > 100
    pd.testing.assert_frame_equal(got, threaded)


def test_run_trans__worker_killed_mid_scan_gives_identical_output(dask_cluster, inputs, threaded, tmp_path):
    geno, P, Cv = inputs
    prefix = tmp_path / "k"
    blocks = tmp_path / "k.trans_blocks"
    victim = dask_cluster.workers[0]
    errors: list[BaseException] = []
    with Client(dask_cluster.address) as client:
        client.wait_for_workers(2, timeout=60)

        def scan():
            try:
                run_trans(geno, P, Cv, str(prefix), variants_per_block=100, **KW)
            except BaseException as exc:  # noqa: BLE001  (re-raised in the test thread)
                errors.append(exc)

        thread = threading.Thread(target=scan)
        thread.start()
        deadline = time.time() + 60
        while time.time() < deadline and not (blocks.exists() and len(list(blocks.glob("*.npz"))) >= 4):
            time.sleep(0.01)
        os.killpg(victim.pid, signal.SIGKILL)  # the worker and its nanny, no goodbye
        victim.wait()
        recorded = len(list(blocks.glob("*.npz")))
        thread.join(timeout=240)
        assert not thread.is_alive()
    assert not errors, errors
    assert 4 <= recorded < 120, recorded  # 60 variant blocks x (1 phenotype + 1 null) blocks
    got = pd.read_parquet(f"{prefix}.trans_qtl_pairs.parquet")
    pd.testing.assert_frame_equal(got, threaded)
    # leave the module's cluster with two workers
    dask_cluster.workers.remove(victim)
    dask_cluster.add_worker("w-replacement")
    dask_cluster.wait_for_workers(2)
