"""bfloat16 permutation products (dqtl.kernels.bf16 + IntegerRows): rigorous error bound, and the
same permutation results as the float32 products (top variants, statistics, empirical p-values)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import dqtl
from dqtl.association import permutation
from dqtl.association.permutation import (
    GeneInput,
    PermutationSpec,
    map_cis_permutations,
    use_bf16_rows,
)
from dqtl.association.permutation_kernel import (
    PermutationBatches,
    QBasis,
    ResidualizedBlock,
    permutation_gene_kernel,
)
from dqtl.kernels import bf16
from dqtl.kernels.linalg import Residualizer


@pytest.fixture
def products(monkeypatch):
    """bfloat16 products on (forced where the CPU would emulate them); skip without oneDNN."""
    monkeypatch.setenv(bf16.ENV, "1")
    bf16.reset()
    if bf16.backend() is None:
        bf16.reset()
        pytest.skip(f"no bfloat16 products here: {bf16.why_not()}")
    yield
    bf16.reset()


@pytest.fixture
def no_products(monkeypatch):
    monkeypatch.setenv(bf16.ENV, "0")
    bf16.reset()
    yield
    bf16.reset()


def _flip(monkeypatch, on: bool) -> None:
    monkeypatch.setenv(bf16.ENV, "1" if on else "0")
    bf16.reset()


def test_split__two_bfloat16_within_their_bound():
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.standard_normal(5000) * 10.0 ** rng.integers(-30, 30, 5000), [0.0, -1.0, 2.0**-126]])
    hi, lo = bf16.split(y)
    back = (hi.astype(np.uint32) << 16).view(np.float32).astype(np.float64) + \
        (lo.astype(np.uint32) << 16).view(np.float32)
    assert np.all(np.abs(back - y) <= (2.0**-16 + 2.0**-23) * np.abs(y))
    # small integers are exact
    ints = np.arange(-256, 257, dtype=np.float64)
    assert np.array_equal((bf16.to_bf16(ints).astype(np.uint32) << 16).view(np.float32), ints)


def test_backend_off_by_environment(no_products):
    assert bf16.backend() is None
    assert "DQTL_BF16=0" in bf16.why_not()


def _bits_to_f64(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def _gemm_cases(rng):
    """(a, bt, out) triples: contiguous, row views of wider blocks, empty, a zero inner dimension."""
    def ints(m, k):
        return bf16.to_bf16(rng.integers(-2, 3, (m, k)).astype(np.float32))

    wide_a, wide_out = ints(300, 90), np.full((260, 40), 7.0, np.float32)
    return [
        (ints(211, 67), bf16.to_bf16(rng.standard_normal((31, 67))), np.empty((211, 31), np.float32)),
        (wide_a[20:250, :61], bf16.to_bf16(rng.standard_normal((25, 61))), wide_out[10:240, :25]),
        (ints(0, 12), bf16.to_bf16(rng.standard_normal((5, 12))), np.empty((0, 5), np.float32)),
        (ints(4, 0), bf16.to_bf16(rng.standard_normal((3, 0))), np.full((4, 3), np.nan, np.float32)),
    ]


@pytest.mark.parametrize("primitive", ["1", "0"])
def test_gemm_nt__products_accumulated_in_float32(products, monkeypatch, primitive):
    """Both oneDNN paths (the matmul primitive, the BLAS-like call) compute a @ bt.T with float32
    accumulation: within K u (sum |a b|) of the float64 product, on views, empty and K = 0 operands,
    without touching the output's other elements."""
    monkeypatch.setenv("DQTL_BF16_PRIMITIVE", primitive)
    bf16.reset()
    assert bf16.backend() is not None
    if primitive == "0":
        assert "dnnl_gemm_bf16bf16f32" in bf16.backend()
    rng = np.random.default_rng(11)
    for a, bt, out in _gemm_cases(rng):
        base = out.base.copy() if out.base is not None else None
        got = bf16.gemm_nt(a, bt, out)
        assert got is out
        A, B = _bits_to_f64(a), _bits_to_f64(bt)
        exact = A @ B.T
        tol = (a.shape[1] + 2) * 2.0**-24 * (np.abs(A) @ np.abs(B).T)
        assert np.all(np.abs(out - exact) <= tol)
        if base is not None:  # the rest of the wider buffer is untouched
            mask = np.ones(base.shape, bool)
            mask[10:240, :25] = False
            assert np.array_equal(out.base[mask], base[mask])


