"""Ctrl-C and SIGTERM during long commands: nothing published, temporary files gone, a rerun
gives the same files as an undisturbed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

import dqtl
from dqtl.simulation_files import write_simulation


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signals")
    sim = dqtl.simulate(n_samples=300, n_variants=20_000, n_phenotypes=300, n_covariates=2, seed=9)
    return {k: str(p[0]) for k, p in write_simulation(
        sim, tmp, formats=("zarr", "bed", "covariates", "vcf"), prefix="s").items()}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run__nothing_published_and_no_leftovers(study, tmp_path, sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dqtl", "-q", "cis", study["zarr"], study["bed"], str(out),
           "--covariates", study["covariates"], "--mode", "permute", "--permutations", "20000",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(6.0)  # inside the permutation pass
    assert proc.poll() is None, proc.stderr.read()
    helpers = psutil.Process(proc.pid).children()  # the figure process (dqtl.figures)
    if sig == signal.SIGINT:  # Ctrl-C in a terminal reaches the whole process group
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert "nothing was published" in err
    assert "Traceback" not in err  # one line, from the command; none from its figure process
    assert not [p for p in helpers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert list(tmp_path.iterdir()) == []  # no output, no staged file, no work folder
    # a rerun (fewer permutations, to keep the test short) equals an undisturbed run
    short = [*cmd[:-2], "200", "--no-progress"]
    assert subprocess.run(short, capture_output=True).returncode == 0
    ref = tmp_path / "ref"
    short_ref = list(short)
    short_ref[short_ref.index(str(out))] = str(ref)
    assert subprocess.run(short_ref, capture_output=True).returncode == 0
    pd.testing.assert_frame_equal(pd.read_csv(f"{out}.cis_qtl.txt.gz", sep="\t"),
                                  pd.read_csv(f"{ref}.cis_qtl.txt.gz", sep="\t"))


def _interrupt(cmd: list[str], folder, sig, *, after_s: float, marker: str | None = None) -> str:
    """Start ``cmd``; once a file whose name holds ``marker`` is in ``folder`` (or after
    ``after_s``), wait a moment, send ``sig`` and return stderr after checking the exit code."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < after_s and not (
            marker and any(marker in p.name for p in folder.iterdir())):
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    return err


@pytest.mark.parametrize(("command", "sig"), [("convert", signal.SIGTERM), ("finemap", signal.SIGINT)])
def test_signal_during_convert_and_finemap(study, tmp_path, command, sig):
    """The other long commands: a conversion (its work store) and fine-mapping (its graph)."""
    out = tmp_path / "out"
    out.mkdir()
    if command == "convert":
        cmd = [sys.executable, "-m", "dqtl", "-q", "convert", study["vcf"], str(out / "c.vcz")]
        err = _interrupt(cmd, out, sig, after_s=8.0, marker=".work")
    else:
        cmd = [sys.executable, "-m", "dqtl", "-q", "finemap", study["zarr"], study["bed"],
               str(out / "f"), "--covariates", study["covariates"], "--no-progress"]
        err = _interrupt(cmd, out, sig, after_s=4.0)
    assert "nothing was published" in err
    assert list(out.iterdir()) == []
    assert subprocess.run(cmd, capture_output=True).returncode == 0  # the rerun completes
    assert sorted(p.name for p in out.iterdir()) == (
        ["c.vcz", "c.vcz.dqtl.convert.log"] if command == "convert"
        else ["f.dqtl.finemap.log", "f.report.html", "f.susie_cs.txt.gz", "f.susie_pips.parquet"])


