"""Tests of the ``dqtl simulate`` sub-command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from dqtl.cli.main import main
from dqtl.simulation import simulate

TINY = ["--samples", "12", "--variants", "150", "--phenotypes", "10", "--contig-length",
        "1000000", "--seed", "4"]


def test_simulate_cli__writes_requested_files_matching_api(tmp_path):
    out = tmp_path / "sim"
    rc = main(["-q", "simulate", str(out), *TINY, "--formats", "zarr,bed,covariates,truth,pgen",
               "--prefix", "t", "--missing-genotype-rate", "0.1"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["t.covariates.txt", "t.dqtl.simulate.log", "t.expression.bed.gz", "t.expression.bed.gz.tbi",
                     "t.pgen", "t.psam", "t.pvar", "t.truth.tsv", "t.vcz"]
    ds = simulate(n_samples=12, n_variants=150, n_phenotypes=10, contig_length=1_000_000,
                  seed=4, missing_genotype_rate=0.1)
    z = xr.open_zarr(out / "t.vcz", consolidated=False)
    np.testing.assert_array_equal(z["call_genotype"].values, ds["call_genotype"].values)
    truth = pd.read_csv(out / "t.truth.tsv", sep="\t")
    np.testing.assert_array_equal(truth["effect_size"], ds["phenotype_effect_size"].values)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--samples", "2"], "--samples: expected an integer >= 3"),
        (["--fraction-egenes", "1.5"], "--fraction-egenes: expected a number in [0, 1]"),
        (["--missing-genotype-rate", "1"], "--missing-genotype-rate"),
        (["--ld-rho", "-0.2"], "--ld-rho"),
        (["--formats", "zarr,bam"], "--formats"),
        (["--formats", "pgen", "--ploidy", "1"], "--ploidy 2"),
        (["--prefix", "a/b"], "--prefix"),
    ],
)
def test_simulate_cli__impossible_value_exits_2_without_output(tmp_path, capsys, args, message):
    out = tmp_path / "sim"
    rc = main(["simulate", str(out), *TINY, *args])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("dqtl simulate: error:") and message in err
    assert not out.exists()


def test_simulate_cli__non_integer_count_is_usage_error(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "sim"), "--samples", "many"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--samples" in err


def test_simulate_never_replaces_files_it_finds_unless_forced(tmp_path, capsys):
    """A user's own sim.covariates.txt in OUTDIR stays as it was; --force replaces it."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "sim.covariates.txt").write_text("my notes\n")
    rc = main(["-q", "simulate", str(out), *TINY, "--formats", "covariates,truth"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "already holds sim.covariates.txt" in err and len(err.splitlines()) == 1
    assert (out / "sim.covariates.txt").read_text() == "my notes\n"
    assert not (out / "sim.truth.tsv").exists()
    assert main(["-q", "simulate", str(out), *TINY, "--formats", "covariates", "--force"]) == 0
    assert (out / "sim.covariates.txt").read_text().startswith("id\t")
