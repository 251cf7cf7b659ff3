"""Tests for dqtl.multitest.qvalue against R qvalue 2.30.0 (tests/reference/qvalue).

Tolerances: q-values, pi0 and the smoothed pi0(lambda) curve are compared at 1e-10 relative
(measured agreement ~2e-13: the spline search follows R's exact path, residual differences come
from floating-point summation order in the spline fit); the bootstrap pi0 is bit-identical; lfdr
(kernel density by FFT + GCV spline) at 1e-9 relative (measured ~1e-12).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dqtl.errors import InputError
from dqtl.multitest import DEFAULT_LAMBDA, bh, lfdr, pi0est, qvalue
from dqtl.multitest.spline import smooth_spline
from tests.multitest._reference import QVALUE_CASES, qvalue_case


@pytest.fixture(scope="module", params=QVALUE_CASES)
def case(request):
    meta, expected, pi0_tab = qvalue_case(request.param)
    res = qvalue(expected["pvalue"], pi0_method=meta["parameters"]["pi0_method"])
    return meta, expected, pi0_tab, res


def test_qvalue__default_lambda_is_r_seq():
    meta, _, pi0_tab = qvalue_case("small_n100")
    np.testing.assert_array_equal(DEFAULT_LAMBDA, np.array(meta["parameters"]["lambda"]))
    np.testing.assert_array_equal(DEFAULT_LAMBDA, pi0_tab["lambda"])


def test_qvalue__pi0_lambda_matches_r(case):
    _, _, pi0_tab, res = case
    np.testing.assert_allclose(res.pi0_lambda, pi0_tab["pi0_lambda"], rtol=1e-15)


def test_qvalue__pi0_matches_r(case):
    meta, _, pi0_tab, res = case
    assert res.pi0_method == meta["parameters"]["pi0_method"]
    if res.pi0_method == "bootstrap":
        assert res.pi0 == meta["pi0"]
        assert res.pi0_smooth is None
    else:
        np.testing.assert_allclose(res.pi0, meta["pi0"], rtol=1e-10)
        np.testing.assert_allclose(res.pi0_smooth, pi0_tab["pi0_smooth"], rtol=1e-10)


def test_qvalue__qvalues_match_r(case):
    _, expected, _, res = case
    np.testing.assert_allclose(res.qvalues, expected["qvalue"], rtol=1e-10, atol=0)


def test_qvalue__lfdr_matches_r(case):
    _, expected, _, res = case
    np.testing.assert_allclose(res.lfdr, expected["lfdr"], rtol=1e-9, atol=1e-12)


def test_smooth_spline__df3_fit_matches_r_smooth_spline():
    _, _, pi0_tab = qvalue_case("small_n100")
    fit = smooth_spline(pi0_tab["lambda"], pi0_tab["pi0_lambda"], df=3)
    np.testing.assert_allclose(fit.predict(pi0_tab["lambda"]), pi0_tab["pi0_smooth"], rtol=1e-10)
    # R stops the spar search at tol 1e-4, so the trace is close to, not exactly, 3
    assert abs(fit.df - 3) < 1e-2
    np.testing.assert_allclose(fit.y, pi0_tab["pi0_smooth"], rtol=1e-10)


def test_smooth_spline__extrapolates_linearly():
    x = np.linspace(0, 1, 20)
    y = np.sin(3 * x)
    fit = smooth_spline(x, y, df=5)
    ends = fit.predict(np.array([1.0, 1.5, 2.0]))
    np.testing.assert_allclose(ends[2] - ends[1], ends[1] - ends[0], rtol=1e-12)


def test_qvalue__preserves_nan_and_shape():
    _, expected, _ = qvalue_case("small_n100")
    p = expected["pvalue"].copy()
    p2 = np.concatenate([p, [np.nan, np.nan]]).reshape(2, 51)
    res = qvalue(p2)
    assert res.qvalues.shape == (2, 51) and res.lfdr.shape == (2, 51)
    assert np.isnan(res.qvalues.ravel()[-2:]).all() and np.isnan(res.lfdr.ravel()[-2:]).all()
    np.testing.assert_allclose(res.qvalues.ravel()[:100], expected["qvalue"], rtol=1e-10)


def test_qvalue__significant_at_fdr():
    _, expected, _ = qvalue_case("mixture_80unif_20beta_n10000")
    res = qvalue(expected["pvalue"], fdr=0.05)
    np.testing.assert_array_equal(res.significant, expected["qvalue"] <= 0.05)
    assert res.fdr == 0.05 and res.significant.sum() > 100


def test_qvalue__fixed_lambda_estimator():
    rng = np.random.default_rng(5)
    p = np.concatenate([rng.uniform(size=900), rng.beta(0.2, 1, size=100)])
    res = qvalue(p, lambda_=0.5, lfdr=False)
    expected_pi0 = min(np.mean(p >= 0.5) / 0.5, 1.0)
    assert res.pi0_method == "fixed_lambda"
    assert res.pi0 == pytest.approx(expected_pi0, rel=1e-15)
    assert res.lfdr is None
    np.testing.assert_allclose(res.qvalues, expected_pi0 * bh(p), rtol=1e-14)


def test_qvalue__pi0_capped_at_one():
    rng = np.random.default_rng(7)
    p = 1 - rng.beta(0.7, 1, size=2000)  # more large p-values than uniform: pi0(lambda) > 1
    res = qvalue(p)
    assert res.pi0_smooth[-1] > 1
    assert res.pi0 == 1.0
    np.testing.assert_allclose(res.qvalues, bh(p), rtol=1e-14)


def test_qvalue__falls_back_to_bh_when_pi0_not_estimable(caplog):
    p = np.array([0.001, 0.02, 0.3, 0.5, 0.9])  # max(p) < max(lambda) = 0.95: R stops here
    with caplog.at_level(logging.WARNING, logger="dqtl.multitest.qvalue"):
        res = qvalue(p)
    assert res.pi0_method == "bh_fallback" and res.pi0 == 1.0
    np.testing.assert_array_equal(res.qvalues, bh(p))
    assert "falling back" in caplog.text
    assert res.pi0_lambda is None


def test_qvalue__single_pvalue_and_empty_do_not_raise(caplog):
    with caplog.at_level(logging.WARNING):
        one = qvalue([0.3])
        empty = qvalue(np.array([]))
    assert one.qvalues.tolist() == [0.3] and one.pi0_method == "bh_fallback"
    assert empty.qvalues.size == 0


def test_qvalue__given_pi0_and_pfdr():
    rng = np.random.default_rng(11)
    p = rng.uniform(size=50)
    res = qvalue(p, pi0=0.8, pfdr=True, lfdr=False)
    m = p.size
    o = np.argsort(-p)
    i = np.arange(m, 0, -1)
    raw = p[o] * m / (i * (1 - (1 - p[o]) ** m))
    q = np.empty(m)
    q[o] = 0.8 * np.minimum(1, np.minimum.accumulate(raw))
    np.testing.assert_allclose(res.qvalues, q, rtol=1e-14)
    assert res.pi0_method == "given"


def test_pi0est__bootstrap_picks_min_mse_lambda():
    _, expected, pi0_tab = qvalue_case("mixture_80unif_20beta_n10000_bootstrap")
    est = pi0est(expected["pvalue"], pi0_method="bootstrap")
    assert est.pi0 == 0.8091666666666667
    assert est.pi0 in est.pi0_lambda


def test_pi0est__raises_where_qvalue_falls_back():
    with pytest.raises(InputError, match="cannot estimate pi0"):
        pi0est([0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lambda_": [0.1, 0.5]}, "at least 4"),
        ({"lambda_": [0.1, 0.2, 0.5, 1.0]}, r"\[0, 1\)"),
        ({"pi0_method": "spline"}, "smoother"),
        ({"fdr": 0.0}, "fdr"),
        ({"fdr": 1.5}, "fdr"),
        ({"pi0": 1.2}, "pi0"),
        ({"smooth_df": 30}, "smooth_df"),
    ],
)
def test_qvalue__rejects_invalid_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        qvalue(np.linspace(0.01, 0.99, 30), **kwargs)


def test_qvalue__rejects_pvalues_outside_unit_interval():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        qvalue([0.1, 1.2])


def test_lfdr__monotone_in_p_and_bounded():
    _, expected, _ = qvalue_case("mixture_80unif_20beta_n10000")
    p = expected["pvalue"]
    lf = lfdr(p, pi0=0.8)
    o = np.argsort(p)
    assert np.all(np.diff(lf[o]) >= 0)
    assert lf.max() <= 1.0 and lf.min() > 0


def test_smooth_spline__duplicate_x_equal_weighted_means():
    rng = np.random.default_rng(9)
    ux = np.sort(rng.uniform(0, 1, 12))
    reps = rng.integers(1, 4, size=12)
    x = np.repeat(ux, reps)
    y = np.sin(4 * x) + rng.normal(0, 0.1, x.size)
    ybar = np.bincount(np.repeat(np.arange(12), reps), weights=y) / reps
    dup = smooth_spline(x, y, df=4)
    wtd = smooth_spline(ux, ybar, w=reps.astype(float), df=4)
    # R rescales weights to sum to #positive; spar is scale-free, so the fits agree
    np.testing.assert_allclose(dup.predict(ux), wtd.predict(ux), rtol=1e-8, atol=1e-10)
    assert dup.df == pytest.approx(4, abs=1e-2)


def test_spline_evaluation__bit_for_bit_scipy_bspline():
    """The smoothing spline's B-splines (dqtl.multitest.spline._BSpline, _design_matrix) give
    scipy's ``BSpline(..., extrapolate=False)`` numbers bit for bit: values, first and second
    derivatives, vector coefficients, the design matrix, points on knots, outside the base
    interval and NaN; and computing q-values does not import scipy.interpolate."""
    import subprocess
    import sys

    from scipy.interpolate import BSpline

    from dqtl.multitest.spline import SmoothingError, _BSpline, _design_matrix

    rng = np.random.default_rng(1)
    for trial in range(60):
        inner = np.sort(rng.random(int(rng.integers(1, 30))))
        if trial % 3 == 0:  # knots on a grid: data points on knots
            inner = np.unique(np.round(inner, 1))
        inner = inner[(inner > 0) & (inner < 1)]
        t = np.concatenate([[0.0] * 4, inner, [1.0] * 4])
        nk = t.size - 4
        c = rng.standard_normal(nk)
        x = np.concatenate([rng.random(50), t, [-0.1, 1.1, np.nan]])
        for nu in (0, 1, 2):
            want = BSpline(t, c, 3, extrapolate=False).derivative(nu)(x) if nu else BSpline(t, c, 3, extrapolate=False)(x)
            got = _BSpline(t, c, 3).derivative(nu)(x) if nu else _BSpline(t, c, 3)(x)
            np.testing.assert_array_equal(got, want)
        eye = np.eye(nk)
        np.testing.assert_array_equal(_BSpline(t, eye, 3).derivative(2)(x[:50]),
                                      BSpline(t, eye, 3, extrapolate=False).derivative(2)(x[:50]))
        xs = np.clip(x[:60], 0, 1)
        np.testing.assert_array_equal(_design_matrix(xs, t, 3), BSpline.design_matrix(xs, t, 3).toarray())
    with pytest.raises(SmoothingError):
        _design_matrix(np.array([1.5]), t, 3)
    code = ("import sys, numpy as np; from dqtl.multitest import qvalue; "
            "qvalue(np.random.default_rng(0).random(500)); print('scipy.interpolate' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
