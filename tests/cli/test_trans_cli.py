"""``dqtl trans`` end to end: GEUVADIS against tensorQTL, kill-and-rerun, flat peak memory, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from dqtl.cli.main import main
from dqtl.simulation import simulate
from dqtl.simulation_files import write_simulation
from tests.conftest import EXAMPLE, REFERENCE

N_SAMPLES = 400


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The same simulated study with 10k and 100k variants (Zarr, BED, covariates)."""
    tmp = tmp_path_factory.mktemp("trans-cli")
    out = {}
    for v in (10_000, 100_000):
        ds = simulate(n_samples=N_SAMPLES, n_variants=v, n_phenotypes=40, n_contigs=2, seed=5,
                      variants_chunk_size=5000)
        files = write_simulation(ds, tmp / str(v), formats=("zarr", "bed", "covariates"), prefix="sim")
        out[v] = {k: str(p[0]) for k, p in files.items()}
    return out


def _cmd(files, prefix, *extra):
    return [sys.executable, "-m", "dqtl", "-q", "trans", files["zarr"], files["bed"], str(prefix),
            "--covariates", files["covariates"], "--no-progress", *extra]


_MEASURE = (
    "import sys; from dqtl.cli.main import main, tune_malloc; tune_malloc(); rc = main(sys.argv[1:]); "
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
    "print('VmHWM', hwm); sys.exit(rc)"
)


def _run_measured(cmd):
    """Run ``dqtl`` in a child; return its peak resident size in bytes.

    The peak is the child's own ``VmHWM`` (high-water mark of its address space since exec):
    ``getrusage`` of a child would also carry the parent's peak across fork and exec. The child
    tunes the allocator as the ``dqtl`` command does (:func:`dqtl.cli.main.tune_malloc`).
    """
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd[3:]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("VmHWM")][-1]
    return int(line.split()[1]) * 1024


def test_trans_cli__peak_memory_flat_when_variants_grow_10x(stores, tmp_path):
    peaks = {}
    for v in (10_000, 100_000):
        peaks[v] = _run_measured(_cmd(stores[v], tmp_path / f"m{v}", "--memory-limit", "12MiB"))
        summary = json.loads(Path(f"{tmp_path}/m{v}.trans_summary.json").read_text())
        peaks[f"v_b{v}"] = summary["variants_per_block"]
    assert peaks["v_b10000"] == peaks["v_b100000"] < 2500  # set by the budget, not by the data
    extra_raw = 90_000 * N_SAMPLES * 2  # int8 calls the 10x store adds: 72 MB
    growth = peaks[100_000] - peaks[10_000]
    # holding the genotypes (or their float32 rows) would add >= 72 MB; streaming adds 3-12 MB
    assert growth < 0.4 * extra_raw, (peaks, growth)


