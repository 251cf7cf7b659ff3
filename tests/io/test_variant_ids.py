"""Variant IDs (dqtl.io.variant_ids): missing IDs named at open, lookups a chunk at a time."""

from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from dqtl.errors import InputError
from dqtl.io.convert import convert
from dqtl.io.genotypes import open_genotypes
from dqtl.io.variant_ids import ids_at, variant_rows
from tests.conftest import REFERENCE

HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=chr1>\n"
          '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3\n")


def _no_compute(*args, **kwargs):
    raise AssertionError("dask computed something while opening the store")


@pytest.fixture(scope="module")
def dot_store(tmp_path_factory):
    """A VCF with missing IDs ('.'), one of them at a multiallelic site."""
    d = tmp_path_factory.mktemp("ids")
    vcf = d / "dot.vcf"
    vcf.write_text(HEADER + "".join([
        "chr1\t100\t.\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\n",
        "chr1\t200\trs2\tC\tT\t.\t.\t.\tGT\t0/0\t0/1\t1/1\n",
        "chr1\t300\t.\tG\tT,C\t.\t.\t.\tGT\t0/2\t1/2\t0/0\n",
        "chr1\t400\t.\tT\tA\t.\t.\t.\tGT\t1/1\t0/1\t0/0\n",
        "chr1\t500\trs5\tC\tG,A\t.\t.\t.\tGT\t0/1\t0/2\t1/1\n",
    ]))
    return convert(vcf, d / "dot.vcz", show_progress=False)


