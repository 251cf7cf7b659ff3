"""Genotype x interaction mapping: GEUVADIS against tensorQTL 1.0.10's interaction mode and R lm
(references made by tests/reference/tensorqtl_interaction/generate.py and lm_reference.R), the
CLI end to end, Freedman-Lane calibration and recovery on simulations, and bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import dqtl
from dqtl.association.interaction import map_cis_interaction, map_cis_interaction_permute
from dqtl.cli.main import main
from dqtl.errors import InputError
from dqtl.io.convert import convert
from dqtl.io.genotypes import open_genotypes
from dqtl.io.phenotypes import read_covariates, read_interaction, read_phenotype_bed
from tests.conftest import EXAMPLE, REFERENCE

TQ = REFERENCE / "tensorqtl_interaction"


@pytest.fixture(scope="module")
def geuvadis(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("geu_int")
    store = convert(EXAMPLE / "geuvadis_ceu90_maf01.pgen", tmp / "g.vcz", format="pgen",
                    show_progress=False)
    phen = read_phenotype_bed(EXAMPLE / "expression.bed.gz")
    cov = read_covariates(EXAMPLE / "covariates_without_cov1.txt", sample_ids=phen.sample_id.values)
    inter = read_interaction(EXAMPLE / "interaction_cov1.txt")
    return open_genotypes(store), phen, cov, inter, tmp, store


@pytest.fixture(scope="module")
def k1(geuvadis):
    g, phen, cov, inter, _, _ = geuvadis
    return map_cis_interaction(g, phen, cov, inter)


def test_interaction__same_pairs_and_statistics_as_tensorqtl(k1):
    """Same 70,599 pairs (per-half MAF filter included); b and p within tensorQTL's float32 noise:
    measured |b_g - b_g_tq| <= 2.7e-5 SE, |b_gi - b_gi_tq| <= 1.3e-4 SE, pval_gi 1.8e-4 relative."""
    pairs, _ = k1
    ref = pd.read_parquet(TQ / "geuvadis.cis_qtl_pairs.parquet")
    assert len(pairs) == len(ref) == 70599
    assert pairs[["phenotype_id", "variant_id"]].astype(str).values.tolist() == \
        ref[["phenotype_id", "variant_id"]].astype(str).values.tolist()
    for c in ("b_g", "b_gi"):
        se = pairs[f"{c}_se"].to_numpy()
        assert np.max(np.abs(pairs[c].to_numpy() - ref[c].to_numpy()) / se) < 1e-3, c
    np.testing.assert_allclose(pairs["pval_gi"], ref["pval_gi"], rtol=2e-3)
    cols = ["phenotype_id", "variant_id", "start_distance", "af", "ma_samples", "ma_count",
            "pval_g", "b_g", "b_g_se", "pval_i", "b_i", "b_i_se", "pval_gi", "b_gi", "b_gi_se"]
    assert pairs.columns.tolist() == cols


def test_interaction__top_variant_and_eigenmt_tests_equal_tensorqtl(k1):
    _, top = k1
    ref = pd.read_csv(TQ / "geuvadis.cis_qtl_top_assoc.txt.gz", sep="\t")
    assert top["phenotype_id"].tolist() == ref["phenotype_id"].tolist()
    assert top["variant_id"].tolist() == ref["variant_id"].tolist()  # a perfect-LD tie included
    assert top["tests_emt"].tolist() == ref["tests_emt"].tolist()
    np.testing.assert_allclose(top["pval_emt"], ref["pval_emt"], rtol=2e-3)
    np.testing.assert_allclose(top["pval_adj_bh"], ref["pval_adj_bh"], rtol=2e-3)
    assert top.columns.tolist() == ref.columns.tolist()


def test_interaction__coefficients_equal_r_lm(k1):
    """b_g, b_gi and their standard errors equal R's lm(y ~ C + g + i + g:i) (float64 both)."""
    pairs, _ = k1
    lm = pd.read_csv(TQ / "lm_top_pairs.tsv", sep="\t")
    m = lm.merge(pairs, on=["phenotype_id", "variant_id"], suffixes=("_lm", ""))
    assert len(m) == len(lm) == 428
    for c in ("b_g", "b_g_se", "b_i", "b_gi", "b_gi_se", "pval_gi"):
        np.testing.assert_allclose(m[c], m[f"{c}_lm"], rtol=1e-8, err_msg=c)


