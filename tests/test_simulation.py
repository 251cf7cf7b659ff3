"""Tests of dqtl.simulate: seeded, chunk-invariant simulation with planted truth, and its writers."""

from __future__ import annotations

import doctest
import gzip
import struct

import dask.array as da
import numpy as np
import pandas as pd
import pgenlib
import pytest
import xarray as xr
from scipy import stats

import dqtl.simulation as sim_module
from dqtl.errors import InputError
from dqtl.io.bgzf import BgzfWriter
from dqtl.simulation import GENOTYPE_BLOCK, simulate
from dqtl.simulation_files import write_simulation

SMALL = dict(n_samples=40, n_variants=600, n_phenotypes=30, n_contigs=2, contig_length=2_000_000)


def _dosage(ds: xr.Dataset) -> np.ndarray:
    gt = ds["call_genotype"].values
    d = gt.sum(axis=2).astype(np.float64)
    d[(gt < 0).any(axis=2)] = np.nan
    return d


def _row_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    return (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))


def test_simulate__same_seed_identical_different_seed_differs():
    a = simulate(**SMALL, seed=11).compute()
    b = simulate(**SMALL, seed=11).compute()
    c = simulate(**SMALL, seed=12).compute()
    xr.testing.assert_identical(a, b)
    assert not np.array_equal(a["call_genotype"].values, c["call_genotype"].values)
    assert not np.array_equal(a["phenotype_values"].values, c["phenotype_values"].values)
    assert not np.array_equal(a["variant_position"].values, c["variant_position"].values)


def test_simulate__genotypes_independent_of_chunking():
    n = 3 * GENOTYPE_BLOCK + 17
    ref = simulate(**{**SMALL, "n_variants": n}, seed=5, variants_chunk_size=n)
    g = ref["call_genotype"].values
    for chunk in (1, 7, GENOTYPE_BLOCK + 1, 1000):
        other = simulate(**{**SMALL, "n_variants": n}, seed=5, variants_chunk_size=chunk)
        assert other["call_genotype"].data.chunks[0][0] == min(chunk, n)
        np.testing.assert_array_equal(other["call_genotype"].values, g)
        np.testing.assert_array_equal(other["phenotype_values"].values,
                                      ref["phenotype_values"].values)
    # a slice across block boundaries reads the same calls
    lo, hi = GENOTYPE_BLOCK - 3, 2 * GENOTYPE_BLOCK + 5
    np.testing.assert_array_equal(ref["call_genotype"][lo:hi].values, g[lo:hi])


def test_simulate__genotypes_are_lazy_dask_arrays():
    ds = simulate(**SMALL, seed=1, variants_chunk_size=100)
    assert isinstance(ds["call_genotype"].data, da.Array)
    assert ds["call_genotype"].dtype == np.int8
    assert ds["call_genotype"].data.chunks[0] == (100,) * 6
    assert ds["call_genotype"].dims == ("variants", "samples", "ploidy")
    assert isinstance(ds["call_genotype_mask"].data, da.Array)


def test_simulate__ld_adjacent_correlation_exceeds_distant():
    ds = simulate(n_samples=400, n_variants=1000, n_phenotypes=5, n_contigs=1, seed=2)
    d = _dosage(ds)
    adjacent = np.mean(_row_corr(d[:-1], d[1:]))
    distant = np.mean(_row_corr(d[:-60], d[60:]))
    assert adjacent > 0.25
    assert abs(distant) < 0.03
    flat = simulate(n_samples=400, n_variants=1000, n_phenotypes=5, n_contigs=1, seed=2,
                    ld_rho=0.0)
    d0 = _dosage(flat)
    assert abs(np.mean(_row_corr(d0[:-1], d0[1:]))) < 0.03


