"""Tests for dqtl.io.genotypes: opening VCF Zarr / sgkit genotype stores and Datasets."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

from dqtl.errors import InputError
from dqtl.io.convert import convert, load_genotypes
from dqtl.io.genotypes import (
    check_variant_order,
    contig_names,
    normalize_contig,
    open_genotypes,
)

GEUV = Path(str(files("dqtl.data") / "geuvadis" / "geuvadis_ceu90_maf01"))


def _no_compute(*args, **kwargs):
    raise AssertionError("dask computed something while only building a graph")


@pytest.fixture(scope="module")
def plink_store(tmp_path_factory) -> Path:
    """bio2zarr's own output: Zarr format 2, unconsolidated metadata."""
    out = tmp_path_factory.mktemp("geno") / "plink.vcz"
    return convert(f"{GEUV}.bed", out, show_progress=False, variants_chunk_size=1000)


@pytest.fixture(scope="module")
def reference(plink_store) -> xr.Dataset:
    return open_genotypes(plink_store).compute()


def simulated(n_variants: int = 6, n_samples: int = 4, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset({
        "call_genotype": (("variants", "samples", "ploidy"),
                          rng.integers(0, 2, (n_variants, n_samples, 2)).astype(np.int8)),
        "variant_contig": ("variants", np.repeat([0, 1], [n_variants // 2, n_variants - n_variants // 2])),
        "variant_position": ("variants", np.r_[np.arange(n_variants // 2),
                                               np.arange(n_variants - n_variants // 2)] * 10 + 1),
        "variant_allele": (("variants", "alleles"), np.array([["A", "G"]] * n_variants, object)),
        "variant_id": ("variants", np.array([f"v{i}" for i in range(n_variants)], object)),
        "contig_id": ("contigs", np.array(["chr1", "chr2"], object)),
        "sample_id": ("samples", np.array([f"s{i}" for i in range(n_samples)], object)),
    })


def test_open_genotypes__bio2zarr_store_is_lazy_with_small_variables_in_memory(plink_store):
    with dask.config.set(scheduler=_no_compute):
        ds = open_genotypes(plink_store)
    assert ds["call_genotype"].chunks is not None and ds["call_genotype"].dtype == np.int8
    assert ds["call_genotype"].chunks[0] == (1000, 1000, 394)
    assert ds["variant_id"].chunks is not None and ds["variant_allele"].dtype == object
    for var in ("sample_id", "contig_id", "variant_contig", "variant_position"):
        assert ds[var].chunks is None, var
    assert ds["variant_position"].dtype == np.int64
    assert ds["sample_id"].dtype == object and ds["sample_id"].values[0] == "NA06984"
    np.testing.assert_array_equal(contig_names(ds), ["1", "2"])


def test_open_genotypes__zarr_v3_consolidated_and_sharded_stores(reference, tmp_path):
    src = reference.drop_vars(["region_index"], errors="ignore")
    for var in src.variables.values():
        var.encoding.clear()
    src.to_zarr(tmp_path / "v2c.zarr", zarr_format=2, consolidated=True)
    src.to_zarr(
        tmp_path / "v3s.zarr", zarr_format=3, consolidated=False,
        encoding={"call_genotype": {"chunks": (100, 90, 2), "shards": (800, 90, 2)}},
    )
    v2_chunk = zarr.open_array(tmp_path / "v2c.zarr" / "call_genotype", mode="r").chunks[0]
    for name, outer in (("v2c.zarr", v2_chunk), ("v3s.zarr", 800)):
        ds = open_genotypes(tmp_path / name)
        assert ds["call_genotype"].chunks[0][0] == outer, name
        np.testing.assert_array_equal(ds["call_genotype"].values, reference["call_genotype"].values)
        np.testing.assert_array_equal(ds["sample_id"].values, reference["sample_id"].values)
    rechunked = open_genotypes(tmp_path / "v3s.zarr", chunks=500)
    assert rechunked["call_genotype"].chunks[0][:2] == (500, 500)
    np.testing.assert_array_equal(rechunked["call_genotype"].values, reference["call_genotype"].values)


def test_open_genotypes__in_memory_dataset_becomes_dask_backed():
    src = simulated()
    ds = open_genotypes(src, chunks=4)
    assert ds["call_genotype"].chunks[0] == (4, 2)
    np.testing.assert_array_equal(ds["call_genotype"].values, src["call_genotype"].values)
    assert ds["variant_position"].dtype == np.int64 and ds["contig_id"].values.tolist() == ["chr1", "chr2"]
    assert src["call_genotype"].chunks is None  # input not mutated
    named = open_genotypes(src.drop_vars("variant_id"))
    alleles = src["variant_allele"].values.astype(str)
    assert named["variant_id"].values.tolist() == [
        f"{c}:{p}:{a[0]}:{a[1]}" for c, p, a in zip(["chr1"] * 3 + ["chr2"] * 3, [1, 11, 21] * 2, alleles,
                                                    strict=True)]


def test_open_genotypes__call_ds_squeezed_into_float32_call_dosage(tmp_path):
    vcf = tmp_path / "ds.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr1>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        '##FORMAT=<ID=DS,Number=A,Type=Float,Description="Dosage">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3\n"
        "chr1\t100\trs1\tA\tG\t.\t.\t.\tGT:DS\t0/1:0.9\t1/1:1.8\t./.:.\n"
        "chr1\t200\t.\tC\tT,G\t.\t.\t.\tGT:DS\t0/2:0.1,0.9\t1/2:1,1\t0/0:0,0\n"
    )
    store = convert(vcf, tmp_path / "ds.vcz", show_progress=False)
    with pytest.raises(InputError, match="1 variants have more than one ALT allele"):
        open_genotypes(store)  # a run refuses the multiallelic record unless told
    import dask

    with dask.config.set({"dqtl.multiallelic": "keep"}):
        ds = open_genotypes(store)
    assert "call_DS" not in ds and ds["call_dosage"].dtype == np.float32
    assert ds["call_dosage"].dims == ("variants", "samples")
    np.testing.assert_allclose(ds["call_dosage"].values, [[0.9, 1.8, np.nan], [1.0, 2.0, 0.0]],
                               rtol=1e-6)
    assert ds["contig_id"].values.tolist() == ["chr1"]
    assert ds["variant_allele"].values.tolist() == [["A", "G", ""], ["C", "T", "G"]]


def test_open_genotypes__bad_sources_raise_input_error(tmp_path, plink_store):
    with pytest.raises(InputError, match="does not exist"):
        open_genotypes(tmp_path / "nope.vcz")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not a Zarr store"):
        open_genotypes(tmp_path / "plain")
    simulated().drop_vars("call_genotype").to_zarr(tmp_path / "nogt.zarr", zarr_format=2)
    with pytest.raises(InputError, match="has no variable call_genotype: is it a VCF Zarr store"):
        open_genotypes(tmp_path / "nogt.zarr")
    with pytest.raises(InputError, match="has no variable sample_id"):
        open_genotypes(simulated().drop_vars("sample_id"))
    dup = simulated().assign(sample_id=("samples", np.array(["a", "b", "a", "c"], object)))
    with pytest.raises(InputError, match="sample_id is not unique"):
        open_genotypes(dup)
    unsorted = simulated().assign(variant_position=("variants", np.array([1, 30, 20, 1, 2, 3])))
    with pytest.raises(InputError, match="sorted by position"):
        open_genotypes(unsorted)
    split = simulated().assign(variant_contig=("variants", np.array([0, 0, 1, 1, 0, 0])))
    with pytest.raises(InputError, match="contig 'chr1' are not contiguous"):
        open_genotypes(split)
    floats = simulated()
    floats["call_genotype"] = floats["call_genotype"].astype(float)
    with pytest.raises(InputError, match="dtype float64, expected integers"):
        open_genotypes(floats)
    with pytest.raises(InputError, match="chunks"):
        open_genotypes(plink_store, chunks=0)
    with pytest.raises(InputError, match="Zarr store path or an xarray.Dataset"):
        open_genotypes(42)  # type: ignore[arg-type]


def test_load_genotypes__converts_once_into_cache_and_reuses_it(tmp_path, reference, monkeypatch):
    ds = load_genotypes(GEUV, format="pgen", cache_dir=tmp_path)
    store = tmp_path / "geuvadis_ceu90_maf01.pgen.vcz"
    assert store.is_dir()
    np.testing.assert_array_equal(ds["call_genotype"].values, reference["call_genotype"].values)
    mtime = (store / "call_genotype").stat().st_mtime_ns
    def no_conversion(*args, **kwargs):
        raise AssertionError("the cached store should have been reused")

    monkeypatch.setattr("dqtl.io.convert.convert", no_conversion)
    again = load_genotypes(f"{GEUV}.pgen", cache_dir=tmp_path)
    assert (store / "call_genotype").stat().st_mtime_ns == mtime
    assert again.sizes == ds.sizes
    assert load_genotypes(store)["call_genotype"].shape == (2394, 90, 2)
    assert load_genotypes(simulated())["call_genotype"].chunks is not None
    # a prefix shared by pgen, bed and vcf is read as its pgen (tensorQTL's order): the cache hit
    assert load_genotypes(GEUV, cache_dir=tmp_path).sizes == ds.sizes
    # a changed input is converted again
    monkeypatch.undo()
    src = tmp_path / "src"
    src.mkdir()
    for ext in (".pgen", ".pvar", ".psam"):
        shutil.copy(f"{GEUV}{ext}", src / f"g{ext}")
    first = load_genotypes(src / "g", cache_dir=tmp_path / "c2")
    assert "call_dosage" not in first
    psam = (src / "g.psam").read_text().replace("NA06984", "NA00001")
    (src / "g.psam").write_text(psam)
    assert load_genotypes(src / "g", cache_dir=tmp_path / "c2")["sample_id"].values[0] == "NA00001"


def test_check_variant_order__accepts_sorted_blocks_in_any_contig_order():
    check_variant_order(np.array([1, 1, 0, 0]), np.array([5, 9, 1, 2]), np.array(["a", "b"]),
                        source="x")
    with pytest.raises(InputError, match="variant 3 on contig 'a' at position 1"):
        check_variant_order(np.array([1, 1, 0, 0]), np.array([5, 9, 2, 1]), np.array(["a", "b"]),
                            source="x")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("chr1", "1"), ("1", "1"), ("CHR22", "22"), ("Chrx", "X"), ("chrM", "MT"), ("M", "MT"),
     ("MT", "MT"), ("chrMT", "MT"), ("chr", "chr"), ("GL000192.1", "GL000192.1"), (7, "7")],
)
def test_normalize_contig__strips_chr_and_unifies_mito(name, expected):
    assert normalize_contig(name) == expected
