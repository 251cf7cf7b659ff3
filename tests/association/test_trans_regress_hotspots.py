"""``dqtl trans --regress-cis`` (a cis signal seen through LD disappears, a planted trans signal
remains) and the trans hotspot table and pictures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.kernels.genotypes import dosage_from_calls
from dqtl.simulation_files import write_simulation


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regress")
    sim = dqtl.simulate(n_samples=300, n_variants=3000, n_phenotypes=30, n_contigs=2,
                        contig_length=20_000_000, n_covariates=2, n_hidden=0, fraction_egenes=1.0,
                        effect_size=0.0, seed=7)
    rng = np.random.default_rng(7)
    pos = sim.variant_position.values
    vcontig = sim.variant_contig.values
    pcontig = sim.phenotype_contig.values.astype(str)
    contig_names = sim.contig_id.values.astype(str)
    tss = sim.phenotype_start.values + 1
    causal = sim.phenotype_causal_variant.values
    on1 = np.flatnonzero(pcontig == contig_names[0])
    a = next(j for j in on1 if tss[j] < 6_000_000)  # gene A: strong cis-eQTL at c
    c = causal[a]
    x = next(v for v in range(len(pos)) if vcontig[v] == vcontig[c] and pos[v] > tss[a] + 7_000_000)
    gt = np.asarray(sim.call_genotype.values).copy()
    gt[x] = gt[c]  # x: a far copy of c (perfect LD), outside the 5 Mb cis exclusion
    sim["call_genotype"] = (sim.call_genotype.dims, gt)
    G = dosage_from_calls(gt)
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    on2 = np.flatnonzero(vcontig != vcontig[c])
    v2, v3 = on2[100], on2[800]
    others = [j for j in on1 if j != a]
    b, hot = others[0], others[1:7]
    Y = rng.normal(size=sim.phenotype_values.shape)
    Y[a] += 1.2 * (G[c] - G[c].mean())
    Y[b] += 0.8 * (G[v2] - G[v2].mean())  # a genuine trans signal
    for j in hot:  # a hotspot: one variant, six targets
        Y[j] += 0.8 * (G[v3] - G[v3].mean())
    sim["phenotype_values"] = (sim.phenotype_values.dims, Y)
    files = {k: str(p[0]) for k, p in write_simulation(sim, tmp, formats=("zarr", "bed", "covariates"),
                                                       prefix="s").items()}
    vid = sim.variant_id.values.astype(str)
    pid = sim.phenotype_id.values.astype(str)
    cisf = tmp / "cis_independent_qtl.txt.gz"
    pd.DataFrame({"phenotype_id": [pid[a]], "variant_id": [vid[c]], "rank": [1]}).to_csv(
        cisf, sep="\t", index=False)
    ids = {"a": pid[a], "x": vid[x], "b": pid[b], "v2": vid[v2], "v3": vid[v3],
           "hot": sorted(pid[hot].tolist())}
    return files, cisf, ids, tmp


def _run(files, out, *extra):
    assert main(["-q", "trans", files["zarr"], files["bed"], str(out), "--covariates", files["covariates"],
                 "--pval-threshold", "1e-6", "--no-progress", *extra]) == 0
    return pd.read_parquet(f"{out}.trans_qtl_pairs.parquet")


def test_trans_regress_cis__ld_artefact_disappears_trans_signal_remains(study, tmp_path):
    files, cisf, ids, _ = study
    plain = _run(files, tmp_path / "plain")
    pairs = set(zip(plain["variant_id"], plain["phenotype_id"], strict=True))
    assert (ids["x"], ids["a"]) in pairs  # the cis signal of A seen through LD, 7 Mb away
    assert (ids["v2"], ids["b"]) in pairs
    reg = _run(files, tmp_path / "reg", "--regress-cis", str(cisf))
    rpairs = set(zip(reg["variant_id"], reg["phenotype_id"], strict=True))
    assert (ids["x"], ids["a"]) not in rpairs
    assert (ids["v2"], ids["b"]) in rpairs
    assert not any(p == ids["a"] for _, p in rpairs)  # nothing of A's cis signal is left


def test_trans_hotspots__table_and_pictures(study, tmp_path):
    files, _, ids, _ = study
    _run(files, tmp_path / "h")
    hot = pd.read_csv(tmp_path / "h.trans_hotspots.txt.gz", sep="\t")
    assert hot["variant_id"].tolist() == [ids["v3"]]
    row = hot.iloc[0]
    assert row["n_targets"] == 6 and sorted(row["targets"].split(",")) == ids["hot"]
    assert bool(row["is_locus_lead"])
    for name in ("trans_plot", "trans_manhattan"):
        assert (tmp_path / f"h.{name}.png").stat().st_size > 5000


def test_trans_regress_cis__unknown_variant_exit_2(study, tmp_path, capsys):
    files, _, ids, _ = study
    bad = tmp_path / "bad.txt"
    pd.DataFrame({"phenotype_id": [ids["a"]], "variant_id": ["nope"], "rank": [1]}).to_csv(bad, sep="\t", index=False)
    rc = main(["-q", "trans", files["zarr"], files["bed"], str(tmp_path / "x"), "--covariates",
               files["covariates"], "--regress-cis", str(bad), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not in the genotypes" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("x.*"))
