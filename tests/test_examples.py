"""The scripts in examples/ run as users run them: GEUVADIS end to end (factors, covariates,
permutations, independent signals, trans, with plots and reports), the xarray session, and the
cluster script against a real dask scheduler and worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DQTL_GENOTYPE_CACHE": str(cwd / "cache"), "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_geuvadis_end_to_end(tmp_path):
    _run(["bash", str(EXAMPLES / "geuvadis_end_to_end.sh"), str(tmp_path / "out")], tmp_path)
    out = tmp_path / "out"
    perm = pd.read_csv(out / "geuvadis.cis_qtl.txt.gz", sep="\t")
    assert len(perm) == 428 and (perm.qval <= 0.05).sum() >= 3
    ind = pd.read_csv(out / "geuvadis.cis_independent_qtl.txt.gz", sep="\t")
    assert len(ind) >= (perm.qval <= 0.05).sum()
    assert len(pd.read_parquet(out / "geuvadis.trans_qtl_pairs.parquet")) > 0
    cov = pd.read_csv(out / "covariates.txt", sep="\t", index_col=0)
    assert {"PC1", "PC2", "PC3"} <= set(cov.index) or any(str(i).startswith("PC") for i in cov.index)
    for name in ("geuvadis.cis_qtl.manhattan.png", "geuvadis.cis_qtl.pvalues.png",
                 "geuvadis.trans_manhattan.png", "geuvadis.report.html",
                 "geuvadis.dqtl.trans.log"):
        assert (out / name).stat().st_size > 500, name


def test_xarray_session(tmp_path):
    proc = _run([sys.executable, str(EXAMPLES / "xarray_session.py"), str(tmp_path / "x")], tmp_path)
    assert "eGenes at FDR 0.05" in proc.stdout and "lambda_GC" in proc.stdout
    assert (tmp_path / "x" / "qq.png").stat().st_size > 5000


@pytest.mark.distributed
def test_cluster_script_on_a_real_cluster(tmp_path, dask_cluster):
    proc = _run([sys.executable, str(EXAMPLES / "cluster.py"), dask_cluster.address,
                 str(tmp_path / "c")], tmp_path)
    assert "85099 pairs" in proc.stdout
    assert len(list((tmp_path / "c").glob("geuvadis.cis_qtl_pairs.*.parquet"))) == 2