def test_missing_ids_are_named_at_open_lazily_and_counted(dot_store, tmp_path, caplog):
    vcf = tmp_path / "bi.vcf"
    vcf.write_text(HEADER + "chr1\t100\t.\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\n"
                   "chr1\t200\trs2\tC\tT\t.\t.\t.\tGT\t0/0\t0/1\t1/1\n")
    with caplog.at_level(logging.WARNING, logger="dqtl"), dask.config.set(scheduler=_no_compute):
        bi = open_genotypes(convert(vcf, tmp_path / "bi.vcz", show_progress=False))
    # the store's variant_id_mask gives the count; the IDs are named when they are read
    assert any("1 of 2 variants have no ID" in r.getMessage() for r in caplog.records)
    assert bi["variant_id"].values.astype(str).tolist() == ["chr1:100:A:G", "rs2"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dqtl"), dask.config.set({"dqtl.multiallelic": "split"}):
        ids = open_genotypes(dot_store)["variant_id"].values.astype(str).tolist()
    # split records get their own REF:ALT; an ID'd multiallelic record is split as ID_ALT
    assert ids == ["chr1:100:A:G", "rs2", "chr1:300:G:T", "chr1:300:G:C", "chr1:400:T:A", "rs5_G", "rs5_A"]
    assert any("4 of 7 variants have no ID" in r.getMessage() for r in caplog.records)
    with dask.config.set({"dqtl.multiallelic": "keep"}):  # the store as it is (inspecting a conversion)
        kept = open_genotypes(dot_store)["variant_id"].values.astype(str).tolist()
    assert kept == [".", "rs2", ".", ".", "rs5"]


def test_missing_ids_in_memory_and_without_a_mask():
    n = 6
    ds = xr.Dataset({
        "call_genotype": (("variants", "samples", "ploidy"), np.zeros((n, 3, 2), np.int8)),
        "variant_contig": ("variants", np.zeros(n, int)),
        "variant_position": ("variants", np.arange(1, n + 1) * 10),
        "variant_allele": (("variants", "alleles"), np.array([["A", "G"]] * n, object)),
        "variant_id": ("variants", np.array(["a", ".", "", "d", ".", "f"], object)),
        "contig_id": ("contigs", np.array(["7"], object)),
        "sample_id": ("samples", np.array(["x", "y", "z"], object)),
    })
    as_bytes = ds.assign(variant_id=ds["variant_id"].astype("S1"), variant_allele=ds["variant_allele"].astype("S1"))
    for src in (ds, ds.chunk({"variants": 4}), as_bytes):  # in memory, dask chunks, fixed-width bytes
        g = open_genotypes(src, chunks=2)
        ids = g["variant_id"].values.astype(str).tolist()
        assert ids == ["a", "7:20:A:G", "7:30:A:G", "d", "7:50:A:G", "f"]
        assert variant_rows(g, ["f", "7:30:A:G", "a"], source="t").tolist() == [5, 2, 0]


def _dataset(ids, chunks=None):
    n = len(ids)
    ds = xr.Dataset({
        "variant_id": ("variants", np.asarray(ids, dtype=object)),
        "variant_position": ("variants", np.arange(1, n + 1) * 100),
        "variant_contig": ("variants", np.zeros(n, int)),
        "contig_id": ("contigs", np.array(["chr9"], object)),
    })
    return ds.chunk({"variants": chunks}) if chunks else ds


@pytest.mark.parametrize("chunks", [None, 1, 7, 64])
def test_variant_rows_equal_a_dictionary_lookup(chunks):
    rng = np.random.default_rng(3)
    ids = [f"rs{i}" for i in rng.permutation(500)]
    ds = _dataset(ids, chunks)
    q = np.concatenate([rng.choice(ids, 40), ["nope", "rs999"], rng.choice(ids, 5)])
    where = {v: i for i, v in enumerate(ids)}
    np.testing.assert_array_equal(variant_rows(ds, q, source="q"), [where.get(v, -1) for v in q])
    assert variant_rows(ds, [], source="q").shape == (0,)


def test_variant_rows_duplicated_id_is_an_error_unless_a_window_resolves_it():
    ids = ["a", "dup", "b", "c", "dup", "d", "e", "dup"]
    ds = _dataset(ids, 3)
    np.testing.assert_array_equal(variant_rows(ds, ["a", "e"], source="x"), [0, 6])  # others unaffected
    with pytest.raises(InputError, match=r"x: variant ID 'dup' names 3 variants of the genotypes "
                                         r"\(chr9:200, chr9:500, chr9:800\).*bcftools annotate --set-id"):
        variant_rows(ds, ["a", "dup"], source="x")
    # the gene's window holds one of them: that one
    rows = variant_rows(ds, ["dup", "dup", "b"], source="x",
                        windows=(np.array([0, 3, 0]), np.array([3, 6, 8])))
    np.testing.assert_array_equal(rows, [1, 4, 2])
    with pytest.raises(InputError, match="names 3 variants"):  # a window with two of them
        variant_rows(ds, ["dup"], source="x", windows=(np.array([0]), np.array([5])))


def test_ids_at_reads_only_the_chunks_it_needs():
    ids = np.array([f"v{i}" for i in range(40)], dtype=object)
    np.testing.assert_array_equal(ids_at(_dataset(ids, 6), [39, 0, 7, 7, 12]),
                                  ["v39", "v0", "v7", "v7", "v12"])
    np.testing.assert_array_equal(ids_at(_dataset(ids), [3, 1]), ["v3", "v1"])
    assert ids_at(_dataset(ids, 6), []).shape == (0,)

    def chunk(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:  # rows 20-29: never to be read
            raise AssertionError("read a chunk no requested row is in")
        return block

    guarded = _dataset(ids).assign(
        variant_id=("variants", da.from_array(ids, chunks=10).map_blocks(chunk, dtype=object)))
    np.testing.assert_array_equal(ids_at(guarded, [35, 1, 19]), ["v35", "v1", "v19"])
    with pytest.raises(AssertionError, match="never|no requested"):
        ids_at(guarded, [25])


def test_bcftools_split_keeps_duplicated_ids_and_a_lookup_says_so(tmp_path):
    """'bcftools norm -m -any' keeps a split site's ID on every record (v3 twice, v8 three
    times): outputs can name those records, but a lookup by such an ID is ambiguous."""
    ds = open_genotypes(convert(REFERENCE / "multiallelic" / "split.vcf", tmp_path / "s.vcz",
                                show_progress=False))
    assert variant_rows(ds, ["v0", "v4"], source="t").tolist() == [0, 5]
    with pytest.raises(InputError, match="'v3' names 2 variants of the genotypes \\(chr1:1300, chr1:1300\\)"):
        variant_rows(ds, ["v3"], source="t")


def test_alt_counts_a_chunk_at_a_time_equal_the_whole_table():
    from dqtl.io.variant_ids import allele_present, alt_counts

    long = "ACGT" * 80  # a long indel allele: compared as an object, never copied to a str array
    al = np.array([["A", "G", ""], ["C", "T", "G"], ["G", ".", None], ["T", long, "nan"],
                   ["A", np.nan, "None"], ["C", "A", "T"]], dtype=object)
    np.testing.assert_array_equal(allele_present(al)[:, 1:], [[1, 0], [1, 1], [0, 0], [1, 0], [0, 0], [1, 1]])
    counts = [1, 2, 1, 1, 1, 2]  # a site without any ALT counts as one (biallelic)
    np.testing.assert_array_equal(alt_counts(xr.DataArray(al, dims=("variants", "alleles"))), counts)
    for chunks in ((4, 3), (1, 2)):  # chunks along variants, and along alleles too
        lazy = xr.DataArray(da.from_array(al, chunks=chunks), dims=("variants", "alleles"))
        np.testing.assert_array_equal(alt_counts(lazy), counts)
