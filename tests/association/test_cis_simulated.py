"""cis nominal on dqtl.simulate data: every statistic equals statsmodels OLS per pair; planted
effects are found; the same scan reads a real Zarr store on disk and runs on a distributed
cluster through the CLI with identical results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import dqtl
from dqtl.association.cis import map_cis_nominal
from dqtl.cli.main import main


@pytest.fixture(scope="module")
def sim():
    return dqtl.simulate(
        n_samples=120, n_variants=2000, n_phenotypes=40, n_covariates=3, n_hidden=2, seed=7,
        missing_genotype_rate=0.01, missing_phenotype_rate=0.03, variants_chunk_size=300,
        effect_size=1.0, hidden_effect=0.5,
    )


def _ols(sim, pid, vid):
    i = int(np.nonzero(sim.phenotype_id.values == pid)[0][0])
    v = int(np.nonzero(sim.variant_id.values == vid)[0][0])
    gt = sim.call_genotype.values[v]
    g = (gt > 0).sum(1).astype(float)
    miss = (gt < 0).any(1)
    g[miss] = g[~miss].mean()
    y = sim.phenotype_values.values[i]
    m = ~np.isnan(y)
    X = sm.add_constant(np.column_stack([g[m], sim.covariate_values.values[m]]))
    return sm.OLS(y[m], X).fit()


def test_map_cis_nominal__simulated_every_statistic_equals_statsmodels(sim):
    res = map_cis_nominal(sim, sim, sim, window=1_000_000).to_dataframe()
    assert len(res) > 5000
    rng = np.random.default_rng(0)
    rows = np.union1d(rng.choice(len(res), 150, replace=False), np.argsort(res.p_value.to_numpy())[:20])
    for i in rows:
        r = res.iloc[i]
        fit = _ols(sim, r.phenotype_id, r.variant_id)
        np.testing.assert_allclose(r.p_value, fit.pvalues[1], rtol=1e-8)
        np.testing.assert_allclose(r.beta, fit.params[1], rtol=1e-8)
        np.testing.assert_allclose(r.beta_se, fit.bse[1], rtol=1e-8)
        np.testing.assert_allclose(r.t_value, fit.tvalues[1], rtol=1e-8)


def test_map_cis_nominal__simulated_planted_causal_variants_rank_top(sim):
    res = map_cis_nominal(sim, sim, sim, window=1_000_000).to_dataframe()
    top = res.loc[res.groupby("phenotype_id").p_value.idxmin()].set_index("phenotype_id")
    eg = sim.phenotype_id.values[sim.phenotype_is_egene.values]
    causal = sim.variant_id.values[sim.phenotype_causal_variant.values[sim.phenotype_is_egene.values]]
    p_causal = [res.p_value[(res.phenotype_id == g) & (res.variant_id == v)].iloc[0] for g, v in zip(eg, causal, strict=True)]
    assert np.median(p_causal) < 1e-3
    assert (top.loc[eg].p_value < 1e-3).mean() >= 0.8
    # and the null genes' top p-values are not all tiny
    null = np.setdiff1d(top.index, eg)
    assert (top.loc[null].p_value > 1e-4).mean() > 0.8


@pytest.fixture(scope="module")
def sim_files(sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("simfiles")
    dqtl.write_simulation(sim, out, formats=("zarr", "bed", "covariates"), prefix="sim")
    return out


def _run_cli(sim_files, prefix, *extra):
    args = ["-q", "cis", str(sim_files / "sim.vcz"), str(sim_files / "sim.expression.bed.gz"), str(prefix),
            "--covariates", str(sim_files / "sim.covariates.txt"), "--no-progress", *extra]
    assert main(args) == 0
    return pd.concat([pd.read_parquet(p) for p in sorted(prefix.parent.glob(prefix.name + ".cis_qtl_pairs.*.parquet"))],
                     ignore_index=True)


@pytest.mark.distributed
def test_cli_cis_nominal__zarr_store_distributed_cluster_and_chunking_identical(sim_files, dask_cluster, tmp_path, sim):
    threaded = _run_cli(sim_files, tmp_path / "t")
    dist = _run_cli(sim_files, tmp_path / "d", "--scheduler-address", dask_cluster.address)
    pd.testing.assert_frame_equal(threaded, dist)
    rechunked = _run_cli(sim_files, tmp_path / "c", "--variants-chunk-size", "77")
    pd.testing.assert_frame_equal(threaded[["phenotype_id", "variant_id"]], rechunked[["phenotype_id", "variant_id"]])
    np.testing.assert_allclose(rechunked.pval_nominal, threaded.pval_nominal, rtol=1e-12)
    # and equal to the in-memory API run
    api = dqtl.to_tensorqtl_pairs(map_cis_nominal(sim, sim, sim))
    np.testing.assert_allclose(api.pval_nominal, threaded.pval_nominal, rtol=1e-12)