@pytest.mark.parametrize("primitive", ["1", "0"])
def test_gemm_nt__absolute_values_are_the_products_absolute_values(products, monkeypatch, primitive):
    """``absolute=True`` gives |a @ bt.T| bit for bit (the abs post-op in the primitive's own
    kernel, or a pass after the BLAS-like call), on views and empty operands, without touching
    the output's other elements; on AMX the primitive keeps the plain product's implementation."""
    monkeypatch.setenv("DQTL_BF16_PRIMITIVE", primitive)
    bf16.reset()
    assert bf16.backend() is not None
    rng = np.random.default_rng(12)
    for a, bt, out in _gemm_cases(rng):
        base = out.base.copy() if out.base is not None else None
        plain = bf16.gemm_nt(a, bt, np.empty(out.shape, np.float32)) if out.size else out.copy()
        got = bf16.gemm_nt(a, bt, out, absolute=True)
        assert got is out
        assert np.array_equal(got, np.abs(plain)) and (a.shape[1] == 0 or (plain < 0).any() or not plain.size)
        if base is not None:
            mask = np.ones(base.shape, bool)
            mask[10:240, :25] = False
            assert np.array_equal(out.base[mask], base[mask])
    if primitive == "1" and "brg:avx512_core_amx" in (bf16.backend() or ""):
        a, bt, out = _gemm_cases(rng)[0]
        bf16.gemm_nt(a, bt, out, absolute=True)
        m, n, k, lda, ldb, ldc = bf16._layout(a, bt, out)
        mm = bf16._matmul(n, k, lda, ldb, ldc, True)
        assert mm is not None and mm.absolute and mm.impl == bf16._matmul(n, k, lda, ldb, ldc).impl


def test_gemm_nt__threads_and_row_counts_share_a_primitive(products, monkeypatch):
    """The matmul primitive takes its row count at each call (one per thread and layout) and gives
    the BLAS-like call's products on every thread."""
    import threading

    monkeypatch.delenv("DQTL_BF16_PRIMITIVE", raising=False)
    bf16.reset()
    if "matmul" not in (bf16.backend() or ""):
        pytest.skip(f"no oneDNN matmul primitive here: {bf16.why_not()}")
    rng = np.random.default_rng(5)
    a = bf16.to_bf16(rng.integers(-2, 3, (400, 80)).astype(np.float32))
    bt = bf16.to_bf16(rng.standard_normal((33, 80)))
    results: dict[tuple[int, int], np.ndarray] = {}

    def work(t: int) -> None:
        for m in (400, 123, 1, 64):
            out = np.empty((m, 33), np.float32)
            bf16.gemm_nt(a[:m], bt, out)
            results[(t, m)] = out
        results[(t, -1)] = np.array(len(bf16._THREADS.matmuls))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    monkeypatch.setenv("DQTL_BF16_PRIMITIVE", "0")
    bf16.reset()
    bf16.backend()
    for t in range(3):
        assert int(results[(t, -1)]) == 1  # one primitive for the four row counts
        for m in (400, 123, 1, 64):
            ref = bf16.gemm_nt(a[:m], bt, np.empty((m, 33), np.float32))
            np.testing.assert_allclose(results[(t, m)], ref, rtol=0, atol=1e-4)


def _study(rng, n=150, v=700, r=5, missing=0.0, ploidy=2):
    f = rng.uniform(0.02, 0.5, v)
    H = rng.random((v, ploidy * n)) < f[:, None]
    for s in range(1, v):  # LD: runs of copied haplotypes
        if rng.random() < 0.7:
            H[s] = np.where(rng.random(ploidy * n) < 0.9, H[s - 1], H[s])
    G = H.reshape(v, ploidy, n).sum(axis=1).astype(np.float64)
    if missing:
        miss = rng.random(G.shape) < missing
        G[miss] = np.nan
        mu = np.nanmean(G, axis=1)
        G = np.where(miss, mu[:, None], G)
    C = rng.standard_normal((n, r - 1))
    return G, Residualizer.from_covariates(C)