def test_interaction__two_terms_match_tensorqtl_names_and_values(geuvadis):
    g, phen, cov, inter, _, _ = geuvadis
    two = inter.rename(columns={"i": "cov1"}).assign(cov1sq=lambda d: d["cov1"] ** 2)
    pairs, top = map_cis_interaction(g, phen, cov, two)
    ref = pd.read_parquet(TQ / "geuvadis_k2.cis_qtl_pairs.parquet")
    sub = pairs[pairs["phenotype_id"].isin(ref["phenotype_id"].unique())].reset_index(drop=True)
    assert sub[["phenotype_id", "variant_id"]].values.tolist() == ref[["phenotype_id", "variant_id"]].values.tolist()
    assert [c for c in pairs.columns if "cov1" in c] == [
        "pval_cov1", "b_cov1", "b_cov1_se", "pval_g-cov1", "b_g-cov1", "b_g-cov1_se",
        "pval_cov1sq", "b_cov1sq", "b_cov1sq_se", "pval_g-cov1sq", "b_g-cov1sq", "b_g-cov1sq_se"]
    # designs with one or two minor-allele carriers make g, g*cov1 and g*cov1^2 collinear:
    # dqtl reports NaN there (counted), tensorQTL's float32 inverse gives arbitrary numbers
    singular = sub["b_g-cov1"].isna().to_numpy()
    assert pairs.attrs["n_singular"] == int(pairs["b_g-cov1"].isna().sum()) > 0
    assert (sub.loc[singular, "ma_count"] <= 4).all()
    for c in ("b_g-cov1", "b_g-cov1sq"):
        se = sub[f"{c}_se"].to_numpy()[~singular]
        d = np.abs(sub[c].to_numpy()[~singular] - ref[c].to_numpy()[~singular]) / se
        assert np.quantile(d, 0.95) < 1e-2, c
        # the rest: variants with 3 minor alleles, where float32 loses the ill-conditioned
        # solve (checked against float64 least squares below)
        assert (sub["ma_count"].to_numpy()[~singular][d > 0.1] <= 3).all(), c
    worst = sub[~singular].iloc[int(np.argmax(np.abs(
        sub["b_g-cov1"].to_numpy()[~singular] - ref["b_g-cov1"].to_numpy()[~singular])))]
    X, y = _design(g, phen, cov, two, worst["phenotype_id"], worst["variant_id"])
    b = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(worst[["b_g", "b_g-cov1", "b_g-cov1sq"]].to_numpy(float),
                               b[[-5, -2, -1]], rtol=1e-7)
    assert len(top) == 428 and top["tests_emt"].gt(0).all()


def _design(g, phen, cov, terms, pid, vid):
    """The full model's design (intercept, covariates, g, terms, products) and y, float64."""
    from dqtl.kernels.genotypes import decode_block
    from dqtl.study import genotype_array

    samples = list(g.sample_id.values.astype(str))
    ps = phen.sample_id.values.astype(str)
    j = list(g.variant_id.values.astype(str)).index(vid)
    block = np.asarray(genotype_array(g)[j:j + 1].compute())
    gg = decode_block(block, np.array([samples.index(s) for s in ps]), ploidy=2).G[0]
    y = phen.phenotype_values.values[list(phen.phenotype_id.values.astype(str)).index(pid)]
    T = terms.loc[ps].to_numpy(float)
    X = np.column_stack([np.ones(len(ps)), cov.covariate_values.values, gg, T, gg[:, None] * T])
    return X, y


def test_cli_interaction__nominal_and_permute_files(geuvadis, tmp_path):
    _, _, _, _, _, store = geuvadis
    out = tmp_path / "geu"
    args = [str(store), str(EXAMPLE / "expression.bed.gz"), str(out), "--covariates",
            str(EXAMPLE / "covariates_without_cov1.txt"), "--interaction",
            str(EXAMPLE / "interaction_cov1.txt"), "--no-progress"]
    assert main(["-q", "cis", *args]) == 0
    top = pd.read_csv(f"{out}.cis_qtl_top_assoc.txt.gz", sep="\t")
    ref = pd.read_csv(TQ / "geuvadis.cis_qtl_top_assoc.txt.gz", sep="\t")
    assert top["variant_id"].tolist() == ref["variant_id"].tolist()
    p1 = pd.read_parquet(f"{out}.cis_qtl_pairs.1.parquet")
    assert "pval_gi" in p1 and len(p1) > 0
    assert main(["-q", "cis", *args[:2], str(tmp_path / "perm"), *args[3:], "--mode", "permute",
                 "--permutations", "200"]) == 0
    res = pd.read_csv(tmp_path / "perm.cis_qtl.txt.gz", sep="\t")
    assert len(res) == 428
    assert {"pval_gi", "b_gi", "pval_perm", "pval_beta", "qval"} <= set(res.columns)
    assert res["pval_perm"].between(1 / 201 - 1e-8, 1).all()  # printed with 6 digits
    assert (tmp_path / "perm.cis_qtl.png").stat().st_size > 5000


