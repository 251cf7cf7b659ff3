"""trans scan against statsmodels OLS and a dense numpy computation, and its invariants."""

from __future__ import annotations

import json
import sys
import types

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.api as sm
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqtl.association.trans import choose_block_sizes, map_trans, plan_trans, run_trans
from dqtl.errors import InputError
from dqtl.kernels import decode_block, float32_tolerance, r_threshold
from dqtl.kernels.trans import trans_block
from dqtl.multitest import bh, pval_from_r2
from tests.conftest import EXAMPLE, REFERENCE

LENGTH = 3_000_000


def make_data(seed=0, n=90, v=400, p=24, k=3, missing_gt=0.02, chunks=64, missing_pheno=False):
    """Two contigs; planted trans effects (contig-1 variants on contig-2 genes) and one cis."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.5, (v, 1, 1))
    gt = (rng.random((v, n, 2)) < freq).astype(np.int8)
    gt[rng.random((v, n)) < missing_gt] = -1
    gt[5] = 0  # a monomorphic variant: never tested
    half = v // 2
    pos = np.concatenate([np.sort(rng.choice(np.arange(1, LENGTH), half, replace=False)),
                          np.sort(rng.choice(np.arange(1, LENGTH), v - half, replace=False))])
    vcon = np.repeat([0, 1], [half, v - half]).astype(np.int16)
    samples = np.array([f"s{i}" for i in range(n)])
    C = rng.normal(size=(n, k))
    dose = np.where((gt == -1).any(2), np.nan, (gt > 0).sum(2))
    Y = rng.normal(size=(p, n)) + (C @ rng.normal(size=(k, p))).T * 0.3
    pcon = np.array(["chr1", "chr2"] * (p // 2) + ["chr1"] * (p % 2))
    tss = rng.integers(0, LENGTH, p)
    for j, var in ((1, 10), (3, 20), (5, 30), (7, 40)):  # trans: genes on chr2, variants on chr1
        g0 = np.nan_to_num(dose[var], nan=1.0)
        Y[j] += 1.5 * (g0 - g0.mean()) / max(g0.std(), 0.1)
    # cis: gene 0 (chr1) driven by a variant next to its TSS
    near = int(np.clip(np.searchsorted(pos[:half], tss[0]), 0, half - 1))
    g0 = np.nan_to_num(dose[near], nan=1.0)
    Y[0] += 2.0 * (g0 - g0.mean()) / max(g0.std(), 0.1)
    if missing_pheno:
        Y[2, :9] = np.nan
        Y[4, 30:33] = np.nan
        Y[6, :9] = np.nan  # same pattern as gene 2: one group
    G = xr.Dataset({
        "call_genotype": (("variants", "samples", "ploidy"), da.from_array(gt, chunks=(chunks, n, 2))),
        "variant_position": ("variants", pos.astype(np.int32)),
        "variant_contig": ("variants", vcon),
        "contig_id": ("contigs", np.array(["1", "2"])),
        "variant_id": ("variants", np.array([f"v{i}" for i in range(v)])),
        "sample_id": ("samples", samples),
    })
    P = xr.Dataset({
        "phenotype_id": ("phenotypes", np.array([f"g{i}" for i in range(p)])),
        "phenotype_contig": ("phenotypes", pcon),
        "phenotype_start": ("phenotypes", tss),
        "phenotype_end": ("phenotypes", tss + 1),
        "phenotype_values": (("phenotypes", "samples"), Y),
        "sample_id": ("samples", samples),
    })
    Cv = xr.Dataset({
        "covariate_values": (("samples", "covariates"), C),
        "covariate_id": ("covariates", np.array([f"c{i}" for i in range(k)])),
        "sample_id": ("samples", samples),
    })
    return G, P, Cv, dict(gt=gt, Y=Y, C=C, pos=pos, vcon=vcon, pcon=pcon, tss=tss)


def imputed_dosage(gt_row):
    g = (gt_row > 0).sum(1).astype(float)
    miss = (gt_row == -1).any(1)
    g[miss] = g[~miss].mean()
    return g


def dense_reference(raw, window, maf_threshold=0.0):
    """Every (variant, phenotype) p-value in float64 numpy, NaN where not tested."""
    gt, Y, C = raw["gt"], raw["Y"], raw["C"]
    D = np.stack([imputed_dosage(gt[i]) for i in range(gt.shape[0])])
    v, p = D.shape[0], Y.shape[0]
    pv = np.full((v, p), np.nan)
    rr = np.full((v, p), np.nan)
    af = D.sum(1) / (2 * D.shape[1])
    for j in range(p):
        m = ~np.isnan(Y[j])
        X = np.column_stack([np.ones(m.sum()), C[m]])
        Qm = np.linalg.qr(X)[0]
        y = Y[j, m] - Qm @ (Qm.T @ Y[j, m])
        Gm = D[:, m]
        Gr = Gm - (Gm @ Qm) @ Qm.T
        gn = np.linalg.norm(Gr, axis=1)
        ok = (gn > 1e-8) & (D.max(1) > D.min(1))
        if maf_threshold > 0:
            ok &= np.minimum(af, 1 - af) >= maf_threshold
        r = (Gr @ y) / (gn * np.linalg.norm(y))
        dof = m.sum() - X.shape[1] - 1
        t = r * np.sqrt(dof / (1 - r * r))
        pj = 2 * scipy.stats.t.sf(np.abs(t), dof)
        if window > 0:
            contig = int(raw["pcon"][j][-1]) - 1
            cis = (raw["vcon"] == contig) & (raw["pos"] >= raw["tss"][j] + 1 - window) & (raw["pos"] <= raw["tss"][j] + 1 + window)
            ok &= ~cis
        pv[ok, j] = pj[ok]
        rr[ok, j] = r[ok]
    return pv, rr


def ols(gt_row, y, C):
    g = imputed_dosage(gt_row)
    m = ~np.isnan(y)
    X = sm.add_constant(np.column_stack([g[m], C[m]]))
    return sm.OLS(y[m], X).fit()


def pairs_frame(res):
    return res[["variant_id", "phenotype_id", "p_value", "beta", "beta_se", "t_value", "af", "q_value"]].to_dataframe()


@pytest.mark.parametrize("missing_pheno", [False, True])
def test_map_trans__every_pair_equals_statsmodels_ols(missing_pheno):
    G, P, Cv, raw = make_data(seed=1, missing_pheno=missing_pheno)
    res = map_trans(G, P, Cv, pval_threshold=1e-2, cis_window=0)
    df = pairs_frame(res)
    assert len(df) > 60 and df.p_value.min() < 1e-10
    if missing_pheno:
        assert len(res.attrs["dof"]) == 3  # all samples, genes 2 and 6, gene 4
        assert {"g2", "g4", "g6"} <= set(df.phenotype_id)
    for r in df.itertuples():
        fit = ols(raw["gt"][int(r.variant_id[1:])], raw["Y"][int(r.phenotype_id[1:])], raw["C"])
        np.testing.assert_allclose(r.p_value, fit.pvalues[1], rtol=1e-9)
        np.testing.assert_allclose(r.beta, fit.params[1], rtol=1e-9)
        np.testing.assert_allclose(r.beta_se, fit.bse[1], rtol=1e-9)
        np.testing.assert_allclose(r.t_value, fit.tvalues[1], rtol=1e-9)


@pytest.mark.parametrize("window,missing_pheno,maf", [(400_000, False, 0.0), (0, True, 0.0), (200_000, True, 0.1)])
def test_map_trans__hit_set_and_qvalues_equal_dense_numpy(window, missing_pheno, maf):
    G, P, Cv, raw = make_data(seed=2, missing_pheno=missing_pheno)
    thr = 1e-2
    res = map_trans(G, P, Cv, pval_threshold=thr, cis_window=window, maf_threshold=maf,
                    variants_per_block=37, phenotypes_per_block=7)
    pv, _ = dense_reference(raw, window, maf)
    tested = ~np.isnan(pv)
    vv, pp = np.nonzero(tested & (pv <= thr))
    dense = {(f"v{a}", f"g{b}") for a, b in zip(vv, pp, strict=True)}
    got = set(zip(res.variant_id.values, res.phenotype_id.values, strict=True))
    assert got == dense
    # test counts: total and per phenotype
    assert res.attrs["n_tests"] == int(tested.sum())
    np.testing.assert_array_equal(res.phenotype_n_tests.values, tested.sum(0))
    # q-values: BH over the full dense matrix of tested p-values (R p.adjust)
    qfull = np.full(pv.shape, np.nan)
    qfull[tested] = bh(pv[tested])
    df = pairs_frame(res)
    qd = qfull[df.variant_id.str[1:].astype(int).to_numpy(), df.phenotype_id.str[1:].astype(int).to_numpy()]
    pd_ = pv[df.variant_id.str[1:].astype(int).to_numpy(), df.phenotype_id.str[1:].astype(int).to_numpy()]
    np.testing.assert_allclose(df.p_value.to_numpy(), pd_, rtol=1e-10)
    exact = qd <= thr
    assert exact.sum() >= 4  # the planted trans effects
    np.testing.assert_allclose(df.q_value.to_numpy()[exact], qd[exact], rtol=1e-12)
    # above the p threshold blockwise BH is an upper bound (documented), itself above it
    assert np.all(df.q_value.to_numpy()[~exact] >= qd[~exact] * (1 - 1e-12))
    assert np.all(df.q_value.to_numpy()[~exact] > thr)


def test_map_trans__cis_window_excludes_exactly_the_cis_pairs():
    G, P, Cv, raw = make_data(seed=3)
    full = map_trans(G, P, Cv, pval_threshold=1e-2, cis_window=0)
    cut = map_trans(G, P, Cv, pval_threshold=1e-2, cis_window=500_000)
    a = set(zip(full.variant_id.values, full.phenotype_id.values, strict=True))
    b = set(zip(cut.variant_id.values, cut.phenotype_id.values, strict=True))
    removed = a - b
    assert b <= a and removed
    for vid, pid in removed:
        i, j = int(vid[1:]), int(pid[1:])
        assert raw["vcon"][i] == int(raw["pcon"][j][-1]) - 1
        assert abs(raw["pos"][i] - (raw["tss"][j] + 1)) <= 500_000
    planted_cis = (f"v{np.clip(np.searchsorted(raw['pos'][:200], raw['tss'][0]), 0, 199)}", "g0")
    assert planted_cis in a and planted_cis not in b
    assert full.attrs["n_tests"] > cut.attrs["n_tests"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    store_chunk=st.integers(13, 200),
    v_b=st.one_of(st.none(), st.integers(20, 400)),
    p_b=st.integers(3, 24),
)
def test_map_trans__identical_for_any_chunking(store_chunk, v_b, p_b):
    G, P, Cv, _ = make_data(seed=4, v=240, missing_pheno=True, chunks=store_chunk)
    ref = _reference_scan()
    res = map_trans(G, P, Cv, pval_threshold=1e-2, cis_window=300_000, permutations=16,
                    variants_per_block=v_b, phenotypes_per_block=p_b)
    for name in ref.data_vars:
        np.testing.assert_array_equal(res[name].values, ref[name].values, err_msg=name)
    assert res.attrs["n_tests"] == ref.attrs["n_tests"]


_REF: dict[str, xr.Dataset] = {}


def _reference_scan():
    if "ref" not in _REF:
        G, P, Cv, _ = make_data(seed=4, v=240, missing_pheno=True, chunks=240)
        _REF["ref"] = map_trans(G, P, Cv, pval_threshold=1e-2, cis_window=300_000, permutations=16)
    return _REF["ref"]


def test_trans_block__candidates_at_the_threshold_rechecked_exactly():
    G, P, Cv, raw = make_data(seed=5)
    res = map_trans(G, P, Cv, pval_threshold=1e-3, cis_window=0)
    i = int(np.argsort(res.p_value.values)[len(res.p_value) // 2])
    p_pair = float(res.p_value.values[i])
    key = (res.variant_id.values[i], res.phenotype_id.values[i])
    dof = res.attrs["dof"][0]
    # float32 r of the pair: the plain float32 test would decide on it, not the exact r
    r = float(res.r.values[i])
    assert abs(r) - r_threshold(p_pair, dof) < 1e-12
    on = map_trans(G, P, Cv, pval_threshold=p_pair * (1 + 1e-9), cis_window=0)
    off = map_trans(G, P, Cv, pval_threshold=p_pair * (1 - 1e-9), cis_window=0)
    assert key in set(zip(on.variant_id.values, on.phenotype_id.values, strict=True))
    assert key not in set(zip(off.variant_id.values, off.phenotype_id.values, strict=True))


@pytest.mark.parametrize("n", [50, 1000, 5000])
def test_float32_tolerance__bounds_the_float32_product_error(n):
    rng = np.random.default_rng(n)
    A = rng.normal(size=(64, n))
    B = rng.normal(size=(64, n))
    A[:8] = np.abs(A[:8])  # same-sign products: the worst case for accumulated rounding
    B[:8] = np.abs(B[:8])
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    err = np.abs(A.astype(np.float32) @ B.astype(np.float32).T - A @ B.T).max()
    assert err <= float32_tolerance(n)
    assert float32_tolerance(n) < 2e-3  # and the relaxation stays small


def test_decode_block__equals_naive_decoding():
    _, _, _, raw = make_data(seed=6, v=60)
    gt = raw["gt"]
    sidx = np.arange(0, 90, 2)
    a = decode_block(gt, sidx, ploidy=2, maf_threshold=0.1)
    sub = gt[:, sidx, :].astype(np.int64)
    d = (sub > 0).sum(-1).astype(np.float64)
    miss = (sub == -1).any(-1)
    d[miss] = np.nan
    means = np.nanmean(d, axis=1)
    G = np.where(miss, means[:, None], d)
    np.testing.assert_allclose(a.G, G, rtol=1e-15)
    af = G.sum(1) / (2 * G.shape[1])
    np.testing.assert_allclose(a.af, af, rtol=1e-14)
    mono = G.max(1) == G.min(1)
    low = (np.minimum(af, 1 - af) < 0.1) & ~mono
    np.testing.assert_array_equal(a.valid, ~mono & ~low)
    assert a.n_maf_filtered == int(low.sum()) and a.n_imputed_calls == int(miss.sum())


class _FakeCupyArray(np.ndarray):
    """A numpy array that the array-module dispatch takes for a cupy array."""

    def get(self):
        return np.asarray(self).view(np.ndarray)


_FakeCupyArray.__module__ = "cupy._core.fake"


def _fake_cupy(calls):
    mod = types.ModuleType("cupy")

    def asarray(x, dtype=None):
        calls.append("asarray")
        return np.asarray(x.get() if isinstance(x, _FakeCupyArray) else x, dtype=dtype).view(_FakeCupyArray)

    def getattr_(name):
        return getattr(np, name)

    mod.asarray = asarray
    mod.__getattr__ = getattr_
    return mod


def test_trans_block__array_module_dispatch_runs_on_device_arrays(monkeypatch):
    """The CuPy path on the CPU: a numpy subclass posing as cupy goes through every kernel."""
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(calls))
    G, P, Cv, raw = make_data(seed=7, v=120, missing_pheno=True)
    plan = plan_trans(G, P, Cv, pval_threshold=1e-2, cis_window=200_000, permutations=8)
    gt = raw["gt"]
    for pb in [*plan.phenotype_blocks, None]:
        perm = plan.permutation_block if pb is None else None
        host = trans_block(gt, 0, plan.genotype_sample_index, pb, ploidy=2, maf_threshold=0.0,
                           permutations=perm)
        dev_in = gt.view(_FakeCupyArray)
        dev = trans_block(dev_in, 0, plan.genotype_sample_index, pb, ploidy=2, maf_threshold=0.0,
                          permutations=perm)
        for k, v in host.items():
            assert type(dev[k]) is type(v) or np.isscalar(v), k  # results come back to the host
            np.testing.assert_array_equal(np.asarray(dev[k]), np.asarray(v), err_msg=k)
    assert calls.count("asarray") > 10
    # the graph path: --device gpu maps the genotype chunks to (fake) cupy chunks
    gpu = map_trans(G, P, Cv, pval_threshold=1e-2, cis_window=200_000, device="gpu")
    cpu = map_trans(G, P, Cv, pval_threshold=1e-2, cis_window=200_000)
    for name in cpu.data_vars:
        np.testing.assert_array_equal(gpu[name].values, cpu[name].values, err_msg=name)


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001  (no cupy, no driver, no device)
        return False


@pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_map_trans__gpu_equals_cpu():
    G, P, Cv, _ = make_data(seed=8, missing_pheno=True)
    cpu = map_trans(G, P, Cv, pval_threshold=1e-3, cis_window=200_000, permutations=32)
    gpu = map_trans(G, P, Cv, pval_threshold=1e-3, cis_window=200_000, permutations=32, device="gpu")
    assert set(zip(gpu.variant_id.values, gpu.phenotype_id.values, strict=True)) == set(
        zip(cpu.variant_id.values, cpu.phenotype_id.values, strict=True))
    for name in ("p_value", "beta", "beta_se", "q_value", "p_value_beta"):
        np.testing.assert_allclose(gpu[name].values, cpu[name].values, rtol=1e-10, err_msg=name)


def test_map_trans__permutation_null_equals_dense_maxima():
    G, P, Cv, raw = make_data(seed=9, missing_pheno=True)
    res = map_trans(G, P, Cv, pval_threshold=1e-3, cis_window=0, permutations=40, seed=3,
                    variants_per_block=50)
    plan = plan_trans(G, P, Cv, pval_threshold=1e-3, cis_window=0, permutations=40, seed=3)
    D = np.stack([imputed_dosage(raw["gt"][i]) for i in range(raw["gt"].shape[0])])
    fits = res.attrs["permutation_null"]
    assert len(fits) == 3
    pb = plan.permutation_block
    for g, (sidx, Pp, Q) in enumerate(zip(pb.sample_index, pb.P, pb.Q, strict=True)):
        Dg = D if sidx is None else D[:, sidx]
        Gr = Dg - (Dg @ Q) @ Q.T
        ok = (Dg.max(1) > Dg.min(1)) & (np.linalg.norm(Gr, axis=1) > 1e-8)
        R = (Gr[ok] @ Pp.T) / np.linalg.norm(Gr[ok], axis=1)[:, None]
        r2 = np.abs(R).max(0) ** 2
        np.testing.assert_allclose(fits[g]["min_pval_median"], np.median(pval_from_r2(r2, fits[g]["dof"])), rtol=1e-9)
    pb_ = res.p_value_beta.values
    assert np.all((pb_ > 0) & (pb_ <= 1)) and np.all(pb_ >= res.p_value.values)
    assert np.all(res.p_value_perm.values >= 1 / 41)
    # seeded: the same null again; another seed, another null
    again = map_trans(G, P, Cv, pval_threshold=1e-3, cis_window=0, permutations=40, seed=3)
    other = map_trans(G, P, Cv, pval_threshold=1e-3, cis_window=0, permutations=40, seed=4)
    np.testing.assert_array_equal(again.p_value_beta.values, pb_)
    assert not np.array_equal(other.p_value_beta.values, pb_)


def test_plan_trans__memory_limit_sets_block_sizes():
    G, P, Cv, _ = make_data(seed=10, v=3000, chunks=3000)
    small = plan_trans(G, P, Cv, memory_limit="2MiB")
    large = plan_trans(G, P, Cv, memory_limit="1GiB")
    assert small.variants_per_block == 375 and 3000 % small.variants_per_block == 0
    assert large.variants_per_block > 375 and 3000 % large.variants_per_block == 0
    assert large.phenotypes_per_block == 24
    assert plan_trans(G, P, Cv, memory_limit="2MiB", variants_per_block=77).variants_per_block == 77
    v_b, p_b = choose_block_sizes(n_samples=30_000, n_genotype_samples=30_000,
                                  genotype_bytes_per_sample=2, n_phenotypes=20_000,
                                  memory_limit=16 << 30, store_chunk=10_000)
    need = p_b * 30_000 * 8 + v_b * (2 * 30_000 * 2 + 4 * 30_000)
    assert 0.5 * (16 << 30) < need <= 16 << 30 and v_b % 10_000 == 0
    with pytest.raises(InputError, match="memory-limit"):
        plan_trans(G, P, Cv, memory_limit="100kB")


@pytest.mark.parametrize("kw,match", [
    (dict(pval_threshold=0.0), "pval-threshold"),
    (dict(cis_window=-1), "cis-window"),
    (dict(maf_threshold=0.5), "maf-threshold"),
    (dict(memory_limit="lots"), "memory-limit"),
    (dict(permutations=-2), "permutations"),
])
def test_plan_trans__bad_parameters_raise_input_error(kw, match):
    G, P, Cv, _ = make_data(seed=10, v=50)
    with pytest.raises(InputError, match=match):
        plan_trans(G, P, Cv, **kw)


def _read_outputs(prefix):
    pairs = pd.read_parquet(f"{prefix}.trans_qtl_pairs.parquet")
    ph = pd.read_parquet(f"{prefix}.trans_phenotype_tests.parquet")
    summary = json.loads(open(f"{prefix}.trans_summary.json").read())
    return pairs, ph, summary


def test_run_trans__files_equal_map_trans(tmp_path):
    G, P, Cv, _ = make_data(seed=11, missing_pheno=True)
    kw = dict(pval_threshold=1e-2, cis_window=300_000, permutations=20, variants_per_block=60,
              phenotypes_per_block=10)
    mem = map_trans(G, P, Cv, **kw)
    s = run_trans(G, P, Cv, str(tmp_path / "out"), output_formats=("parquet", "zarr"),
                  phenotype_qvalues=True, **kw)
    pairs, ph, summary = _read_outputs(tmp_path / "out")
    assert list(pairs.columns[:7]) == ["variant_id", "phenotype_id", "pval", "b", "b_se", "af", "qval"]
    for col, name in [("variant_id", "variant_id"), ("phenotype_id", "phenotype_id"), ("pval", "p_value"),
                      ("b", "beta"), ("b_se", "beta_se"), ("af", "af"), ("qval", "q_value"),
                      ("qval_phenotype", "q_value_phenotype"), ("pval_perm", "p_value_perm"),
                      ("pval_beta", "p_value_beta")]:
        np.testing.assert_array_equal(pairs[col].to_numpy(), mem[name].values, err_msg=col)
    z = xr.open_zarr(tmp_path / "out.trans_qtl_pairs.zarr", consolidated=False).load()
    np.testing.assert_array_equal(z.pval.values, pairs.pval.to_numpy())
    assert z.variant_id.values.astype(object).tolist() == pairs.variant_id.tolist()
    np.testing.assert_array_equal(ph.n_tests.to_numpy(), mem.phenotype_n_tests.values)
    assert summary["n_tests"] == mem.attrs["n_tests"] == s.n_tests
    assert summary["n_hits"] == len(pairs) == s.n_hits
    assert not (tmp_path / "out.trans_blocks").exists()
    assert pq_row_groups(tmp_path / "out.trans_qtl_pairs.parquet") > 1


def pq_row_groups(path):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).num_row_groups


def test_run_trans__rerun_skips_recorded_blocks_and_discards_stale_ones(tmp_path, caplog):
    G, P, Cv, _ = make_data(seed=12)
    kw = dict(pval_threshold=1e-2, cis_window=300_000, variants_per_block=50, phenotypes_per_block=12)
    clean = run_trans(G, P, Cv, str(tmp_path / "clean"), **kw)
    ref = pd.read_parquet(tmp_path / "clean.trans_qtl_pairs.parquet")
    prefix = str(tmp_path / "out")
    first = run_trans(G, P, Cv, prefix, keep_blocks=True, **kw)
    blocks = sorted((tmp_path / "out.trans_blocks").glob("*.npz"))
    assert len(blocks) == first.n_blocks == clean.n_blocks == 16
    for b in blocks[::3]:  # a crash lost these
        b.unlink()
    second = run_trans(G, P, Cv, prefix, **kw)
    assert second.n_blocks_skipped == 16 - len(blocks[::3])
    pd.testing.assert_frame_equal(pd.read_parquet(f"{prefix}.trans_qtl_pairs.parquet"), ref)
    # blocks of a run with another threshold are not reused
    run_trans(G, P, Cv, prefix, keep_blocks=True, **{**kw, "pval_threshold": 1e-1})
    third = run_trans(G, P, Cv, prefix, **kw)
    assert third.n_blocks_skipped == 0
    pd.testing.assert_frame_equal(pd.read_parquet(f"{prefix}.trans_qtl_pairs.parquet"), ref)


def test_map_trans__geuvadis_matches_tensorqtl(tmp_path):
    from dqtl.io.convert import convert
    from dqtl.io.genotypes import open_genotypes
    from dqtl.io.phenotypes import read_covariates, read_phenotype_bed

    geno = open_genotypes(convert(EXAMPLE / "geuvadis_ceu90_maf01.pgen", tmp_path / "g.vcz",
                                  format="pgen", show_progress=False))
    phen = read_phenotype_bed(EXAMPLE / "expression.bed.gz")
    cov = read_covariates(EXAMPLE / "covariates.txt", sample_ids=phen.sample_id.values)
    res = map_trans(geno, phen, cov, pval_threshold=1e-5, maf_threshold=0, cis_window=5_000_000)
    ref = pd.read_parquet(REFERENCE / "tensorqtl" / "geuvadis.trans_qtl_pairs.parquet")
    assert res.sizes["pairs"] == len(ref) == 332
    # the same pairs in tensorQTL's order (variant, then phenotype)
    np.testing.assert_array_equal(res.variant_id.values, ref.variant_id.to_numpy())
    np.testing.assert_array_equal(res.phenotype_id.values, ref.phenotype_id.to_numpy())
    # tensorQTL computes r in float32: p within 2e-4 relative (measured 8.0e-5), b and b_se
    # within 5e-6 (measured 5.3e-7, 9.9e-7), af (float32) within 1e-7 (measured 5.3e-8)
    np.testing.assert_allclose(res.p_value.values, ref.pval, rtol=2e-4)
    np.testing.assert_allclose(res.beta.values, ref.b, rtol=5e-6)
    np.testing.assert_allclose(res.beta_se.values, ref.b_se, rtol=5e-6)
    np.testing.assert_allclose(res.af.values, ref.af, rtol=1e-6, atol=1e-7)
    assert res.attrs["dof"] == [83]
