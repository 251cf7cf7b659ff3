"""Input semantics: dosage missing codes (DS=-9) and out-of-range dosages are missing; multiallelic
sites are an error (with the count and the fix) or dropped on request, never one "non-REF" dosage."""

from __future__ import annotations

import numpy as np
import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.errors import InputError
from dqtl.io.genotypes import open_genotypes
from dqtl.kernels.genotypes import dosage_from_calls
from dqtl.simulation_files import write_simulation


def test_dosage_missing_codes_are_missing_not_dosages():
    sim = dqtl.simulate(n_samples=60, n_variants=200, n_phenotypes=4, seed=3)
    g = open_genotypes(sim)
    D = dosage_from_calls(np.asarray(g.call_genotype.values)).astype(np.float32)
    coded = D.copy()
    coded[5, :10] = -9.0  # PLINK/imputation missing code
    coded[7, 3] = 2.7     # out of range for a diploid dosage
    out = open_genotypes(g.assign(call_DS=(("variants", "samples"), coded)))
    v = out.call_dosage.values
    assert np.isnan(v[5, :10]).all() and np.isnan(v[7, 3]) and np.isnan(v).sum() == 11
    # the association equals the one with those cells missing
    nan_cells = D.copy()
    nan_cells[5, :10] = np.nan
    nan_cells[7, 3] = np.nan
    ref = open_genotypes(g.assign(call_DS=(("variants", "samples"), nan_cells)))
    a = dqtl.map_cis_nominal(out, sim, sim, window=100_000)
    b = dqtl.map_cis_nominal(ref, sim, sim, window=100_000)
    np.testing.assert_allclose(a.p_value.values, b.p_value.values, rtol=1e-12)
    assert a.attrs["n_imputed_calls"] == b.attrs["n_imputed_calls"]


def _multiallelic(sim):
    g = open_genotypes(sim)
    alleles = np.asarray(g.variant_allele.values).astype(object)
    three = np.column_stack([alleles, np.full(len(alleles), "", dtype=object)])
    three[10, 2] = "T"
    gt = np.asarray(g.call_genotype.values).copy()
    gt[10, :5, 1] = 2
    return g.assign(variant_allele=(("variants", "alleles"), three.astype(str)),
                    call_genotype=(g.call_genotype.dims, gt))


