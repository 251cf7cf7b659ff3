"""Object storage: every CLI path on a real S3-compatible server (moto's standalone server,
started on loopback as users start it), results identical to the local run, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import dqtl
from tests.conftest import EXAMPLE

pytest.importorskip("s3fs")
pytest.importorskip("moto.server", reason="moto[server] is not installed")
# moto's standalone server, started as users start it (the moto_server script, or its module)
MOTO = [shutil.which("moto_server")] if shutil.which("moto_server") else [sys.executable, "-m", "moto.server"]

BED = EXAMPLE / "expression.bed.gz"
COV = EXAMPLE / "covariates.txt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto server on 127.0.0.1 with a bucket holding the GEUVADIS store and tables."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([*MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log,
                            start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_EC2_METADATA_DISABLED": "true"}
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing",
                           client_kwargs={"endpoint_url": endpoint})
    fs.mkdir("cohort")
    local = tmp_path_factory.mktemp("local")
    store = local / "g.vcz"
    dqtl.convert(str(EXAMPLE / "geuvadis_ceu90_maf01.pgen"), str(store), format="pgen")
    fs.put(str(store), "cohort/g.vcz", recursive=True)
    fs.put(str(BED), "cohort/expression.bed.gz")
    fs.put(str(COV), "cohort/covariates.txt")
    try:
        yield {"env": env, "fs": fs, "store": store, "local": local}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _dqtl(env, *args):
    quiet = [] if args[0] == "prepare-expression" else ["--no-progress"]  # it shows none
    return subprocess.run([sys.executable, "-m", "dqtl", "-q", *args, *quiet], env=env,
                          capture_output=True, text=True, timeout=600)


def _read(fs, key):
    with fs.open(key, "rb") as f:
        return pd.read_parquet(f) if key.endswith(".parquet") else pd.read_csv(f, sep="\t", compression="gzip")


def test_cli_cis_nominal_and_permute__on_s3_identical_to_local(s3, tmp_path):
    env, fs = s3["env"], s3["fs"]
    r = _dqtl(env, "cis", "s3://cohort/g.vcz", "s3://cohort/expression.bed.gz", "s3://cohort/out/geu",
              "--covariates", "s3://cohort/covariates.txt")
    assert r.returncode == 0, r.stderr
    local = tmp_path / "geu"
    r = _dqtl(env, "cis", str(s3["store"]), str(BED), str(local), "--covariates", str(COV))
    assert r.returncode == 0, r.stderr
    for c in ("1", "2"):
        pd.testing.assert_frame_equal(_read(fs, f"cohort/out/geu.cis_qtl_pairs.{c}.parquet"),
                                      pd.read_parquet(f"{local}.cis_qtl_pairs.{c}.parquet"))
    fs.invalidate_cache()
    assert sorted(Path(p).name for p in fs.ls("cohort/out")) == [
        "geu.cis_qtl_pairs.1.parquet", "geu.cis_qtl_pairs.2.parquet", "geu.cis_qtl_pairs.qq.png",
        "geu.dqtl.cis.log", "geu.report.html"]  # no parts, no staging; log and report uploaded
    # permutations + independent: file:// URL locally, s3:// for the outputs and --cis-results
    r = _dqtl(env, "cis", f"file://{s3['store']}", "s3://cohort/expression.bed.gz",
              "s3://cohort/perm/geu", "--covariates", "s3://cohort/covariates.txt", "--mode",
              "permute", "--permutations", "300")
    assert r.returncode == 0, r.stderr
    r = _dqtl(env, "cis", str(s3["store"]), str(BED), str(local), "--covariates", str(COV),
              "--mode", "permute", "--permutations", "300")
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(_read(fs, "cohort/perm/geu.cis_qtl.txt.gz"),
                                  pd.read_csv(f"{local}.cis_qtl.txt.gz", sep="\t"))
    r = _dqtl(env, "cis", "s3://cohort/g.vcz", "s3://cohort/expression.bed.gz",
              "s3://cohort/perm/geu", "--covariates", "s3://cohort/covariates.txt", "--mode",
              "independent", "--permutations", "300", "--cis-results", "s3://cohort/perm/geu.cis_qtl.txt.gz")
    assert r.returncode == 0, r.stderr
    assert len(_read(fs, "cohort/perm/geu.cis_independent_qtl.txt.gz")) >= 1


def test_cli_trans__on_s3_with_block_store_identical_to_local(s3, tmp_path):
    env, fs = s3["env"], s3["fs"]
    r = _dqtl(env, "trans", "s3://cohort/g.vcz", "s3://cohort/expression.bed.gz", "s3://cohort/tr/geu",
              "--covariates", "s3://cohort/covariates.txt", "--output-format", "both",
              "--keep-blocks")
    assert r.returncode == 0, r.stderr
    local = tmp_path / "geu"
    r = _dqtl(env, "trans", str(s3["store"]), str(BED), str(local), "--covariates", str(COV))
    assert r.returncode == 0, r.stderr
    got = _read(fs, "cohort/tr/geu.trans_qtl_pairs.parquet")
    pd.testing.assert_frame_equal(got, pd.read_parquet(f"{local}.trans_qtl_pairs.parquet"))
    assert len(got) == 332
    fs.invalidate_cache()
    assert len([p for p in fs.ls("cohort/tr/geu.trans_blocks") if p.endswith(".npz")]) >= 1
    summary = json.loads(fs.cat("cohort/tr/geu.trans_summary.json"))
    assert summary["n_hits"] == 332
    # a rerun resumes from the blocks recorded on the object store
    r = subprocess.run([sys.executable, "-m", "dqtl", "trans", "s3://cohort/g.vcz",
                        "s3://cohort/expression.bed.gz", "s3://cohort/tr/geu", "--covariates",
                        "s3://cohort/covariates.txt", "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "resuming" in r.stderr, r.stderr


@pytest.mark.parametrize("case", ["missing_bucket_in", "missing_bucket_out", "missing_key",
                                  "no_credentials", "bad_scheme"])
def test_cli__bad_urls_one_clear_line_exit_2_no_output(s3, case):
    env, fs = dict(s3["env"]), s3["fs"]
    args = ["s3://cohort/g.vcz", "s3://cohort/expression.bed.gz", f"s3://cohort/bad-{case}/geu",
            "--covariates", "s3://cohort/covariates.txt"]
    expect = {"missing_bucket_in": "bucket 'nosuchbucket' does not exist",
              "missing_bucket_out": "bucket 'nosuchbucket' does not exist",
              "missing_key": "does not exist", "no_credentials": "no credentials",
              "bad_scheme": "no fsspec implementation"}[case]
    if case == "missing_bucket_in":
        args[0] = "s3://nosuchbucket/g.vcz"
    elif case == "missing_bucket_out":
        args[2] = "s3://nosuchbucket/out/geu"
    elif case == "missing_key":
        args[1] = "s3://cohort/nothere.bed.gz"
    elif case == "no_credentials":
        env.pop("AWS_ACCESS_KEY_ID")
        env.pop("AWS_SECRET_ACCESS_KEY")
    else:
        args[0] = "nosuchscheme://x/g.vcz"
    r = _dqtl(env, "cis", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert expect in lines[0], lines[0]
    fs.invalidate_cache()
    assert not fs.exists(f"cohort/bad-{case}")
    assert "nosuchbucket" not in [Path(b).name for b in fs.ls("")]  # never creates a bucket


def test_cli_other_commands__read_and_write_s3_urls(s3, tmp_path, monkeypatch):
    """convert, genotype-qc, covariates, factors and prepare-expression with s3:// paths give the
    files of the same commands on local paths."""
    from dqtl.io.expression import write_gct
    from dqtl.simulate_counts import simulate_counts

    env, fs = s3["env"], s3["fs"]
    fs.put(str(EXAMPLE / "geuvadis_ceu90_maf01.vcf.gz"), "cohort/raw/geu.vcf.gz")
    fs.put(str(EXAMPLE / "geuvadis_ceu90_maf01.vcf.gz.tbi"), "cohort/raw/geu.vcf.gz.tbi")
    r = _dqtl(env, "convert", "s3://cohort/raw/geu.vcf.gz", "s3://cohort/conv/geu.vcz")
    assert r.returncode == 0, r.stderr
    r = _dqtl(env, "genotype-qc", "s3://cohort/conv/geu.vcz", "s3://cohort/qc/geu")
    assert r.returncode == 0, r.stderr
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, env[k])
    conv = dqtl.open_genotypes("s3://cohort/conv/geu.vcz")  # the converted store, read remotely
    assert conv.sizes["variants"] == 2394 and conv.sizes["samples"] == 90
    r = _dqtl(env, "convert", str(EXAMPLE / "geuvadis_ceu90_maf01.vcf.gz"), str(tmp_path / "l.vcz"))
    assert r.returncode == 0, r.stderr
    r = _dqtl(env, "genotype-qc", str(tmp_path / "l.vcz"), str(tmp_path / "geu"))
    assert r.returncode == 0, r.stderr
    got = _read(fs, "cohort/qc/geu.variant_qc.tsv.gz")
    ref = pd.read_csv(tmp_path / "geu.variant_qc.tsv.gz", sep="\t")
    pd.testing.assert_frame_equal(got, ref)
    # covariates and factors
    r = _dqtl(env, "factors", "s3://cohort/expression.bed.gz", "s3://cohort/cov/factors.txt",
              "--method", "pca", "--n-factors", "3")
    assert r.returncode == 0, r.stderr
    r = _dqtl(env, "covariates", "s3://cohort/cov/all.txt", "--known", "s3://cohort/covariates.txt",
              "--factors", "s3://cohort/cov/factors.txt")
    assert r.returncode == 0, r.stderr
    with fs.open("cohort/cov/all.txt", "rb") as f:
        combined = pd.read_csv(f, sep="\t")
    assert len(combined) == 5 + 3 and combined.shape[1] == 91
    # expression preparation from object storage
    sim = simulate_counts(300, 40, seed=3)
    write_gct(sim.counts, tmp_path / "counts.gct.gz", description=sim.annotation["gene_name"])
    sim.tpm.to_parquet(tmp_path / "tpm.parquet")
    a = sim.annotation
    (tmp_path / "genes.gtf").write_text("".join(
        f'{r_.chr}\tsim\tgene\t{r_.start}\t{r_.end}\t.\t{r_.strand}\t.\tgene_id "{g}"; gene_name "{r_.gene_name}";\n'
        for g, r_ in a.iterrows()))
    for name in ("counts.gct.gz", "tpm.parquet", "genes.gtf"):
        fs.put(str(tmp_path / name), f"cohort/expr/{name}")
    r = _dqtl(env, "prepare-expression", "--counts", "s3://cohort/expr/counts.gct.gz", "--tpm",
              "s3://cohort/expr/tpm.parquet", "--annotation", "s3://cohort/expr/genes.gtf",
              "s3://cohort/expr/out.bed.gz")
    assert r.returncode == 0, r.stderr
    r = _dqtl(env, "prepare-expression", "--counts", str(tmp_path / "counts.gct.gz"), "--tpm",
              str(tmp_path / "tpm.parquet"), "--annotation", str(tmp_path / "genes.gtf"),
              str(tmp_path / "out.bed.gz"))
    assert r.returncode == 0, r.stderr
    with fs.open("cohort/expr/out.bed.gz", "rb") as f:
        got = pd.read_csv(f, sep="\t", compression="gzip")
    pd.testing.assert_frame_equal(got, pd.read_csv(tmp_path / "out.bed.gz", sep="\t"))