def test_trans_cli__killed_run_resumes_to_identical_output(stores, tmp_path):
    files = stores[100_000]
    clean = tmp_path / "clean"
    assert main(["-q", "trans", files["zarr"], files["bed"], str(clean), "--covariates",
                 files["covariates"], "--no-progress", "--memory-limit", "64MiB"]) == 0
    prefix = tmp_path / "run"
    blocks = Path(f"{prefix}.trans_blocks")
    cmd = _cmd(files, prefix, "--variants-chunk-size", "1000")  # 100 blocks
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if blocks.exists() and len(list(blocks.glob("*.npz"))) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recorded = len(list(blocks.glob("*.npz")))
    assert 3 <= recorded < 100, recorded  # killed mid-scan
    assert not Path(f"{prefix}.trans_qtl_pairs.parquet").exists()  # no partial output
    rerun = subprocess.run(cmd[:3] + ["trans"] + cmd[5:], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr and f"{recorded} of 100 blocks" in rerun.stderr
    got = pd.read_parquet(f"{prefix}.trans_qtl_pairs.parquet")
    ref = pd.read_parquet(f"{clean}.trans_qtl_pairs.parquet")
    assert len(ref) > 10
    pd.testing.assert_frame_equal(got, ref)  # other block sizes too: identical
    assert not blocks.exists()
    a = json.loads(Path(f"{prefix}.trans_summary.json").read_text())
    b = json.loads(Path(f"{clean}.trans_summary.json").read_text())
    assert a["n_tests"] == b["n_tests"] and a["n_hits"] == b["n_hits"]


def test_trans_cli__a_damaged_block_in_the_resume_store_is_computed_again(stores, tmp_path):
    files = stores[10_000]
    clean = tmp_path / "clean"
    assert main(["-q", "trans", files["zarr"], files["bed"], str(clean), "--covariates",
                 files["covariates"], "--no-progress", "--variants-chunk-size", "1000",
                 "--keep-blocks"]) == 0
    blocks = sorted(Path(f"{clean}.trans_blocks").glob("*.npz"))
    assert len(blocks) >= 5
    blocks[1].write_bytes(blocks[1].read_bytes()[:100])  # cut short
    blocks[3].write_bytes(b"garbage" * 50)              # overwritten
    Path(f"{clean}.trans_qtl_pairs.parquet").unlink()
    ref = tmp_path / "ref"
    assert main(["-q", "trans", files["zarr"], files["bed"], str(ref), "--covariates",
                 files["covariates"], "--no-progress", "--variants-chunk-size", "1000"]) == 0
    assert main(["-q", "trans", files["zarr"], files["bed"], str(clean), "--covariates",
                 files["covariates"], "--no-progress", "--variants-chunk-size", "1000"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(f"{clean}.trans_qtl_pairs.parquet"),
                                  pd.read_parquet(f"{ref}.trans_qtl_pairs.parquet"))


def test_trans_cli__geuvadis_pgen_matches_tensorqtl_parquet_and_zarr(tmp_path):
    prefix = tmp_path / "geuvadis"
    rc = main(["-q", "trans", str(EXAMPLE / "geuvadis_ceu90_maf01.pgen"), str(EXAMPLE / "expression.bed.gz"),
               str(prefix), "--covariates", str(EXAMPLE / "covariates.txt"), "--pval-threshold", "1e-5",
               "--maf-threshold", "0", "--cis-window", "5000000", "--output-format", "both",
               "--phenotype-qvalues", "--no-progress"])
    assert rc == 0
    got = pd.read_parquet(f"{prefix}.trans_qtl_pairs.parquet")
    ref = pd.read_parquet(REFERENCE / "tensorqtl" / "geuvadis.trans_qtl_pairs.parquet")
    assert list(got.columns) == ["variant_id", "phenotype_id", "pval", "b", "b_se", "af", "qval", "qval_phenotype"]
    np.testing.assert_array_equal(got.variant_id.to_numpy(), ref.variant_id.to_numpy())
    np.testing.assert_array_equal(got.phenotype_id.to_numpy(), ref.phenotype_id.to_numpy())
    np.testing.assert_allclose(got.pval, ref.pval, rtol=2e-4)
    z = xr.open_zarr(f"{prefix}.trans_qtl_pairs.zarr", consolidated=False).load()
    np.testing.assert_array_equal(z.qval.values, got.qval.to_numpy())
    assert z.attrs["n_tests"] == 1_577_178 and z.attrs["n_hits"] == 332
    ph = pd.read_parquet(f"{prefix}.trans_phenotype_tests.parquet")
    assert len(ph) == 804 and int(ph.n_tests.sum()) == 1_577_178 and int(ph.n_hits.sum()) == 332


@pytest.mark.parametrize("args,needle", [
    (["--pval-threshold", "0"], "pval-threshold"),
    (["--memory-limit", "10kB"], "memory-limit"),
    (["--cis-window", "-5"], "cis-window"),
    (["--device", "tpu"], "device"),
])
def test_trans_cli__bad_input_exits_2_without_output(tmp_path, capsys, args, needle):
    prefix = tmp_path / "bad"
    try:
        rc = main(["trans", str(EXAMPLE / "geuvadis_ceu90_maf01.pgen"), str(EXAMPLE / "expression.bed.gz"),
                   str(prefix), "--covariates", str(EXAMPLE / "covariates.txt"), "--no-progress", *args])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert needle in err
    assert not list(tmp_path.iterdir())