@pytest.mark.parametrize(("missing", "collinear"), [(0.0, False), (0.0005, False), (0.0, True)])
def test_integer_rows_products_within_the_bound(products, missing, collinear):
    """Every scaled product of the bfloat16 path lies within IntegerRows.bound of the float64
    value <g, P z> / ||P g||, for hard calls, rows with imputed (fractional) calls, and rows a
    covariate nearly explains (float32 rows)."""
    rng = np.random.default_rng(3)
    G, res = _study(rng, missing=missing)
    n = G.shape[1]
    if collinear:
        res = Residualizer.from_covariates(np.column_stack([G[300] + 0.02 * rng.standard_normal(n),
                                                            rng.standard_normal((n, 3))]))
    blk = ResidualizedBlock.build(G, np.ones(len(G), bool), res.Q, res.dof)
    low = blk.low
    assert low is not None and blk.G32 is None
    if missing:
        assert 0 < low.frac_rows.size < len(G)
    assert (low.f32_rows.size > 0) == collinear
    y = rng.standard_normal(n)
    yc = (y - y.mean()) / np.linalg.norm(y - y.mean())
    rows = np.array([np.arange(n)] + [rng.permutation(n) for _ in range(199)])
    hi, lo = bf16.split(yc)
    yhl = hi.astype(np.uint32) | (lo.astype(np.uint32) << 16)
    out = np.empty((len(G), len(rows)), np.float32)
    qb = QBasis.of(res.Q, yc)
    assert qb.q0 is not None  # the intercept column: one float64 product for every permutation
    got, q = low.products(rows, yhl, yc.astype(np.float32), qb, out)
    Z = yc[rows].T  # (n, b)
    Gc = G - G.mean(axis=1, keepdims=True)
    PG = Gc - (Gc @ res.Q) @ res.Q.T
    exact = np.abs(PG @ Z) / np.linalg.norm(PG, axis=1)[:, None]  # products() gives |.|
    assert np.all(np.abs(q - Z.T @ res.Q) <= qb.err)
    assert np.all(got >= 0)
    err = np.abs(got - exact).max()
    bound = low.bound(np.abs(q).max(axis=0), qb.err)
    assert err <= bound, (err, bound)
    assert err > 0  # the products are not float64 (a test that cannot pass by accident)


def _kernel_runs(G, res, y, nperm=300, dtype=np.float64, sample_index=None):
    n = G.shape[1] if sample_index is None else len(sample_index)
    rng = np.random.default_rng(11)
    spec = PermutationSpec(nperm_min=nperm, nperm_max=nperm, seed=1)
    batches = PermutationBatches.build(np.array([rng.permutation(n) for _ in range(nperm)]), spec)
    gene = GeneInput(index=0, group=-1, y=y, sample_index=sample_index, Q=res.Q, dof=res.dof, lo=0, hi=len(G))
    out = {}
    for integer in (False, True):
        prep = ResidualizedBlock.build(G, np.ones(len(G), bool), res.Q, res.dof, sample_index=sample_index,
                                       integer=integer)
        assert (prep.low is not None) == integer
        out[integer] = permutation_gene_kernel(G, np.ones(len(G), bool), gene, batches, spec, dtype,
                                               prepared=prep, keep_window=True)
    return out[False], out[True]


@pytest.mark.parametrize("effect", [0.0, 0.3])
def test_kernel_same_results_as_float32_products(products, effect):
    """Top variant, its float64 statistic and the hit count (pval_perm) are the float32 path's;
    the permutation maxima (the beta fit's input) agree to float32-product precision."""
    rng = np.random.default_rng(5)
    G, res = _study(rng, v=900)
    y = effect * G[450] + rng.standard_normal(G.shape[1])
    f32, b16 = _kernel_runs(G, res, y)
    assert b16["top"] == f32["top"] and b16["r"] == f32["r"]
    r2 = f32["r"] ** 2
    assert np.sum(b16["r2_perm"] >= r2) == np.sum(f32["r2_perm"] >= r2)
    np.testing.assert_allclose(b16["r2_perm"], f32["r2_perm"], rtol=5e-5)
    assert b16["w_gamma"] > f32["w_gamma"]  # its own (wider) bound for the significant pairs' screen
    np.testing.assert_allclose(b16["w_c"], f32["w_c"], atol=b16["w_gamma"] + f32["w_gamma"])


def test_kernel_sample_subset_and_imputed_calls(products):
    rng = np.random.default_rng(8)
    G, _ = _study(rng, n=160, v=500, missing=0.0005)
    keep = np.sort(rng.choice(160, 130, replace=False))
    res = Residualizer.from_covariates(rng.standard_normal((130, 3)))
    y = 0.25 * G[200, keep] + rng.standard_normal(130)
    f32, b16 = _kernel_runs(G, res, y, sample_index=keep)
    assert b16["top"] == f32["top"] and b16["r"] == f32["r"]
    assert np.sum(b16["r2_perm"] >= f32["r"] ** 2) == np.sum(f32["r2_perm"] >= f32["r"] ** 2)
    np.testing.assert_allclose(b16["r2_perm"], f32["r2_perm"], rtol=5e-5)


