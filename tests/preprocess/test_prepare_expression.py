"""Tests of dqtl.preprocess.expression.prepare_expression against GTEx and by definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from dqtl.errors import InputError
from dqtl.io.phenotypes import read_phenotype_bed
from dqtl.preprocess.expression import (
    check_bed_output,
    prepare_expression,
    write_phenotype_bed,
)
from dqtl.preprocess.rank_normalize import quantile_normalize
from dqtl.simulate_counts import SAMPLE_BLOCK, simulate_counts

GTEX = Path(__file__).resolve().parents[1] / "reference" / "gtex_prepare_expression"


@pytest.fixture(scope="module")
def sim():
    return simulate_counts(800, 90, seed=5, n_outliers=2, n_sex_swaps=2)


def _values(res) -> pd.DataFrame:
    return res.bed.set_index("gene_id").iloc[:, 3:]


# ------------------------------------------------------------------------------------ GTEx
def test_prepare_expression__matches_gtex_eqtl_prepare_expression() -> None:
    """Filters, TMM factors and INT values equal GTEx's pipeline (pyqtl 0.1.10) on the same data."""
    counts = pd.read_csv(GTEX / "counts.tsv.gz", sep="\t", index_col=0)
    tpm = pd.read_csv(GTEX / "tpm.tsv.gz", sep="\t", index_col=0)
    ann = simulate_counts(400, 60, seed=7, n_outliers=1, n_sex_swaps=1, fraction_low=0.35).annotation
    res = prepare_expression(counts, tpm=tpm, annotation=ann, run_qc=False)
    expressed = pd.read_csv(GTEX / "expressed.tsv", sep="\t", index_col=0)["expressed"]
    assert res.expressed.equals(expressed.rename("expressed")) and 0 < expressed.sum() < len(expressed)
    nf = pd.read_csv(GTEX / "norm_factors.tsv", sep="\t", index_col=0)["norm_factor"]
    np.testing.assert_allclose(res.norm_factors.to_numpy(), nf.to_numpy(), rtol=1e-13, atol=0)
    want = pd.read_csv(GTEX / "expected_int.tsv.gz", sep="\t", index_col=0)
    got = _values(res).loc[want.index, want.columns]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-13, atol=1e-15)
    assert len(res.bed) == len(want)


# ------------------------------------------------------------------------------------ definitions
@pytest.mark.parametrize("offset", ["van_der_waerden", "rankit", "blom", 0.25])
def test_prepare_expression__int_per_gene_exact(sim, offset) -> None:
    res = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation, run_qc=False,
                             int_offset=offset)
    a, b = {"van_der_waerden": (0.0, 1.0), "rankit": (0.5, 0.0), "blom": (0.375, 0.25),
            0.25: (0.25, 0.5)}[offset]
    lib = sim.counts.sum().to_numpy(dtype=float) * res.norm_factors.to_numpy()
    vals = _values(res)
    cpm = sim.counts.loc[vals.index].to_numpy() / lib * 1e6
    r = scipy.stats.rankdata(cpm, axis=1, method="average")
    want = scipy.stats.norm.ppf((r - a) / (cpm.shape[1] + b))
    np.testing.assert_allclose(vals.to_numpy(), want, rtol=1e-12, atol=1e-14)
    # ties (zeros) share their average rank
    row = int(np.argmax((cpm == 0).sum(axis=1)))
    assert (cpm[row] == 0).sum() > 1 and np.unique(vals.to_numpy()[row][cpm[row] == 0]).size == 1


def test_prepare_expression__dask_blocks_bit_identical(sim) -> None:
    mem = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation, run_qc=False,
                             samples_chunk_size=None)
    blocked = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation, run_qc=False,
                                 samples_chunk_size=7)
    assert blocked.params["samples_chunk_size"] == 7
    pd.testing.assert_frame_equal(mem.bed, blocked.bed, check_exact=True)
    np.testing.assert_array_equal(mem.norm_factors, blocked.norm_factors)


def test_prepare_expression__bed_layout_sorted_at_tss(sim) -> None:
    res = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation, run_qc=False,
                             chrom_prefix="strip")
    bed = res.bed
    assert list(bed.columns[:4]) == ["#chr", "start", "end", "gene_id"]
    assert list(bed.columns[4:]) == list(sim.counts.columns)
    ann = sim.annotation.loc[bed["gene_id"]]
    np.testing.assert_array_equal(bed["end"], ann["tss"])
    np.testing.assert_array_equal(bed["start"], ann["tss"] - 1)
    assert list(pd.unique(bed["#chr"])) == ["1", "2", "3", "X", "Y"]
    for _, grp in bed.groupby("#chr", sort=False):
        assert grp["start"].is_monotonic_increasing
    # only genes passing the filter, all of them annotated
    assert set(bed["gene_id"]) == set(res.expressed.index[res.expressed])


