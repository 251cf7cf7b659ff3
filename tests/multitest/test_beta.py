"""Tests for dqtl.multitest.beta (beta approximation of cis permutation p-values).

The tensorQTL comparison uses tests/reference/tensorqtl_beta (see its README). tensorQTL finds
true_df with a secant iteration (tol 1e-4 on log df) and the Beta shapes with Nelder-Mead
(tol 1e-4); dqtl solves both to far tighter tolerances, so the tolerances below are set by
tensorQTL's optimisers (measured: true_df 1e-7, shapes 2e-5, pval_beta 8e-5 relative).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from dqtl.multitest import (
    beta_approx_pval,
    fit_beta_mle,
    fit_true_df,
    min_pvalue_threshold,
    nominal_threshold,
    pval_from_r2,
)
from tests.multitest._reference import REFERENCE, read_tsv


@pytest.fixture(scope="module")
def tensorqtl_ref():
    base = REFERENCE / "tensorqtl_beta"
    with np.load(base / "inputs.npz") as npz:
        inputs = {k: npz[k] for k in npz.files}
    return inputs, read_tsv(base / "expected.tsv")


def test_beta_approx_pval__matches_tensorqtl(tensorqtl_ref):
    inputs, expected = tensorqtl_ref
    res = beta_approx_pval(inputs["r2_perm"], inputs["r2_obs"], inputs["dof"])
    assert res["converged"].all()
    np.testing.assert_allclose(res["true_df"], expected["true_df"], rtol=1e-5)
    np.testing.assert_allclose(res["pval_true_df"], expected["pval_true_df"], rtol=1e-4)
    np.testing.assert_allclose(res["beta_shape1"], expected["beta_shape1"], rtol=5e-4)
    np.testing.assert_allclose(res["beta_shape2"], expected["beta_shape2"], rtol=5e-4)
    np.testing.assert_allclose(res["pval_beta"], expected["pval_beta"], rtol=1e-3)


def _negloglik(x, a, b):
    return -np.sum(stats.beta.logpdf(x, a, b))


def test_fit_beta_mle__at_least_as_good_as_tensorqtl(tensorqtl_ref):
    inputs, expected = tensorqtl_ref
    for i in range(len(expected["true_df"])):
        pv = pval_from_r2(inputs["r2_perm"][i], expected["true_df"][i])
        a, b, conv = fit_beta_mle(pv)
        assert conv
        theirs = _negloglik(pv, expected["beta_shape1"][i], expected["beta_shape2"][i])
        assert _negloglik(pv, a, b) <= theirs + 1e-9 * abs(theirs)


def test_fit_beta_mle__solves_score_equations():
    rng = np.random.default_rng(2)
    x = rng.beta(0.9, 40.0, size=3000)
    a, b, conv = fit_beta_mle(x)
    assert conv
    dab = special.digamma(a + b)
    assert abs(special.digamma(a) - dab - np.mean(np.log(x))) < 1e-9
    assert abs(special.digamma(b) - dab - np.mean(np.log1p(-x))) < 1e-9
    assert a == pytest.approx(0.9, rel=0.1) and b == pytest.approx(40.0, rel=0.1)


def test_fit_beta_mle__root_of_the_score_equations_to_rounding():
    """Permutation minimum p-values (shape2 in the hundreds: a condition number ~5e5): the fit
    ends at the root of the score equations to rounding, not where the log-likelihood stops
    changing in float64 (which left gradients ~1e-7 and shapes ~1e-7 off), so a change of the
    p-values at 1e-14 moves the shapes by ~1e-12, not ~1e-7."""
    rng = np.random.default_rng(3)
    r2 = np.stack([rng.beta(0.5, 245.0, (1000, 400)).max(axis=1) for _ in range(20)])
    p = pval_from_r2(r2, 480.0)
    a, b, conv = fit_beta_mle(p)
    assert conv.all()
    dab = special.digamma(a + b)
    assert np.abs(special.digamma(a) - dab - np.log(p).mean(axis=1)).max() < 1e-13
    assert np.abs(special.digamma(b) - dab - np.log1p(-p).mean(axis=1)).max() < 1e-13
    a2, b2, _ = fit_beta_mle(p * (1 + 1e-14 * rng.standard_normal(p.shape)))
    assert np.abs(a2 / a - 1).max() < 1e-10 and np.abs(b2 / b - 1).max() < 1e-10


def test_fit_beta_mle__vectorised_rows_equal_single_fits():
    rng = np.random.default_rng(4)
    x = rng.beta(1.2, 5.0, size=(4, 500))
    x[2, 10:40] = np.nan
    a, b, conv = fit_beta_mle(x)
    assert a.shape == (4,) and conv.all()
    for i in range(4):
        ai, bi, _ = fit_beta_mle(x[i])
        assert a[i] == pytest.approx(ai, rel=1e-9) and b[i] == pytest.approx(bi, rel=1e-9)


@pytest.mark.parametrize(
    "x",
    [
        np.full(10, 0.3),
        np.array([0.4]),
        np.array([]),
        np.array([0.0, 1.0, 0.0, 1.0]),
        np.full(5, np.nan),
    ],
    ids=["all_equal", "one_value", "empty", "only_0_and_1", "all_nan"],
)
def test_fit_beta_mle__degenerate_input_gives_nan_not_error(x):
    a, b, conv = fit_beta_mle(x)
    assert np.isnan(a) and np.isnan(b) and conv is False


def test_fit_beta_mle__exact_zero_falls_back_to_moments():
    x = np.array([0.0, 0.1, 0.2, 0.5, 0.05])
    a, b, conv = fit_beta_mle(x)
    m, v = x.mean(), x.var()
    assert conv is False
    assert a == pytest.approx(m * (m * (1 - m) / v - 1)) and b == pytest.approx(a * (1 / m - 1))


def test_pval_from_r2__equals_two_sided_t_test():
    rng = np.random.default_rng(8)
    r = rng.uniform(-0.9, 0.9, size=100)
    dof = 37.5
    t = r * np.sqrt(dof / (1 - r * r))
    np.testing.assert_allclose(pval_from_r2(r * r, dof), 2 * stats.t.sf(np.abs(t), dof), rtol=1e-11)
    assert pval_from_r2(0.0, 10) == 1.0 and pval_from_r2(1.0, 10) == 0.0


def _null_permutations(rng, n_genes, n, m, nperm):
    g = rng.standard_normal((m, n))
    g -= g.mean(axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    r2_perm = np.empty((n_genes, nperm))
    r2_obs = np.empty(n_genes)
    for i in range(n_genes):
        y = rng.standard_normal(n)
        y -= y.mean()
        y /= np.linalg.norm(y)
        r2_obs[i] = np.max((g @ y) ** 2)
        yp = y[np.argsort(rng.random((nperm, n)), axis=1)]
        r2_perm[i] = np.max((yp @ g.T) ** 2, axis=1)
    return r2_perm, r2_obs


def test_beta_approx_pval__uniform_under_the_null():
    rng = np.random.default_rng(12345)
    r2_perm, r2_obs = _null_permutations(rng, n_genes=300, n=60, m=25, nperm=400)
    res = beta_approx_pval(r2_perm, r2_obs, 58)
    assert res["converged"].all()
    assert stats.kstest(res["pval_beta"], "uniform").pvalue > 1e-3
    # and it agrees with the empirical permutation p-value
    pval_perm = ((r2_perm >= r2_obs[:, None]).sum(axis=1) + 1) / (400 + 1)
    assert np.corrcoef(pval_perm, res["pval_beta"])[0, 1] > 0.99
    # shape1 is near 1 by construction of true_df
    assert np.all(np.abs(res["beta_shape1"] - 1) < 0.2)


def test_beta_approx_pval__single_gene_returns_scalars():
    rng = np.random.default_rng(1)
    r2_perm, r2_obs = _null_permutations(rng, n_genes=1, n=40, m=10, nperm=300)
    res = beta_approx_pval(r2_perm[0], r2_obs[0], 38)
    assert isinstance(res["pval_beta"], float) and isinstance(res["converged"], bool)
    assert res["true_df"] == pytest.approx(fit_true_df(r2_perm[0], 38), rel=1e-12)


def test_fit_true_df__constant_permutations_fall_back_to_dof():
    assert fit_true_df(np.full(100, 0.1), 50) == 50.0
    res = beta_approx_pval(np.full(100, 0.1), 0.2, 50)
    assert res["converged"] is False and np.isnan(res["pval_beta"])


def test_fit_true_df__per_gene_dof_and_start_independence():
    rng = np.random.default_rng(21)
    r2_perm, _ = _null_permutations(rng, n_genes=2, n=50, m=15, nperm=300)
    df_a = fit_true_df(r2_perm, np.array([48.0, 48.0]))
    df_b = fit_true_df(r2_perm, np.array([10.0, 200.0]))  # different start, same root
    np.testing.assert_allclose(df_a, df_b, rtol=1e-6)


def test_nominal_threshold__inverts_beta_cdf():
    a = np.array([0.9, 1.0, 1.1])
    b = np.array([50.0, 200.0, 900.0])
    thr = nominal_threshold(0.01, a, b)
    np.testing.assert_allclose(stats.beta.cdf(thr, a, b), 0.01, rtol=1e-10)
    assert np.isnan(nominal_threshold(0.01, np.nan, 3.0))


def test_min_pvalue_threshold__midpoint_between_significant_and_not():
    pb = np.array([1e-6, 1e-4, 0.02, 0.5, np.nan])
    q = np.array([1e-4, 0.01, 0.2, 0.6, np.nan])
    assert min_pvalue_threshold(pb, q, 0.05) == pytest.approx((1e-4 + 0.02) / 2)
    assert np.isnan(min_pvalue_threshold(pb, q, 1e-6))
    assert min_pvalue_threshold(pb[:2], q[:2], 0.05) == 1e-4


def test_fit_true_df__no_root_in_range_is_flagged_not_converged():
    rng = np.random.default_rng(30)
    r2 = 0.1 + rng.uniform(0, 1e-7, size=200)  # p-values nearly constant: shape1 >> 1 for any df
    res = beta_approx_pval(r2, 0.2, 40)
    assert res["converged"] is False
    assert 40 / 1e4 <= res["true_df"] <= 40 * 1e4


def test_beta_approx_pval__rejects_mismatched_lengths():
    from dqtl.errors import InputError

    with pytest.raises(InputError, match="r2_obs"):
        beta_approx_pval(np.full((3, 10), 0.1), np.array([0.1, 0.2]), 20)
    with pytest.raises(InputError, match="dof"):
        beta_approx_pval(np.random.default_rng(0).uniform(size=(3, 10)), 0.1, np.array([20, 30]))


def test_fit_true_df__secant_root_equals_brent_root():
    from dqtl.multitest.beta import _fit_true_df_brent, _secant_true_df

    rng = np.random.default_rng(5)
    r2_perm, _ = _null_permutations(rng, n_genes=6, n=80, m=40, nperm=500)
    df_secant, pvals, found = _secant_true_df(r2_perm, np.full(len(r2_perm), 77.0))
    assert found.all()
    for row, df, p in zip(r2_perm, df_secant, pvals, strict=True):
        df_brent, converged = _fit_true_df_brent(row, 77.0)
        assert converged
        assert df == pytest.approx(df_brent, rel=1e-7)
        np.testing.assert_array_equal(p, pval_from_r2(row, df))


def _one(row, dof):
    """``_fit_true_df_many`` of one row: (true_df, converged, p-values)."""
    from dqtl.multitest.beta import _fit_true_df_many

    df, conv, p = _fit_true_df_many(row[None], dof)
    return float(df[0]), bool(conv[0]), p[0]


def _exact(row, dof):
    """The exact secant's root for one row (None where it fails)."""
    from dqtl.multitest.beta import _secant_true_df

    df, _, found = _secant_true_df(row[None], np.array([dof]))
    return float(df[0]) if found[0] else None


