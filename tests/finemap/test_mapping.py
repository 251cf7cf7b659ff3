"""SuSiE fine-mapping over genes (the study plan's graph) and ``dqtl finemap``."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.finemap.mapping import map_finemap
from dqtl.finemap.susie import susie
from dqtl.study import plan_study
from tests.conftest import EXAMPLE

PGEN = str(EXAMPLE / "geuvadis_ceu90_maf01.pgen")
BED = str(EXAMPLE / "expression.bed.gz")
COV = str(EXAMPLE / "covariates.txt")


@pytest.fixture(scope="module")
def sim():
    return dqtl.simulate(n_samples=300, n_variants=3000, n_phenotypes=40, n_covariates=2,
                         n_hidden=0, fraction_egenes=0.5, effect_size=0.6, seed=11)


def test_map_finemap__credible_sets_cover_planted_causal_variants(sim):
    res = map_finemap(sim, sim, sim, max_effects=5)  # the simulation plants within ±1 Mb
    causal = sim.phenotype_causal_variant.values
    vid = sim.variant_id.values.astype(str)
    egenes = sim.phenotype_id.values[sim.phenotype_is_egene.values].astype(str)
    cs = pd.DataFrame({"p": res.cs_phenotype_id.values, "v": res.cs_variant_id.values,
                       "size": res.cs_size.values})
    covered = [g for g in egenes
               if vid[causal[list(sim.phenotype_id.values).index(g)]] in set(cs.v[cs.p == g])]
    found = set(cs.p)
    # planted effects of 0.6 on 300 samples: most are fine-mapped, and sets are small
    assert len(covered) >= 0.8 * len(egenes), (len(covered), len(egenes))
    assert len(found - set(egenes)) <= 1  # null genes rarely get a set
    assert cs["size"].median() <= 10
    # every tested variant of every gene has a PIP in [0, 1]
    assert ((res.pip.values >= 0) & (res.pip.values <= 1 + 1e-12)).all()


def test_map_finemap__equals_susie_on_residualized_window(sim):
    plan = plan_study(sim, sim, sim, window=200_000)
    gene = str(plan.phenotype_id[3])
    res = map_finemap(sim, sim, sim, phenotype_ids=[gene], plan=plan, max_effects=5)
    grp = plan.groups[0]
    j = int(np.searchsorted(grp.index, 3))
    y = grp.P_hat[j] * grp.p_norm[j]
    lo, hi = int(plan.window_lo[3]), int(plan.window_hi[3])
    from dqtl.kernels.genotypes import decode_block

    dec = decode_block(np.asarray(sim.call_genotype.values[lo:hi]), plan.genotype_sample_index,
                       ploidy=2)
    G = dec.G[dec.valid]
    Xr = G - (G @ grp.Q) @ grp.Q.T
    fit = susie(Xr.T, y, L=5)
    np.testing.assert_allclose(res.pip.values, fit.pip, rtol=1e-12, atol=1e-14)


def test_cli_finemap__geuvadis_egenes_writes_both_files(tmp_path):
    prefix = tmp_path / "geu"
    assert main(["-q", "cis", PGEN, BED, str(prefix), "--covariates", COV, "--mode", "permute",
                 "--permutations", "1000", "--no-progress"]) == 0
    rc = main(["-q", "finemap", PGEN, BED, str(prefix), "--covariates", COV, "--cis-results",
               f"{prefix}.cis_qtl.txt.gz", "--no-progress"])
    assert rc == 0
    cs = pd.read_csv(f"{prefix}.susie_cs.txt.gz", sep="\t")
    assert list(cs.columns) == ["phenotype_id", "cs_id", "variant_id", "pip", "cs_coverage",
                                "cs_min_abs_corr", "cs_size"]
    perm = pd.read_csv(f"{prefix}.cis_qtl.txt.gz", sep="\t")
    egenes = set(perm.phenotype_id[perm.qval <= 0.05])
    assert set(cs.phenotype_id) <= egenes and len(set(cs.phenotype_id)) >= 0.8 * len(egenes)
    pips = pd.read_parquet(f"{prefix}.susie_pips.parquet")
    assert set(pips.phenotype_id) == egenes
    # each eGene's top permutation variant is in one of its credible sets or has a high PIP
    top = perm[perm.qval <= 0.05].set_index("phenotype_id").variant_id
    merged = pips.set_index(["phenotype_id", "variant_id"]).pip
    assert np.mean([merged.get((g, v), 0) > 0.1 for g, v in top.items()]) >= 0.8


@pytest.mark.parametrize("extra, match", [
    (["--cis-results", "{p}.missing.txt.gz"], "do not exist"),
    (["--cis-results", "{p}.bad.txt.gz"], "lacks columns"),
    (["--fdr", "2"], "--fdr must be in"),
    (["--coverage", "1.5"], "--coverage must be in"),
])
def test_cli_finemap__bad_input_exit_2_one_line_no_output(tmp_path, capsys, extra, match):
    p = tmp_path / "x"
    with gzip.open(f"{p}.bad.txt.gz", "wt") as f:
        f.write("phenotype_id\tvariant_id\nG1\tv1\n")
    extra = [e.format(p=p) for e in extra]
    rc = main(["-q", "finemap", PGEN, BED, str(p), "--covariates", COV, "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and match in err, err
    assert not list(tmp_path.glob("x.susie*"))


def test_map_finemap__geuvadis_credible_sets_equal_tensorqtl_susie_map():
    import json

    from dqtl.io.convert import load_genotypes
    from tests.conftest import REFERENCE

    ref = REFERENCE / "tensorqtl_susie"
    egenes = json.loads((ref / "summary.json").read_text())["egenes"]
    geno = load_genotypes(str(EXAMPLE / "geuvadis_ceu90_maf01"), format="pgen")
    phen = dqtl.read_phenotype_bed(BED)
    cov = dqtl.read_covariates(COV, sample_ids=phen.sample_id.values)
    res = map_finemap(geno, phen, cov, phenotype_ids=egenes)
    tq = pd.read_csv(ref / "geuvadis.susie_cs.tsv", sep="\t")
    ours = pd.DataFrame({"phenotype_id": res.cs_phenotype_id.values,
                         "variant_id": res.cs_variant_id.values, "cs": res.cs_id.values})
    reported = sorted(set(tq.phenotype_id))
    assert len(reported) == 5
    for g in reported:
        mine = {frozenset(d.variant_id) for _, d in ours[ours.phenotype_id == g].groupby("cs")}
        theirs = {frozenset(d.variant_id) for _, d in tq[tq.phenotype_id == g].groupby("cs_id")}
        assert mine == theirs, g
    pips = pd.DataFrame({"phenotype_id": res.pip_phenotype_id.values,
                         "variant_id": res.pip_variant_id.values, "pip": res.pip.values})
    m = pips.merge(pd.read_csv(ref / "geuvadis.susie_pips.tsv", sep="\t"),
                   on=["phenotype_id", "variant_id"], suffixes=("", "_tq"))
    diff = (m.pip - m.pip_tq).abs().groupby(m.phenotype_id).max()
    close = diff[diff.index != "ENSG00000189339"]  # see tests/reference/tensorqtl_susie/README.md
    assert len(close) == 4 and (close < 1e-4).all(), diff
