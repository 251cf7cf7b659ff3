"""Store integrity: a missing chunk (an interrupted copy) or a corrupt chunk is one clear error
naming the array and the chunk, never data read as fill values; ``dqtl check``."""

from __future__ import annotations

import glob
import os
import shutil

import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.errors import InputError
from dqtl.io.convert import convert
from dqtl.io.genotypes import open_genotypes
from dqtl.simulation_files import write_simulation
from tests.conftest import EXAMPLE


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("integrity")
    sim = dqtl.simulate(n_samples=60, n_variants=3000, n_phenotypes=8, seed=2, variants_chunk_size=500)
    files = {k: str(p[0]) for k, p in write_simulation(sim, tmp, formats=("zarr", "bed", "covariates"),
                                                       prefix="s").items()}
    v2 = convert(EXAMPLE / "geuvadis_ceu90_maf01.vcf.gz", tmp / "v2.vcz", format="vcf",
                 variants_chunk_size=500, show_progress=False)
    return files, str(v2), tmp


def _copy_without(src, dst, array, which=-1):
    shutil.copytree(src, dst)
    chunks = sorted(p for p in glob.glob(f"{dst}/{array}/**", recursive=True)
                    if os.path.isfile(p) and not os.path.basename(p).startswith((".z", "zarr.json")))
    os.remove(chunks[which])
    return dst


@pytest.mark.parametrize("array", ["call_genotype", "variant_position", "variant_contig",
                                   "variant_id"])
def test_missing_chunk__one_clear_error_on_open(stores, tmp_path, array):
    files, _, _ = stores
    broken = _copy_without(files["zarr"], tmp_path / "b.vcz", array)
    with pytest.raises(InputError, match=f"array {array} has .* chunks.*resync the store"):
        open_genotypes(broken)


def test_missing_chunk__bio2zarr_v2_store_and_cli_exit_2(stores, tmp_path, capsys):
    files, v2, _ = stores
    broken = _copy_without(v2, tmp_path / "b2.vcz", "call_genotype", 1)
    with pytest.raises(InputError, match="array call_genotype has"):
        open_genotypes(broken)
    rc = main(["-q", "cis", str(broken), files["bed"], str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "call_genotype" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("x.*"))


def test_corrupt_chunk__dqtl_check_names_it_and_a_run_fails_cleanly(stores, tmp_path, capsys):
    files, _, _ = stores
    bad = tmp_path / "c.vcz"
    shutil.copytree(files["zarr"], bad)
    victim = sorted(glob.glob(f"{bad}/call_genotype/c/**", recursive=True))
    victim = [p for p in victim if os.path.isfile(p)][2]
    with open(victim, "r+b") as f:  # same size, garbage bytes: the codec cannot decode it
        n = len(f.read())
        f.seek(0)
        f.write(os.urandom(n))
    assert main(["-q", "check", files["zarr"]]) == 0
    capsys.readouterr()
    rc = main(["-q", "check", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "call_genotype, chunk" in err and "cannot be decoded" in err
    rc = main(["-q", "cis", str(bad), files["bed"], str(tmp_path / "y"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "dqtl check" in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("y.*"))
