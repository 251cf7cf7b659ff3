"""Hidden factors: PEER-equivalent VB (ELBO, ARD, confounder recovery, eGene power, calibration),
expression PCs, the GTEx rule, the discovery curve and covariate combination."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr

from dqtl.association.cis import map_cis_nominal
from dqtl.errors import InputError
from dqtl.preprocess.factor_discovery import (
    choose_n_factors_by_discovery,
    count_egenes,
    plot_discovery_curve,
)
from dqtl.preprocess.factors import (
    combine_covariates,
    expression_pcs,
    gtex_n_factors,
    peer_factors,
)
from dqtl.simulation import simulate

WINDOW = 100_000


@pytest.fixture(scope="module")
def sim():
    """Hidden confounders (3, loadings SD 1.5) dominate the planted cis effects."""
    return simulate(n_samples=150, n_variants=3000, n_phenotypes=300, n_contigs=1, n_hidden=3,
                    hidden_effect=1.5, n_covariates=2, effect_size=0.6, fraction_egenes=0.4,
                    window=WINDOW, contig_length=5_000_000, seed=5)


def known_covariates(ds: xr.Dataset) -> xr.Dataset:
    return ds[["covariate_values", "covariate_id", "sample_id"]]


def canonical_correlations(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    qa, _ = np.linalg.qr(A - A.mean(axis=0))
    qb, _ = np.linalg.qr(B - B.mean(axis=0))
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


def test_peer_factors__elbo_never_decreases_and_ard_switches_off_extra_factors():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(100, 2))
    Y = H @ rng.normal(size=(2, 400)) * 0.8 + rng.normal(size=(100, 400)) + 3.0
    res = peer_factors(Y, n_factors=6, max_iter=2000, tol=1e-8, init="random", seed=1)
    assert res.converged and res.n_iter > 20
    steps = np.diff(res.elbo)
    assert steps.min() > -1e-8 * abs(res.elbo[-1])
    assert res.elbo[-1] > res.elbo[0]
    # two relevant factors; the ARD precisions of the other four are orders larger
    assert res.alpha[2] > 50 * res.alpha[1]
    assert (np.diff(res.alpha) >= 0).all()  # ordered by relevance
    assert canonical_correlations(H, res.factors[:, :2]).min() > 0.95
    assert res.weights.shape == (400, 6) and res.noise_precision.shape == (400,)
    assert res.factor_id[0] == "InferredCov1"


def test_peer_factors__spans_true_hidden_confounders(sim):
    res = peer_factors(sim, n_factors=10, covariates=known_covariates(sim))
    cc = canonical_correlations(sim["hidden_factor_values"].values, res.factors)
    assert cc.min() >= 0.9, cc
    assert res.converged
    # the known covariates are in the model: the factors do not re-learn them
    assert canonical_correlations(sim["covariate_values"].values, res.factors[:, :3]).max() < 0.5
    # without them as covariates, the factors pick them up
    res_nc = peer_factors(sim, n_factors=6)
    assert canonical_correlations(sim["covariate_values"].values, res_nc.factors).min() > 0.9


def test_peer_factors__increase_egene_recovery_with_calibrated_null(sim):
    """Mapping with learned factors finds more planted eGenes, and null genes stay uniform.

    Calibration: for each non-eGene, the nominal p-value of ONE cis variant drawn at random
    (seeded) is a draw from U(0, 1) under the null; distinct genes give (nearly) independent
    draws, so a KS test against U(0, 1) is valid. (A gene's minimum p, even window-Bonferroni
    corrected, is not uniform under LD, so it cannot be tested for calibration this way.)
    Detection: window-Bonferroni minimum p per gene, then BH at 5 %.
    """
    known = known_covariates(sim)
    fac = peer_factors(sim, n_factors=10, covariates=known).to_covariates()
    truth = sim["phenotype_is_egene"].values
    pid = sim["phenotype_id"].values.astype(str)
    found, ks = {}, {}
    for name, cov in (("known", known), ("known+peer", combine_covariates(known, fac))):
        pairs = map_cis_nominal(sim, sim, cov, window=WINDOW)
        calls = count_egenes(pairs, fdr=0.05).reindex(pid)
        found[name] = (int((calls["is_egene"] & truth).sum()), int((calls["is_egene"] & ~truth).sum()))
        df = pd.DataFrame({"phenotype_id": pairs["phenotype_id"].values.astype(str),
                           "p": pairs["p_value"].values})
        one = df.groupby("phenotype_id").sample(1, random_state=7).set_index("phenotype_id")["p"]
        null_p = one.reindex(pid[~truth]).dropna().to_numpy()
        assert null_p.size > 150
        ks[name] = scipy.stats.kstest(null_p, "uniform").pvalue
    tp0, fp0 = found["known"]
    tp1, fp1 = found["known+peer"]
    assert tp1 >= 2 * tp0 + 20, found
    assert fp1 <= 0.1 * max(tp1, 1) + 2, found
    assert min(ks.values()) > 0.01, ks


def test_expression_pcs__equal_numpy_svd_of_centred_expression():
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(40, 60)) + rng.normal(size=(40, 1)) @ rng.normal(size=(1, 60)) * 3
    res = expression_pcs(Y, 3)
    U, s, Vt = np.linalg.svd(Y - Y.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(res.factors), np.abs(U[:, :3] * s[:3]), rtol=1e-10)
    np.testing.assert_allclose(res.explained_variance_ratio, s[:3] ** 2 / (s**2).sum())
    assert res.factor_id == ["ExprPC1", "ExprPC2", "ExprPC3"]
    # phenotype Dataset input (phenotypes x samples) gives the same scores and carries sample IDs
    ds = xr.Dataset({"phenotype_values": (("phenotypes", "samples"), Y.T),
                     "sample_id": ("samples", [f"s{i}" for i in range(40)])})
    res_ds = expression_pcs(ds, 3)
    np.testing.assert_allclose(res_ds.factors, res.factors)
    frame = res_ds.to_frame()
    assert list(frame.columns[:2]) == ["id", "s0"] and frame.shape == (3, 41)


def test_gtex_n_factors__sample_size_rule():
    assert [gtex_n_factors(n) for n in (1, 149, 150, 249, 250, 349, 350, 5000)] == \
        [15, 15, 30, 30, 45, 45, 60, 60]
    with pytest.raises(InputError):
        gtex_n_factors(0)


def test_choose_n_factors_by_discovery__curve_rises_with_factors(sim):
    curve = choose_n_factors_by_discovery(sim, sim, known_covariates(sim), [0, 3, 6],
                                          subset=120, window=WINDOW, method="pca", seed=1)
    assert list(curve.n_factors) == [0, 3, 6] and curve.phenotype_id.size == 120
    assert curve.n_egenes[1] > curve.n_egenes[0] + 5
    assert curve.best in (3, 6)
    ax = plot_discovery_curve(curve)
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(y, curve.n_egenes)
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


def test_combine_covariates__aligns_samples_and_drops_collinear(caplog):
    rng = np.random.default_rng(2)
    sid = np.array([f"s{i}" for i in range(20)])
    A = rng.normal(size=(20, 2))
    known = xr.Dataset({"covariate_values": (("samples", "covariates"), A),
                        "covariate_id": ("covariates", ["age", "sex"]),
                        "sample_id": ("samples", sid)})
    order = rng.permutation(20)
    extra = np.column_stack([A[:, 0] * 2 + A[:, 1], rng.normal(size=20)])[order]
    other = xr.Dataset({"covariate_values": (("samples", "covariates"), extra),
                        "covariate_id": ("covariates", ["combo", "f1"]),
                        "sample_id": ("samples", sid[order])})
    with caplog.at_level("WARNING"):
        out = combine_covariates(known, other)
    assert len(out.attrs["dropped"]) == 1 and "dropped" in caplog.text
    kept = list(out["covariate_id"].values)
    assert len(kept) == 3 and "f1" in kept
    np.testing.assert_array_equal(out["sample_id"].values, sid)
    f1 = out["covariate_values"].values[:, kept.index("f1")]
    np.testing.assert_allclose(f1, extra[np.argsort(order), 1])
    with pytest.raises(InputError, match="more than one source"):
        combine_covariates(known, known)
    with pytest.raises(InputError, match="missing"):
        combine_covariates(known, other.isel(samples=slice(0, 10)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_factors": 0}, "n_factors"),
        ({"n_factors": 30}, "n_factors"),
        ({"n_factors": 2, "covariates": np.ones((5, 1))}, "covariates"),
        ({"n_factors": 2, "alpha_prior": (0, 1)}, "alpha_prior"),
        ({"n_factors": 2, "init": "svd"}, "init"),
    ],
)
def test_peer_factors__bad_arguments_are_input_errors(kwargs, message):
    Y = np.random.default_rng(0).normal(size=(30, 20))
    with pytest.raises(InputError, match=message):
        peer_factors(Y, **kwargs)
    with pytest.raises(InputError, match="Y"):
        peer_factors(np.ones(5), n_factors=1)
