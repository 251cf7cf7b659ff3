"""Tests for dqtl.io.convert: VCF/PLINK 1/PLINK 2/BGEN -> VCF Zarr."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pgenlib
import pytest

from dqtl.errors import InputError
from dqtl.io.convert import GenotypeInput, convert, resolve_input
from dqtl.io.genotypes import open_genotypes

GEUV = Path(str(files("dqtl.data") / "geuvadis" / "geuvadis_ceu90_maf01"))
DATA = Path(__file__).resolve().parents[1] / "data" / "genotypes"
MISSING_SNPS = ["snp_1_79772", "snp_1_82676", "snp_1_135032", "snp_1_172595", "snp_1_534198"]


def dosage(ds) -> np.ndarray:
    """ALT dosage from hard calls: count of alleles > 0, NaN where any allele is missing."""
    g = np.asarray(ds["call_genotype"].values)
    d = (g > 0).sum(-1).astype(np.float64)
    d[(g < 0).any(-1)] = np.nan
    return d


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("geuvadis")
    return {
        "vcf": convert(f"{GEUV}.vcf.gz", out / "vcf.vcz", show_progress=False,
                       variants_chunk_size=1000),
        "plink": convert(f"{GEUV}.bed", out / "plink.vcz", show_progress=False,
                         variants_chunk_size=1000),
        "pgen": convert(GEUV, out / "pgen.vcz", format="pgen", show_progress=False,
                        variants_chunk_size=1000),
    }


def copy_plink(dst: Path) -> Path:
    for ext in (".bed", ".bim", ".fam"):
        shutil.copy(f"{GEUV}{ext}", dst / f"g{ext}")
    return dst / "g"


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ----------------------------------------------------------------------------- conversions


def test_convert__geuvadis_dosages_identical_across_vcf_plink_pgen(stores):
    ref = open_genotypes(stores["vcf"])
    assert ref.sizes["variants"] == 2394 and ref.sizes["samples"] == 90
    d_ref = dosage(ref)
    assert np.isnan(d_ref).sum() == 5 * 13
    ids = ref["variant_id"].values.astype(str)
    assert sorted(ids[np.isnan(d_ref).any(1)]) == sorted(MISSING_SNPS)
    for fmt in ("plink", "pgen"):
        ds = open_genotypes(stores[fmt])
        np.testing.assert_array_equal(dosage(ds), d_ref)
        np.testing.assert_array_equal(ds["variant_id"].values.astype(str), ids)
        np.testing.assert_array_equal(ds["variant_position"].values, ref["variant_position"].values)
        np.testing.assert_array_equal(
            ds["variant_allele"].values.astype(str), ref["variant_allele"].values.astype(str)
        )
        np.testing.assert_array_equal(ds["sample_id"].values, ref["sample_id"].values)
        np.testing.assert_array_equal(ds["contig_id"].values, ["1", "2"])
        np.testing.assert_array_equal(ds["variant_contig"].values, ref["variant_contig"].values)


def test_convert__plink_a1_is_alt_and_counted(stores):
    ds = open_genotypes(stores["plink"])
    bim = np.loadtxt(f"{GEUV}.bim", dtype=str)
    alleles = ds["variant_allele"].values.astype(str)
    np.testing.assert_array_equal(alleles[:, 1], bim[:, 4])  # ALT = A1
    np.testing.assert_array_equal(alleles[:, 0], bim[:, 5])  # REF = A2
    # independent decode of the .bed: 2-bit codes 00 = 2 x A1, 10 = 1, 11 = 0, 01 = missing
    n, m = 90, len(bim)
    raw = np.fromfile(f"{GEUV}.bed", dtype=np.uint8)[3:].reshape(m, -1)
    codes = (raw[:, :, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
    codes = codes.reshape(m, -1)[:, :n]
    a1 = np.array([2.0, np.nan, 1.0, 0.0])[codes]
    np.testing.assert_array_equal(dosage(ds), a1)


def test_convert__pgen_without_dosages_has_no_call_dosage(stores):
    ds = open_genotypes(stores["pgen"])
    assert "call_dosage" not in ds
    assert ds.attrs["dqtl_source"]["format"] == "pgen"
    assert ds["call_genotype"].chunks[0][0] == 1000


def write_pgen(prefix: Path, *, dosages: bool) -> None:
    """A 4-sample PLINK 2 fileset: dosages, or multiallelic + phased hard calls."""
    if dosages:
        w = pgenlib.PgenWriter(f"{prefix}.pgen".encode(), 4, variant_ct=3, nonref_flags=False,
                               dosage_present=True)
        w.append_dosages(np.array([0.0, 0.5, 1.9, -9], dtype=np.float32))
        w.append_dosages(np.array([2.0, 1.0, 0.0, 0.25], dtype=np.float32))
        w.append_biallelic(np.array([2, 1, 0, -9], dtype=np.int8))
        pvar = "1\t10\tv1\tA\tC\n1\t20\tv2\tG\tT\n2\t5\tv3\tC\tG\n"
    else:
        w = pgenlib.PgenWriter(f"{prefix}.pgen".encode(), 4, variant_ct=3, nonref_flags=False,
                               allele_ct_limit=3, hardcall_phase_present=True)
        w.append_alleles(np.array([0, 1, 1, 1, -9, -9, 0, 0], np.int32), all_phased=False)
        w.append_partially_phased(np.array([0, 2, 2, 1, 0, 0, 1, 0], np.int32),
                                  np.array([True, True, False, False]))
        w.append_alleles(np.array([1, 0, 0, 0, 0, 1, 1, 1], np.int32), all_phased=True)
        pvar = "chr1\t10\tv1\tA\tC\nchr1\t20\t.\tG\tT,C\nchr2\t5\tv3\tC\tG\n"
    w.close()
    Path(f"{prefix}.pvar").write_text("##fileformat=PVARv1.0\n#CHROM\tPOS\tID\tREF\tALT\n" + pvar)
    Path(f"{prefix}.psam").write_text("#FID\tIID\tSEX\nf1\tS1\t1\nf1\tS2\t2\nf2\tS3\tNA\nf2\tS4\t1\n")


def test_convert__pgen_dosages_become_call_dosage(tmp_path):
    write_pgen(tmp_path / "d", dosages=True)
    ds = open_genotypes(convert(tmp_path / "d", tmp_path / "d.vcz", show_progress=False))
    expected = np.array([[0, 0.5, 1.9, np.nan], [2, 1, 0, 0.25], [2, 1, 0, np.nan]])
    np.testing.assert_allclose(ds["call_dosage"].values, expected, atol=1 / 16384)
    assert ds["call_dosage"].dtype == np.float32
    # hard calls as pgenlib makes them: dosages > 0.1 from an integer are missing calls
    np.testing.assert_array_equal(
        dosage(ds), [[0, np.nan, 2, np.nan], [2, 1, 0, np.nan], [2, 1, 0, np.nan]]
    )
    np.testing.assert_array_equal(ds["sample_id"].values, ["S1", "S2", "S3", "S4"])


def test_convert__pgen_multiallelic_phased_keeps_allele_codes_and_contig_names(tmp_path):
    import dask

    write_pgen(tmp_path / "m", dosages=False)
    store = convert(tmp_path / "m.pgen", tmp_path / "m.vcz", show_progress=False)
    with pytest.raises(InputError, match="more than one ALT allele"):  # a run would refuse it
        open_genotypes(store)
    with dask.config.set({"dqtl.multiallelic": "keep"}):  # the conversion itself keeps every code
        ds = open_genotypes(store)
    assert ds["call_genotype"].values.tolist() == [
        [[0, 1], [1, 1], [-1, -1], [0, 0]],
        [[0, 2], [2, 1], [0, 0], [0, 1]],  # an unphased het is stored REF-first
        [[1, 0], [0, 0], [0, 1], [1, 1]],
    ]
    # phase is known for heterozygous calls only
    assert ds["call_genotype_phased"].values.tolist() == [
        [False, False, False, False], [True, True, False, False], [True, False, True, False]
    ]
    assert ds["variant_allele"].values.astype(str).tolist() == [
        ["A", "C", ""], ["G", "T", "C"], ["C", "G", ""]
    ]
    assert ds["variant_id"].values.astype(str).tolist() == ["v1", ".", "v3"]
    assert ds["variant_id_mask"].values.tolist() == [False, True, False]
    assert ds["contig_id"].values.tolist() == ["chr1", "chr2"]
    assert "call_dosage" not in ds


def test_convert__bgen_geuvadis_subset_matches_vcf(stores, tmp_path):
    ref = open_genotypes(stores["vcf"])
    ds = open_genotypes(convert(DATA / "geuvadis_subset.bgen", tmp_path / "b.vcz",
                                show_progress=False))
    ids = ds["variant_id"].values.astype(str)
    assert ds.sizes["variants"] == 40 and set(MISSING_SNPS) <= set(ids)
    ref_ids = list(ref["variant_id"].values.astype(str))
    idx = np.array([ref_ids.index(i) for i in ids])
    np.testing.assert_array_equal(ds["call_dosage"].values, dosage(ref)[idx])
    np.testing.assert_array_equal(dosage(ds), dosage(ref)[idx])
    np.testing.assert_array_equal(ds["variant_position"].values, ref["variant_position"].values[idx])
    np.testing.assert_array_equal(
        ds["variant_allele"].values.astype(str), ref["variant_allele"].values.astype(str)[idx]
    )
    np.testing.assert_array_equal(ds["sample_id"].values, ref["sample_id"].values)


def test_convert__bgen_probabilities_to_dosage_and_hard_calls(tmp_path):
    import dask

    with dask.config.set({"dqtl.multiallelic": "keep"}):  # its third variant has two ALT alleles
        ds = open_genotypes(convert(DATA / "mixed", tmp_path / "m.vcz", format="bgen",
                                    show_progress=False))
    np.testing.assert_array_equal(ds["sample_id"].values, ["s1", "s2", "s3", "s4"])  # .sample
    expected = np.array([
        [0.2 + 2 * 0.1, 0.3 + 2 * 0.6, np.nan, 1.0],  # unphased: P(het) + 2 P(hom ALT)
        [1.0, 0.8 + 0.1, 2.0, 0.0],  # phased: sum over haplotypes of P(ALT)
        [0.0, 0.9 * 1 + 0.1 * 2, 0.5 * 1 + 0.5 * 2, 2.0],  # triallelic: non-REF count
        [0.75, 0.0, 2.0, 1.0],  # s1 haploid
    ])
    np.testing.assert_allclose(ds["call_dosage"].values, expected, atol=1e-4)
    assert ds["call_genotype"].values.tolist() == [
        [[0, 0], [1, 1], [-1, -1], [0, 1]],
        [[0, 1], [1, 0], [1, 1], [0, 0]],
        [[0, 0], [0, 2], [0, 1], [2, 2]],
        [[1, -2], [0, 0], [1, 1], [0, 1]],
    ]
    assert ds["call_genotype_phased"].values[1].all() and not ds["call_genotype_phased"].values[0].any()
    assert ds["variant_id"].values.astype(str).tolist() == ["rs1", "rs2", "v3", "rs4"]
    assert ds["variant_allele"].values.astype(str)[2].tolist() == ["A", "C", "T"]
    assert ds["contig_id"].values.tolist() == ["chr1", "chrX"]


def test_convert__zarr_format_3_and_worker_processes_give_same_store(stores, tmp_path):
    ref = open_genotypes(stores["pgen"])
    out = convert(GEUV.with_suffix(".pgen"), tmp_path / "v3.vcz", zarr_format=3,
                  worker_processes=2, variants_chunk_size=500, show_progress=False)
    assert (out / "zarr.json").is_file() and not (out / ".zgroup").exists()
    ds = open_genotypes(out)
    assert ds["call_genotype"].chunks[0][:4] == (500, 500, 500, 500)
    np.testing.assert_array_equal(ds["call_genotype"].values, ref["call_genotype"].values)
    np.testing.assert_array_equal(ds["variant_id"].values.astype(str),
                                  ref["variant_id"].values.astype(str))
    plink3 = open_genotypes(convert(f"{GEUV}.bed", tmp_path / "p3.vcz", zarr_format=3,
                                    show_progress=False))
    np.testing.assert_array_equal(plink3["call_genotype"].values, ref["call_genotype"].values)


def test_convert__force_replaces_existing_store(stores, tmp_path):
    out = convert(DATA / "mixed.bgen", tmp_path / "x.vcz", show_progress=False)
    with pytest.raises(InputError, match="already exists"):
        convert(GEUV.with_suffix(".pgen"), out, show_progress=False)
    import dask

    with dask.config.set({"dqtl.multiallelic": "drop"}):  # mixed.bgen has a 2-ALT variant
        assert open_genotypes(out).sizes["variants"] == 3
    convert(GEUV.with_suffix(".pgen"), out, force=True, show_progress=False)
    assert open_genotypes(out).sizes["variants"] == 2394
    assert leftovers(tmp_path, set()) == ["x.vcz"]


# ----------------------------------------------------------------------------- input resolution


def test_resolve_input__file_prefix_and_format():
    assert resolve_input(f"{GEUV}.bim").format == "plink"
    assert resolve_input(GEUV).format == "pgen"  # pgen, bed and vcf share it: tensorQTL's order
    gi = resolve_input(GEUV, format="pgen")
    assert gi == GenotypeInput("pgen", GEUV.with_suffix(".pgen"))
    assert gi.files["pvar"].name.endswith(".pvar") and gi.files["psam"].name.endswith(".psam")
    assert resolve_input(f"{GEUV}.vcf.gz").files["index"].name.endswith(".tbi")
    assert resolve_input(DATA / "mixed").files["sample"].name == "mixed.sample"
    assert "sample" not in resolve_input(DATA / "geuvadis_subset.bgen").files


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(tmp: Path) -> dict[str, tuple[dict, str]]:
    """name -> (convert kwargs, message pattern); files prepared in ``tmp``."""
    cases: dict[str, tuple[dict, str]] = {}
    cases["missing_file"] = ({"input": tmp / "nothing.bed"}, "does not exist")
    cases["missing_prefix"] = ({"input": tmp / "nothing"}, "no such file, and no genotype files")
    d = tmp / "trunc"
    d.mkdir()
    p = copy_plink(d)
    data = Path(f"{p}.bed").read_bytes()
    Path(f"{p}.bed").write_bytes(data[: len(data) // 2])
    cases["truncated_bed"] = ({"input": f"{p}.bed"}, r"bytes, expected 55065 .*truncated")
    d = tmp / "garbage"
    d.mkdir()
    p = copy_plink(d)
    Path(f"{p}.bed").write_bytes(b"this is not a bed file" * 2500)
    cases["garbage_bed"] = ({"input": f"{p}.bed"}, "not a PLINK 1 .bed")
    d = tmp / "famx"
    d.mkdir()
    p = copy_plink(d)
    with open(f"{p}.fam", "a") as fh:
        fh.writelines(f"0 NAEXTRA{i} 0 0 0 -9\n" for i in range(3))
    cases["fam_bim_mismatch"] = ({"input": p}, r"2394 variants \(.bim lines\) x 93 samples")
    d = tmp / "bimx"
    d.mkdir()
    p = copy_plink(d)
    with open(f"{p}.bim", "a") as fh:
        fh.write("2\tsnp_2_9999999\t0\t9999999\tA\tG\n")
    cases["bim_fam_mismatch"] = ({"input": p}, r"2395 variants \(.bim lines\) x 90 samples")
    d = tmp / "dup"
    d.mkdir()
    p = copy_plink(d)
    fam = Path(f"{p}.fam").read_text().splitlines()
    fam[1] = fam[1].replace("NA06985", "NA06984")
    Path(f"{p}.fam").write_text("\n".join(fam) + "\n")
    cases["duplicated_samples"] = ({"input": p}, "not unique: 1 duplicated .*NA06984")
    d = tmp / "unsorted"
    d.mkdir()
    p = copy_plink(d)
    bim = Path(f"{p}.bim").read_text().splitlines()
    bim[0], bim[1] = bim[1], bim[0]
    Path(f"{p}.bim").write_text("\n".join(bim) + "\n")
    cases["unsorted_bim"] = ({"input": p}, "must be sorted by position")
    cases["unknown_format"] = ({"input": GEUV, "format": "gds"}, "unknown genotype format 'gds'")
    cases["format_not_found"] = ({"input": DATA / "mixed", "format": "pgen"}, "has no pgen files")
    d = tmp / "noindex"
    d.mkdir()
    shutil.copy(f"{GEUV}.vcf.gz", d / "g.vcf.gz")
    cases["vcf_without_index"] = ({"input": d / "g.vcf.gz"}, "has no index")
    d = tmp / "pvar_short"
    d.mkdir()
    for ext in (".pgen", ".psam"):
        shutil.copy(f"{GEUV}{ext}", d / f"g{ext}")
    (d / "g.pvar").write_text("".join(Path(f"{GEUV}.pvar").read_text().splitlines(True)[:-3]))
    cases["pgen_pvar_mismatch"] = ({"input": d / "g.pgen"}, "could not be read")
    d = tmp / "vcfdup"
    d.mkdir()
    (d / "g.vcf").write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts1\n"
        "1\t100\trs1\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\n"
    )
    cases["vcf_duplicated_samples"] = ({"input": d / "g.vcf"}, "duplicated sample names")
    d = tmp / "garbage_bgen"
    d.mkdir()
    (d / "g.bgen").write_bytes(b"\x00garbage" * 100)
    cases["garbage_bgen"] = ({"input": d / "g.bgen"}, "is not a BGEN file")
    return cases


BAD = [
    "missing_file", "missing_prefix", "truncated_bed", "garbage_bed", "fam_bim_mismatch",
    "bim_fam_mismatch", "duplicated_samples",
    "unsorted_bim", "unknown_format", "format_not_found",
    "vcf_without_index", "vcf_duplicated_samples", "garbage_bgen", "pgen_pvar_mismatch",
]


@pytest.mark.parametrize("case", BAD)
def test_convert__bad_input_raises_input_error_and_leaves_nothing(tmp_path, case):
    (tmp_path / "in").mkdir()
    kwargs, pattern = _bad_inputs(tmp_path / "in")[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(InputError, match=pattern):
        convert(output=out_dir / "g.vcz", show_progress=False, **kwargs)
    assert leftovers(out_dir, set()) == []


def test_convert__existing_output_and_bad_options_raise(tmp_path):
    (tmp_path / "out.vcz").mkdir()
    with pytest.raises(InputError, match="already exists"):
        convert(DATA / "mixed.bgen", tmp_path / "out.vcz")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a Zarr store"):
        convert(DATA / "mixed.bgen", tmp_path / "home", force=True)
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="variants_chunk_size"):
        convert(DATA / "mixed.bgen", tmp_path / "a.vcz", variants_chunk_size=0)
    with pytest.raises(InputError, match="zarr_format"):
        convert(DATA / "mixed.bgen", tmp_path / "a.vcz", zarr_format=4)
    with pytest.raises(InputError, match="is a Zarr store"):
        convert(convert(DATA / "mixed.bgen", tmp_path / "b.vcz", show_progress=False),
                tmp_path / "c.vcz")
    assert leftovers(tmp_path, set()) == ["b.vcz", "home", "out.vcz"]