def test_prepare_expression__chromosome_subset_and_missing_annotation(sim, caplog) -> None:
    ann = sim.annotation.drop(index=sim.annotation.index[:5])
    res = prepare_expression(sim.counts, tpm=sim.tpm, annotation=ann, run_qc=False,
                             chromosomes=["1", "chrX"], chrom_prefix="add")
    assert set(res.bed["#chr"]) == {"chr1", "chrX"}
    assert not set(sim.annotation.index[:5]) & set(res.bed["gene_id"])
    assert "have no annotation" in caplog.text


def test_prepare_expression__gene_versions_matched_loosely(sim) -> None:
    ann = sim.annotation.copy()
    ann.index = [f"{g}.3" for g in ann.index]
    res = prepare_expression(sim.counts, tpm=sim.tpm, annotation=ann, run_qc=False)
    assert res.expressed.sum() == len(res.bed)


@pytest.mark.parametrize("normalization", ["cpm", "qn", "none"])
def test_prepare_expression__other_normalizations(sim, normalization) -> None:
    res = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation, run_qc=False,
                             normalization=normalization, int_offset=None)
    vals = _values(res)
    genes = vals.index
    if normalization == "cpm":
        want = sim.counts.loc[genes] / sim.counts.sum() * 1e6
    elif normalization == "none":
        want = sim.counts.loc[genes].astype(float)
    else:  # quantile-normalised TPM of the expressed genes (GTEx 'qn')
        want = quantile_normalize(sim.tpm.loc[genes])
    np.testing.assert_allclose(vals.to_numpy(), want.loc[vals.index].to_numpy(), rtol=1e-13)
    assert (res.norm_factors == 1).all()


# ------------------------------------------------------------------------------------ QC, samples
def test_prepare_expression__exclude_flagged_only_when_asked(sim) -> None:
    flagged = sorted(sim.truth.index[sim.truth["outlier"] | sim.truth["sex_swapped"]])
    kept = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation,
                              reported_sex=sim.reported_sex)
    assert sorted(kept.qc.flagged) == flagged and kept.excluded_samples == []
    assert set(flagged) <= set(kept.bed.columns)
    out = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation,
                             reported_sex=sim.reported_sex, exclude_flagged=True)
    assert sorted(out.excluded_samples) == flagged
    assert not set(flagged) & set(out.bed.columns)
    assert out.qc.table.loc[flagged, "excluded"].all()
    # same as normalising the remaining samples from the start
    rest = [s for s in sim.counts.columns if s not in flagged]
    ref = prepare_expression(sim.counts[rest], tpm=sim.tpm[rest], annotation=sim.annotation,
                             run_qc=False)
    pd.testing.assert_frame_equal(out.bed, ref.bed)


def test_prepare_expression__participants_and_sex_by_participant(sim) -> None:
    lookup = pd.Series([f"P{s[1:]}" for s in sim.counts.columns], index=sim.counts.columns)
    sex = sim.reported_sex.copy()
    sex.index = lookup.loc[sex.index].to_numpy()
    res = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation,
                             sample_participant=lookup, reported_sex=sex)
    assert list(res.bed.columns[4:]) == lookup.tolist()
    assert sorted(res.qc.flagged) == sorted(sim.truth.index[sim.truth["outlier"] | sim.truth["sex_swapped"]])
    ds = res.to_dataset()
    assert ds.sizes["samples"] == sim.counts.shape[1] and ds["sample_id"].values[0] == "P00001"


