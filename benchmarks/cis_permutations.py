"""Benchmark: dqtl cis permutations (``map_cis_permutations``) vs tensorQTL ``map_cis``.

Usage (from the repository root)::

    python benchmarks/cis_permutations.py                      # 100 of 2000 genes, 10000 perms
    python benchmarks/cis_permutations.py --phenotype-subset 0 # all 2000 genes (~15/45 min dqtl/tensorQTL)
    python benchmarks/cis_permutations.py --permutations 1000 --phenotype-subset 0  # all genes, 1k

Data: the same cached simulation as ``cis_nominal.py`` (500 samples, 100k variants, 2000 genes by
default; ~9.5k variants per ±1 Mb window). At 10000 permutations the full set is ~2e14 flops of
products per tool, more than 10 minutes on 2 cores, so by default both tools run on the same
evenly spaced ``--phenotype-subset`` genes, and the full-set time is EXTRAPOLATED (marked so) by
the ratio of summed window sizes (the work is linear in variants x permutations per gene).

Runs, each in a fresh interpreter: dqtl float64 (default) and float32 (``--precisions``), with the
same seed as tensorQTL (the same permutations: ``RandomState(seed).permutation`` stream), then
tensorQTL ``cis.map_cis`` through ``benchmarks/tensorqtl_runner.py``. Baselines printed as ratios:
tensorQTL's time, and a raw float32 GEMM of the permutation products' total size (one (2000 x n)
@ (n x v) product timed here, scaled to sum_g v_g x nperm). Agreement: same top variant fraction,
Spearman of pval_beta, pval_perm differences in units of 1/(nperm+1).
``--dqtl-blas-threads N`` sets OPENBLAS_NUM_THREADS for the dqtl children only (diagnostic: dask
runs 2 worker threads, each calling a 2-thread BLAS by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("dqtl.benchmarks.cis_permutations")


def dqtl_worker(args: argparse.Namespace) -> int:
    """Run dqtl's permutation pass once; write its table; print a JSON line (child process)."""
    t0 = time.perf_counter()
    import numpy as np

    from dqtl.association.permutation import map_cis_permutations
    from dqtl.io.results import to_tensorqtl_cis

    import_s = time.perf_counter() - t0
    geno, phen, cov, load_s = C.load_dqtl_inputs(args)
    dtype = np.float32 if args.precision == "float32" else np.float64
    cpu0 = C.cpu_s()
    t0 = time.perf_counter()
    df = to_tensorqtl_cis(map_cis_permutations(geno, phen, cov, permutations=args.permutations,
                                               seed=args.perm_seed, window=args.window, dtype=dtype))
    compute_s = time.perf_counter() - t0
    df.to_parquet(args.table)
    out = {
        "tool": "dqtl",
        "precision": args.precision,
        "import_s": import_s,
        "load_s": load_s,
        "compute_s": compute_s,
        "compute_cpu_s": C.cpu_s() - cpu0,
        "n_phenotypes": int(len(df)),
        "files": [str(args.table)],
        "peak_rss_mib": C.self_peak_rss_mib(),
        "blas": C.blas_info(),
    }
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


def window_sizes(bed: Path, pvar: Path, window: int) -> Any:
    """Variants per phenotype window (tensorQTL's rule: start+1-w <= pos <= end+w, same contig)."""
    import numpy as np
    import pandas as pd

    ph = pd.read_csv(bed, sep="\t", usecols=[0, 1, 2], dtype={"#chr": str})
    pv = pd.read_csv(pvar, sep="\t", usecols=[0, 1], dtype={"#CHROM": str})
    out = np.zeros(len(ph), dtype=np.int64)
    for c, g in ph.groupby("#chr", sort=False):
        pos = np.sort(pv.loc[pv["#CHROM"] == c, "POS"].to_numpy())
        lo = np.searchsorted(pos, g["start"].to_numpy() + 1 - window, side="left")
        hi = np.searchsorted(pos, g["end"].to_numpy() + window, side="right")
        out[g.index.to_numpy()] = hi - lo
    return out