def test_simulate__allele_frequencies_within_maf_range():
    ds = simulate(n_samples=1000, n_variants=400, n_phenotypes=5, maf_range=(0.1, 0.3), seed=4)
    true_af = ds["variant_simulated_alt_frequency"].values
    assert true_af.min() >= 0.1 and true_af.max() <= 0.3
    af = ds["call_genotype"].values.mean(axis=(1, 2))
    se = np.sqrt(0.3 * 0.7 / 2000)  # binomial SE at the widest frequency (ignores LD)
    assert af.min() > 0.1 - 5 * se and af.max() < 0.3 + 5 * se
    assert np.abs(af - true_af).max() < 5 * se
    assert abs(af.mean() - 0.2) < 0.01


def test_simulate__planted_causal_variants_inside_window():
    window = 50_000
    ds = simulate(n_samples=10, n_variants=4000, n_phenotypes=100, n_contigs=3,
                  contig_length=5_000_000, window=window, fraction_egenes=0.4, seed=8)
    is_egene = ds["phenotype_is_egene"].values
    causal = ds["phenotype_causal_variant"].values
    beta = ds["phenotype_effect_size"].values
    assert is_egene.sum() == 40
    assert np.all(causal[~is_egene] == -1) and np.all(beta[~is_egene] == 0)
    assert np.all(np.abs(beta[is_egene]) == 0.5)
    assert 0 < (beta[is_egene] > 0).sum() < is_egene.sum()  # both signs planted
    idx = causal[is_egene]
    contig_of_variant = ds["contig_id"].values[ds["variant_contig"].values[idx]]
    assert np.all(contig_of_variant == ds["phenotype_contig"].values[is_egene])
    tss = ds["phenotype_start"].values[is_egene] + 1
    distance = ds["variant_position"].values[idx].astype(np.int64) - tss
    assert np.all(np.abs(distance) <= window)


def test_simulate__missing_rates_honoured():
    params = dict(n_samples=200, n_variants=500, n_phenotypes=100, seed=6)
    full = simulate(**params)
    ds = simulate(**params, missing_genotype_rate=0.1, missing_phenotype_rate=0.2)
    gt = ds["call_genotype"].values
    missing = gt[:, :, 0] < 0
    assert abs(missing.mean() - 0.1) < 0.01
    np.testing.assert_array_equal(gt[:, :, 1] < 0, missing)  # whole calls go missing
    np.testing.assert_array_equal(ds["call_genotype_mask"].values, gt < 0)
    # masking leaves every other call and all values unchanged
    np.testing.assert_array_equal(gt[~missing], full["call_genotype"].values[~missing])
    y = ds["phenotype_values"].values
    assert abs(np.isnan(y).mean() - 0.2) < 0.01
    np.testing.assert_array_equal(y[~np.isnan(y)], full["phenotype_values"].values[~np.isnan(y)])
    assert not np.isnan(full["phenotype_values"].values).any()
    assert (full["call_genotype"].values >= 0).all()


def test_simulate__data_model_variables():
    ds = simulate(**SMALL, n_covariates=4, n_hidden=3, contig_prefix="chr", seed=3)
    assert list(ds["contig_id"].values) == ["chr1", "chr2"]
    assert ds["variant_position"].dtype == np.int32
    pos, contig = ds["variant_position"].values, ds["variant_contig"].values
    assert np.all(np.diff(contig) >= 0)
    for c in range(2):
        p = pos[contig == c]
        assert np.all(np.diff(p) > 0) and p.min() >= 1 and p.max() <= SMALL["contig_length"]
    ids = ds["variant_id"].values
    assert len(set(ids)) == ids.size
    ref, alt = ds["variant_allele"].values.T
    assert np.all(ref != alt) and set(ref) | set(alt) <= set("ACGT")
    assert ids[0] == f"chr1_{pos[0]}_{ref[0]}_{alt[0]}"
    assert ds["phenotype_values"].dims == ("phenotypes", "samples")
    assert ds["phenotype_values"].dtype == np.float64
    assert ds["covariate_values"].dims == ("samples", "covariates")
    assert ds["covariate_values"].shape == (40, 4)
    assert ds["hidden_factor_values"].shape == (40, 3)
    start, end = ds["phenotype_start"].values, ds["phenotype_end"].values
    assert np.all(end >= start + 1)
    assert set(ds["phenotype_contig"].values) == {"chr1", "chr2"}
    assert ds.attrs["seed"] == 3 and ds.attrs["simulation"]["n_hidden"] == 3


