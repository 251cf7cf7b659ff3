"""``dqtl cis`` on bad input: one line on stderr, exit code 2, no traceback, no output file."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dqtl.cli.main import main
from dqtl.io.convert import convert
from tests.conftest import EXAMPLE

BED = EXAMPLE / "expression.bed.gz"
COV = EXAMPLE / "covariates.txt"
#: tensorQTL's permutation results on the same data (the drop-in's reference)
TQ_CIS = Path(__file__).resolve().parents[1] / "reference" / "tensorqtl_cli" / "tq.cis_qtl.txt.gz"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "g.vcz"
    convert(EXAMPLE / "geuvadis_ceu90_maf01.pgen", out, format="pgen", show_progress=False)
    return out


def bed_frame() -> pd.DataFrame:
    return pd.read_csv(BED, sep="\t", dtype={"#chr": str})


def write_bed(df: pd.DataFrame, path) -> str:
    df.to_csv(path, sep="\t", index=False)
    return str(path)


def case_args(case: str, tmp, store) -> tuple[list[str], str]:
    """Arguments for ``dqtl cis`` and an expected fragment of the error line."""
    base = [str(store), str(BED), str(tmp / "out" / "x"), "--covariates", str(COV)]
    if case == "missing_genotypes":
        return [str(tmp / "nope.vcz"), *base[1:]], "do not exist"
    if case == "missing_phenotypes":
        return [base[0], str(tmp / "nope.bed.gz"), *base[2:]], "does not exist"
    if case == "malformed_bed":
        (tmp / "bad.bed").write_text("this is\tnot a\tbed\n1\t2\t3\n")
        return [base[0], str(tmp / "bad.bed"), *base[2:]], "expected a BED"
    if case == "duplicated_phenotype_samples":
        df = bed_frame()
        cols = list(df.columns)
        cols[5] = cols[4]
        df.columns = cols
        return [base[0], write_bed(df, tmp / "dup.bed"), *base[2:]], "duplicated sample IDs"
    if case == "duplicated_phenotype_ids":
        df = bed_frame()
        df.iloc[1, 3] = df.iloc[0, 3]
        return [base[0], write_bed(df, tmp / "dupid.bed"), *base[2:]], "duplicated phenotype IDs"
    if case == "phenotype_samples_not_in_genotypes":
        df = bed_frame().rename(columns={"NA06984": "XX00001"})
        return [base[0], write_bed(df, tmp / "s.bed"), *base[2:]], "not in the genotypes"
    if case == "covariate_samples_missing":
        cov = pd.read_csv(COV, sep="\t").drop(columns=["NA06984"])
        cov.to_csv(tmp / "c.txt", sep="\t", index=False)
        return [*base[:4], str(tmp / "c.txt")], "not in the covariates"
    if case == "nan_covariate":
        cov = pd.read_csv(COV, sep="\t")
        cov.iloc[0, 3] = np.nan
        cov.to_csv(tmp / "c.txt", sep="\t", index=False)
        return [*base[:4], str(tmp / "c.txt")], "missing or infinite"
    if case == "inf_phenotype":
        df = bed_frame()
        df.iloc[2, 7] = np.inf
        return [base[0], write_bed(df, tmp / "inf.bed"), *base[2:]], "infinite value"
    if case == "contigs_do_not_match":
        df = bed_frame()
        df["#chr"] = "chr9"
        return [base[0], write_bed(df, tmp / "c9.bed"), *base[2:]], "no phenotype can be tested"
    if case == "too_few_samples":
        df = bed_frame().iloc[:, :10]  # 6 samples, 5 covariates
        return [base[0], write_bed(df, tmp / "few.bed"), *base[2:], "--allow-sample-intersection"], "too few samples"
    if case == "negative_window":
        return [*base, "--window", "-5"], "non-negative integer"
    if case == "bad_maf":
        return [*base, "--maf-threshold", "0.7"], "maf-threshold"
    if case == "bad_permutations":
        return [*base, "--mode", "permute", "--permutations", "100,10"], "--permutations"
    if case == "bad_fdr":
        return [*base, "--mode", "permute", "--fdr", "1.5"], "--fdr"
    if case == "truncated_gzip":
        data = BED.read_bytes()
        (tmp / "t.bed.gz").write_bytes(data[: len(data) // 3])
        return [base[0], str(tmp / "t.bed.gz"), *base[2:]], "cannot"
    if case == "independent_unknown_top_variant":
        cis = pd.read_csv(TQ_CIS, sep="\t")
        cis.loc[cis["qval"] <= 0.05, "variant_id"] = "chr99_1_A_G"
        cis.to_csv(tmp / "cis.txt", sep="\t", index=False)
        return [*base, "--mode", "independent", "--cis-results", str(tmp / "cis.txt"),
                "--permutations", "100"], "not in the genotypes"
    if case == "independent_bad_cis_results":
        (tmp / "cis.txt").write_text("a\tb\n1\t2\n")
        return [*base, "--mode", "independent", "--cis-results", str(tmp / "cis.txt")], "lacks columns"
    raise AssertionError(case)


CASES = [
    "missing_genotypes", "missing_phenotypes", "malformed_bed", "duplicated_phenotype_samples",
    "duplicated_phenotype_ids", "phenotype_samples_not_in_genotypes", "covariate_samples_missing",
    "nan_covariate", "inf_phenotype", "contigs_do_not_match", "too_few_samples", "negative_window",
    "bad_maf", "bad_permutations", "bad_fdr", "truncated_gzip", "independent_bad_cis_results",
    "independent_unknown_top_variant",
]


@pytest.mark.parametrize("case", CASES)
def test_cli_cis__bad_input_one_line_exit_2_no_output(case, tmp_path, store, capsys):
    (tmp_path / "out").mkdir()
    args, fragment = case_args(case, tmp_path, store)
    rc = main(["cis", *args, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_cis__unsorted_bed_and_chr_prefix_are_handled(tmp_path, store, capsys):
    df = bed_frame()
    df = df.sample(frac=1.0, random_state=1)
    df["#chr"] = "chr" + df["#chr"]
    path = tmp_path / "u.bed.gz"
    with gzip.open(path, "wt") as f:
        df.to_csv(f, sep="\t", index=False)
    rc = main(["-q", "cis", str(store), str(path), str(tmp_path / "x"), "--covariates", str(COV), "--no-progress"])
    assert rc == 0
    got = pd.concat([pd.read_parquet(p) for p in sorted(tmp_path.glob("x.cis_qtl_pairs.*.parquet"))])
    assert len(got) == 85_099


def test_cli_cis__collinear_covariate_dropped_with_log(tmp_path, store, capsys):
    cov = pd.read_csv(COV, sep="\t")
    extra = cov.iloc[[0]].copy()
    extra.iloc[0, 0] = "cov1_copy"
    pd.concat([cov, extra]).to_csv(tmp_path / "c.txt", sep="\t", index=False)
    rc = main(["cis", str(store), str(BED), str(tmp_path / "x"), "--covariates", str(tmp_path / "c.txt"), "--no-progress"])
    assert rc == 0
    assert "collinear" in capsys.readouterr().err


def test_cli_cis__failure_after_first_contig_leaves_no_partial_files(tmp_path, store, monkeypatch):
    import dqtl.workflows as wf

    calls = {"n": 0}
    real = wf.concat_parquet

    def flaky(parts, path, schema):
        calls["n"] += 1
        if calls["n"] == 2:  # the second contig's file fails after the first was written
            raise OSError("disk full")
        return real(parts, path, schema)

    monkeypatch.setattr(wf, "concat_parquet", flaky)
    rc = main(["-q", "cis", str(store), str(BED), str(tmp_path / "x"), "--covariates", str(COV), "--no-progress"])
    assert rc == 2
    assert list(tmp_path.iterdir()) == []
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_cli_cis__corrupt_bgzip_block_one_line_exit_2_no_output(tmp_path, store, capsys, monkeypatch):
    """A bgzipped BED read as a stream (files of 1 MiB or more; the bound lowered here): a member
    that does not decode is one error line naming its byte offset, exit 2, no output file."""
    import dqtl.io.phenotypes as ph
    from dqtl.io.bgzf import BgzfWriter

    path = tmp_path / "b.bed.gz"
    with open(path, "wb") as raw, BgzfWriter(raw) as w:
        w.write(gzip.decompress(BED.read_bytes()))
    data = bytearray(path.read_bytes())
    second = data.index(b"\x1f\x8b\x08\x04", 1)
    data[second + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    monkeypatch.setattr(ph, "BGZF_THREADED_BYTES", 1)
    (tmp_path / "out").mkdir()
    rc = main(["cis", str(store), str(path), str(tmp_path / "out" / "x"), "--covariates", str(COV),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, err
    assert f"block at byte {second:,}" in lines[0], lines[0]
    assert "Traceback" not in err
    assert list((tmp_path / "out").iterdir()) == []