def test_rows_the_covariates_nearly_explain_take_float32(products):
    """A covariate that is nearly a variant's dosage (as a conditioning variant in independent
    mapping is to its LD partners) makes those rows' error scale large: they take float32
    products of their residualized rows, the other rows bfloat16; same results."""
    rng = np.random.default_rng(2)
    G, _ = _study(rng, n=120, v=300)
    C = np.column_stack([G[100] + 0.01 * rng.standard_normal(120), rng.standard_normal(120)])
    res = Residualizer.from_covariates(C)
    blk = ResidualizedBlock.build(G, np.ones(len(G), bool), res.Q, res.dof)
    low = blk.low
    assert low is not None and 100 in low.f32_rows and low.f32_rows.size < 30
    assert low.n1.max() <= 4  # the bfloat16 rows' error scale
    f32 = ResidualizedBlock.build(G, np.ones(len(G), bool), res.Q, res.dof, integer=False)
    np.testing.assert_array_equal(low.f32, f32.G32[low.f32_rows])
    y = 0.3 * G[120] + rng.standard_normal(120)
    a, b = _kernel_runs(G, res, y)
    assert b["top"] == a["top"] and b["r"] == a["r"]
    assert np.sum(b["r2_perm"] >= a["r"] ** 2) == np.sum(a["r2_perm"] >= a["r"] ** 2)
    np.testing.assert_allclose(b["r2_perm"], a["r2_perm"], rtol=5e-5)
    # the window's own slice of a shared block keeps its float32 rows
    part = blk.rows(90, 200).low
    assert part is not None and 10 in part.f32_rows


def test_dosages_that_are_not_integers_take_float32(products):
    rng = np.random.default_rng(4)
    G, res = _study(rng, n=100, v=200)
    G = np.clip(G + rng.uniform(-0.2, 0.2, G.shape), 0, 2)  # imputed dosages
    blk = ResidualizedBlock.build(G, np.ones(len(G), bool), res.Q, res.dof)
    assert blk.low is None and blk.G32 is not None


@pytest.mark.parametrize(("missing", "permutations"), [(0.0, 500), (0.0003, 500), (0.0, "50,2500")])
def test_map_cis_permutations_same_with_and_without_bf16(monkeypatch, missing, permutations):
    """The whole pass: the same top variants, statistics and pval_perm (float64 rechecks; adaptive
    runs stop after the same permutations); the beta-approximation p-values agree to the
    permutation maxima's float32 precision."""
    sim = dqtl.simulate(n_samples=120, n_variants=3000, n_phenotypes=40, n_covariates=3, n_hidden=0,
                        fraction_egenes=0.4, effect_size=0.6, missing_genotype_rate=missing, seed=9)
    monkeypatch.setattr(permutation, "BF16_MIN_WINDOW", 0)  # these windows are small
    _flip(monkeypatch, True)
    if bf16.backend() is None:
        bf16.reset()
        pytest.skip(f"no bfloat16 products here: {bf16.why_not()}")
    a = map_cis_permutations(sim, sim, sim, permutations=permutations, seed=3)
    _flip(monkeypatch, False)
    b = map_cis_permutations(sim, sim, sim, permutations=permutations, seed=3)
    bf16.reset()
    for v in ("variant_id", "p_value_perm", "beta", "p_value", "n_variants", "n_permutations"):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    np.testing.assert_allclose(a["p_value_beta"].values, b["p_value_beta"].values, rtol=1e-3, atol=1e-12)


def test_run_takes_bf16_rows_from_a_mean_window(products, caplog):
    """One choice per run (results never depend on tasks): bfloat16 products from a mean window
    of BF16_MIN_WINDOW variants, float32 below, each logged with its reason."""
    def gene(lo, hi):
        return GeneInput(index=0, group=-1, y=np.zeros(3), sample_index=None, Q=np.zeros((3, 1)), dof=1,
                         lo=lo, hi=hi)

    wide = [gene(0, permutation.BF16_MIN_WINDOW), gene(5, 5 + permutation.BF16_MIN_WINDOW)]
    narrow = [gene(0, 410), gene(10, 420)]
    with caplog.at_level("INFO", logger="dqtl.association.permutation"):
        assert use_bf16_rows(wide)
        assert not use_bf16_rows(narrow)
    assert "bfloat16 products" in caplog.records[0].getMessage()
    assert "windows of 410 variants on average" in caplog.records[1].getMessage()