def test_error_lines_name_the_file_without_errno_prefixes(tmp_path, capsys):
    from dqtl.cli.main import main

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    sim = dqtl.simulate(n_samples=30, n_variants=100, n_phenotypes=3, seed=1)
    f = {k: str(p[0]) for k, p in write_simulation(sim, tmp_path, formats=("zarr", "bed"), prefix="s").items()}
    rc = main(["-q", "cis", f["zarr"], f["bed"], str(blocker / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "[Errno" not in err and "afile" in err and len(err.splitlines()) == 1, err


def test_trans_block_store_never_removes_a_folder_it_did_not_create(tmp_path, capsys):
    from dqtl.cli.main import main

    sim = dqtl.simulate(n_samples=30, n_variants=100, n_phenotypes=3, seed=1)
    f = {k: str(p[0]) for k, p in write_simulation(sim, tmp_path, formats=("zarr", "bed"), prefix="s").items()}
    theirs = tmp_path / "t.trans_blocks"
    theirs.mkdir()
    (theirs / "precious.txt").write_text("mine")
    rc = main(["-q", "trans", f["zarr"], f["bed"], str(tmp_path / "t"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not a dqtl trans block store" in err
    assert (theirs / "precious.txt").read_text() == "mine"


def test_cli_quiet_verbose_after_the_subcommand_and_tensorqtl_spellings(tmp_path, capsys):
    from dqtl.cli.main import main

    sim = dqtl.simulate(n_samples=40, n_variants=200, n_phenotypes=3, seed=1)
    f = {k: str(p[0]) for k, p in write_simulation(sim, tmp_path, formats=("zarr", "bed"), prefix="s").items()}
    assert main(["cis", f["zarr"], f["bed"], str(tmp_path / "a"), "--no_progress", "-q",
                 "--maf_threshold", "0.05", "--window", "100000"]) == 0
    err = capsys.readouterr().err
    assert "INFO" not in err  # -q after the sub-command
    assert main(["cis", f["zarr"], f["bed"], str(tmp_path / "b"), "--no-progress", "-q",
                 "--maf-threshold", "0.05", "--window", "100000"]) == 0
    a = pd.read_parquet(tmp_path / "a.cis_qtl_pairs.1.parquet")
    b = pd.read_parquet(tmp_path / "b.cis_qtl_pairs.1.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_converted_genotypes_are_cached_and_reused_while_unchanged(tmp_path, caplog):
    import os
    import shutil

    from dqtl.cli.main import main
    from tests.conftest import EXAMPLE

    pgen = tmp_path / "g"
    for ext in (".pgen", ".pvar", ".psam"):
        shutil.copy(EXAMPLE / f"geuvadis_ceu90_maf01{ext}", f"{pgen}{ext}")
    cache = tmp_path / "cache"
    args = [f"{pgen}.pgen", str(EXAMPLE / "expression.bed.gz"), "--covariates",
            str(EXAMPLE / "covariates.txt"), "--no-progress", "--genotype-cache", str(cache)]
    with caplog.at_level("INFO", logger="dqtl"):
        assert main(["cis", args[0], args[1], str(tmp_path / "a"), *args[2:]]) == 0
        assert "using cached genotype store" not in caplog.text
        caplog.clear()
        assert main(["cis", args[0], args[1], str(tmp_path / "b"), *args[2:]]) == 0
        assert "using cached genotype store" in caplog.text  # no second conversion
        caplog.clear()
        os.utime(f"{pgen}.pgen", None)  # the input changed: converted again
        assert main(["cis", args[0], args[1], str(tmp_path / "c"), *args[2:]]) == 0
        assert "using cached genotype store" not in caplog.text
    for x in ("b", "c"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.cis_qtl_pairs.1.parquet"),
                                      pd.read_parquet(tmp_path / f"{x}.cis_qtl_pairs.1.parquet"))
    assert len(list(cache.iterdir())) == 1


def test_building_the_cli_imports_no_numerical_stack():
    """`dqtl <command> --help` must start fast: the sub-commands import what they need when they
    run (RESULTS: 0.8 s -> 0.15 s for `dqtl cis --help`); and the simulate formats agree."""
    import subprocess
    import sys

    from dqtl.cli.simulate import SIMULATION_FORMATS as CLI_FORMATS
    from dqtl.simulation import SIMULATION_FORMATS

    code = ("import sys, dqtl.cli.main; dqtl.cli.main.build_parser(); "
            "print([m for m in ('numpy', 'pandas', 'dask', 'xarray', 'scipy', 'zarr') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert CLI_FORMATS == SIMULATION_FORMATS
