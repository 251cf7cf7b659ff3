"""``dqtl coloc`` end to end on a simulation: shared causal -> H4, distinct causal -> H3, null ->
neither; allele harmonisation; bad summary statistics."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.finemap.colocalize import harmonise_gwas
from dqtl.simulation_files import write_simulation

AMBIG = {("A", "T"), ("T", "A"), ("C", "G"), ("G", "C")}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coloc")
    sim = dqtl.simulate(n_samples=400, n_variants=4000, n_phenotypes=60, n_covariates=2,
                        n_hidden=0, fraction_egenes=0.5, effect_size=0.7, seed=8)
    files = {k: str(p[0]) for k, p in write_simulation(sim, tmp, formats=("zarr", "bed", "covariates"),
                                                       prefix="sim").items()}
    prefix = tmp / "eqtl"
    for mode in ("nominal", "permute"):
        assert main(["-q", "cis", files["zarr"], files["bed"], str(prefix), "--covariates",
                     files["covariates"], "--mode", mode, "--permutations", "300", "--no-progress"]) == 0
    return sim, files, prefix, tmp


def _gwas(sim, causal, tmp, name, seed=1, swap_every=2):
    """GWAS-SSF sumstats of a trait with effects at ``causal`` variants (the same samples)."""
    G = dqtl.kernels.dosage_from_calls(np.asarray(sim.call_genotype.values))
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    rng = np.random.default_rng(seed)
    y = rng.normal(size=G.shape[1])
    for c in causal:
        y = y + 0.6 * (G[c] - G[c].mean())
    Gc = G - G.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    ss = (Gc * Gc).sum(axis=1)
    beta = Gc @ yc / np.where(ss > 0, ss, 1)
    resid = ((yc[None, :] - beta[:, None] * Gc) ** 2).sum(axis=1) / (G.shape[1] - 2)
    se = np.sqrt(resid / np.where(ss > 0, ss, 1))
    alleles = sim.variant_allele.values.astype(str)
    ok = ss > 0
    ea, oa = alleles[:, 1].copy(), alleles[:, 0].copy()
    swap = (np.arange(len(beta)) % swap_every) == 0  # half the rows given on the other strand order
    ea[swap], oa[swap] = alleles[swap, 0], alleles[swap, 1]
    b = np.where(swap, -beta, beta)
    f = G.mean(axis=1) / 2
    f = np.where(swap, 1 - f, f)
    df = pd.DataFrame({"chromosome": "chr" + sim.contig_id.values[sim.variant_contig.values].astype(str),
                       "base_pair_location": sim.variant_position.values, "effect_allele": ea,
                       "other_allele": oa, "beta": b, "standard_error": se,
                       "effect_allele_frequency": np.clip(f, 1e-4, 1 - 1e-4), "n": G.shape[1]})[ok]
    path = tmp / f"{name}.tsv.gz"
    df.to_csv(path, sep="\t", index=False, compression="gzip")
    return path


def _pick(sim):
    """Two eGenes on different contigs whose causal variants have unambiguous alleles."""
    alleles = sim.variant_allele.values.astype(str)
    eg = np.flatnonzero(sim.phenotype_is_egene.values)
    causal = sim.phenotype_causal_variant.values
    contig = sim.variant_contig.values
    good = [i for i in eg if (alleles[causal[i], 0], alleles[causal[i], 1]) not in AMBIG]
    a = good[0]
    b = next(i for i in good if contig[causal[i]] != contig[causal[a]])
    return a, b


def test_cli_coloc__shared_distinct_and_null(study, tmp_path):
    sim, files, prefix, tmp = study
    a, b = _pick(sim)
    causal = sim.phenotype_causal_variant.values
    pos = sim.variant_position.values
    contig = sim.variant_contig.values
    alleles = sim.variant_allele.values.astype(str)
    # for gene b: a GWAS variant in its window, far from its eQTL variant (low LD), unambiguous
    far = [v for v in range(len(pos)) if contig[v] == contig[causal[b]]
           and 300_000 < abs(pos[v] - pos[causal[b]]) < 900_000
           and abs(pos[v] - (sim.phenotype_start.values[b] + 1)) < 900_000
           and (alleles[v, 0], alleles[v, 1]) not in AMBIG]
    gwas = _gwas(sim, [causal[a], far[0]], tmp_path, "gwas")
    out = tmp_path / "c"
    rc = main(["-q", "coloc", str(out), "--gwas", str(gwas), "--eqtl", str(prefix), "--genotypes",
               files["zarr"], "--no-progress"])
    assert rc == 0
    res = pd.read_csv(f"{out}.coloc.txt.gz", sep="\t").set_index("phenotype_id")
    ga, gb = str(sim.phenotype_id.values[a]), str(sim.phenotype_id.values[b])
    assert res.loc[ga, "PP.H4.abf"] > 0.8, res.loc[ga]
    assert res.loc[ga, "top_snp"] == str(sim.variant_id.values[causal[a]]) or \
        res.loc[ga, "top_snp_pp_h4"] < 0.9  # the causal or a variant in LD with it
    assert res.loc[gb, "PP.H3.abf"] > 0.8, res.loc[gb]
    # a locus plot for each colocalized gene, and only for those
    plots = sorted(p.name for p in tmp_path.glob("c.coloc.*.png"))
    assert plots == [f"c.coloc.{g}.png" for g in sorted(res.index[res["PP.H4.abf"] > 0.8])]
    assert (tmp_path / f"c.coloc.{ga}.png").stat().st_size > 10_000
    # eGenes far from both GWAS signals: neither colocalized nor distinct-causal called
    others = res.drop(index=[ga, gb])
    null_genes = [g for g in others.index
                  if all(abs(pos[c] - (sim.phenotype_start.values[list(sim.phenotype_id.values).index(g)] + 1)) > 2_500_000
                         or contig[c] != contig[causal[list(sim.phenotype_id.values).index(g)]]
                         for c in (causal[a], far[0]))]
    assert null_genes
    assert (others.loc[null_genes, ["PP.H3.abf", "PP.H4.abf"]].max(axis=1) < 0.8).all()


def _far_variant(sim, b):
    causal = sim.phenotype_causal_variant.values
    pos = sim.variant_position.values
    contig = sim.variant_contig.values
    alleles = sim.variant_allele.values.astype(str)
    return next(v for v in range(len(pos)) if contig[v] == contig[causal[b]]
                and 300_000 < abs(pos[v] - pos[causal[b]]) < 900_000
                and abs(pos[v] - (sim.phenotype_start.values[b] + 1)) < 900_000
                and (alleles[v, 0], alleles[v, 1]) not in AMBIG)


def test_cli_coloc__susie_pairs_of_credible_sets_with_ld_from_the_store(study, tmp_path):
    """--method both: coloc.susie rows (one per pair of credible sets) beside the abf rows; the
    shared causal gives PP.H4 > 0.8 with both hits on the causal variant (or in LD), the distinct
    one PP.H3 > 0.8; genes with no GWAS credible set say so; the plot gains a PIP panel."""
    sim, files, prefix, tmp = study
    a, b = _pick(sim)
    causal = sim.phenotype_causal_variant.values
    gwas = _gwas(sim, [causal[a], _far_variant(sim, b)], tmp_path, "gwas")
    out = tmp_path / "s"
    rc = main(["-q", "coloc", str(out), "--gwas", str(gwas), "--eqtl", str(prefix), "--genotypes",
               files["zarr"], "--method", "both", "--no-progress"])
    assert rc == 0
    res = pd.read_csv(f"{out}.coloc.txt.gz", sep="\t")
    ga, gb = str(sim.phenotype_id.values[a]), str(sim.phenotype_id.values[b])
    sus = res[res["method"] == "susie"].set_index("phenotype_id")
    abf = res[res["method"] == "abf"].set_index("phenotype_id")
    assert set(sus.index) == set(abf.index)  # every gene tried by both methods
    ra = sus.loc[[ga]]
    best = ra.loc[ra["PP.H4.abf"].idxmax()] if ra["PP.H4.abf"].notna().any() else None
    assert best is not None and best["PP.H4.abf"] > 0.8, ra
    assert best["cs_eqtl"].startswith("L") and best["cs_gwas"].startswith("L")
    vid = sim.variant_id.values.astype(str)
    G = dqtl.kernels.dosage_from_calls(np.asarray(sim.call_genotype.values))
    lead_r2 = np.corrcoef(G[causal[a]], G[list(vid).index(best["hit_gwas"])])[0, 1] ** 2
    assert best["hit_gwas"] == vid[causal[a]] or lead_r2 > 0.5
    rb = sus.loc[[gb]]
    assert (rb["PP.H3.abf"] > 0.8).any(), rb
    # a gene far from both GWAS signals: no GWAS credible set to pair with
    far_genes = [g for g in sus.index if g not in (ga, gb) and sus.loc[[g], "PP.H4.abf"].isna().all()]
    assert far_genes and sus.loc[far_genes, "note"].str.contains("no credible set").all()
    assert (out.parent / f"s.coloc.{ga}.png").stat().st_size > 10_000


def test_cli_coloc__susie_with_a_user_ld_matrix_equals_store_ld(study, tmp_path, capsys):
    sim, files, prefix, tmp = study
    a, _ = _pick(sim)
    causal = sim.phenotype_causal_variant.values
    gwas = _gwas(sim, [causal[a]], tmp_path, "gwas")
    # the store's LD over gene a's window, written as the user's file
    ga = str(sim.phenotype_id.values[a])
    pairs = pd.concat([pd.read_parquet(p) for p in sorted(tmp.glob("eqtl.cis_qtl_pairs.*.parquet"))])
    ids = pairs.loc[pairs["phenotype_id"] == ga, "variant_id"].astype(str).tolist()
    vid = list(sim.variant_id.values.astype(str))
    G = dqtl.kernels.dosage_from_calls(np.asarray(sim.call_genotype.values))
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    R = np.corrcoef(G[[vid.index(i) for i in ids]])
    ld = pd.DataFrame(R, columns=ids)
    ld.insert(0, "variant_id", ids)
    ld_path = tmp_path / "ld.tsv.gz"
    ld.to_csv(ld_path, sep="\t", index=False, float_format="%.17g")
    outs = {}
    for name, extra in (("store", []), ("user", ["--ld", str(ld_path)])):
        out = tmp_path / name
        assert main(["-q", "coloc", str(out), "--gwas", str(gwas), "--eqtl", str(prefix),
                     "--genotypes", files["zarr"], "--method", "susie", "--no-progress", *extra]) == 0
        outs[name] = pd.read_csv(f"{out}.coloc.txt.gz", sep="\t").set_index("phenotype_id")
    s, u = outs["store"].loc[[ga]], outs["user"].loc[[ga]]
    np.testing.assert_allclose(u["PP.H4.abf"].to_numpy(float), s["PP.H4.abf"].to_numpy(float),
                               rtol=1e-6)
    # a malformed LD file: one line, exit 2, no output
    capsys.readouterr()
    bad = tmp_path / "bad_ld.tsv"
    ld.iloc[:, :-1].to_csv(bad, sep="\t", index=False)
    rc = main(["-q", "coloc", str(tmp_path / "x"), "--gwas", str(gwas), "--eqtl", str(prefix),
               "--genotypes", files["zarr"], "--method", "susie", "--ld", str(bad), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "square" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("x.coloc*"))


def test_harmonise_gwas__flips_swapped_drops_ambiguous_and_mismatched():
    variants = pd.DataFrame({"variant_id": ["v1", "v2", "v3", "v4"], "contig": ["1"] * 4,
                             "position": [10, 20, 30, 40], "ref": ["A", "C", "A", "G"],
                             "alt": ["G", "T", "T", "C"]})
    gwas = pd.DataFrame({"chromosome": ["chr1"] * 5, "base_pair_location": [10, 20, 30, 40, 50],
                         "effect_allele": ["G", "C", "T", "A", "A"],
                         "other_allele": ["A", "T", "A", "G", "C"],
                         "beta": [0.2, 0.3, 0.1, 0.1, 0.1], "standard_error": [0.1] * 5,
                         "effect_allele_frequency": [0.3, 0.2, 0.4, 0.5, 0.5]})
    out, rep = harmonise_gwas(gwas, variants)
    assert out["variant_id"].tolist() == ["v1", "v2"]
    np.testing.assert_allclose(out["beta"], [0.2, -0.3])  # v2 given as REF/ALT: flipped
    np.testing.assert_allclose(out["MAF"], [0.3, 0.2])
    assert rep == {"gwas_variants": 5, "not_in_genotypes": 1, "strand_ambiguous_dropped": 1,
                   "allele_mismatch_dropped": 1, "swapped_alleles_flipped": 1, "kept": 2}


def test_gwas_site_variants__the_store_rows_at_gwas_positions_from_their_chunks():
    """Only the store's variants at GWAS positions (contigs matched as harmonise_gwas matches
    them) are read; harmonising against them equals harmonising against the whole store."""
    import dask.array as da
    import xarray as xr

    from dqtl.finemap.colocalize import gwas_site_variants

    long = "A" + "CT" * 200  # a long indel allele
    al = np.array([["A", "G"], ["C", "T"], ["A", long], ["G", "C"], ["T", "A"], ["C", "G"]], dtype=object)
    store = xr.Dataset({
        "variant_id": ("variants", da.from_array(np.array([f"v{i}" for i in range(6)], dtype=object), chunks=2)),
        "variant_allele": (("variants", "alleles"), da.from_array(al, chunks=(2, 2))),
        "variant_contig": ("variants", np.array([0, 0, 0, 1, 1, 1])),
        "variant_position": ("variants", np.array([10, 20, 30, 10, 20, 40])),
        "contig_id": ("contigs", np.array(["chr1", "chr2"], dtype=object)),
    })
    gwas = pd.DataFrame({"chromosome": ["1", "1", "2", "2", "3", "chr1"],
                         "base_pair_location": [20, 30, 10, 99, 10, 10],
                         "effect_allele": ["T", long, "C", "A", "A", "A"],
                         "other_allele": ["C", "A", "G", "C", "G", "G"],
                         "beta": [0.2, 0.3, 0.1, 0.1, 0.1, -0.2], "standard_error": [0.1] * 6})
    sites = gwas_site_variants(store, gwas)
    assert sites["variant_id"].tolist() == ["v0", "v1", "v2", "v3"] and sites["alt"][2] == long
    whole = pd.DataFrame({"variant_id": [f"v{i}" for i in range(6)], "contig": ["chr1"] * 3 + ["chr2"] * 3,
                          "position": [10, 20, 30, 10, 20, 40], "ref": al[:, 0], "alt": al[:, 1]})
    got, got_rep = harmonise_gwas(gwas, sites)
    want, want_rep = harmonise_gwas(gwas, whole)
    pd.testing.assert_frame_equal(got, want)
    assert got_rep == want_rep and got_rep["not_in_genotypes"] == 2 and got_rep["kept"] == 3
    assert got_rep["strand_ambiguous_dropped"] == 1 and got_rep["swapped_alleles_flipped"] == 1


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.drop(columns="standard_error"), "missing columns"),
    (lambda d: d.assign(standard_error=0.0), "standard_error must be > 0"),
    (lambda d: pd.concat([d, d.iloc[:1]]), "appears more than once"),
    (lambda d: d.assign(p_value=1.5), "p_value must be in"),
    (lambda d: d.assign(chromosome="chr9"), "no GWAS variant overlaps"),
    (lambda d: d.assign(effect_allele="N", other_allele="N"), "no GWAS variant overlaps"),
])
def test_cli_coloc__bad_sumstats_exit_2_one_line_no_output(study, tmp_path, capsys, edit, match):
    sim, files, prefix, tmp = study
    good = pd.read_csv(_gwas(sim, [], tmp_path, "base"), sep="\t")
    path = tmp_path / "bad.tsv.gz"
    with gzip.open(path, "wt") as f:
        edit(good).to_csv(f, sep="\t", index=False)
    out = tmp_path / "c"
    rc = main(["-q", "coloc", str(out), "--gwas", str(path), "--eqtl", str(prefix), "--genotypes",
               files["zarr"], "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and match in err, err
    assert not list(tmp_path.glob("c.coloc*"))
