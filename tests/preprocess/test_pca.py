"""Genotype PCs: population separation, exact-SVD agreement, projection, LD pruning."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.linalg
import xarray as xr

from dqtl.errors import InputError
from dqtl.preprocess.pca import genotype_pcs, ld_prune, project_samples, simulate_populations


@pytest.fixture(scope="module")
def pops():
    return simulate_populations(n_samples=200, n_variants=2000, fst=0.1, seed=3,
                                variants_chunk_size=500)


def with_missing(ds: xr.Dataset, rate: float, seed: int = 0) -> xr.Dataset:
    gt = ds["call_genotype"].values.copy()
    gt[np.random.default_rng(seed).random(gt.shape[:2]) < rate] = -1
    return ds.assign(call_genotype=(ds["call_genotype"].dims, da.from_array(gt, chunks=(150, -1, -1))))


def standardized(gt: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """EIGENSOFT standardisation computed independently with numpy (missing -> 0)."""
    g = gt[idx]
    called = ~(g == -1).any(2)
    d = np.where(called, (g > 0).sum(2), 0).astype(np.float64)
    f = d.sum(1) / (2 * called.sum(1))
    x = (d - 2 * f[:, None]) / np.sqrt(2 * f * (1 - f))[:, None]
    return np.where(called, x, 0.0)


def test_genotype_pcs__pc1_separates_two_populations(pops):
    pca = genotype_pcs(pops, n_components=4, seed=0)
    pop = pops["sample_population"].values
    pc1 = pca.scores[:, 0]
    assert abs(np.corrcoef(pc1, pop)[0, 1]) > 0.95
    # a single threshold on PC1 separates the populations perfectly
    assert pc1[pop == 0].max() < pc1[pop == 1].min() or pc1[pop == 1].max() < pc1[pop == 0].min()
    assert pca.explained_variance_ratio[0] > 3 * pca.explained_variance_ratio[1]
    assert pca.report["n_variants_pca"] == pca.loadings.shape[0] == pca.variant_index.size
    cov = pca.to_covariates()
    assert list(cov["covariate_id"].values) == ["PC1", "PC2", "PC3", "PC4"]
    assert pca.to_dataset()["sample_pca_projection"].shape == (200, 4)


def test_genotype_pcs__agrees_with_exact_numpy_svd():
    ds = with_missing(simulate_populations(n_samples=80, n_variants=600, n_populations=4, fst=0.1,
                                           seed=5), rate=0.02)
    pca = genotype_pcs(ds, n_components=3, seed=1, min_call_rate=0.9)
    X = standardized(ds["call_genotype"].values, pca.variant_index)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    np.testing.assert_allclose(pca.singular_values, s[:3], rtol=1e-4)
    np.testing.assert_allclose(pca.explained_variance_ratio, s[:3] ** 2 / (X**2).sum(), rtol=1e-4)
    assert scipy.linalg.subspace_angles(pca.scores, Vt[:3].T).max() < 1e-2
    assert scipy.linalg.subspace_angles(pca.loadings, U[:, :3]).max() < 1e-2
    # more power iterations converge to the exact subspace (float32 products)
    sharp = genotype_pcs(ds, n_components=3, seed=1, min_call_rate=0.9, n_power_iter=8)
    assert scipy.linalg.subspace_angles(sharp.scores, Vt[:3].T).max() < 1e-4
    np.testing.assert_allclose(sharp.scores * np.sign(sharp.scores[0] * Vt[:3, 0]),
                               Vt[:3].T * s[:3], rtol=0, atol=1e-3 * np.abs(Vt[:3] * s[:3, None]).max())


def test_project_samples__fitted_samples_reproduce_scores(pops):
    pca = genotype_pcs(pops, n_components=3)
    proj = project_samples(pca, pops)["sample_pca_projection"].values
    np.testing.assert_allclose(proj, pca.scores, rtol=1e-5, atol=1e-4 * np.abs(pca.scores).max())
    # REF/ALT swapped and samples reordered: same coordinates
    order = np.random.default_rng(0).permutation(pops.sizes["samples"])
    gt = pops["call_genotype"].values
    swapped = pops.assign(
        call_genotype=(pops["call_genotype"].dims, da.from_array(1 - gt, chunks=(400, -1, -1))),
        variant_allele=(("variants", "alleles"), pops["variant_allele"].values[:, ::-1]),
    ).isel(samples=order)
    proj2 = project_samples(pca, swapped)["sample_pca_projection"].values
    np.testing.assert_allclose(proj2, pca.scores[order], rtol=1e-5, atol=1e-4 * np.abs(pca.scores).max())


def test_project_samples__held_out_samples_match_joint_scores(pops):
    rng = np.random.default_rng(0)
    test = np.sort(rng.choice(200, 40, replace=False))
    train = np.setdiff1d(np.arange(200), test)
    joint = genotype_pcs(pops, n_components=2)
    fit = genotype_pcs(pops.isel(samples=train), n_components=2)
    proj = project_samples(fit, pops.isel(samples=test))["sample_pca_projection"].values[:, 0]
    a = joint.scores[test, 0]
    b = proj * np.sign(np.dot(a, proj))
    assert np.corrcoef(a, b)[0, 1] > 0.999
    # held-out projections shrink slightly towards 0 (n << variants): within 10 %
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.1


def test_project_samples__missing_variants(pops):
    pca = genotype_pcs(pops, n_components=2)
    sub = pops.isel(variants=slice(0, 1500))
    with pytest.raises(InputError, match="not in the genotypes"):
        project_samples(pca, sub)
    proj = project_samples(pca, sub, allow_missing_variants=True)["sample_pca_projection"].values
    assert np.corrcoef(proj[:, 0], pca.scores[:, 0])[0, 1] > 0.95


def r2_matrix(gt: np.ndarray) -> np.ndarray:
    called = ~(gt == -1).any(2)
    d = np.where(called, (gt > 0).sum(2), np.nan)
    mean = np.nanmean(d, axis=1, keepdims=True)
    z = np.where(called, d - mean, 0.0)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return (z @ z.T) ** 2


def test_ld_prune__greedy_window_rule_chunking_invariant_and_contigs():
    ds = simulate_populations(n_samples=100, n_variants=500, fst=0.05, ld_rho=0.9, seed=7,
                              variants_chunk_size=500)
    contig = np.repeat([0, 1], [260, 240]).astype(np.int16)
    ds = ds.assign(variant_contig=("variants", contig),
                   contig_id=("contigs", np.array(["1", "2"], dtype=object)))
    ds = with_missing(ds, rate=0.01, seed=2)
    window, thr = 30, 0.2
    a = ld_prune(ds, ld_prune_window=window, r2_max=thr, variants_chunk_size=500)
    b = ld_prune(ds, ld_prune_window=window, r2_max=thr, variants_chunk_size=17)  # chunk < window
    np.testing.assert_array_equal(a.keep, b.keep)
    np.testing.assert_array_equal(a.common, b.common)
    assert 0.1 * a.common.sum() < a.keep.sum() < 0.9 * a.common.sum()
    # brute force: the greedy rule in variant order, with r^2 of mean-imputed dosages
    r2 = r2_matrix(ds["call_genotype"].values)
    keep = np.zeros(500, dtype=bool)
    for v in np.flatnonzero(a.common):
        near = np.arange(max(0, v - window), v)
        near = near[(contig[near] == contig[v]) & keep[near]]
        keep[v] = not (r2[v, near] > thr).any()
    np.testing.assert_array_equal(a.keep, keep)
    # the two contigs' boundary variants are not compared
    assert a.keep[260] == (a.common[260])


def test_genotype_pcs__chunking_and_persist_invariant(pops):
    a = genotype_pcs(pops, n_components=2, variants_chunk_size=300)
    b = genotype_pcs(pops, n_components=2, variants_chunk_size=700, persist_bytes=0)
    assert not b.report["persisted"] and a.report["persisted"]
    np.testing.assert_array_equal(a.variant_index, b.variant_index)
    assert scipy.linalg.subspace_angles(a.scores, b.scores).max() < 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_components": 0}, "n_components"),
        ({"n_components": 500}, "n_components"),
        ({"maf_min": 0.7}, "maf_min"),
        ({"r2_max": 0}, "r2_max"),
        ({"ld_prune_window": 0}, "ld_prune_window"),
        ({"n_components": 30}, "after filtering"),
    ],
)
def test_genotype_pcs__bad_arguments_are_input_errors(kwargs, message):
    ds = simulate_populations(n_samples=30, n_variants=300, seed=1)
    with pytest.raises(InputError, match=message):
        genotype_pcs(ds, **{"n_components": 2, **kwargs})