def test_simulate__gene_body_fraction_about_one_fifth():
    ds = simulate(n_samples=5, n_variants=200, n_phenotypes=2000, seed=9)
    body = ds["phenotype_end"].values - ds["phenotype_start"].values > 1
    assert 0.17 < body.mean() < 0.23


def test_simulate__planted_truth_matches_genotype_calls():
    ds = simulate(**SMALL, seed=10, missing_genotype_rate=0.05)
    causal = ds["phenotype_causal_variant"].values
    causal = causal[causal >= 0]
    kw = dict(seed=10, n_variants=SMALL["n_variants"], n_samples=SMALL["n_samples"], ploidy=2,
              ld_rho=0.6, maf_range=(0.05, 0.5), contig_starts=(0, SMALL["n_variants"] // 2))
    truth = sim_module._true_dosages(causal, **kw)
    calls = _dosage(ds)[causal]
    observed = ~np.isnan(calls)
    np.testing.assert_array_equal(truth[observed], calls[observed])


def test_simulate__planted_effect_detectable_by_ols():
    ds = simulate(n_samples=300, n_variants=800, n_phenotypes=20, fraction_egenes=0.5,
                  effect_size=0.6, seed=12)
    y = ds["phenotype_values"].values
    d = _dosage(ds)
    base = np.column_stack([np.ones(300), ds["covariate_values"].values,
                            ds["hidden_factor_values"].values])
    for g in range(20):
        v = ds["phenotype_causal_variant"].values[g]
        x = np.column_stack([base, d[v if v >= 0 else 0]])
        coef, rss, *_ = np.linalg.lstsq(x, y[g], rcond=None)
        dof = 300 - x.shape[1]
        se = np.sqrt(rss[0] / dof * np.linalg.inv(x.T @ x)[-1, -1])
        assert abs(rss[0] / dof - 1.0) < 0.25  # noise variance 1 once the truth is modelled
        if v >= 0:
            planted = ds["phenotype_effect_size"].values[g]
            assert abs(coef[-1] - planted) < 4 * se
            assert 2 * stats.t.sf(abs(coef[-1] / se), dof) < 1e-6


def test_simulate__hidden_factors_drive_expression_but_are_not_covariates():
    ds = simulate(n_samples=300, n_variants=100, n_phenotypes=200, n_hidden=1,
                  hidden_effect=1.0, seed=13)
    y = ds["phenotype_values"].values
    c = np.column_stack([np.ones(300), ds["covariate_values"].values])
    resid = y.T - c @ np.linalg.lstsq(c, y.T, rcond=None)[0]
    u = np.linalg.svd(resid - resid.mean(0), full_matrices=False)[0][:, 0]
    h = ds["hidden_factor_values"].values[:, 0]
    assert abs(np.corrcoef(u, h)[0, 1]) > 0.9
    assert all(abs(np.corrcoef(h, cov)[0, 1]) < 0.3 for cov in ds["covariate_values"].values.T)


@pytest.mark.parametrize(
    "bad",
    [
        dict(n_samples=2),
        dict(n_samples=10.5),
        dict(fraction_egenes=1.5),
        dict(fraction_egenes=-0.1),
        dict(ld_rho=1.0),
        dict(maf_range=(0.3, 0.1)),
        dict(maf_range=(0.0, 0.5)),
        dict(missing_genotype_rate=1.0),
        dict(seed=-1),
        dict(n_variants=1, n_contigs=2),
        dict(n_variants=100, n_contigs=1, contig_length=50),
        dict(effect_size=float("nan")),
        dict(variants_chunk_size=0),
    ],
)
def test_simulate__impossible_parameter_raises_input_error(bad):
    name = next(iter(bad)) if len(bad) == 1 else None
    with pytest.raises(InputError) as err:
        simulate(**{**SMALL, **bad})
    if name:
        assert str(err.value).startswith(f"{name}:")


def test_simulate__docstring_example_runs():
    result = doctest.testmod(sim_module, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------
# write_simulation
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    ds = simulate(**SMALL, seed=21, missing_genotype_rate=0.05, missing_phenotype_rate=0.05,
                  variants_chunk_size=128)
    out = tmp_path_factory.mktemp("sim")
    paths = write_simulation(ds, out, formats=list(sim_module.SIMULATION_FORMATS), prefix="x")
    return ds, out, paths


def test_write_simulation__phenotype_bed_layout(written):
    ds, out, paths = written
    assert paths["bed"] == [out / "x.expression.bed.gz", out / "x.expression.bed.gz.tbi"]
    bed = pd.read_csv(out / "x.expression.bed.gz", sep="\t", dtype={"#chr": str})
    samples = list(ds["sample_id"].values)
    assert list(bed.columns) == ["#chr", "start", "end", "phenotype_id", *samples]
    key = list(zip(bed["#chr"].map({"1": 0, "2": 1}), bed["start"], strict=True))
    assert key == sorted(key)
    order = pd.Index(ds["phenotype_id"].values).get_indexer(bed["phenotype_id"])
    np.testing.assert_array_equal(bed[samples].to_numpy(), ds["phenotype_values"].values[order])
    np.testing.assert_array_equal(bed["end"], ds["phenotype_end"].values[order])
    with gzip.open(out / "x.expression.bed.gz.tbi", "rb") as fh:  # BGZF: plain gzip reads it
        magic, n_ref, preset = struct.unpack("<4sii", fh.read(12))
    assert (magic, n_ref, preset) == (b"TBI\x01", 2, 0x10000)


def test_write_simulation__covariates_and_truth_layout(written):
    ds, out, _ = written
    cov = pd.read_csv(out / "x.covariates.txt", sep="\t")
    assert list(cov.columns) == ["id", *ds["sample_id"].values]
    assert list(cov["id"]) == list(ds["covariate_id"].values)
    np.testing.assert_array_equal(cov.iloc[:, 1:].to_numpy(), ds["covariate_values"].values.T)
    hidden = pd.read_csv(out / "x.hidden_factors.txt", sep="\t", index_col="id")
    np.testing.assert_array_equal(hidden.to_numpy(), ds["hidden_factor_values"].values.T)
    truth = pd.read_csv(out / "x.truth.tsv", sep="\t")
    assert list(truth.columns) == ["phenotype_id", "is_egene", "causal_variant_id", "effect_size"]
    np.testing.assert_array_equal(truth["is_egene"], ds["phenotype_is_egene"].values)
    causal = ds["phenotype_causal_variant"].values
    expected = [ds["variant_id"].values[i] if i >= 0 else None for i in causal]
    assert [None if pd.isna(v) else v for v in truth["causal_variant_id"]] == expected
    np.testing.assert_array_equal(truth["effect_size"], ds["phenotype_effect_size"].values)


def test_write_simulation__zarr_store_reopens_with_data_model(written):
    ds, out, _ = written
    z = xr.open_zarr(out / "x.vcz", consolidated=False)
    for name in ("call_genotype", "call_genotype_mask", "variant_contig", "variant_position",
                 "variant_id", "variant_allele", "sample_id", "contig_id"):
        assert name in z
    assert "phenotype_values" not in z
    assert z["call_genotype"].chunks[0][0] == 128
    assert z["variant_id"].chunks[0][0] == 128
    np.testing.assert_array_equal(z["call_genotype"].values, ds["call_genotype"].values)
    np.testing.assert_array_equal(z["call_genotype_mask"].values, ds["call_genotype"].values < 0)
    np.testing.assert_array_equal(z["variant_position"].values, ds["variant_position"].values)
    assert list(z["variant_allele"].values[:, 1]) == list(ds["variant_allele"].values[:, 1])
    assert list(z["contig_id"].values) == ["1", "2"]
    assert z.attrs["seed"] == 21


def test_write_simulation__pgen_same_dosages(written):
    ds, out, _ = written
    reader = pgenlib.PgenReader(str(out / "x.pgen").encode())
    n_var, n_samples = ds.sizes["variants"], ds.sizes["samples"]
    assert (reader.get_variant_ct(), reader.get_raw_sample_ct()) == (n_var, n_samples)
    buf = np.empty((n_var, n_samples), dtype=np.int8)
    reader.read_range(0, n_var, buf)
    reader.close()
    expected = np.nan_to_num(_dosage(ds), nan=-9).astype(np.int8)
    np.testing.assert_array_equal(buf, expected)
    pvar = pd.read_csv(out / "x.pvar", sep="\t", dtype={"#CHROM": str})
    assert list(pvar.columns) == ["#CHROM", "POS", "ID", "REF", "ALT"]
    np.testing.assert_array_equal(pvar["ALT"], ds["variant_allele"].values[:, 1])
    psam = pd.read_csv(out / "x.psam", sep="\t")
    assert list(psam["#IID"]) == list(ds["sample_id"].values)


def test_write_simulation__vcf_genotypes_match(written):
    ds, out, _ = written
    with gzip.open(out / "x.vcf.gz", "rt") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "##fileformat=VCFv4.3"
    body = [ln.split("\t") for ln in lines if not ln.startswith("#")]
    header = next(ln for ln in lines if ln.startswith("#CHROM")).split("\t")
    assert header[9:] == list(ds["sample_id"].values)
    assert len(body) == ds.sizes["variants"]
    gt = ds["call_genotype"].values
    code = {"0/0": 0, "0/1": 1, "1/0": 1, "1/1": 2, "./.": -9}
    got = np.array([[code[c] for c in row[9:]] for row in body])
    np.testing.assert_array_equal(got, np.nan_to_num(_dosage(ds), nan=-9))
    assert [int(r[1]) for r in body] == list(ds["variant_position"].values)
    assert gt.shape[0] == len(body)
    with gzip.open(out / "x.vcf.gz.tbi", "rb") as fh:
        magic, n_ref, preset = struct.unpack("<4sii", fh.read(12))
    assert (magic, n_ref, preset) == (b"TBI\x01", 2, 2)


def test_write_simulation__unknown_format_raises_and_writes_nothing(tmp_path):
    ds = simulate(**SMALL, seed=1)
    with pytest.raises(InputError, match="formats"):
        write_simulation(ds, tmp_path / "out", formats=("zarr", "bam"))
    assert not (tmp_path / "out").exists()
    haploid = simulate(**SMALL, seed=1, ploidy=1)
    with pytest.raises(InputError, match="pgen"):
        write_simulation(haploid, tmp_path / "out", formats=("bed", "pgen"))
    assert not (tmp_path / "out").exists()


def test_bgzf_writer__virtual_offsets_address_the_written_bytes(tmp_path):
    path = tmp_path / "x.gz"
    rng = np.random.default_rng(0)
    records = [rng.bytes(int(rng.integers(1, 40_000))) for _ in range(12)]
    offsets = []
    with open(path, "wb") as raw, BgzfWriter(raw) as fh:
        for rec in records:
            offsets.append(fh.tell())
            fh.write(rec)
    data = path.read_bytes()
    assert gzip.decompress(data) == b"".join(records)
    # decode each block: virtual offset (block start << 16 | in-block offset) -> stream offset
    starts, pos = {}, 0
    total = 0
    while pos < len(data):
        bsize = struct.unpack("<H", data[pos + 16 : pos + 18])[0] + 1
        isize = struct.unpack("<I", data[pos + bsize - 4 : pos + bsize])[0]
        assert bsize <= 65536
        starts[pos] = total
        total += isize
        pos += bsize
    flat = np.cumsum([0] + [len(r) for r in records])[:-1]
    for voff, expected in zip(offsets, flat, strict=True):
        assert starts[voff >> 16] + (voff & 0xFFFF) == expected