def _sim_with_context(seed, n=300, n_genes=40, gi_effect=0.0, main_g=1.0, main_i=1.5):
    """A simulation whose phenotypes get large genotype and context main effects and, for the
    first half of the genes, a genotype x context effect of ``gi_effect``."""
    from dqtl.simulation import plant_interaction

    sim = dqtl.simulate(n_samples=n, n_variants=2000, n_phenotypes=n_genes, n_covariates=2,
                        n_hidden=0, fraction_egenes=1.0, effect_size=0.0, seed=seed)
    return plant_interaction(sim, seed=seed, gi_effect=gi_effect, main_g=main_g, main_i=main_i)


def test_interaction_permute__calibrated_under_strong_main_effects():
    """No interaction, genotype and context main effects of 1 and 1.5 residual SD: the gene-level
    p-values are uniform (Kolmogorov-Smirnov)."""
    pv = []
    for seed in (11, 12, 13):
        sim, inter, _ = _sim_with_context(seed, n_genes=40)
        res = map_cis_interaction_permute(sim, sim, sim, inter, nperm=200, window=1_000_000)
        pv.extend(res["pval_beta"].tolist())
    assert len(pv) >= 100
    assert stats.kstest(pv, "uniform").pvalue > 0.01


def test_interaction_permute__recovers_planted_at_least_as_eigenmt_bh():
    sim, inter, planted = _sim_with_context(21, n_genes=40, gi_effect=0.4)
    perm = map_cis_interaction_permute(sim, sim, sim, inter, nperm=500, window=1_000_000)
    _, top = map_cis_interaction(sim, sim, sim, inter, window=1_000_000)
    pid = sim.phenotype_id.values.astype(str)
    truth = dict(zip(pid, planted, strict=True))
    perm_hits = set(perm.loc[perm["qval"] <= 0.05, "phenotype_id"])
    emt_hits = set(top.loc[top["pval_adj_bh"] <= 0.05, "phenotype_id"])
    tp_perm = sum(truth[g] for g in perm_hits)
    tp_emt = sum(truth[g] for g in emt_hits)
    assert tp_perm >= tp_emt >= 10
    assert len(perm_hits) - tp_perm <= len(emt_hits) - tp_emt + 1


@pytest.mark.parametrize("content, match", [
    ("NA06984\t0.1\nNA06985\tabc\n", "not a finite number"),
    ("NA06984\t0.5\nNA06985\t0.5\n", "constant"),
    ("NA06984\t0.1\nNA06984\t0.2\n", "more than once"),
    ("NA06984\t0.1\nNA06985\tinf\n", "not a finite number"),
])
def test_read_interaction__bad_files(tmp_path, content, match):
    path = tmp_path / "i.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        read_interaction(path)


def test_read_interaction__header_and_terms(tmp_path):
    path = tmp_path / "i.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("sample\tage\tsex\nA\t30\t0\nB\t40\t1\nC\t35\t1\n")
    df = read_interaction(path)
    assert df.columns.tolist() == ["age", "sex"] and df.index.tolist() == ["A", "B", "C"]


