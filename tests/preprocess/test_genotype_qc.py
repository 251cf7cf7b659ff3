"""Genotype QC against plink2 (GEUVADIS), exact HWE enumeration, and its invariants."""

from __future__ import annotations

from fractions import Fraction
from math import factorial

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln

from dqtl.io.convert import convert
from dqtl.io.genotypes import open_genotypes
from dqtl.preprocess.genotype_qc import (
    SAMPLE_QC_VARIABLES,
    VARIANT_QC_VARIABLES,
    hwe_exact_p,
    sample_qc,
    variant_qc,
)
from tests.conftest import EXAMPLE, REFERENCE

PLINK = REFERENCE / "plink2"


@pytest.fixture(scope="module")
def geuvadis(tmp_path_factory):
    store = tmp_path_factory.mktemp("qc") / "g.vcz"
    convert(EXAMPLE / "geuvadis_ceu90_maf01.pgen", store, format="pgen", show_progress=False)
    return open_genotypes(store)


def read_plink(name: str) -> pd.DataFrame:
    return pd.read_csv(PLINK / f"geuvadis_ceu90_maf01.{name}.gz", sep="\t")


def test_variant_qc__matches_plink2_hardy_freq_missing(geuvadis):
    qc = variant_qc(geuvadis, merge=False).compute()
    hardy, freq, vmiss = read_plink("hardy"), read_plink("afreq"), read_plink("vmiss")
    ids = geuvadis["variant_id"].values.astype(str)
    assert (hardy["ID"].to_numpy() == ids).all() and (freq["ID"].to_numpy() == ids).all()
    # counts: exact (A1 is REF or ALT per variant; map the homozygote columns accordingly)
    ref = geuvadis["variant_allele"].values[:, 0].astype(str)
    a1_is_ref = hardy["A1"].to_numpy() == ref
    hom_ref = np.where(a1_is_ref, hardy["HOM_A1_CT"], hardy["TWO_AX_CT"])
    hom_alt = np.where(a1_is_ref, hardy["TWO_AX_CT"], hardy["HOM_A1_CT"])
    np.testing.assert_array_equal(qc["variant_n_hom_ref"].values, hom_ref)
    np.testing.assert_array_equal(qc["variant_n_het"].values, hardy["HET_A1_CT"])
    np.testing.assert_array_equal(qc["variant_n_hom_alt"].values, hom_alt)
    np.testing.assert_array_equal(qc["variant_allele_total"].values, freq["OBS_CT"])
    np.testing.assert_array_equal(geuvadis.sizes["samples"] - qc["variant_n_called"].values,
                                  vmiss["MISSING_CT"])
    assert (vmiss["MISSING_CT"] > 0).any()  # the reference exercises missing calls
    # rates and frequencies: plink2 prints 6 significant digits
    np.testing.assert_allclose(qc["variant_alt_frequency"].values, freq["ALT_FREQS"], rtol=0, atol=5e-7)
    np.testing.assert_allclose(1 - qc["variant_call_rate"].values, vmiss["F_MISS"], rtol=0, atol=5e-7)
    np.testing.assert_allclose(qc["variant_hwe_p_value"].values, hardy["P"], rtol=5e-6, atol=0)
    assert hardy["P"].min() < 1e-4 and (hardy["P"] == 1).any()  # small p and ties both exercised
    f = qc["variant_alt_frequency"].values
    np.testing.assert_allclose(qc["variant_maf"].values, np.minimum(f, 1 - f))
    alt = qc["variant_alt_count"].values
    np.testing.assert_array_equal(qc["variant_mac"].values,
                                  np.minimum(alt, qc["variant_allele_total"].values - alt))


def test_sample_qc__matches_plink2_smiss_het(geuvadis):
    qc = sample_qc(geuvadis, merge=False).compute()
    smiss, het = read_plink("smiss"), read_plink("het")
    assert (smiss["#IID"].to_numpy() == geuvadis["sample_id"].values.astype(str)).all()
    n_var = geuvadis.sizes["variants"]
    np.testing.assert_array_equal(n_var - qc["sample_n_called"].values, smiss["MISSING_CT"])
    np.testing.assert_array_equal(qc["sample_n_called"].values, het["OBS_CT"])
    np.testing.assert_array_equal(qc["sample_n_hom_ref"].values + qc["sample_n_hom_alt"].values,
                                  het["O(HOM)"])
    np.testing.assert_allclose(qc["sample_heterozygosity"].values,
                               1 - het["O(HOM)"] / het["OBS_CT"], rtol=1e-12)


