"""Tests for ``dqtl convert`` (dqtl.cli.convert) through dqtl.cli.main.main."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from dqtl.cli.main import main
from dqtl.io.genotypes import open_genotypes

GEUV = Path(str(files("dqtl.data") / "geuvadis" / "geuvadis_ceu90_maf01"))
DATA = Path(__file__).resolve().parents[1] / "data" / "genotypes"


def test_convert_cli__writes_store_with_options(tmp_path, capsys):
    out = tmp_path / "g.vcz"
    rc = main(["-q", "convert", str(GEUV), str(out), "--format", "pgen",
               "--variants-chunk-size", "700", "--zarr-format", "3", "--no-progress"])
    assert rc == 0
    assert capsys.readouterr().err == ""
    ds = open_genotypes(out)
    assert (out / "zarr.json").is_file()
    assert ds["call_genotype"].shape == (2394, 90, 2)
    assert ds["call_genotype"].chunks[0][0] == 700
    calls = ds["call_genotype"].values
    assert int((calls < 0).any(-1).sum()) == 65
    # a second run refuses to overwrite, --force replaces
    assert main(["-q", "convert", f"{GEUV}.bed", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["-q", "convert", f"{GEUV}.bed", str(out), "--no-progress", "--force"]) == 0
    assert not (out / "zarr.json").exists()  # now bio2zarr's default Zarr format 2
    np.testing.assert_array_equal(open_genotypes(out)["call_genotype"].values, calls)


def _prepare(case: str, tmp: Path) -> tuple[list[str], str]:
    """Arguments (before OUTPUT) and an expected message fragment for a bad input."""
    if case in ("truncated_bed", "fam_bim_mismatch", "duplicated_samples"):
        for ext in (".bed", ".bim", ".fam"):
            shutil.copy(f"{GEUV}{ext}", tmp / f"g{ext}")
        if case == "truncated_bed":
            data = (tmp / "g.bed").read_bytes()
            (tmp / "g.bed").write_bytes(data[:1000])
            return [str(tmp / "g.bed")], "truncated"
        if case == "fam_bim_mismatch":
            (tmp / "g.bim").write_text("".join((tmp / "g.bim").read_text().splitlines(True)[:-5]))
            return [str(tmp / "g")], "do not belong together"
        fam = (tmp / "g.fam").read_text().replace("NA06986", "NA06984")
        (tmp / "g.fam").write_text(fam)
        return [str(tmp / "g")], "not unique"
    if case == "garbage_bed":
        for ext in (".bim", ".fam"):
            shutil.copy(f"{GEUV}{ext}", tmp / f"g{ext}")
        (tmp / "g.bed").write_bytes(b"\x00" * 55065)
        return [str(tmp / "g.bed")], "not a PLINK 1 .bed"
    if case == "missing_file":
        return [str(tmp / "missing.pgen")], "does not exist"
    if case == "unknown_format":
        return [str(GEUV), "--format", "gds"], "unknown genotype format 'gds'"
    if case == "bad_chunk_size":
        return [str(DATA / "mixed.bgen"), "--variants-chunk-size", "0"], "variants_chunk_size"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["missing_file", "truncated_bed", "garbage_bed", "fam_bim_mismatch", "duplicated_samples",
     "unknown_format", "bad_chunk_size"],
)
def test_convert_cli__bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    args, fragment = _prepare(case, inputs)
    out = tmp_path / "out" / "g.vcz"
    rc = main(["convert", args[0], str(out), *args[1:], "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("dqtl convert: error: ") and fragment in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_convert_cli__existing_output_exits_2(tmp_path, capsys):
    out = tmp_path / "g.vcz"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    rc = main(["convert", str(DATA / "mixed.bgen"), str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "already exists" in err
    assert (out / "keep.txt").read_text() == "x"