def _interpolates(row, dof):
    from dqtl.multitest.beta import _LogPInterpolant

    r2 = row[None]
    return bool(_LogPInterpolant.usable(r2)[0]) and bool(_LogPInterpolant.build(r2, np.array([dof]))[1][0])


@pytest.mark.parametrize("n,m", [(500, 400), (500, 4000), (90, 3000), (90, 50), (30, 5000), (1000, 20000),
                                 (90, 5)])
def test_fit_true_df__interpolated_secant_equals_exact_secant(n, m):
    """The secant on p-values interpolated in r2 (32 Chebyshev points) finds the exact secant's
    root to 1e-12 and returns the exact p-values at it; the interpolant is used for these
    windows (it passes its checks)."""
    rng = np.random.default_rng(n + m)
    dof = float(n - 10)
    for _ in range(4):
        row = rng.beta(0.5, dof / 2, size=(1000, m)).max(axis=1) if m <= 4000 else np.array(
            [rng.beta(0.5, dof / 2, size=m).max() for _ in range(1000)])
        assert _interpolates(row, dof)
        df, converged, pvals = _one(row, dof)
        exact = _exact(row, dof)
        assert converged and exact is not None
        assert df == pytest.approx(exact, rel=1e-12)
        np.testing.assert_array_equal(pvals, pval_from_r2(row, df))