def exact_hwe(het: int, hom1: int, hom2: int) -> float:
    """Wigginton et al. (2005) by exact rational enumeration: sum of P(h) <= P(observed)."""
    homr, homc = min(hom1, hom2), max(hom1, hom2)
    n, rare = het + homr + homc, 2 * min(hom1, hom2) + het
    probs = {}
    for h in range(rare % 2, rare + 1, 2):
        r = (rare - h) // 2
        probs[h] = Fraction(2**h, factorial(h) * factorial(r) * factorial(n - h - r))
    obs = probs[het]
    return float(sum(p for p in probs.values() if p <= obs) / sum(probs.values()))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
def test_hwe_exact_p__equals_exact_enumeration(het, hom1, hom2):
    if het + hom1 + hom2 == 0:
        assert np.isnan(hwe_exact_p(het, hom1, hom2))
        return
    np.testing.assert_allclose(hwe_exact_p(het, hom1, hom2), exact_hwe(het, hom1, hom2), rtol=1e-10)


def test_hwe_exact_p__ties_count_as_not_more_likely():
    # het 39 and 41 are exactly equally likely (the mode); plink2 --hardy reports p = 1
    assert exact_hwe(39, 41, 10) == pytest.approx(1.0)
    assert hwe_exact_p(39, 41, 10) == pytest.approx(1.0, abs=1e-15)
    assert hwe_exact_p(41, 40, 9) == pytest.approx(1.0, abs=1e-15)


def log_enumeration(het: int, hom1: int, hom2: int) -> float:
    homr, homc = min(hom1, hom2), max(hom1, hom2)
    n, rare = het + homr + homc, 2 * homr + het
    h = np.arange(rare % 2, rare + 1, 2)
    r = (rare - h) // 2
    lp = h * np.log(2) - gammaln(h + 1) - gammaln(r + 1) - gammaln(n - h - r + 1)
    lo = lp[h == het][0]
    top = lp.max()
    w = np.exp(lp - top)
    return float(w[lp <= lo + 1e-12].sum() / w.sum())


def test_hwe_exact_p__large_samples_use_a_window_without_loss():
    rng = np.random.default_rng(3)
    cases = [(9000, 8000, 3000), (200, 19000, 800), (12, 19980, 8), (5000, 15000, 0),
             (10, 15000, 4990), (19000, 600, 400)]
    for _ in range(10):
        n = 20_000
        p = rng.uniform(0.01, 0.5)
        counts = rng.multinomial(n, [(1 - p) ** 2, 2 * p * (1 - p), p * p])
        cases.append((int(counts[1]), int(counts[0]), int(counts[2])))
    het, h1, h2 = (np.array(x) for x in zip(*cases, strict=True))
    got = hwe_exact_p(het, h1, h2, max_block_elements=5000)  # several batches
    want = np.array([log_enumeration(*c) for c in cases])
    tiny = want < 1e-300
    np.testing.assert_allclose(got[~tiny], want[~tiny], rtol=1e-8)
    assert (got[tiny] < 1e-250).all()


def test_hwe_exact_p__edge_cases():
    p = hwe_exact_p([0, 0, 30, -1], [0, 30, 0, 3], [0, 0, 0, 3])
    assert np.isnan(p[0]) and p[1] == 1.0 and np.isnan(p[3])
    assert 0 < p[2] < 1e-6  # all heterozygous: excess heterozygosity
    assert p[2] == pytest.approx(exact_hwe(30, 0, 0), rel=1e-10)
    assert hwe_exact_p(np.zeros((2, 3), int), np.ones((2, 3), int) * 5, 0).shape == (2, 3)


def toy_calls(seed=0, v=50, n=30, missing=0.1):
    rng = np.random.default_rng(seed)
    gt = (rng.random((v, n, 2)) < rng.uniform(0.05, 0.6, (v, 1, 1))).astype(np.int8)
    gt[rng.random((v, n)) < missing] = -1
    return gt


