"""The study plan: one per run, shared by every method, accepting any VCF Zarr Dataset."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr

import dqtl
import dqtl.study as study_mod
from dqtl.errors import InputError
from dqtl.kernels.linalg import Residualizer
from dqtl.study import plan_study
from tests.conftest import EXAMPLE


@pytest.fixture(scope="module")
def geuvadis(tmp_path_factory):
    store = tmp_path_factory.mktemp("geu") / "g.vcz"
    dqtl.convert(str(EXAMPLE / "geuvadis_ceu90_maf01.pgen"), str(store), format="pgen")
    phen = dqtl.read_phenotype_bed(EXAMPLE / "expression.bed.gz")
    cov = dqtl.read_covariates(EXAMPLE / "covariates.txt", sample_ids=phen.sample_id.values)
    return store, phen, cov


def test_map_cis_nominal__accepts_plain_xarray_open_zarr(geuvadis):
    store, phen, cov = geuvadis
    raw = xr.open_zarr(store, consolidated=False)
    assert raw["variant_id"].dtype.kind in "TOU"  # StringDType from zarr 3, as users get it
    a = dqtl.map_cis_nominal(raw, phen, cov)
    b = dqtl.map_cis_nominal(dqtl.open_genotypes(store), phen, cov)
    assert a.sizes["pairs"] == 85_099
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_map_trans_and_permutations__accept_plain_xarray_open_zarr(geuvadis):
    store, phen, cov = geuvadis
    raw = xr.open_zarr(store, consolidated=False)
    opened = dqtl.open_genotypes(store)
    t1 = dqtl.map_trans(raw, phen, cov, pval_threshold=1e-5)
    t2 = dqtl.map_trans(opened, phen, cov, pval_threshold=1e-5)
    np.testing.assert_array_equal(t1.p_value.values, t2.p_value.values)
    sub = phen.isel(phenotypes=slice(0, 40))
    p1 = dqtl.map_cis_permutations(raw, sub, cov, permutations=200, seed=1)
    p2 = dqtl.map_cis_permutations(opened, sub, cov, permutations=200, seed=1)
    np.testing.assert_array_equal(p1["p_value_perm"].values, p2["p_value_perm"].values)


def test_plan_study__one_plan_per_independent_run(tmp_path, monkeypatch):
    sim = dqtl.simulate(n_samples=100, n_variants=1500, n_phenotypes=40, n_covariates=2,
                        n_hidden=0, fraction_egenes=0.5, effect_size=0.8, seed=5)
    calls = {"plan": 0}
    real = study_mod.plan_study

    def counting(*a, **k):
        calls["plan"] += 1
        return real(*a, **k)

    import dqtl.workflows as wf

    monkeypatch.setattr(wf, "plan_study", counting)
    wf.run_cis_independent(sim, sim, sim, str(tmp_path / "x"), permutations=200, seed=1)
    assert calls["plan"] == 1
    assert (tmp_path / "x.cis_independent_qtl.txt.gz").exists()
    assert (tmp_path / "x.cis_qtl.txt.gz").exists()


def test_permutation_tasks__reuse_the_plan_basis_and_log_dropped_covariates_once(
        geuvadis, monkeypatch, caplog):
    store, phen, cov = geuvadis
    vals = cov["covariate_values"].values
    cov2 = xr.Dataset({
        "covariate_values": (("samples", "covariates"), np.column_stack([vals, vals[:, 0] * 2])),
        "covariate_id": ("covariates", [*cov["covariate_id"].values.astype(str), "copy"]),
        "sample_id": ("samples", cov["sample_id"].values),
    })
    geno = dqtl.open_genotypes(store)
    with caplog.at_level(logging.WARNING):
        plan = plan_study(geno, phen.isel(phenotypes=slice(0, 80)), cov2)
    built = {"n": 0}
    real = Residualizer.from_covariates.__func__

    def counting(cls, *a, **k):
        built["n"] += 1
        return real(cls, *a, **k)

    assert caplog.text.count("collinear") == 1  # reported once, when the plan was built
    caplog.clear()
    monkeypatch.setattr(Residualizer, "from_covariates", classmethod(counting))
    with caplog.at_level(logging.WARNING):
        res = dqtl.map_cis_permutations(geno, None, None, permutations=100, seed=2, plan=plan)
    assert built["n"] == 0  # every task used the plan's basis
    assert res.sizes["phenotypes"] == 80
    assert "collinear" not in caplog.text  # and not again by any task


def test_plan_study__select_keeps_bases_and_windows(geuvadis):
    store, phen, cov = geuvadis
    plan = plan_study(dqtl.open_genotypes(store), phen, cov)
    ids = plan.phenotype_id[[3, 10, 400]]
    sub = plan.select(ids)
    assert sub.phenotype_id.tolist() == ids.tolist()
    assert sub.groups[0].Q is plan.groups[0].Q
    np.testing.assert_array_equal(sub.window_lo, plan.window_lo[[3, 10, 400]])
    full = dqtl.map_cis_nominal(None, None, None, plan=plan)
    part = dqtl.map_cis_nominal(None, None, None, plan=sub)
    keep = np.isin(full.phenotype_id.values, ids)
    np.testing.assert_allclose(part.p_value.values, full.p_value.values[keep], rtol=1e-12)


def test_plan_study__bad_inputs_are_clear_errors(geuvadis):
    store, phen, cov = geuvadis
    geno = dqtl.open_genotypes(store)
    bad = phen.copy()
    vals = bad["phenotype_values"].values.copy()
    vals[2, 5] = np.inf
    bad["phenotype_values"] = (("phenotypes", "samples"), vals)
    with pytest.raises(InputError, match="infinite value"):
        plan_study(geno, bad, cov)
    cbad = cov.copy()
    cv = cbad["covariate_values"].values.copy()
    cv[0, 1] = np.nan
    cbad["covariate_values"] = (("samples", "covariates"), cv)
    with pytest.raises(InputError, match="covariates must be finite"):
        plan_study(geno, phen, cbad)
    with pytest.raises(InputError, match="no variable phenotype_values"):
        plan_study(geno, phen.drop_vars("phenotype_values"), cov)