def test_fit_true_df__interpolant_refused_or_rejected_falls_back_to_exact(monkeypatch):
    """Where the interpolant is not close enough (single-variant windows at 500 samples: r2 from
    ~1e-10) it fails its check and the exact secant runs; an interpolant that passed its
    check but leads to a root the exact p-values do not satisfy is rejected the same way."""
    from dqtl.multitest import beta

    rng = np.random.default_rng(11)
    single = rng.beta(0.5, 245.0, size=1000)  # one variant per window: r2 down to ~1e-7
    assert not _interpolates(single, 490.0)
    assert _one(single, 490.0)[0] == _exact(single, 490.0)

    row = rng.beta(0.5, 245.0, size=(1000, 400)).max(axis=1)
    exact = _exact(row, 490.0)
    calls = []
    good = beta._LogPInterpolant.__call__

    def off(self, df, rows):  # 1e-6 relative off: passes the start check (done before), root wrong
        calls.append(df)
        return good(self, df, rows) * (1 + 1e-6 * np.linspace(-1, 1, 1000))

    monkeypatch.setattr(beta._LogPInterpolant, "__call__", off)
    df, converged, pvals = _one(row, 490.0)
    assert calls and converged and df == exact
    np.testing.assert_array_equal(pvals, pval_from_r2(row, df))


