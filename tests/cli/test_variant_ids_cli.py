"""Variant IDs from the command line: genotypes whose IDs are missing ('.') or duplicated."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.simulation_files import write_simulation


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same simulated study (one contig: a plain VCF needs no index) as a VCF with IDs and as
    one whose IDs are all '.'."""
    d = tmp_path_factory.mktemp("vid")
    sim = dqtl.simulate(n_samples=150, n_variants=1500, n_phenotypes=24, n_contigs=1,
                        contig_length=20_000_000, fraction_egenes=0.6, effect_size=0.8, seed=11)
    named = write_simulation(sim, d / "named", formats=("vcf", "bed", "covariates"), prefix="s")
    dot = sim.assign(variant_id=("variants", np.full(sim.sizes["variants"], ".", dtype=object)))
    dotted = write_simulation(dot, d / "dot", formats=("vcf",), prefix="s")
    return d, {k: str(v[0]) for k, v in named.items()}, str(dotted["vcf"][0])


def _cis(vcf, files, out, *extra):
    return main(["-q", "cis", vcf, files["bed"], str(out), "--covariates", files["covariates"],
                 "--permutations", "200", "--seed", "3", "--no-progress", *extra])


def test_missing_ids_are_named_and_independent_conditions_on_the_right_variant(runs):
    """'.' IDs: the outputs name each variant CONTIG:POSITION:REF:ALT and the independent pass
    conditions on the permutation pass's top variants, so every number equals the run with IDs
    (before, every top variant was '.' and the conditioning took the genome's last variant)."""
    d, files, dot_vcf = runs
    tables = {}
    for name, vcf in (("named", files["vcf"]), ("dot", dot_vcf)):
        assert _cis(vcf, files, d / name / "p", "--mode", "permute") == 0
        assert _cis(vcf, files, d / name / "i", "--mode", "independent", "--cis-results",
                    str(d / name / "p.cis_qtl.txt.gz")) == 0
        tables[name] = [pd.read_csv(d / name / f, sep="\t")
                        for f in ("p.cis_qtl.txt.gz", "i.cis_independent_qtl.txt.gz")]
    for ours, theirs in zip(tables["dot"], tables["named"], strict=True):
        cols = [c for c in theirs.columns if c != "variant_id"]
        pd.testing.assert_frame_equal(ours[cols], theirs[cols])
        assert ours["variant_id"].str.fullmatch(r"\w+:\d+:[ACGT]+:[ACGT]+").all()
    ind = tables["dot"][1]
    assert len(ind) >= 5 and ind.groupby("phenotype_id")["rank"].min().eq(1).all()


def test_a_duplicated_id_named_by_an_input_is_one_error(runs, capsys):
    """Two variants share the ID of a --regress-cis signal: exit 2, one line naming the ID, where
    its variants are and the fix, no output (before: a pandas traceback)."""
    d, files, _ = runs
    assert _cis(files["vcf"], files, d / "dup" / "p", "--mode", "permute") == 0
    cis = pd.read_csv(d / "dup" / "p.cis_qtl.txt.gz", sep="\t")
    top = str(cis.sort_values("pval_beta")["variant_id"].iloc[0])
    lines = gzip.open(files["vcf"], "rt").read().splitlines()
    body = [i for i, ln in enumerate(lines) if not ln.startswith("#")]
    other = next(i for i in body if lines[i].split("\t")[2] != top)
    f = lines[other].split("\t")
    lines[other] = "\t".join([*f[:2], top, *f[3:]])
    vcf = d / "dup" / "dup.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    rc = main(["-q", "trans", str(vcf), files["bed"], str(d / "dup" / "t"), "--covariates",
               files["covariates"], "--regress-cis", str(d / "dup" / "p.cis_qtl.txt.gz"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"variant ID {top!r} names 2 variants" in err and "bcftools annotate --set-id" in err
    assert not list((d / "dup").glob("t*"))


def test_named_ids_and_id_lookups_on_a_dask_cluster(runs, dask_cluster):
    """The same '.'-ID study on a real scheduler and workers: the naming (a lazy layer of the
    genotype graph) and the chunk scans of the lookups run on the workers; the tables equal the
    local threads' run."""
    d, files, dot_vcf = runs
    out = d / "cluster"
    assert _cis(dot_vcf, files, out / "p", "--mode", "permute", "--scheduler-address", dask_cluster.address) == 0
    assert _cis(dot_vcf, files, out / "i", "--mode", "independent", "--cis-results",
                str(out / "p.cis_qtl.txt.gz"), "--scheduler-address", dask_cluster.address) == 0
    for f in ("p.cis_qtl.txt.gz", "i.cis_independent_qtl.txt.gz"):
        local = d / "dot" / f
        if not local.exists():  # this test run alone: the local run first
            mode = ["--mode", "permute"] if f.startswith("p.") else [
                "--mode", "independent", "--cis-results", str(d / "dot" / "p.cis_qtl.txt.gz")]
            assert _cis(dot_vcf, files, d / "dot" / f.split(".")[0], *mode) == 0
        pd.testing.assert_frame_equal(pd.read_csv(out / f, sep="\t"), pd.read_csv(local, sep="\t"))
