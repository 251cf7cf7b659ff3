"""End-to-end tests of ``dqtl prepare-expression``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dqtl.cli.main import main
from dqtl.io.expression import write_gct
from dqtl.io.phenotypes import read_phenotype_bed
from dqtl.preprocess.expression import prepare_expression
from dqtl.simulate_counts import simulate_counts

DATA = Path(__file__).resolve().parents[1] / "data" / "expression"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory):
    """A simulated study written as GTEx would ship it: GCT counts, parquet TPM, GTF, lookup, sex."""
    d = tmp_path_factory.mktemp("prep")
    sim = simulate_counts(700, 80, seed=21, n_outliers=2, n_sex_swaps=2)
    write_gct(sim.counts, d / "counts.gct.gz", description=sim.annotation["gene_name"])
    sim.tpm.to_parquet(d / "tpm.parquet")
    a = sim.annotation
    lines = [
        f'{r.chr}\tsim\tgene\t{r.start}\t{r.end}\t.\t{r.strand}\t.\tgene_id "{g}"; gene_name "{r.gene_name}";'
        for g, r in a.iterrows()
    ]
    (d / "genes.gtf").write_text("\n".join(lines) + "\n")
    lookup = pd.Series([f"P{s[1:]}" for s in sim.counts.columns], index=sim.counts.columns)
    lookup.to_csv(d / "lookup.txt", sep="\t", header=False)
    sex = sim.reported_sex.set_axis(lookup.to_numpy())
    sex.to_csv(d / "sex.tsv", sep="\t", header=["sex"], index_label="participant_id")
    return d, sim, lookup


def _args(d: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "prepare-expression", "--counts", str(d / "counts.gct.gz"), "--tpm",
            str(d / "tpm.parquet"), "--annotation", str(d / "genes.gtf"), str(out), *extra]


def test_prepare_expression_cli__writes_bed_read_by_read_phenotype_bed(inputs, tmp_path: Path) -> None:
    d, sim, lookup = inputs
    out = tmp_path / "expr.bed.gz"
    rc = main(_args(d, out, "--sample-participant-lookup", str(d / "lookup.txt"), "--sex",
                    str(d / "sex.tsv"), "--qc-report", str(tmp_path / "qc")))
    assert rc == 0
    ds = read_phenotype_bed(out)
    assert ds["sample_id"].values.tolist() == lookup.tolist()
    api = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation,
                             sample_participant=lookup, run_qc=False)
    np.testing.assert_array_equal(ds["phenotype_values"].values, api.bed.iloc[:, 4:].to_numpy())
    assert ds["phenotype_id"].values.tolist() == api.bed["gene_id"].tolist()
    np.testing.assert_array_equal(ds["phenotype_end"] - ds["phenotype_start"], 1)
    qc = pd.read_csv(tmp_path / "qc" / "qc_samples.tsv", sep="\t", keep_default_na=False)
    flagged = sorted(qc.loc[qc["flagged"].astype(str) == "True", "sample"])
    assert flagged == sorted(sim.truth.index[sim.truth["outlier"] | sim.truth["sex_swapped"]])
    assert sorted(p.name for p in (tmp_path / "qc").iterdir()) == [
        "library_size.png", "pca.png", "qc_samples.tsv", "sex_check.png"]


def test_prepare_expression_cli__exclude_flagged_parquet_and_options(inputs, tmp_path: Path) -> None:
    d, sim, lookup = inputs
    out = tmp_path / "expr.bed.parquet"
    rc = main(_args(d, out, "--sex", str(d / "sex.tsv"), "--sample-participant-lookup",
                    str(d / "lookup.txt"), "--exclude-flagged", "--chrom-prefix", "strip",
                    "--int-offset", "rankit", "--chromosomes", "1,2,X"))
    assert rc == 0
    ds = read_phenotype_bed(out)
    assert set(ds["phenotype_contig"].values) == {"1", "2", "X"}
    flagged = sim.truth.index[sim.truth["outlier"] | sim.truth["sex_swapped"]]
    kept = [s for s in sim.counts.columns if s not in flagged]
    assert ds["sample_id"].values.tolist() == lookup[kept].tolist()
    api = prepare_expression(sim.counts[kept], tpm=sim.tpm[kept], annotation=sim.annotation,
                             run_qc=False, int_offset="rankit", chromosomes=["1", "2", "X"])
    np.testing.assert_array_equal(ds["phenotype_values"].values, api.bed.iloc[:, 4:].to_numpy())


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    ok = "gene_id\tS1\tS2\tS3\nG1\t10\t20\t30\nG2\t5\t0\t7\n"
    (d / "negative.tsv").write_text(ok.replace("\t20\t", "\t-20\t"))
    (d / "fraction.tsv").write_text(ok.replace("\t20\t", "\t20.5\t"))
    (d / "duplicated.tsv").write_text(ok.replace("G2", "G1"))
    (d / "empty.tsv").write_text("gene_id\tS1\tS2\tS3\n")
    (d / "ok.tsv").write_text(ok)
    (d / "ann.tsv").write_text("gene_id\tchr\ttss\tgene_name\nG1\t1\t100\tA\nG2\t1\t200\tB\n")
    (d / "lookup.txt").write_text("S1\tP1\nS2\tP2\n")
    return d


@pytest.mark.parametrize(
    ("counts", "extra", "match"),
    [
        ("negative.tsv", [], "counts: 1 negative counts (first at gene G1, sample S2"),
        ("fraction.tsv", [], "counts: 1 non-integer counts (first at gene G1, sample S2"),
        ("duplicated.tsv", [], "duplicated gene ids (e.g. G1)"),
        ("empty.tsv", [], "empty matrix (0 genes x 3 samples)"),
        ("ok.tsv", ["--tpm", "ok.tsv", "--sample-participant-lookup", "lookup.txt"],
         "1 of 3 expression samples are missing from it (e.g. S3)"),
        ("ok.tsv", ["--tpm", "negative.tsv"], "TPM: value -20.0 for gene G1, sample S2"),
        ("missing.tsv", [], "does not exist"),
    ],
)
def test_prepare_expression_cli__bad_input_exit_2_one_line_no_output(
    bad_inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], counts: str,
    extra: list[str], match: str,
) -> None:
    d = bad_inputs
    out = tmp_path / "out.bed.gz"
    extra = [str(d / e) if e.endswith((".txt", ".tsv")) else e for e in extra]
    rc = main(["-q", "prepare-expression", "--counts", str(d / counts), "--annotation",
               str(d / "ann.tsv"), "--qc-report", str(tmp_path / "qc"), *extra, str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("dqtl prepare-expression: error:")
    assert match in err
    assert list(tmp_path.iterdir()) == []


def test_prepare_expression_cli__bad_output_name_and_option(bad_inputs: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    d = bad_inputs
    rc = main(["prepare-expression", "--counts", str(d / "ok.tsv"), "--annotation",
               str(d / "ann.tsv"), str(tmp_path / "out.txt")])
    assert rc == 2 and "expected a name ending in .bed.gz" in capsys.readouterr().err
    rc = main(["prepare-expression", "--counts", "x", "--annotation", "y", "--sample-frac-threshold",
               "2", str(tmp_path / "o.bed.gz")])
    assert rc == 2 and "expected a fraction in [0, 1], got '2'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_prepare_expression_cli__gtex_fixture_gct(tmp_path: Path) -> None:
    """The hand-written GTEx-style GCT + GTF fixtures, participant lookup, sex by participant."""
    out = tmp_path / "o.bed"
    rc = main(["-q", "prepare-expression", "--counts", str(DATA / "counts.gct"), "--tpm",
               str(DATA / "tpm.tsv"), "--annotation", str(DATA / "genes.gtf"),
               "--sample-participant-lookup", str(DATA / "sample_participant_lookup.txt"),
               "--sex", str(DATA / "sex.tsv"), "--sample-frac-threshold", "0.3", str(out)])
    assert rc == 0
    ds = read_phenotype_bed(out)
    assert ds["sample_id"].values.tolist() == ["GTEX-1111", "GTEX-2222", "GTEX-3333"]
    # DDX11L1 (counts 0/2/1) fails the filter; WASH7P, FAM110C and XIST pass (>= 0.9 samples)
    assert ds["phenotype_id"].values.tolist() == ["ENSG00000227232.5", "ENSG00000184731.5",
                                                  "ENSG00000229807.10"]
    assert ds["phenotype_end"].values.tolist() == [29570, 46870, 73852753]