def gemm_rate(n: int, v: int, *, b: int = 2000, dtype: str = "float32", reps: int = 5) -> float:
    """Best-of-``reps`` GFLOP/s of a (b x n) @ (n x v) product in this process's BLAS."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((b, n)).astype(dtype)
    g = rng.standard_normal((v, n)).astype(dtype)
    out = np.empty((b, v), dtype=dtype)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, g.T, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * b * n * v / best / 1e9


def agreement(ours: Any, ref: Any, nperm: int) -> dict[str, Any]:
    """Top variant, pval_beta and pval_perm agreement of two cis_qtl tables (by phenotype_id)."""
    import numpy as np
    from scipy.stats import spearmanr

    m = ours.merge(ref, on="phenotype_id", suffixes=("", "_ref"))
    out: dict[str, Any] = {"n_matched": len(m), "n_ours": len(ours), "n_ref": len(ref)}
    if not len(m):
        return out
    out["same_top_variant_fraction"] = float((m["variant_id"] == m["variant_id_ref"]).mean())
    out["spearman_pval_beta"] = float(spearmanr(m["pval_beta"], m["pval_beta_ref"])[0])
    rel = np.abs(m["pval_beta"] - m["pval_beta_ref"]) / m["pval_beta_ref"].abs()
    out["max_rel_pval_beta"] = float(rel.max())
    out["median_rel_pval_beta"] = float(rel.median())
    out["max_abs_pval_perm_diff_in_perms"] = float(
        (np.abs(m["pval_perm"] - m["pval_perm_ref"]) * (nperm + 1)).max())
    out["max_rel_pval_nominal"] = float(
        (np.abs(m["pval_nominal"] - m["pval_nominal_ref"]) / m["pval_nominal_ref"]).max())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_data_args(p)
    p.add_argument("--permutations", type=int, default=10_000)
    p.add_argument("--perm-seed", type=int, default=0, help="permutation seed (both tools)")
    p.add_argument("--phenotype-subset", type=int, default=100,
                   help="genes (evenly spaced) both tools run on; 0 = all (default 100)")
    p.add_argument("--precisions", default="float64,float32", help="dqtl precisions to run")
    p.add_argument("--dqtl-blas-threads", type=int, default=None,
                   help="OPENBLAS_NUM_THREADS for the dqtl children (default: unchanged)")
    p.add_argument("--keep-outputs", action="store_true")
    p.add_argument("--worker", choices=["dqtl"], help=argparse.SUPPRESS)
    p.add_argument("--zarr", help=argparse.SUPPRESS)
    p.add_argument("--bed", help=argparse.SUPPRESS)
    p.add_argument("--covariates-file", help=argparse.SUPPRESS)
    p.add_argument("--table", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float64", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        logging.basicConfig(level=logging.WARNING)
        return dqtl_worker(args)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    blas_env_before = C.prepare_blas_env(keep=args.keep_blas_env)
    t_start = time.perf_counter()
    machine = C.machine_info()
    machine["blas_env_before_unset"] = blas_env_before
    params = C.simulation_params(args)
    paths = C.ensure_simulation(params, args.cache_dir)
    work = args.cache_dir / "run_permutations"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    subset = args.phenotype_subset if 0 < args.phenotype_subset < args.phenotypes else 0
    bed = C.subset_bed(paths["bed"], subset or None, paths["dir"])
    env = ({"OPENBLAS_NUM_THREADS": str(args.dqtl_blas_threads)}
           if args.dqtl_blas_threads else None)

    import pandas as pd

    runs: dict[str, dict[str, Any]] = {}
    for prec in [s.strip() for s in args.precisions.split(",") if s.strip()]:
        table = work / f"dqtl_{prec}.parquet"
        cmd = [sys.executable, __file__, "--worker", "dqtl", "--zarr", paths["zarr"], "--bed", bed,
               "--covariates-file", paths["covariates"], "--table", table, "--precision", prec,
               "--window", str(args.window), "--permutations", str(args.permutations),
               "--perm-seed", str(args.perm_seed)]
        runs[f"dqtl_{prec}"] = C.run_child(cmd, env=env)
    if args.tensorqtl_python:
        cmd = [args.tensorqtl_python, C.TQ_RUNNER, "cis", "--pgen-prefix", paths["pgen_prefix"],
               "--bed", bed, "--covariates", paths["covariates"], "--outdir", work / "tq",
               "--window", str(args.window), "--nperm", str(args.permutations),
               "--seed", str(args.perm_seed)]
        runs["tensorqtl"] = C.run_child(cmd)

    tables = {k: pd.read_parquet(r["files"][0]) for k, r in runs.items()}
    sizes_all = window_sizes(paths["bed"], paths["pgen_prefix"].with_suffix(".pvar"), args.window)
    sizes_run = window_sizes(bed, paths["pgen_prefix"].with_suffix(".pvar"), args.window)
    scale_to_all = float(sizes_all.sum() / sizes_run.sum())
    n = args.samples
    v_med = int(sorted(sizes_run)[len(sizes_run) // 2])
    gemm = {dt: gemm_rate(n, v_med, dtype=dt) for dt in ("float32", "float64")}
    flops = 2.0 * float(sizes_run.sum()) * n * args.permutations
    gemm_s = {dt: flops / (rate * 1e9) for dt, rate in gemm.items()}
    derived: dict[str, Any] = {
        "gemm_shape": [2000, n, v_med],
        "gemm_gflops": gemm,
        "gemm_bound_s": gemm_s,
        "product_flops": flops,
        "sum_window_variants_run": int(sizes_run.sum()),
        "sum_window_variants_all": int(sizes_all.sum()),
        "scale_to_all_genes": scale_to_all,
    }
    for r in runs.values():
        r["ratio_compute_over_gemm_f32"] = r["compute_s"] / gemm_s["float32"]
        r["effective_gflops"] = flops / r["compute_s"] / 1e9
        if subset:
            r["all_genes_compute_s_EXTRAPOLATED"] = r["compute_s"] * scale_to_all
    if "tensorqtl" in runs:
        tq = runs["tensorqtl"]
        for k, r in runs.items():
            if k.startswith("dqtl"):
                r["ratio_compute_over_tensorqtl"] = r["compute_s"] / tq["compute_s"]
                r["ratio_process_wall_over_tensorqtl"] = r["process_wall_s"] / tq["process_wall_s"]
                r["ratio_peak_rss_over_tensorqtl"] = r["peak_rss_mib"] / tq["peak_rss_mib"]
                r["agreement_vs_tensorqtl"] = agreement(tables[k], tables["tensorqtl"],
                                                        args.permutations)
    if "dqtl_float32" in tables and "dqtl_float64" in tables:
        derived["dqtl_float32_vs_float64"] = agreement(tables["dqtl_float32"],
                                                       tables["dqtl_float64"], args.permutations)
    record = {
        "benchmark": "cis_permutations",
        "git": C.git_revision(),
        "machine": machine,
        "simulation": params,
        "window": args.window,
        "permutations": args.permutations,
        "perm_seed": args.perm_seed,
        "phenotype_subset": subset,
        "dqtl_blas_threads": args.dqtl_blas_threads,
        "runs": runs,
        "derived": derived,
        "loadavg_end": C.loadavg(),
        "total_s": time.perf_counter() - t_start,
        "command": " ".join(["python", "benchmarks/cis_permutations.py", *(argv or sys.argv[1:])]),
    }
    if not args.keep_outputs:
        shutil.rmtree(work, ignore_errors=True)
    C.write_record(record, args.out or (args.cache_dir / "cis_permutations.json"))
    sys.stdout.write(report(record) + "\n")
    return 0


def report(rec: dict[str, Any]) -> str:
    """Markdown summary of a record."""
    m, sim, der = rec["machine"], rec["simulation"], rec["derived"]
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture', '')} "
                     f"x{b.get('num_threads')}" for b in m["blas"])
    genes = rec["phenotype_subset"] or sim["n_phenotypes"]
    lines = [
        f"- date: {m['date']}; git {rec['git']}",
        f"- machine: {m['host_cpu']}, {m['logical_cores']} cores, {m['memory_gib']} GiB; "
        f"dqtl BLAS: {blas}; OPENBLAS_CORETYPE/L2_SIZE before unset: {m['blas_env_before_unset']}"
        + (f"; dqtl children OPENBLAS_NUM_THREADS={rec['dqtl_blas_threads']}"
           if rec.get("dqtl_blas_threads") else ""),
        f"- load average at start {m['loadavg']}, at end {rec['loadavg_end']}",
        f"- data: {sim['n_samples']} samples, {sim['n_variants']:,} variants on {sim['n_contigs']} "
        f"contigs of {sim['contig_length']:,} bp, {sim['n_phenotypes']:,} phenotypes "
        f"(run on {genes:,}), {sim['n_covariates']} covariates, window ±{rec['window']:,}, "
        f"{rec['permutations']:,} permutations, seed {rec['perm_seed']}",
        f"- work: {der['sum_window_variants_run']:,} window variants in total "
        f"(all genes: {der['sum_window_variants_all']:,}); permutation products "
        f"{der['product_flops']:.2e} flop; raw GEMM {der['gemm_shape']} "
        f"{der['gemm_gflops']['float32']:.0f} GFLOP/s float32, "
        f"{der['gemm_gflops']['float64']:.0f} GFLOP/s float64 -> GEMM-bound time "
        f"{der['gemm_bound_s']['float32']:.1f} s (float32)",
        f"- command: `{rec['command']}` (total {rec['total_s']:.0f} s)",
        "",
    ]
    rows = []
    for name, r in rec["runs"].items():
        a = r.get("agreement_vs_tensorqtl", {})
        rows.append({
            "run": name, "genes": r.get("n_phenotypes") or r.get("n_phenotypes_out"),
            "compute s": r["compute_s"], "compute CPU s": r.get("compute_cpu_s"),
            "process wall s": r["process_wall_s"],
            "vs tensorQTL": r.get("ratio_compute_over_tensorqtl", 1.0 if name == "tensorqtl" else ""),
            "vs raw f32 GEMM": r["ratio_compute_over_gemm_f32"],
            "GFLOP/s": r["effective_gflops"], "peak RSS MiB": r["peak_rss_mib"],
            "all genes s (EXTRAPOLATED)": r.get("all_genes_compute_s_EXTRAPOLATED", ""),
            "same top": a.get("same_top_variant_fraction", ""),
            "Spearman pval_beta": a.get("spearman_pval_beta", ""),
            "max |Δpval_perm|·(N+1)": a.get("max_abs_pval_perm_diff_in_perms", ""),
            "load avg before": str(r["loadavg_before"]),
        })
    cols = ["run", "genes", "compute s", "compute CPU s", "process wall s", "vs tensorQTL", "vs raw f32 GEMM",
            "GFLOP/s", "peak RSS MiB", "all genes s (EXTRAPOLATED)", "same top",
            "Spearman pval_beta", "max |Δpval_perm|·(N+1)", "load avg before"]
    lines.append(C.markdown_table(rows, cols))
    ff = der.get("dqtl_float32_vs_float64")
    if ff:
        lines += ["", f"- dqtl float32 vs float64: same top {ff['same_top_variant_fraction']:.4f}, "
                      f"max rel pval_beta {ff['max_rel_pval_beta']:.1e}, max |Δpval_perm|·(N+1) "
                      f"{ff['max_abs_pval_perm_diff_in_perms']:.0f}"]
    for name, r in rec["runs"].items():
        a = r.get("agreement_vs_tensorqtl")
        if a:
            lines.append(f"- {name} vs tensorQTL: {a['n_matched']} genes matched; max rel pval_beta "
                         f"{a['max_rel_pval_beta']:.1e} (median {a['median_rel_pval_beta']:.1e}); "
                         f"max rel pval_nominal {a['max_rel_pval_nominal']:.1e}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