def test_run_logs_float32_without_products(no_products, caplog):
    with caplog.at_level("INFO", logger="dqtl.association.permutation"):
        assert not use_bf16_rows([GeneInput(index=0, group=-1, y=np.zeros(3), sample_index=None,
                                            Q=np.zeros((3, 1)), dof=1, lo=0, hi=5000)])
    assert "float32 (no bfloat16 products: off (DQTL_BF16=0))" in caplog.text


def test_a_library_that_does_not_load_means_float32(monkeypatch, tmp_path):
    """DQTL_DNNL_LIBRARY naming a missing file or a file that is not oneDNN: no products, the
    reason in why_not (logged by the run), no exception."""
    bad = tmp_path / "libdnnl.so.3"
    bad.write_text("not a library")
    for path in (str(tmp_path / "missing.so"), str(bad)):
        monkeypatch.setenv(bf16.ENV, "1")
        monkeypatch.setenv("DQTL_DNNL_LIBRARY", path)
        bf16.reset()
        assert bf16.backend() is None
        assert f"oneDNN did not load from {path}" in bf16.why_not()
    bf16.reset()


def _two_signal_sim() -> Any:
    """A simulation whose eGenes carry a second causal variant 60 variants (~400 kb) from the first."""
    sim = dqtl.simulate(n_samples=150, n_variants=3000, n_phenotypes=24, n_covariates=3, n_hidden=0,
                        fraction_egenes=0.5, effect_size=0.8, seed=4).compute()
    G = sim["call_genotype"].values.sum(axis=-1).astype(float)  # (variants, samples)
    Y = sim["phenotype_values"].values.copy()
    causal = sim["phenotype_causal_variant"].values
    for p in np.nonzero(causal >= 0)[0]:
        second = causal[p] + (60 if causal[p] + 60 < G.shape[0] else -60)
        g = G[second] - G[second].mean()
        Y[p] += 0.7 * np.sign(np.sum(g)) * g / g.std()
    sim["phenotype_values"] = (sim["phenotype_values"].dims, Y)
    return sim


def test_map_cis_independent_same_with_and_without_bf16(monkeypatch):
    """Forward-backward selection: the conditioned scans (a basis of their own per phenotype) take
    integer rows when the run does, and select the same signals with the same statistics and
    pval_perm as float32 rows; pval_beta to the permutation maxima's float32 precision."""
    from dqtl.association import permutation_kernel
    from dqtl.association.independent import map_cis_independent

    sim = _two_signal_sim()
    monkeypatch.setattr(permutation, "BF16_MIN_WINDOW", 0)  # these windows are small
    _flip(monkeypatch, True)
    if bf16.backend() is None:
        bf16.reset()
        pytest.skip(f"no bfloat16 products here: {bf16.why_not()}")
    cis = map_cis_permutations(sim, sim, sim, permutations=400, seed=2)
    built: list[tuple[int, bool]] = []  # (basis columns, integer rows) of every block built
    real_build = permutation_kernel.ResidualizedBlock.build.__func__

    def spy(cls, G, valid, Q, dof, **kw):
        blk = real_build(cls, G, valid, Q, dof, **kw)
        built.append((Q.shape[1], blk.low is not None))
        return blk

    monkeypatch.setattr(permutation_kernel.ResidualizedBlock, "build", classmethod(spy))
    a = map_cis_independent(sim, sim, sim, cis, permutations=400, seed=2).to_dataframe()
    conditioned = [low for r, low in built if r > 4]  # intercept + 3 covariates + conditioning
    assert conditioned and all(conditioned)
    _flip(monkeypatch, False)
    b = map_cis_independent(sim, sim, sim, cis, permutations=400, seed=2).to_dataframe()
    bf16.reset()
    assert (a["rank"] > 1).sum() >= 5  # second signals found
    for v in ("phenotype_id", "variant_id", "rank", "p_value_perm", "beta", "p_value", "n_variants"):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    np.testing.assert_allclose(a["p_value_beta"].values, b["p_value_beta"].values, rtol=1e-3, atol=1e-12)