def test_fit_true_df__rows_fitted_together_equal_rows_fitted_alone():
    """A phenotype's fit depends on its own permutations alone: rows fitted in one call (the
    interpolated secant, the exact secant, Brent's method and the degenerate rows mixed, in
    chunks of genes) give bit for bit what each row gives alone."""
    from dqtl.multitest import beta
    from dqtl.multitest.beta import _fit_true_df_many

    rng = np.random.default_rng(21)
    rows = [rng.beta(0.5, 245.0, size=(1000, m)).max(axis=1) for m in (400, 3000, 40, 1, 1, 700)]
    rows[4] = np.full(1000, 0.01)  # constant: no fit
    rows.append(rng.beta(0.5, 245.0, size=(1000, 50)).max(axis=1))
    rows[-1][3] = np.nan  # a NaN: Brent's method on the others
    r2 = np.stack(rows)
    dof = np.array([490.0, 490.0, 490.0, 490.0, 490.0, 77.0, 490.0])
    monkeypatch_chunk = beta._INTERP_VALUES
    try:
        beta._INTERP_VALUES = 3 * 1000 * beta._INTERP_NODES  # chunks of 3 genes
        together = _fit_true_df_many(r2, dof)
    finally:
        beta._INTERP_VALUES = monkeypatch_chunk
    for i in range(len(r2)):
        alone = _fit_true_df_many(r2[i:i + 1], dof[i])
        for a, b in zip(together, alone, strict=True):
            np.testing.assert_array_equal(a[i], b[0])


def test_shape1_mom_rows__equals_shape1_mom_bit_for_bit():
    """The secant's method-of-moments shape (means computed once, no NaN masks, row by row) is
    ``_shape1_mom``'s value bit for bit on NaN-free rows."""
    from dqtl.multitest.beta import _shape1_mom, _shape1_mom_rows

    rng = np.random.default_rng(9)
    for size in (2, 3, 17, 1000, 10_001):
        p = rng.beta(1.1, 30.0, size=(3, size))
        got = _shape1_mom_rows(p)
        for i in range(3):
            assert got[i] == float(_shape1_mom(p[i]))