@pytest.mark.parametrize("make, match", [
    (lambda i: i.iloc[:-3], "have no value"),
    (lambda i: pd.DataFrame(np.random.default_rng(0).normal(size=(len(i), 42)), index=i.index,
                            columns=[f"t{k}" for k in range(42)]), "degrees of freedom"),
    (lambda i: i.assign(j=2 * i["i"] + 1), "linearly dependent"),
])
def test_cli_interaction__bad_input_exit_2_no_output(geuvadis, tmp_path, capsys, make, match):
    _, _, _, inter, _, store = geuvadis
    path = tmp_path / "bad.txt"
    bad = make(inter)
    bad.index.name = "sample"
    bad.to_csv(path, sep="\t", header=bad.shape[1] > 1)
    out = tmp_path / "x"
    rc = main(["-q", "cis", str(store), str(EXAMPLE / "expression.bed.gz"), str(out), "--covariates",
               str(EXAMPLE / "covariates_without_cov1.txt"), "--interaction", str(path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("x.*"))


def test_interaction__collinear_term_rejected(geuvadis):
    g, phen, cov, _, _, _ = geuvadis
    samples = phen.sample_id.values.astype(str)
    cov2 = cov.covariate_values.sel(covariate=cov.covariate_id.values[0]).values if "covariate" in \
        cov.covariate_values.dims else cov.covariate_values.values[:, 0]
    term = pd.Series(2.0 * np.asarray(cov2) + 1.0, index=samples, name="dup")
    with pytest.raises(InputError, match="linear combination of the covariates"):
        map_cis_interaction(g, phen, cov, term)


def test_trans_interaction__equals_tensorqtl_and_the_cis_model(geuvadis, tmp_path):
    """tensorQTL's sparse trans interaction scan (p_gi <= 1e-4, no cis filter): the same pairs
    away from the threshold; tensorQTL does not impute missing calls in this mode, so the three
    variants with missing calls are compared with the cis interaction model instead."""
    from dqtl.association.trans_interaction import map_trans_interaction

    g, phen, cov, inter, _, store = geuvadis
    hits = map_trans_interaction(g, phen, cov, inter, pval_threshold=1e-4, cis_window=0)
    ref = pd.read_parquet(TQ / "geuvadis.trans_qtl_pairs.parquet")
    missing = {"snp_1_79772", "snp_1_82676", "snp_1_135032"}
    key = ["variant_id", "phenotype_id"]
    a = hits[~hits["variant_id"].isin(missing) & (hits["pval_gi"] < 0.9e-4)]
    b = ref[~ref["variant_id"].isin(missing) & (ref["pval_gi"] < 0.9e-4)]
    assert sorted(map(tuple, a[key].values)) == sorted(map(tuple, b[key].values))
    m = a.merge(b, on=key, suffixes=("", "_tq"))
    np.testing.assert_allclose(m["pval_gi"], m["pval_gi_tq"], rtol=2e-3)
    # every hit equals the cis interaction model's statistics for the same pair
    pairs, _ = map_cis_interaction(g, phen, cov, inter, window=10_000_000)
    c = hits.merge(pairs, on=key, suffixes=("", "_cis"))
    assert len(c) > 100
    for col in ("b_g", "b_gi", "b_gi_se", "pval_gi"):
        np.testing.assert_allclose(c[col], c[f"{col}_cis"], rtol=1e-9, err_msg=col)
    # BH over every test of the scan
    from dqtl.multitest.bh import bh

    np.testing.assert_allclose(hits["qval"], bh(hits["pval_gi"].to_numpy(), n_tests=hits.attrs["n_tests"]))
    # the CLI writes the same pairs
    out = tmp_path / "t"
    assert main(["-q", "trans", str(store), str(EXAMPLE / "expression.bed.gz"), str(out), "--covariates",
                 str(EXAMPLE / "covariates_without_cov1.txt"), "--interaction",
                 str(EXAMPLE / "interaction_cov1.txt"), "--pval-threshold", "1e-4", "--cis-window", "0",
                 "--no-progress"]) == 0
    cli = pd.read_parquet(f"{out}.trans_qtl_pairs.parquet")
    assert cli[key].values.tolist() == hits[key].values.tolist()


def test_interaction_permute__adaptive_stops_null_genes_and_keeps_the_rest():
    sim, inter, planted = _sim_with_context(21, n_genes=40, gi_effect=0.4)
    fixed = map_cis_interaction_permute(sim, sim, sim, inter, nperm=400).set_index("phenotype_id")
    adapt = map_cis_interaction_permute(sim, sim, sim, inter, nperm=400, nperm_min=100).set_index("phenotype_id")
    full = adapt["n_permutations"] == 400
    assert (~full).sum() >= 10 and full.sum() >= 5  # null genes stop early, strong ones run all
    assert set(adapt["n_permutations"]) <= {100, 200, 300, 400}
    np.testing.assert_allclose(adapt.loc[full, "pval_perm"], fixed.loc[adapt.index[full], "pval_perm"])
    # a gene that stopped has seen >= 10 permutation maxima above its statistic
    stopped = adapt[~full]
    assert (stopped["pval_perm"] >= 10 / (stopped["n_permutations"] + 1)).all()
