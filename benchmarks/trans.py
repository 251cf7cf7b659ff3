"""Benchmark of ``dqtl`` trans against a raw float32 GEMM of the same shape and tensorQTL.

    python benchmarks/trans.py                       # n=1000, 200k variants, 20k genes
    python benchmarks/trans.py --variants 20000      # a quick run

Steps (each tool in its own child process, peak RSS from ``wait4`` of that child):

1. simulate once (``dqtl.simulation``; cached under ``--cache-dir``): VCF Zarr, BED, covariates,
   pgen (10 contigs x 100 Mb, so the 5 Mb cis exclusion removes ~5 % of the pairs);
2. the roofline: float32 GEMM ``(variants x samples) @ (samples x genes)`` over the whole shape
   in 2048 x 2048 output tiles (output discarded), two ways, the faster one counts: one BLAS
   call per tile with all cores, or one Python thread per core each with single-threaded BLAS;
3. ``dqtl``: ``run_trans`` from the Zarr store (p <= 1e-5, maf 0, cis window 5 Mb) to the
   final parquet: ``scan_s``; reading the BED and covariates is ``load_s``;
4. tensorQTL 1.0.10 CPU (``/work/tqvenv``): ``trans.map_trans`` + ``filter_cis`` (5 Mb) on
   the pgen (``compute_s``; loading is ``load_s``), and the hit sets are compared.

Writes a JSON record (``--out``) and prints a Markdown table row for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("dqtl.benchmarks.trans")
REPO = Path(__file__).resolve().parents[1]

TQ_SCRIPT = r'''
import json, sys, time
import numpy as np, pandas as pd
t0 = time.perf_counter()
import torch
from tensorqtl import genotypeio, trans
import_s = time.perf_counter() - t0
bed, cov, pgen, out, pthr, window = sys.argv[1:7]
t0 = time.perf_counter()
df = pd.read_csv(bed, sep="\t", index_col=3, dtype={"#chr": str})
pos = df[["#chr", "start", "end"]].rename(columns={"#chr": "chr"})
pos["start"] += 1
if (pos["start"] == pos["end"]).all():
    pos = pos[["chr", "end"]].rename(columns={"end": "pos"})
phenotype_df = df.drop(columns=["#chr", "start", "end"])
covariates_df = pd.read_csv(cov, sep="\t", index_col=0).T.loc[phenotype_df.columns]
genotype_df, variant_df = genotypeio.load_genotypes(pgen, select_samples=phenotype_df.columns)
load_s = time.perf_counter() - t0
t0 = time.perf_counter()
pairs = trans.map_trans(genotype_df, phenotype_df, covariates_df=covariates_df,
                        pval_threshold=float(pthr), maf_threshold=0, batch_size=20000, verbose=False)
map_s = time.perf_counter() - t0
t1 = time.perf_counter()
pairs = trans.filter_cis(pairs, pos, variant_df, window=int(window)).reset_index(drop=True)
filter_s = time.perf_counter() - t1
pairs.to_parquet(out)
print(json.dumps({"import_s": import_s, "load_s": load_s, "map_trans_s": map_s,
                  "filter_cis_s": filter_s, "compute_s": map_s + filter_s,
                  "n_pairs": int(len(pairs)), "torch_threads": torch.get_num_threads(),
                  "torch": torch.__version__,
                  "peak_rss_mib": [int(l.split()[1]) for l in open("/proc/self/status")
                                   if l.startswith("VmHWM")][0] / 1024}))
'''


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # see ARCHITECTURE.md section 6
        env.pop(k, None)
    return env


def run_child(cmd: list[str]) -> dict:
    """Run a child printing one JSON line last; add its wall time and peak RSS (wait4)."""
    log.info("running %s", " ".join(cmd[:6]) + (" ..." if len(cmd) > 6 else ""))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=_child_env())
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{err[-4000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    # every child reports its own peak (VmHWM) in its JSON
    res["process_wall_s"] = wall
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return res


def ensure_data(args: argparse.Namespace) -> dict[str, str]:
    params = dict(n_samples=args.samples, n_variants=args.variants, n_phenotypes=args.phenotypes,
                  n_contigs=args.contigs, contig_length=args.contig_length, n_covariates=5,
                  seed=args.seed, variants_chunk_size=10_000)
    key = "trans_" + "_".join(f"{k.removeprefix('n_')}{v}" for k, v in sorted(params.items()))
    d = Path(args.cache_dir) / key
    paths = {"dir": str(d), "zarr": str(d / "sim.vcz"), "bed": str(d / "sim.expression.bed.gz"),
             "covariates": str(d / "sim.covariates.txt"), "pgen": str(d / "sim")}
    marker = d / "params.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return paths
    from dqtl.simulation import simulate
    from dqtl.simulation_files import write_simulation

    t0 = time.perf_counter()
    ds = simulate(**params)
    write_simulation(ds, d, formats=("zarr", "bed", "covariates", "pgen"), prefix="sim")
    marker.write_text(json.dumps(params))
    log.info("simulated and wrote the inputs in %.0f s", time.perf_counter() - t0)
    return paths


# ---------------------------------------------------------------------------------------------
# children
# ---------------------------------------------------------------------------------------------
def child_gemm(args: argparse.Namespace) -> dict:
    import threading

    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    v, n, p = args.variants, args.samples, args.phenotypes
    tile = 2048
    rng = np.random.default_rng(0)
    A = rng.standard_normal((v, n), dtype=np.float32)
    B = rng.standard_normal((p, n), dtype=np.float32)
    tiles = [(i, j) for i in range(0, v, tile) for j in range(0, p, tile)]

    def work(part, out):
        for i, j in part:
            a, b = A[i : i + tile], B[j : j + tile]
            np.matmul(a, b.T, out=out[: a.shape[0] * b.shape[0]].reshape(a.shape[0], b.shape[0]))

    cores = len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    work(tiles, np.empty(tile * tile, dtype=np.float32))  # BLAS with all cores
    blas_all = time.perf_counter() - t0
    with threadpool_limits(1, user_api="blas"):
        parts = [tiles[k::cores] for k in range(cores)]
        ths = [threading.Thread(target=work, args=(part, np.empty(tile * tile, dtype=np.float32)))
               for part in parts]
        t0 = time.perf_counter()
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        threads_1blas = time.perf_counter() - t0
    flops = 2.0 * v * n * p
    best = min(blas_all, threads_1blas)
    return {"gemm_blas_all_cores_s": blas_all, "gemm_threads_1blas_s": threads_1blas,
            "gemm_s": best, "gflops": flops / best / 1e9, "cores": cores,
            "blas": [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                     for d in threadpool_info()],
            "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    """This process's own high-water resident size (``VmHWM``; ``getrusage`` would include the
    parent's peak, inherited across fork and exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_dqtl(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    from dqtl.association.trans import run_trans
    from dqtl.io.genotypes import open_genotypes
    from dqtl.io.phenotypes import read_covariates, read_phenotype_bed

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    phen = read_phenotype_bed(args.paths["bed"])
    cov = read_covariates(args.paths["covariates"], sample_ids=phen.sample_id.values)
    geno = open_genotypes(args.paths["zarr"])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = run_trans(geno, phen, cov, args.prefix, pval_threshold=args.pval_threshold,
                  maf_threshold=0.0, cis_window=args.cis_window, memory_limit=args.memory_limit)
    scan_s = time.perf_counter() - t0
    return {"import_s": import_s, "load_s": load_s, "scan_s": scan_s, "n_tests": s.n_tests,
            "n_hits": s.n_hits, "n_blocks": s.n_blocks,
            "variants_per_block": s.summary["variants_per_block"],
            "phenotypes_per_block": s.summary["phenotypes_per_block"],
            "peak_rss_mib": _peak_rss_mib()}


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--variants", type=int, default=200_000)
    p.add_argument("--phenotypes", type=int, default=20_000)
    p.add_argument("--contigs", type=int, default=10)
    p.add_argument("--contig-length", type=int, default=100_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pval-threshold", type=float, default=1e-5)
    p.add_argument("--cis-window", type=int, default=5_000_000)
    p.add_argument("--memory-limit", default="1GiB")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "dqtl-benchmarks"))
    p.add_argument("--tensorqtl-python", default="/work/tqvenv/bin/python", help="'' skips tensorQTL")
    p.add_argument("--out", default=None, help="JSON record (default: <cache-dir>/trans.json)")
    p.add_argument("--child", choices=["gemm", "dqtl"], help=argparse.SUPPRESS)
    p.add_argument("--paths", type=json.loads, help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.child:
        res = child_gemm(args) if args.child == "gemm" else child_dqtl(args)
        sys.stdout.write("\n" + json.dumps(res) + "\n")
        return 0

    paths = ensure_data(args)
    work = Path(paths["dir"]) / "runs"
    work.mkdir(exist_ok=True)
    base = [sys.executable, __file__, "--samples", str(args.samples), "--variants", str(args.variants),
            "--phenotypes", str(args.phenotypes), "--contigs", str(args.contigs),
            "--contig-length", str(args.contig_length), "--seed", str(args.seed),
            "--pval-threshold", str(args.pval_threshold), "--cis-window", str(args.cis_window),
            "--memory-limit", args.memory_limit, "--paths", json.dumps(paths)]
    rec: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "params": {k: v for k, v in vars(args).items()
                                                                       if k not in ("child", "paths", "prefix")}}
    rec["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    rec["gemm"] = run_child([*base, "--child", "gemm"])
    rec["dqtl"] = run_child([*base, "--child", "dqtl", "--prefix", str(work / "dqtl")])
    if args.tensorqtl_python:
        rec["tensorqtl"] = run_child([args.tensorqtl_python, "-c", TQ_SCRIPT, paths["bed"],
                                      paths["covariates"], paths["pgen"], str(work / "tq.parquet"),
                                      str(args.pval_threshold), str(args.cis_window)])
        import numpy as np
        import pandas as pd

        a = pd.read_parquet(work / "dqtl.trans_qtl_pairs.parquet")
        b = pd.read_parquet(work / "tq.parquet")
        m = a.merge(b, on=["variant_id", "phenotype_id"], suffixes=("", "_tq"))
        rec["agreement"] = {"dqtl_pairs": len(a), "tensorqtl_pairs": len(b), "common": len(m),
                            "max_rel_pval": float(np.max(np.abs(m.pval / m.pval_tq - 1))) if len(m) else None}
    g, d = rec["gemm"]["gemm_s"], rec["dqtl"]
    rec["summary"] = {
        "gemm_s": g, "gemm_gflops": rec["gemm"]["gflops"],
        "dqtl_scan_s": d["scan_s"], "dqtl_scan_over_gemm": d["scan_s"] / g,
        "dqtl_load_scan_s": d["load_s"] + d["scan_s"],
        "dqtl_load_scan_over_gemm": (d["load_s"] + d["scan_s"]) / g,
        "dqtl_process_s": d["process_wall_s"],
        "pairs_per_s": d["n_tests"] / d["scan_s"], "dqtl_peak_rss_mib": d["peak_rss_mib"],
    }
    if "tensorqtl" in rec:
        t = rec["tensorqtl"]
        rec["summary"].update(tensorqtl_compute_s=t["compute_s"], tensorqtl_load_s=t["load_s"],
                              tensorqtl_over_dqtl_scan=t["compute_s"] / d["scan_s"],
                              tensorqtl_peak_rss_mib=t["peak_rss_mib"])
    rec["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out or Path(args.cache_dir) / "trans.json")
    out.write_text(json.dumps(rec, indent=1))
    s = rec["summary"]
    print(f"| {args.samples:,} | {args.variants:,} | {args.phenotypes:,} | {g:.1f} ({s['gemm_gflops']:.0f} GF/s) "
          f"| {s['dqtl_scan_s']:.1f} | {s['dqtl_scan_over_gemm']:.2f} | {s['dqtl_load_scan_over_gemm']:.2f} "
          f"| {s['pairs_per_s']:.3g} | {s['dqtl_peak_rss_mib']:.0f} "
          f"| {s.get('tensorqtl_compute_s', float('nan')):.1f} | {s.get('tensorqtl_over_dqtl_scan', float('nan')):.2f} "
          f"| {s.get('tensorqtl_peak_rss_mib', float('nan')):.0f} |")
    print(json.dumps(rec["summary"], indent=1))
    if "agreement" in rec:
        print(json.dumps(rec["agreement"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