# ------------------------------------------------------------------------------------ bad inputs
def _bad_counts(sim, kind: str) -> pd.DataFrame:
    c = sim.counts.copy()
    if kind == "negative":
        c.iloc[3, 4] = -1
    elif kind == "non-integer":
        c = c.astype(float)
        c.iloc[3, 4] = 2.5
    elif kind == "duplicated genes":
        c.index = [c.index[0]] + list(c.index[:-1])
    elif kind == "empty":
        c = c.iloc[:, :0]
    return c


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("negative", "1 negative counts .first at gene G000004, sample S00005"),
        ("non-integer", "1 non-integer counts .first at gene G000004, sample S00005"),
        ("duplicated genes", "duplicated gene ids"),
        ("empty", "empty matrix .800 genes x 0 samples"),
    ],
)
def test_prepare_expression__bad_counts_one_clear_error(sim, kind: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        prepare_expression(_bad_counts(sim, kind), annotation=sim.annotation, run_qc=False)


def test_prepare_expression__bad_inputs_one_clear_error(sim) -> None:
    lookup = pd.Series("P", index=sim.counts.columns[:-2])
    with pytest.raises(InputError, match="2 of 90 expression samples are missing from it .e.g. S00089"):
        prepare_expression(sim.counts, annotation=sim.annotation, sample_participant=lookup)
    same = pd.Series("P", index=sim.counts.columns)
    with pytest.raises(InputError, match="same participant"):
        prepare_expression(sim.counts, annotation=sim.annotation, sample_participant=same)
    with pytest.raises(InputError, match="same samples"):
        prepare_expression(sim.counts, tpm=sim.tpm.iloc[:, 1:], annotation=sim.annotation)
    other = sim.annotation.set_axis([f"X{i}" for i in range(len(sim.annotation))])
    with pytest.raises(InputError, match="none of the .* expressed genes is in the annotation"):
        prepare_expression(sim.counts, annotation=other, run_qc=False)
    with pytest.raises(InputError, match="no gene passes the expression filters"):
        prepare_expression(sim.counts, annotation=sim.annotation, count_threshold=1e12, run_qc=False)
    with pytest.raises(InputError, match="normalization"):
        prepare_expression(sim.counts, annotation=sim.annotation, normalization="rle")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="int_offset"):
        prepare_expression(sim.counts, annotation=sim.annotation, int_offset="median")
    with pytest.raises(InputError, match="pass the TPM matrix"):
        prepare_expression(sim.counts, annotation=sim.annotation, normalization="qn", run_qc=False)
    with pytest.raises(InputError, match="reported sex: none of its"):
        prepare_expression(sim.counts, annotation=sim.annotation,
                           reported_sex=pd.Series(["F"], index=["nobody"]))


# ------------------------------------------------------------------------------------ writing
@pytest.mark.parametrize("name", ["out.bed.gz", "out.bed", "out.bed.parquet"])
def test_write_phenotype_bed__round_trip(sim, tmp_path: Path, name: str) -> None:
    res = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation, run_qc=False)
    path = write_phenotype_bed(res.bed, tmp_path / name)
    ds = read_phenotype_bed(path)
    np.testing.assert_array_equal(ds["phenotype_values"].values, _values(res).to_numpy())
    assert ds["phenotype_id"].values.tolist() == res.bed["gene_id"].tolist()
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_check_bed_output__suffixes() -> None:
    assert [check_bed_output(n) for n in ("a.bed.gz", "a.bed", "a.bed.parquet")] == ["gz", "text", "parquet"]
    with pytest.raises(InputError, match=r"\.bed\.gz"):
        check_bed_output("a.tsv")


# ------------------------------------------------------------------------------------ simulator
def test_simulate_counts__seeded_and_sample_block_invariant() -> None:
    a = simulate_counts(300, SAMPLE_BLOCK + 5, seed=4, n_outliers=0)
    b = simulate_counts(300, SAMPLE_BLOCK + 5, seed=4, n_outliers=0)
    pd.testing.assert_frame_equal(a.counts, b.counts)
    c = simulate_counts(300, SAMPLE_BLOCK + 5, seed=5, n_outliers=0)
    assert not a.counts.equals(c.counts)
    assert a.counts.dtypes.eq(np.int64).all() and (a.counts >= 0).all().all()
    np.testing.assert_allclose(a.tpm.sum(), 1e6)
    xist = a.annotation.index[a.annotation["gene_name"] == "XIST"][0]
    female = a.truth["true_sex"] == "F"
    assert a.counts.loc[xist, female].min() > a.counts.loc[xist, ~female].max()
    with pytest.raises(InputError, match="n_samples"):
        simulate_counts(300, 2, seed=0)


def test_prepare_expression__gene_blocks_in_threads_bit_identical(sim, monkeypatch) -> None:
    """CPM + INT by blocks of genes in a thread pool give the numbers of one block."""
    import dqtl.preprocess.expression as pe

    one = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation, run_qc=False)
    monkeypatch.setattr(pe, "_AUTO_BLOCK", 40 * sim.counts.shape[1])  # 40 genes per block
    assert len(pe._row_blocks(int(one.expressed.sum()), sim.counts.shape[1])) > 10
    many = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation, run_qc=False,
                              samples_chunk_size=None)
    pd.testing.assert_frame_equal(one.bed, many.bed, check_exact=True)
