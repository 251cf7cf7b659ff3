"""cis-nominal engine against statsmodels OLS per pair, and its invariants."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import statsmodels.api as sm
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqtl.association.cis import map_cis_nominal
from dqtl.errors import InputError
from dqtl.kernels.linalg import Residualizer
from dqtl.study import plan_study as plan_cis


def make_data(seed=0, n=80, v=500, p=12, k=3, missing_gt=0.02, contig="1", length=3_000_000, chunks=100):
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.5, (v, 1, 1))
    gt = (rng.random((v, n, 2)) < freq).astype(np.int8)
    gt[rng.random((v, n)) < missing_gt] = -1
    pos = np.sort(rng.choice(np.arange(1, length), v, replace=False))
    samples = np.array([f"s{i}" for i in range(n)])
    G = xr.Dataset(
        {
            "call_genotype": (("variants", "samples", "ploidy"), da.from_array(gt, chunks=(chunks, n, 2))),
            "variant_position": ("variants", pos.astype(np.int32)),
            "variant_contig": ("variants", np.zeros(v, dtype=np.int16)),
            "contig_id": ("contigs", np.array([contig])),
            "variant_id": ("variants", np.array([f"v{i}" for i in range(v)])),
            "sample_id": ("samples", samples),
        }
    )
    C = rng.normal(size=(n, k))
    dose = np.where((gt == -1).any(2), np.nan, (gt > 0).sum(2))
    Y = rng.normal(size=(p, n)) + (C @ rng.normal(size=(k, p))).T * 0.3
    tss = rng.integers(0, length, p)
    # plant an effect so that small p-values are exercised too
    near = np.searchsorted(pos, tss[0])
    g0 = np.nan_to_num(dose[min(near, v - 1)], nan=1.0)
    Y[0] += 3.0 * (g0 - g0.mean()) / max(g0.std(), 0.1)
    P = xr.Dataset(
        {
            "phenotype_id": ("phenotypes", np.array([f"g{i}" for i in range(p)])),
            "phenotype_contig": ("phenotypes", np.array([f"chr{contig}"] * p)),
            "phenotype_start": ("phenotypes", tss),
            "phenotype_end": ("phenotypes", tss + 1),
            "phenotype_values": (("phenotypes", "samples"), Y),
            "sample_id": ("samples", samples),
        }
    )
    Cv = xr.Dataset(
        {
            "covariate_values": (("samples", "covariates"), C),
            "covariate_id": ("covariates", np.array([f"c{i}" for i in range(k)])),
            "sample_id": ("samples", samples),
        }
    )
    return G, P, Cv, gt, Y, C


def ols(gt_row, y, C):
    g = (gt_row > 0).sum(1).astype(float)
    miss = (gt_row == -1).any(1)
    g[miss] = g[~miss].mean()
    m = ~np.isnan(y)
    X = sm.add_constant(np.column_stack([g[m], C[m]]))
    return sm.OLS(y[m], X).fit()


def check_against_ols(res, gt, Y, C, rtol, n_check=60, seed=1):
    df = res.to_dataframe()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(df), min(n_check, len(df)), replace=False)
    rows = np.union1d(rows, [int(df.p_value.argmin())])
    for i in rows:
        r = df.iloc[i]
        fit = ols(gt[int(r.variant_id[1:])], Y[int(r.phenotype_id[1:])], C)
        np.testing.assert_allclose(r.p_value, fit.pvalues[1], rtol=rtol)
        np.testing.assert_allclose(r.beta, fit.params[1], rtol=rtol)
        np.testing.assert_allclose(r.beta_se, fit.bse[1], rtol=rtol)
        np.testing.assert_allclose(r.t_value, fit.tvalues[1], rtol=rtol)


def test_map_cis_nominal__equals_statsmodels_ols_float64():
    G, P, Cv, gt, Y, C = make_data()
    res = map_cis_nominal(G, P, Cv, window=400_000)
    assert res.sizes["pairs"] > 500
    assert res.p_value.values.min() < 1e-10
    check_against_ols(res, gt, Y, C, rtol=1e-8)


def test_map_cis_nominal__float32_product_within_documented_tolerance():
    G, P, Cv, gt, Y, C = make_data()
    r64 = map_cis_nominal(G, P, Cv, window=400_000)
    r32 = map_cis_nominal(G, P, Cv, window=400_000, dtype=np.float32)
    # documented: |t| < 10 -> p within 1e-4 relative; slope within 1e-5 relative
    t = np.abs(r64.t_value.values)
    rel_p = np.abs(r32.p_value.values - r64.p_value.values) / r64.p_value.values
    assert rel_p[t < 10].max() < 1e-4
    np.testing.assert_allclose(r32.beta.values, r64.beta.values, rtol=1e-4, atol=1e-6)


def test_map_cis_nominal__missing_phenotypes_use_sample_masks():
    G, P, Cv, gt, Y, C = make_data(seed=3)
    Y = Y.copy()
    Y[2, :7] = np.nan
    Y[5, 10:13] = np.nan
    P["phenotype_values"] = (("phenotypes", "samples"), Y)
    res = map_cis_nominal(G, P, Cv, window=400_000)
    assert np.isfinite(res.p_value.values).all()
    for gene in ("g2", "g5"):
        sub = res.where(res.phenotype_id == gene, drop=True)
        assert sub.sizes["pairs"] > 0
        for i in range(0, sub.sizes["pairs"], max(1, sub.sizes["pairs"] // 5)):
            fit = ols(gt[int(str(sub.variant_id.values[i])[1:])], Y[int(gene[1:])], C)
            np.testing.assert_allclose(sub.p_value.values[i], fit.pvalues[1], rtol=1e-8)


def test_map_cis_nominal__monomorphic_variants_and_constant_phenotypes_skipped(caplog):
    G, P, Cv, gt, Y, C = make_data(seed=4)
    gt = gt.copy()
    gt[10:14] = 0
    G["call_genotype"] = (("variants", "samples", "ploidy"), da.from_array(gt, chunks=(100, gt.shape[1], 2)))
    Y = Y.copy()
    Y[4] = 3.0
    P["phenotype_values"] = (("phenotypes", "samples"), Y)
    with caplog.at_level("WARNING"):
        res = map_cis_nominal(G, P, Cv, window=3_000_000)
    assert "constant" in caplog.text
    assert "g4" not in set(res.phenotype_id.values)
    assert not set(res.variant_id.values) & {"v10", "v11", "v12", "v13"}
    assert res.attrs["n_monomorphic"] == 4
    assert res.attrs["phenotypes_constant"] == 1


def test_map_cis_nominal__window_rule_matches_tss_and_body():
    G, P, Cv, gt, Y, C = make_data(seed=5, p=6)
    start = P.phenotype_start.values.copy()
    end = P.phenotype_end.values.copy()
    end[1] = start[1] + 200_000  # gene body
    P["phenotype_end"] = ("phenotypes", end)
    w = 250_000
    res = map_cis_nominal(G, P, Cv, window=w)
    pos = G.variant_position.values.astype(np.int64)
    for j, gene in enumerate(P.phenotype_id.values):
        expected = {f"v{i}" for i in np.nonzero((pos >= start[j] + 1 - w) & (pos <= end[j] + w))[0]}
        got = set(res.variant_id.values[res.phenotype_id.values == gene])
        assert got == expected
    sub = res.where(res.phenotype_id == "g1", drop=True)
    vpos = pos[[int(v[1:]) for v in sub.variant_id.values]]
    np.testing.assert_array_equal(sub.start_distance.values, vpos - (start[1] + 1))
    np.testing.assert_array_equal(sub.end_distance.values, vpos - end[1])


def test_map_cis_nominal__maf_threshold_filters_rare_variants():
    G, P, Cv, gt, Y, C = make_data(seed=6)
    res = map_cis_nominal(G, P, Cv, window=3_000_000, maf_threshold=0.2)
    af = res.af.values
    assert np.minimum(af, 1 - af).min() >= 0.2
    assert res.attrs["n_maf_filtered"] > 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk=st.integers(min_value=7, max_value=600), seed=st.integers(0, 3))
def test_map_cis_nominal__invariant_to_variant_chunking(chunk, seed):
    G, P, Cv, *_ = make_data(seed=seed, v=300)
    ref = map_cis_nominal(G, P, Cv, window=500_000)
    res = map_cis_nominal(G, P, Cv, window=500_000, variants_chunk_size=chunk)
    np.testing.assert_array_equal(res.variant_id.values, ref.variant_id.values)
    np.testing.assert_array_equal(res.phenotype_id.values, ref.phenotype_id.values)
    np.testing.assert_allclose(res.p_value.values, ref.p_value.values, rtol=1e-12)
    np.testing.assert_allclose(res.beta.values, ref.beta.values, rtol=1e-12)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 1000))
def test_map_cis_nominal__invariant_to_sample_order_and_covariate_scaling(seed):
    G, P, Cv, *_ = make_data(seed=2, v=200)
    ref = map_cis_nominal(G, P, Cv, window=500_000)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(P.sizes["samples"])
    P2 = P.isel(samples=perm)
    Cv2 = Cv.isel(samples=rng.permutation(Cv.sizes["samples"]))
    Cv2["covariate_values"] = Cv2.covariate_values * np.array([10.0, -0.01, 3.0]) + 5.0
    res = map_cis_nominal(G, P2, Cv2, window=500_000)
    np.testing.assert_allclose(res.p_value.values, ref.p_value.values, rtol=1e-9)
    np.testing.assert_allclose(res.beta.values, ref.beta.values, rtol=1e-9)


def test_map_cis_nominal__contig_names_chr_prefix_reconcile():
    G, P, Cv, *_ = make_data(seed=7, contig="chr1")
    P["phenotype_contig"] = ("phenotypes", np.array(["1"] * P.sizes["phenotypes"]))
    res = map_cis_nominal(G, P, Cv, window=500_000)
    assert res.sizes["pairs"] > 0


def test_residualizer__collinear_covariates_dropped_and_reported(caplog):
    rng = np.random.default_rng(0)
    C = rng.normal(size=(30, 3))
    C = np.column_stack([C, C[:, 0] * 2 - C[:, 1], np.full(30, 7.0)])
    with caplog.at_level("WARNING"):
        res = Residualizer.from_covariates(C, covariate_ids=["a", "b", "c", "d", "e"])
    assert res.rank == 4  # intercept + 3 independent
    assert res.dof == 30 - 4 - 1
    assert "e" in res.dropped and len(res.dropped) == 2
    assert "collinear" in caplog.text
    X = rng.normal(size=(4, 30))
    R = res.transform(X)
    np.testing.assert_allclose(R @ np.column_stack([np.ones(30), C]), 0, atol=1e-10)


def test_plan_cis__too_few_samples_for_covariates_is_clear_error():
    G, P, Cv, *_ = make_data(n=6, k=4, v=50)
    with pytest.raises(InputError, match="too few samples"):
        plan_cis(G, P, Cv, window=1_000_000)


def test_plan_cis__unsorted_variants_rejected():
    G, P, Cv, *_ = make_data(v=50)
    pos = G.variant_position.values.copy()
    pos[[3, 4]] = pos[[4, 3]]
    G["variant_position"] = ("variants", pos)
    with pytest.raises(InputError, match="not sorted"):
        plan_cis(G, P, Cv)


def test_plan_cis__sample_mismatch_is_error_unless_intersection_allowed():
    G, P, Cv, *_ = make_data(v=50)
    Cv2 = Cv.isel(samples=slice(0, 70))
    with pytest.raises(InputError, match="not in the covariates"):
        plan_cis(G, P, Cv2)
    plan = plan_cis(G, P, Cv2, allow_sample_intersection=True)
    assert plan.n_samples == 70


def two_contig_data(chunks):
    G1, P1, Cv, *_ = make_data(seed=8, v=200, p=5, chunks=chunks)
    G2, P2, *_ = make_data(seed=9, v=150, p=4, chunks=chunks)
    G = xr.concat([G1.drop_vars("contig_id"), G2.drop_vars("contig_id")], dim="variants",
                  data_vars="minimal", coords="minimal", compat="override")
    G["variant_contig"] = ("variants", np.r_[np.zeros(200, int), np.ones(150, int)])
    G["contig_id"] = ("contigs", np.array(["1", "2"]))
    G["variant_id"] = ("variants", np.array([f"v{i}" for i in range(350)]))
    G["sample_id"] = G1.sample_id
    G["call_genotype"] = G.call_genotype.chunk({"variants": chunks})
    P2 = P2.assign(phenotype_contig=("phenotypes", np.array(["chr2"] * 4)),
                   phenotype_id=("phenotypes", np.array([f"h{i}" for i in range(4)])))
    P = xr.concat([P1, P2], dim="phenotypes", data_vars="minimal", coords="minimal", compat="override")
    P["sample_id"] = P1.sample_id
    return G, P, Cv


@pytest.mark.parametrize("chunks", [1000, 64])
def test_map_cis_nominal__chunks_spanning_contigs_serve_both(chunks, tmp_path):
    from dqtl.workflows import run_cis_nominal

    G, P, Cv = two_contig_data(chunks)
    w = 500_000
    res = map_cis_nominal(G, P, Cv, window=w)
    pos = G.variant_position.values.astype(np.int64)
    con = G.variant_contig.values
    for j, gene in enumerate(P.phenotype_id.values):
        c = 0 if str(P.phenotype_contig.values[j]) == "chr1" else 1
        s, e = P.phenotype_start.values[j], P.phenotype_end.values[j]
        expected = {f"v{i}" for i in np.nonzero((con == c) & (pos >= s + 1 - w) & (pos <= e + w))[0]}
        assert set(res.variant_id.values[res.phenotype_id.values == gene]) == expected, gene
    summary = run_cis_nominal(G, P, Cv, str(tmp_path / "x"), window=w)
    assert [Path(f).name for f in summary.files] == ["x.cis_qtl_pairs.1.parquet", "x.cis_qtl_pairs.2.parquet"]
    import pandas as pd

    both = pd.concat([pd.read_parquet(f) for f in summary.files])
    assert len(both) == res.sizes["pairs"]
