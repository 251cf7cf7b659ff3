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