def dataset(gt, chunks=(7, -1, -1)):
    v, n, _ = gt.shape
    return xr.Dataset({
        "call_genotype": (("variants", "samples", "ploidy"), da.from_array(gt, chunks=chunks)),
        "variant_contig": ("variants", np.zeros(v, int)),
        "variant_position": ("variants", np.arange(1, v + 1)),
        "sample_id": ("samples", np.array([f"s{i}" for i in range(n)])),
    })


def _raise(*args, **kwargs):
    raise AssertionError("computed eagerly")


def test_variant_and_sample_qc__are_lazy():
    ds = dataset(toy_calls())
    with dask.config.set(scheduler=_raise):
        vq = variant_qc(ds)
        sq = sample_qc(ds)
    assert all(vq[v].chunks is not None for v in VARIANT_QC_VARIABLES)
    assert all(sq[v].chunks is not None for v in SAMPLE_QC_VARIABLES)
    assert "call_genotype" in vq  # merge=True keeps the input


def test_variant_qc__chunking_invariant_and_numpy_reference():
    gt = toy_calls(1)
    a = variant_qc(dataset(gt), merge=False).compute()
    b = variant_qc(dataset(gt, chunks=(50, 8, 2)), merge=False).compute()  # samples chunked
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values)
    called = ~(gt == -1).any(2)
    alt = np.where(called, (gt > 0).sum(2), 0)
    np.testing.assert_array_equal(a["variant_n_called"].values, called.sum(1))
    np.testing.assert_array_equal(a["variant_alt_count"].values, alt.sum(1))
    np.testing.assert_array_equal(a["variant_n_het"].values, (called & (alt == 1)).sum(1))
    np.testing.assert_allclose(a["variant_alt_frequency"].values, alt.sum(1) / (2 * called.sum(1)))
    s = sample_qc(dataset(gt, chunks=(9, 7, 2)), merge=False).compute()
    np.testing.assert_array_equal(s["sample_n_called"].values, called.sum(0))
    np.testing.assert_array_equal(s["sample_n_het"].values, (called & (alt == 1)).sum(0))
    np.testing.assert_allclose(s["sample_call_rate"].values, called.mean(0))


def test_variant_qc__dosage_only_input_matches_calls():
    gt = toy_calls(2)
    dos = np.where((gt == -1).any(2), np.nan, (gt > 0).sum(2)).astype(np.float32)
    ds = dataset(gt)
    ds_d = ds.drop_vars("call_genotype").assign(
        call_dosage=(("variants", "samples"), da.from_array(dos, chunks=(11, -1))))
    a = variant_qc(ds, merge=False).compute()
    b = variant_qc(ds_d, merge=False).compute()
    for v in ("variant_n_called", "variant_n_het", "variant_alt_frequency", "variant_hwe_p_value"):
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=1e-12)
    s = sample_qc(ds_d, merge=False).compute()
    np.testing.assert_array_equal(s["sample_n_called"].values, (~np.isnan(dos)).sum(0))


def test_variant_qc__mixed_ploidy_and_multiallelic_alleles():
    gt = np.array([[[0, -2], [1, -2], [0, 0], [1, 2]],  # haploid calls padded with -2; multi-ALT
                   [[-1, 0], [0, 1], [1, 1], [0, 0]]], dtype=np.int8)
    qc = variant_qc(dataset(gt, chunks=(1, -1, -1)), merge=False).compute()
    np.testing.assert_array_equal(qc["variant_n_called"].values, [4, 3])
    np.testing.assert_array_equal(qc["variant_allele_total"].values, [6, 6])
    np.testing.assert_array_equal(qc["variant_alt_count"].values, [3, 3])
    np.testing.assert_array_equal(qc["variant_n_hom_alt"].values, [2, 1])  # [1,-2] and [1,2]
    np.testing.assert_array_equal(qc["variant_n_het"].values, [0, 1])


def test_variant_qc__without_genotypes_is_input_error():
    from dqtl.errors import InputError

    with pytest.raises(InputError, match="call_genotype"):
        variant_qc(xr.Dataset({"x": ("variants", np.zeros(3))}))