def test_multiallelic_sites_error_or_dropped(tmp_path, capsys):
    import dask

    sim = dqtl.simulate(n_samples=60, n_variants=200, n_phenotypes=4, seed=3)
    multi = _multiallelic(sim)
    with pytest.raises(InputError, match="1 variants have more than one ALT allele.*bcftools norm"):
        open_genotypes(multi)
    with dask.config.set({"dqtl.multiallelic": "drop"}):
        kept = open_genotypes(multi)
    assert kept.sizes["variants"] == 199
    assert str(multi.variant_id.values[10]) not in set(kept.variant_id.values.astype(str))
    store = tmp_path / "m.vcz"
    multi.to_zarr(store, zarr_format=3, consolidated=False)
    bed = {k: str(v[0]) for k, v in write_simulation(sim, tmp_path, formats=("bed",), prefix="s").items()}["bed"]
    rc = main(["-q", "cis", str(store), bed, str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--multiallelic drop" in err and len(err.splitlines()) == 1
    assert main(["-q", "cis", str(store), bed, str(tmp_path / "y"), "--no-progress",
                 "--multiallelic", "drop", "--window", "100000"]) == 0
    assert main(["-q", "cis", str(store), bed, str(tmp_path / "z"), "--no-progress",
                 "--multiallelic", "split", "--window", "100000"]) == 0


def test_multiallelic_split_is_bcftools_norm(tmp_path):
    """--multiallelic split: one biallelic record per ALT allele, as 'bcftools norm -m -any' writes
    them (allele k -> 1, other ALT alleles -> REF, missing kept), IDs ID_ALT, per-ALT DS picked."""
    import dask

    sim = dqtl.simulate(n_samples=60, n_variants=200, n_phenotypes=4, seed=3)
    multi = _multiallelic(sim)
    gt = np.asarray(multi.call_genotype.values).copy()
    gt[10, 5, :] = [1, 2]
    gt[10, 6, :] = [-1, 2]
    multi = multi.assign(call_genotype=(multi.call_genotype.dims, gt)).chunk({"variants": 7})
    with dask.config.set({"dqtl.multiallelic": "split"}):
        out = open_genotypes(multi)
    assert out.sizes["variants"] == 201
    ids = out.variant_id.values.astype(str)
    orig = str(multi.variant_id.values[10])
    assert ids[10] == f"{orig}_{multi.variant_allele.values[10, 1]}" and ids[11] == f"{orig}_T"
    assert len(set(ids)) == 201 and ids[12] == str(multi.variant_id.values[11])
    al = out.variant_allele.values.astype(str)
    assert al[11, :2].tolist() == ["" + str(multi.variant_allele.values[10, 0]), "T"]
    assert (al[:, 2] == "").all()
    g = np.asarray(out.call_genotype.values)
    first = np.where(gt[10] < 0, gt[10], gt[10] == 1)
    second = np.where(gt[10] < 0, gt[10], gt[10] == 2)
    np.testing.assert_array_equal(g[10], first)
    np.testing.assert_array_equal(g[11], second)
    np.testing.assert_array_equal(g[12:], gt[11:])
    np.testing.assert_array_equal(out.variant_position.values[10:12], multi.variant_position.values[[10, 10]])
    # per-ALT dosages (VCF DS with Number=A) pick the record's ALT allele
    ds3 = np.full(gt.shape[:2] + (2,), np.float32(np.nan), dtype=np.float32)
    ds3.view(np.int32)[..., 1] = 0x7F800002  # bio2zarr's "no value" for the absent 2nd ALT
    ds3[..., 0] = (gt == 1).sum(-1)
    ds3[10, :, 1] = (gt[10] == 2).sum(-1)
    with dask.config.set({"dqtl.multiallelic": "split"}):
        d = open_genotypes(multi.assign(call_DS=(("variants", "samples", "alt_alleles"), ds3)))
    dos = d.call_dosage.values
    np.testing.assert_array_equal(dos[11], (gt[10] == 2).sum(-1))
    np.testing.assert_array_equal(dos[10], (gt[10] == 1).sum(-1))
    np.testing.assert_array_equal(dos[12], (gt[11] == 1).sum(-1))
    # summed dosages cannot be split: an error with the fix
    with dask.config.set({"dqtl.multiallelic": "split"}), pytest.raises(InputError, match="summed"):
        open_genotypes(multi.assign(call_DS=(("variants", "samples"), ds3[..., 0])))


def test_vcf_with_a_header_and_no_records_is_an_error(tmp_path, capsys):
    vcf = tmp_path / "empty.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=1>\n"
                   '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\n")
    rc = main(["-q", "convert", str(vcf), str(tmp_path / "e.vcz")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no variant records" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "e.vcz").exists()


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_bgen_is_one_clear_error_not_a_crash(tmp_path, keep):
    """A BGEN cut short (an interrupted download) used to crash the process in native code."""
    import subprocess
    import sys

    from tests.conftest import REFERENCE

    src = REFERENCE.parent / "data" / "genotypes" / "geuvadis_subset.bgen"
    data = src.read_bytes()
    cut = tmp_path / "cut.bgen"
    cut.write_bytes(data[: int(len(data) * keep)])
    proc = subprocess.run([sys.executable, "-m", "dqtl", "-q", "convert", str(cut), str(tmp_path / "c.vcz")],
                          capture_output=True, text=True)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "truncated" in err and len(err.splitlines()) == 1, (proc.returncode, err)
    assert not (tmp_path / "c.vcz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name not in ("cut.bgen",)]


def test_multiallelic_split_matches_bcftools_norm_on_a_vcf(tmp_path):
    """A VCF with 2- and 3-ALT sites (GT and per-ALT DS) converted and opened with split equals
    the same VCF split by 'bcftools norm -m -any' (tests/reference/multiallelic/generate.sh)."""
    import dask

    from dqtl.io.convert import convert
    from tests.conftest import REFERENCE

    ref_dir = REFERENCE / "multiallelic"
    with dask.config.set({"dqtl.multiallelic": "split"}):
        ours = open_genotypes(convert(ref_dir / "multi.vcf", tmp_path / "m.vcz", show_progress=False))
    theirs = open_genotypes(convert(ref_dir / "split.vcf", tmp_path / "s.vcz", show_progress=False))
    assert ours.sizes["variants"] == theirs.sizes["variants"] == 25
    np.testing.assert_array_equal(ours.variant_position.values, theirs.variant_position.values)
    np.testing.assert_array_equal(ours.variant_allele.values.astype(str)[:, :2],
                                  theirs.variant_allele.values.astype(str)[:, :2])
    np.testing.assert_array_equal(ours.call_genotype.values, theirs.call_genotype.values)
    np.testing.assert_array_equal(ours.call_dosage.values, theirs.call_dosage.values)
    ids = ours.variant_id.values.astype(str)
    assert len(set(ids)) == 25 and ids[3:5].tolist() == ["v3_T", "v3_G"] and ids[0] == "v0"


@pytest.mark.parametrize("fmt", ["vcf", "pgen"])
@pytest.mark.parametrize("keep", [0.4, 0.97])
def test_truncated_vcf_and_pgen_are_errors_not_fewer_variants(tmp_path, capsys, fmt, keep):
    """A bgzipped VCF cut short used to convert the records before the cut (exit 0, fewer
    variants); a cut pgen gave pgenlib's 'read_range() error 4'."""
    sim = dqtl.simulate(n_samples=50, n_variants=400, n_phenotypes=3, seed=5)
    files = write_simulation(sim, tmp_path, formats=(fmt,), prefix="s")
    target = files[fmt][0]
    data = target.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    rc = main(["-q", "convert", str(target), str(tmp_path / "o.vcz")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "truncated" in err and ("BGZF end-of-file" in err if fmt == "vcf" else "plink2" in err)
    assert not (tmp_path / "o.vcz").exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("s.")] == []

