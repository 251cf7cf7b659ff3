"""susie_rss and susie_suff_stat against susieR 0.12.35 (cases made by
tests/reference/susie_rss/generate.R)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dqtl.errors import InputError
from dqtl.finemap.susie import susie_rss, susie_suff_stat
from tests.conftest import REFERENCE

ROOT = REFERENCE / "susie_rss"
CASES = sorted(p.name for p in ROOT.iterdir() if p.is_dir())


def _matrix(path):
    return pd.read_csv(path, sep="\t").drop(columns="effect").to_numpy(dtype=float)


def _fit(case):
    d = ROOT / case
    meta = json.loads((d / "case.json").read_text())
    X = pd.read_csv((d / meta["X"]).resolve(), sep="\t")
    X = X.drop(columns=[c for c in ("sample",) if c in X.columns]).to_numpy(dtype=float)
    R = np.corrcoef(X, rowvar=False)
    ss = pd.read_csv(d / "sumstats.tsv", sep="\t")
    n = meta["n"]
    if case == "z_n" or case == "ar1_three_causal":
        fit = susie_rss(ss["z"].to_numpy(), R, n=n, L=10)
    elif case == "z_no_n":
        fit = susie_rss(ss["z"].to_numpy(), R, L=10)
    elif case == "bhat_shat_var_y":
        fit = susie_rss(bhat=ss["bhat"].to_numpy(), shat=ss["shat"].to_numpy(), R=R, n=n,
                        var_y=meta["var_y"], L=10, estimate_residual_variance=True)
    else:  # pragma: no cover - a new case needs its call here
        raise AssertionError(case)
    return d, meta, fit


@pytest.fixture(scope="module", params=CASES)
def fitted(request):
    return _fit(request.param)


def test_susie_rss__credible_sets_identical_to_susier(fitted):
    d, meta, fit = fitted
    exp = pd.read_csv(d / "expected_cs.tsv", sep="\t")
    got = [",".join(str(i + 1) for i in cs) for cs in fit.credible_sets]
    assert got == [str(v) for v in exp["variables"]]
    assert [f"L{k + 1}" for k in fit.cs_index] == exp["cs"].tolist()
    np.testing.assert_allclose(fit.cs_coverage, exp["coverage"].to_numpy(dtype=float), rtol=1e-6)
    # purity from cov2cor((n-1) R): R from numpy's corrcoef here, R's cor there (1e-15 apart)
    np.testing.assert_allclose([p[0] for p in fit.cs_purity], exp["min_abs_corr"].to_numpy(dtype=float),
                               rtol=1e-10)
    assert len(fit.credible_sets) == meta["result"]["n_cs"] >= 1


def test_susie_rss__fit_within_stated_tolerances(fitted):
    """Same algorithm, same iteration count; the LD matrix is numpy's corrcoef of the same X
    (R's cor there, ~1e-16 apart) and the Brent search stops at R's reltol on log V, so the
    stated bounds are those of the individual-level test: PIP/alpha/mu to 1e-6 absolute, ELBO
    to 1e-9 relative, V 1e-5 relative."""
    d, meta, fit = fitted
    pip = pd.read_csv(d / "expected_pip.tsv", sep="\t")["pip"].to_numpy(dtype=float)
    np.testing.assert_allclose(fit.pip, pip, atol=1e-6)
    np.testing.assert_allclose(fit.alpha, _matrix(d / "expected_alpha.tsv"), atol=1e-6)
    np.testing.assert_allclose(fit.mu, _matrix(d / "expected_mu.tsv"), atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(fit.mu2, _matrix(d / "expected_mu2.tsv"), atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(fit.lbf_variable, _matrix(d / "expected_lbf_variable.tsv"),
                               rtol=1e-6, atol=1e-6)
    eff = pd.read_csv(d / "expected_effects.tsv", sep="\t")
    np.testing.assert_allclose(fit.V, eff["V"].to_numpy(dtype=float), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(fit.lbf, eff["lbf"].to_numpy(dtype=float), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fit.KL, eff["KL"].to_numpy(dtype=float), rtol=1e-6, atol=1e-8)
    elbo = pd.read_csv(d / "expected_elbo.tsv", sep="\t")["elbo"].to_numpy(dtype=float)
    assert fit.niter == meta["result"]["niter"] and fit.converged == meta["result"]["converged"]
    np.testing.assert_allclose(fit.elbo, elbo, rtol=1e-9)
    np.testing.assert_allclose(fit.sigma2, meta["result"]["sigma2"], rtol=1e-8)


def test_susie_suff_stat__equals_individual_level_fit_on_the_same_data():
    rng = np.random.default_rng(5)
    X = rng.binomial(2, 0.35, size=(300, 60)).astype(float)
    y = 0.7 * X[:, 11] - 0.6 * X[:, 40] + rng.normal(size=300)
    from dqtl.finemap.susie import susie

    ind = susie(X, y, L=5)
    Xc, yc = X - X.mean(0), y - y.mean()
    ss = susie_suff_stat(Xc.T @ Xc, Xc.T @ yc, float(yc @ yc), 300, L=5)
    np.testing.assert_allclose(ss.pip, ind.pip, atol=1e-8)
    np.testing.assert_allclose(ss.elbo, ind.elbo, rtol=1e-10)
    assert [c.tolist() for c in ss.credible_sets] == [c.tolist() for c in ind.credible_sets]


def test_susie_rss__rejects_bad_input():
    R = np.eye(3)
    with pytest.raises(InputError, match="dimension of R"):
        susie_rss(np.ones(4), R, n=100)
    with pytest.raises(InputError, match="either z or"):
        susie_rss(np.ones(3), R, n=100, bhat=np.ones(3), shat=np.ones(3))
    with pytest.raises(InputError, match="shat cannot"):
        susie_rss(R=R, n=100, bhat=np.ones(3), shat=np.array([1.0, 0.0, 1.0]))
    with pytest.raises(InputError, match="n must be greater"):
        susie_rss(np.ones(3), R, n=1)
    with pytest.raises(InputError, match="missing values"):
        susie_rss(np.ones(3), np.full((3, 3), np.nan), n=100)
    # a z-score far larger than the LD allows: susieR's check_prior error
    z = np.array([30.0, 0.0, 0.0])
    Rbad = np.array([[1.0, 0.99, 0.99], [0.99, 1.0, 0.99], [0.99, 0.99, 1.0]])
    with pytest.raises(InputError, match="unreasonably large|mismatch"):
        susie_rss(z, Rbad)
