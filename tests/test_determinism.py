"""Same inputs, same seed, same bytes: every method's outputs are identical on the threaded
scheduler, on a real cluster (``dask scheduler`` + ``dask worker`` processes: one single-thread
worker with a nanny and one two-thread worker without, whose BLAS nothing but dqtl pins), and at
another variant chunking (ARCHITECTURE.md, "Determinism")."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.simulation_files import write_simulation
from tests.conftest import DaskCluster

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def mixed_cluster(tmp_path_factory):
    cluster = DaskCluster(tmp_path_factory.mktemp("det-cluster"), n_workers=0)
    try:
        cluster.add_worker("single", nthreads=1)
        cluster.add_worker("double-no-nanny", nthreads=2, nanny=False)
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("det")
    sim = dqtl.simulate(n_samples=160, n_variants=6000, n_phenotypes=40, n_covariates=3,
                        fraction_egenes=0.5, seed=17)
    f = {k: str(v[0]) for k, v in write_simulation(sim, d, formats=("zarr", "bed", "covariates"),
                                                   prefix="s").items()}
    rng = np.random.default_rng(1)
    samples = sim.sample_id.values.astype(str)
    pd.DataFrame({"id": samples, "sex": rng.integers(0, 2, len(samples))}).to_csv(
        d / "inter.txt", sep="\t", index=False)
    pd.DataFrame({"sample": samples, "context": np.where(rng.random(len(samples)) < 0.5, "A", "B")}
                 ).to_csv(d / "contexts.txt", sep="\t", index=False, header=False)
    f["inter"], f["contexts"] = str(d / "inter.txt"), str(d / "contexts.txt")
    # inputs of the downstream methods, made once on threads: cis and trans results, a GWAS
    for argv in (["cis", f["zarr"], f["bed"], str(d / "eqtl"), "--covariates", f["covariates"]],
                 ["cis", f["zarr"], f["bed"], str(d / "eqtl"), "--covariates", f["covariates"],
                  "--mode", "permute", "--permutations", "300"],
                 ["trans", f["zarr"], f["bed"], str(d / "tr"), "--covariates", f["covariates"],
                  "--pval-threshold", "1e-3"]):
        assert main(["-q", *argv, "--no-progress"]) == 0
    f["eqtl"], f["trans"] = str(d / "eqtl"), str(d / "tr.trans_qtl_pairs.parquet")
    f["gwas"] = _gwas(sim, int(sim.phenotype_causal_variant.values[
        np.flatnonzero(sim.phenotype_is_egene.values)[0]]), d / "gwas.tsv.gz")
    return f


def _gwas(sim, causal: int, path: Path) -> str:
    """GWAS-SSF summary statistics of a trait caused by variant ``causal`` (same samples)."""
    G = dqtl.kernels.dosage_from_calls(np.asarray(sim.call_genotype.values))
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    y = np.random.default_rng(4).normal(size=G.shape[1]) + 0.6 * G[causal]
    Gc, yc = G - G.mean(axis=1, keepdims=True), y - y.mean()
    ss = (Gc * Gc).sum(axis=1)
    ok = ss > 0
    beta = Gc[ok] @ yc / ss[ok]
    resid = ((yc[None, :] - beta[:, None] * Gc[ok]) ** 2).sum(axis=1) / (G.shape[1] - 2)
    alleles = sim.variant_allele.values.astype(str)[ok]
    pd.DataFrame({
        "chromosome": sim.contig_id.values[sim.variant_contig.values][ok].astype(str),
        "base_pair_location": sim.variant_position.values[ok], "effect_allele": alleles[:, 1],
        "other_allele": alleles[:, 0], "beta": beta, "standard_error": np.sqrt(resid / ss[ok]),
        "effect_allele_frequency": np.clip(G[ok].mean(axis=1) / 2, 1e-4, 1 - 1e-4),
        "n": G.shape[1]}).to_csv(path, sep="\t", index=False, compression="gzip")
    return str(path)


def _commands(f: dict[str, str], out: Path) -> dict[str, list[str]]:
    g, p, c = f["zarr"], f["bed"], f["covariates"]
    cis = ["cis", g, p]
    return {
        "cis_nominal": [*cis, str(out / "nom"), "--covariates", c],
        "cis_permute": [*cis, str(out / "perm"), "--covariates", c, "--mode", "permute",
                        "--permutations", "300", "--seed", "3"],
        "cis_independent": [*cis, str(out / "ind"), "--covariates", c, "--mode", "independent",
                            "--permutations", "300", "--seed", "3"],
        "interaction": [*cis, str(out / "int"), "--covariates", c, "--interaction", f["inter"]],
        "interaction_permute": [*cis, str(out / "intp"), "--covariates", c, "--interaction",
                                f["inter"], "--mode", "permute", "--permutations", "20",
                                "--seed", "3"],
        "contexts": [*cis, str(out / "ctx"), "--covariates", c, "--contexts", f["contexts"]],
        "trans": ["trans", g, p, str(out / "trans"), "--covariates", c],
        "genotype_qc": ["genotype-qc", g, str(out / "qc")],
        "genotype_pcs": ["covariates", str(out / "pcs.txt"), "--known", c, "--genotype-pcs", "4",
                         "--genotypes", g, "--seed", "2"],
        "finemap": ["finemap", g, p, str(out / "fm"), "--covariates", c],
        "coloc": ["coloc", str(out / "co"), "--gwas", f["gwas"], "--eqtl", f["eqtl"],
                  "--genotypes", g, "--method", "both"],
        "mediate": ["mediate", g, p, str(out / "med"), "--covariates", c, "--trans-results",
                    f["trans"], "--permutations", "200", "--seed", "5"],
        "factors": ["factors", p, str(out / "peer.txt"), "--covariates", c, "--n-factors", "3",
                    "--seed", "1", "--max-iter", "30"],
    }


def _run(f: dict[str, str], out: Path, method: str, extra: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    argv = _commands(f, out)[method]
    assert main(["-q", *argv, "--no-progress", *extra]) == 0
    return sorted(p for p in out.iterdir() if p.suffix not in (".png", ".json", ".html", ".log"))


def _content(path: Path) -> bytes | pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


METHODS = ["cis_nominal", "cis_permute", "cis_independent", "interaction", "interaction_permute",
           "contexts", "trans", "genotype_qc", "genotype_pcs", "finemap", "coloc", "mediate",
           "factors"]


@pytest.mark.parametrize("method", METHODS)
def test_same_bytes_on_threads_cluster_and_any_chunking(method, study, mixed_cluster, tmp_path):
    ref = _run(study, tmp_path / "threads", method, [])
    assert ref, "the command wrote nothing"
    for name, extra in [("cluster", ["--scheduler-address", mixed_cluster.address]),
                        ("chunked", ["--variants-chunk-size", "700"])]:
        other = _run(study, tmp_path / name, method, extra)
        assert [p.name for p in other] == [p.name for p in ref], name
        for a, b in zip(ref, other, strict=True):
            x, y = _content(a), _content(b)
            if isinstance(x, pd.DataFrame):
                pd.testing.assert_frame_equal(x, y, check_exact=True, obj=f"{name}: {a.name}")
            else:
                assert x == y, f"{name}: {a.name} differs"


def test_cluster_tasks_run_single_threaded_blas(mixed_cluster):
    """Workers started without a nanny keep BLAS's default thread count; dqtl's computes pin it
    to one thread per task there too (a product's last bits depend on BLAS's threads)."""
    import dask
    from distributed import Client

    from dqtl.compute import compute

    def blas_threads(_: int) -> int:
        from threadpoolctl import threadpool_info

        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    with Client(mixed_cluster.address) as client:
        tasks = [dask.delayed(blas_threads, pure=False)(i) for i in range(8)]
        assert set(compute(tasks)) == {1}
        assert client.ncores()  # both workers answered
