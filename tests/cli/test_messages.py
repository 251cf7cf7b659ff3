"""The error messages of the issue-13 catalogue, across commands: one line naming the input (file,
option) and a fix the user can apply from the CLI; never JSON decoder positions without the file,
errno prefixes, internal staging paths, advice that names a Python-only argument, or a usage
error reported by the top-level parser for a sub-command's option."""

from __future__ import annotations

import shutil

import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.simulation_files import write_simulation

FORBIDDEN = ("Traceback", "[Errno", "KeyError", "format=", ".parts", ".tmp", "char ")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("msg")
    ds = dqtl.simulate(n_samples=40, n_variants=300, n_phenotypes=5, seed=11)
    files = write_simulation(ds, d, formats=("zarr", "bed", "covariates"), prefix="s")
    return {k: str(v[0]) for k, v in files.items()} | {"dir": str(d)}


def _damaged(sim, tmp, where: str) -> str:
    store = tmp / "damaged.vcz"
    shutil.copytree(sim["zarr"], store)
    (store / where).write_text('{"zarr_format": 3, "node_ty')
    return str(store)


CASES = {
    # case: (argv builder, fragments the one line must hold)
    "cis_root_metadata_not_json": (
        lambda s, t: ["cis", _damaged(s, t, "zarr.json"), s["bed"], str(t / "o" / "x")],
        ["damaged.vcz/zarr.json", "line 1 column", "not valid JSON", "convert the input again"]),
    "cis_array_metadata_not_json": (
        lambda s, t: ["cis", _damaged(s, t, "call_genotype/zarr.json"), s["bed"], str(t / "o" / "x")],
        ["call_genotype/zarr.json", "not valid JSON"]),
    "check_array_metadata_not_json": (
        lambda s, t: ["check", _damaged(s, t, "variant_position/zarr.json")],
        ["variant_position/zarr.json", "not valid JSON"]),
    "sub_command_option_misspelt": (
        lambda s, t: ["cis", s["zarr"], s["bed"], str(t / "o" / "x"), "--maf_treshold", "0.1"],
        ["dqtl cis: error", "--maf_treshold", "did you mean --maf_threshold?", "dqtl cis --help"]),
    "output_folder_is_a_file": (
        lambda s, t: ["cis", s["zarr"], s["bed"], s["covariates"] + "/x"],
        ["output", "cannot be a folder", "choose another output prefix"]),
    "genotype_input_unknown_suffix": (
        lambda s, t: ["genotype-qc", s["covariates"], str(t / "o" / "q")],
        ["unknown file type", ".pgen", "rename it"]),
    "check_not_a_store": (
        lambda s, t: ["check", s["covariates"]],
        ["is not a Zarr store", "dqtl convert"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_message_catalogue(case, sim, tmp_path, capsys):
    build, fragments = CASES[case]
    argv = build(sim, tmp_path)
    rc = main(["-q", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, (f, err)
    for bad in FORBIDDEN:
        assert bad not in err, (bad, err)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
