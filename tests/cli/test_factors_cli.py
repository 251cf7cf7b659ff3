"""``dqtl factors``, ``dqtl covariates`` and ``dqtl genotype-qc``: outputs match the API; bad input
is one line on stderr, exit code 2 and no output file."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from dqtl.cli.main import main
from dqtl.io.genotypes import open_genotypes
from dqtl.io.phenotypes import read_covariates, read_phenotype_bed
from dqtl.preprocess.factors import expression_pcs, peer_factors
from dqtl.preprocess.genotype_qc import variant_qc
from dqtl.preprocess.pca import genotype_pcs
from dqtl.simulation import simulate
from dqtl.simulation_files import write_simulation


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("factors_cli")
    ds = simulate(n_samples=60, n_variants=800, n_phenotypes=120, n_contigs=1, n_hidden=2,
                  hidden_effect=1.5, effect_size=1.0, fraction_egenes=0.5, window=100_000,
                  contig_length=3_000_000, missing_genotype_rate=0.02, seed=11)
    write_simulation(ds, tmp, formats=("zarr", "bed", "covariates"), prefix="s")
    return {"dir": tmp, "store": tmp / "s.vcz", "bed": tmp / "s.expression.bed.gz",
            "cov": tmp / "s.covariates.txt"}


def test_factors_cli__peer_writes_tensorqtl_layout_equal_to_api(files, tmp_path):
    out = tmp_path / "f.txt"
    rc = main(["-q", "factors", str(files["bed"]), str(out), "--covariates", str(files["cov"]),
               "--n-factors", "4"])
    assert rc == 0
    df = pd.read_csv(out, sep="\t")
    phen = read_phenotype_bed(files["bed"])
    assert list(df.columns) == ["id", *phen["sample_id"].values.astype(str)]
    assert list(df["id"]) == [f"InferredCov{i}" for i in range(1, 5)]
    cov = read_covariates(files["cov"], sample_ids=phen["sample_id"].values)
    api = peer_factors(phen, n_factors=4, covariates=cov)
    np.testing.assert_allclose(df.iloc[:, 1:].to_numpy().T, api.factors, rtol=1e-8, atol=1e-12)
    # readable as covariates by the mapping commands
    back = read_covariates(out, sample_ids=phen["sample_id"].values)
    assert back.sizes["covariates"] == 4


def test_factors_cli__pca_and_gtex_auto(files, tmp_path):
    out = tmp_path / "pcs.txt"
    assert main(["-q", "factors", str(files["bed"]), str(out), "--method", "pca",
                 "--n-factors", "auto"]) == 0
    df = pd.read_csv(out, sep="\t")
    assert len(df) == 15  # GTEx rule for < 150 samples
    api = expression_pcs(read_phenotype_bed(files["bed"]), 15)
    np.testing.assert_allclose(df.iloc[:, 1:].to_numpy().T, api.factors, rtol=1e-8, atol=1e-10)


def test_factors_cli__discovery_writes_curve_plot_and_best_factors(files, tmp_path):
    out = tmp_path / "d.txt"
    rc = main(["-q", "factors", str(files["bed"]), str(out), "--method", "pca", "--n-factors",
               "discovery", "--genotypes", str(files["store"]), "--candidates", "0,2,4",
               "--discovery-genes", "60", "--window", "100000", "--no-progress"])
    assert rc == 0
    curve = pd.read_csv(f"{out}.discovery.tsv", sep="\t")
    assert list(curve["n_factors"]) == [0, 2, 4]
    best = int(curve["n_factors"][curve["n_egenes"].idxmax()])
    assert len(pd.read_csv(out, sep="\t")) == max(best, 1)
    assert (tmp_path / "d.txt.discovery.png").read_bytes()[:4] == b"\x89PNG"


def test_covariates_cli__combines_known_factors_and_genotype_pcs(files, tmp_path, capsys):
    fac = tmp_path / "f.txt"
    assert main(["-q", "factors", str(files["bed"]), str(fac), "--method", "pca",
                 "--n-factors", "3"]) == 0
    # factors with shuffled sample columns and a duplicate of a known covariate (collinear)
    f = pd.read_csv(fac, sep="\t")
    cols = ["id", *np.random.default_rng(0).permutation(f.columns[1:])]
    known = pd.read_csv(files["cov"], sep="\t")
    dup = known.iloc[[0]].copy()
    dup["id"] = "cov1_copy"
    f = pd.concat([f[cols], dup[cols]], ignore_index=True)
    f.to_csv(fac, sep="\t", index=False)
    out = tmp_path / "all.txt"
    rc = main(["covariates", str(out), "--known", str(files["cov"]), "--factors", str(fac),
               "--genotype-pcs", "2", "--genotypes", str(files["store"]), "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "cov1_copy" in err and "collinear" in err
    df = pd.read_csv(out, sep="\t")
    assert list(df["id"]) == ["cov1", "cov2", "cov3", "ExprPC1", "ExprPC2", "ExprPC3", "PC1", "PC2"]
    assert list(df.columns[1:]) == list(known.columns[1:])  # the known covariates' sample order
    np.testing.assert_allclose(df.iloc[:3, 1:].to_numpy(), known.iloc[:, 1:].to_numpy(), rtol=1e-9)
    shuffled = f.set_index("id")[known.columns[1:]]
    np.testing.assert_allclose(df.iloc[3:6, 1:].to_numpy(), shuffled.iloc[:3].to_numpy(), rtol=1e-9)
    pca = genotype_pcs(open_genotypes(files["store"]), n_components=2)
    np.testing.assert_allclose(df.iloc[6:, 1:].to_numpy(), pca.scores.T, rtol=1e-6, atol=1e-6)


def test_genotype_qc_cli__writes_tables_equal_to_api(files, tmp_path):
    prefix = tmp_path / "qc" / "g"
    assert main(["-q", "genotype-qc", str(files["store"]), str(prefix), "--no-progress"]) == 0
    with gzip.open(f"{prefix}.variant_qc.tsv.gz", "rt") as fh:
        v = pd.read_csv(fh, sep="\t", dtype={"chrom": str})
    s = pd.read_csv(f"{prefix}.sample_qc.tsv", sep="\t")
    geno = open_genotypes(files["store"])
    api = variant_qc(geno, merge=False).compute()
    assert list(v.columns[:5]) == ["chrom", "pos", "variant_id", "ref", "alt"]
    np.testing.assert_allclose(v["hwe_p"], api["variant_hwe_p_value"].values, rtol=1e-12)
    np.testing.assert_array_equal(v["n_called"], api["variant_n_called"].values)
    assert (v["call_rate"] < 1).any() and len(s) == 60 and (s["call_rate"] < 1).all()


def _bad(case: str, files, tmp) -> tuple[list[str], list[str], str]:
    """(arguments, outputs that must not exist, expected fragment of the error line)."""
    bed, cov, store = str(files["bed"]), str(files["cov"]), str(files["store"])
    out = str(tmp / "out" / "x.txt")
    if case == "factors_missing_phenotypes":
        return ["factors", str(tmp / "nope.bed.gz"), out], [out], "does not exist"
    if case == "factors_too_many":
        return ["factors", bed, out, "--n-factors", "59"], [out], "--n-factors"
    if case == "factors_bad_count":
        return ["factors", bed, out, "--n-factors", "many"], [out], "--n-factors"
    if case == "factors_discovery_without_genotypes":
        return ["factors", bed, out, "--n-factors", "discovery"], [out], "--genotypes"
    if case == "factors_bad_candidates":
        return (["factors", bed, out, "--n-factors", "discovery", "--genotypes", store,
                 "--candidates", "a,b"], [out, out + ".discovery.tsv"], "--candidates")
    if case == "factors_covariate_samples_missing":
        c = pd.read_csv(cov, sep="\t").iloc[:, :-1]
        c.to_csv(tmp / "c.txt", sep="\t", index=False)
        return ["factors", bed, out, "--covariates", str(tmp / "c.txt")], [out], "no covariates"
    if case == "covariates_nothing":
        return ["covariates", out], [out], "nothing to combine"
    if case == "covariates_pcs_without_genotypes":
        return ["covariates", out, "--known", cov, "--genotype-pcs", "2"], [out], "--genotypes"
    if case == "covariates_duplicated_ids":
        return ["covariates", out, "--known", cov, "--factors", cov], [out], "more than one source"
    if case == "covariates_sample_mismatch":
        c = pd.read_csv(cov, sep="\t")
        c.iloc[:, :-3].to_csv(tmp / "c.txt", sep="\t", index=False)
        return (["covariates", out, "--known", cov, "--factors", str(tmp / "c.txt")], [out],
                "samples are missing")
    if case == "covariates_ungenotyped_samples":
        c = pd.read_csv(cov, sep="\t").rename(columns={"S01": "X01"})
        c.to_csv(tmp / "c.txt", sep="\t", index=False)
        return (["covariates", out, "--known", str(tmp / "c.txt"), "--genotype-pcs", "2",
                 "--genotypes", store], [out], "not genotyped")
    if case == "genotype_qc_missing_store":
        prefix = str(tmp / "out" / "g")
        return (["genotype-qc", str(tmp / "nope.vcz"), prefix],
                [prefix + ".variant_qc.tsv.gz", prefix + ".sample_qc.tsv"], "do not exist")
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "factors_missing_phenotypes", "factors_too_many", "factors_bad_count",
    "factors_discovery_without_genotypes", "factors_bad_candidates",
    "factors_covariate_samples_missing", "covariates_nothing", "covariates_pcs_without_genotypes",
    "covariates_duplicated_ids", "covariates_sample_mismatch", "covariates_ungenotyped_samples",
    "genotype_qc_missing_store",
])
def test_factors_covariates_qc_cli__bad_input_exits_2_one_line_no_output(files, tmp_path, capsys,
                                                                           case):
    args, outputs, fragment = _bad(case, files, tmp_path)
    rc = main(args)
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert fragment in err
    for path in outputs:
        assert not (tmp_path / path).exists()


def test_genotype_qc_and_covariates_cli__on_a_distributed_cluster_equal_threads(files, tmp_path,
                                                                                 dask_cluster):
    addr = ["--scheduler-address", dask_cluster.address, "--no-progress"]
    assert main(["-q", "genotype-qc", str(files["store"]), str(tmp_path / "d"), *addr]) == 0
    assert main(["-q", "genotype-qc", str(files["store"]), str(tmp_path / "t"), "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "d.variant_qc.tsv.gz", sep="\t"),
                                  pd.read_csv(tmp_path / "t.variant_qc.tsv.gz", sep="\t"))
    pcs = ["--known", str(files["cov"]), "--genotype-pcs", "2", "--genotypes", str(files["store"])]
    assert main(["-q", "covariates", str(tmp_path / "cd.txt"), *pcs, *addr]) == 0
    assert main(["-q", "covariates", str(tmp_path / "ct.txt"), *pcs, "--no-progress"]) == 0
    d = pd.read_csv(tmp_path / "cd.txt", sep="\t").set_index("id")
    t = pd.read_csv(tmp_path / "ct.txt", sep="\t").set_index("id")
    np.testing.assert_allclose(d.to_numpy(), t.to_numpy(), rtol=1e-5, atol=1e-5)
