"""Benchmark: dqtl cis nominal pass vs tensorQTL ``map_nominal`` on the same simulated data.

Usage (from the repository root)::

    python benchmarks/cis_nominal.py                       # 500 samples, 100k variants, 2000 genes
    python benchmarks/cis_nominal.py --phenotype-subset 0  # tensorQTL on all genes (~2.5 min more)
    python benchmarks/cis_nominal.py --samples 200 --variants 20000 --phenotypes 400  # quick

What runs, each in a fresh interpreter (wall time, peak RSS from ``getrusage`` in the child and
from psutil sampling of its process tree):

1. dqtl ``run_cis_nominal`` (the API behind ``dqtl cis --mode nominal``; threaded scheduler,
   parquet per contig) on the VCF Zarr store, all phenotypes, float64 and float32 products.
2. The baseline: tensorQTL ``cis.map_nominal`` (CPU torch) on the PLINK 2 pgen of the same
   genotypes + the same BED + covariates, run by ``benchmarks/tensorqtl_runner.py`` under the
   tensorQTL virtualenv. By default on an evenly spaced subset of ``--phenotype-subset`` genes
   (tensorQTL needs ~75 ms per 10k-variant window on 2 cores, several times that under load);
   dqtl float64 runs on the same subset so the ratio compares equal work.
3. Sanity: the matched dqtl and tensorQTL outputs have the same pairs in the same order, and the
   p-values agree (dqtl float64 vs tensorQTL float32: ~1e-5 relative expected).

Prints a Markdown report (tables + ratios) and writes a JSON record. Before numpy loads it unsets
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` for itself and its children (``--keep-blas-env`` keeps
them); threadpoolctl reports the BLAS kernel that actually ran.
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

log = logging.getLogger("dqtl.benchmarks.cis_nominal")


# ---------------------------------------------------------------------------------------------
# child: one dqtl run
# ---------------------------------------------------------------------------------------------
def dqtl_worker(args: argparse.Namespace) -> int:
    """Run dqtl's cis nominal pass once and print a JSON line (child process)."""
    t0 = time.perf_counter()
    import numpy as np

    from dqtl.workflows import run_cis_nominal

    import_s = time.perf_counter() - t0
    geno, phen, cov, load_s = C.load_dqtl_inputs(args)
    dtype = np.float32 if args.precision == "float32" else np.float64
    cpu0 = C.cpu_s()
    t0 = time.perf_counter()
    summary = run_cis_nominal(geno, phen, cov, str(args.prefix), window=args.window, dtype=dtype)
    compute_s = time.perf_counter() - t0
    out = {
        "tool": "dqtl",
        "precision": args.precision,
        "import_s": import_s,
        "load_s": load_s,
        "compute_s": compute_s,
        "compute_cpu_s": C.cpu_s() - cpu0,
        "n_pairs": int(summary.n_pairs),
        "n_phenotypes": int(summary.n_phenotypes),
        "n_samples": int(summary.n_samples),
        "files": [str(f) for f in summary.files],
        "peak_rss_mib": C.self_peak_rss_mib(),
        "blas": C.blas_info(),
    }
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------
def compare_pairs(dqtl_files: list[str], tq_files: list[str]) -> dict[str, Any]:
    """Same pairs (and order) and p-value / slope agreement of two cis_qtl_pairs file sets."""
    import numpy as np
    import pandas as pd

    def read(files: list[str]) -> pd.DataFrame:
        cols = ["phenotype_id", "variant_id", "pval_nominal", "slope", "slope_se"]
        parts = [pd.read_parquet(f, columns=cols) for f in sorted(files)]
        return pd.concat(parts, ignore_index=True)

    d, t = read(dqtl_files), read(tq_files)
    out: dict[str, Any] = {"n_pairs_dqtl": len(d), "n_pairs_tensorqtl": len(t)}
    same_order = len(d) == len(t) and bool(
        (d["phenotype_id"].to_numpy() == t["phenotype_id"].to_numpy()).all()
        and (d["variant_id"].to_numpy() == t["variant_id"].to_numpy()).all())
    out["same_pairs_same_order"] = same_order
    if not same_order:
        m = d.merge(t, on=["phenotype_id", "variant_id"], suffixes=("", "_tq"))
        out["n_pairs_matched"] = len(m)
        pd_, pt = m["pval_nominal"].to_numpy(), m["pval_nominal_tq"].to_numpy()
        sd, st, se = m["slope"].to_numpy(), m["slope_tq"].to_numpy(), m["slope_se"].to_numpy()
    else:
        pd_, pt = d["pval_nominal"].to_numpy(), t["pval_nominal"].to_numpy()
        sd, st, se = d["slope"].to_numpy(), t["slope"].to_numpy(), d["slope_se"].to_numpy()
    tiny = np.finfo(np.float64).tiny
    rel = np.abs(pd_ - pt) / np.maximum(np.abs(pt), tiny)
    out["max_rel_pval"] = float(rel.max()) if rel.size else float("nan")
    out["median_rel_pval"] = float(np.median(rel)) if rel.size else float("nan")
    mask = pt >= 1e-10
    out["max_rel_pval_p_ge_1e-10"] = float(rel[mask].max()) if mask.any() else float("nan")
    out["max_abs_log10p"] = float(np.abs(np.log10(np.maximum(pd_, tiny))
                                         - np.log10(np.maximum(pt, tiny))).max())
    out["max_abs_slope_diff_over_se"] = float((np.abs(sd - st) / se).max()) if se.size else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_data_args(p)
    p.add_argument("--phenotype-subset", type=int, default=500,
                   help="genes (evenly spaced) for the tensorQTL comparison; 0 = all (default 500)")
    p.add_argument("--precisions", default="float64,float32",
                   help="dqtl precisions to run on all genes (default float64,float32)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where outputs go (default <cache>/run_nominal, removed at the end)")
    p.add_argument("--keep-outputs", action="store_true")
    # child mode (internal)
    p.add_argument("--worker", choices=["dqtl"], help=argparse.SUPPRESS)
    p.add_argument("--zarr", help=argparse.SUPPRESS)
    p.add_argument("--bed", help=argparse.SUPPRESS)
    p.add_argument("--covariates-file", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
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
    work = args.workdir or (args.cache_dir / "run_nominal")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    subset = args.phenotype_subset if 0 < args.phenotype_subset < args.phenotypes else 0
    bed_cmp = C.subset_bed(paths["bed"], subset or None, paths["dir"])

    def dqtl_run(precision: str, bed: Path, tag: str) -> dict[str, Any]:
        cmd = [sys.executable, __file__, "--worker", "dqtl", "--zarr", paths["zarr"],
               "--bed", bed, "--covariates-file", paths["covariates"],
               "--prefix", work / tag, "--precision", precision, "--window", str(args.window)]
        r = C.run_child(cmd)
        r["pairs_per_s"] = r["n_pairs"] / r["compute_s"]
        return r

    runs: dict[str, dict[str, Any]] = {}
    for prec in [s.strip() for s in args.precisions.split(",") if s.strip()]:
        runs[f"dqtl_{prec}_all"] = dqtl_run(prec, paths["bed"], f"dqtl_{prec}_all")
    if subset:
        runs["dqtl_float64_subset"] = dqtl_run("float64", bed_cmp, "dqtl_float64_subset")
    matched = "dqtl_float64_subset" if subset else "dqtl_float64_all"
    if matched not in runs:
        runs[matched] = dqtl_run("float64", bed_cmp, matched)
    comparison: dict[str, Any] = {}
    if args.tensorqtl_python:
        cmd = [args.tensorqtl_python, C.TQ_RUNNER, "nominal", "--pgen-prefix", paths["pgen_prefix"],
               "--bed", bed_cmp, "--covariates", paths["covariates"], "--outdir", work / "tq",
               "--window", str(args.window)]
        tq = C.run_child(cmd)
        tq["pairs_per_s"] = tq["n_pairs"] / tq["compute_s"]
        runs["tensorqtl_subset" if subset else "tensorqtl_all"] = tq
        comparison = compare_pairs(runs[matched]["files"], tq["files"])
        d = runs[matched]
        comparison["ratio_compute_dqtl_over_tensorqtl"] = d["compute_s"] / tq["compute_s"]
        comparison["ratio_process_wall_dqtl_over_tensorqtl"] = d["process_wall_s"] / tq["process_wall_s"]
        comparison["ratio_peak_rss_dqtl_over_tensorqtl"] = d["peak_rss_mib"] / tq["peak_rss_mib"]
        comparison["speedup_tensorqtl_over_dqtl_compute"] = tq["compute_s"] / d["compute_s"]
        if subset:
            # clearly an extrapolation: tensorQTL's time per pair on the subset x all pairs
            n_all = runs.get("dqtl_float64_all", {}).get("n_pairs")
            if n_all:
                comparison["tensorqtl_all_genes_compute_s_EXTRAPOLATED"] = (
                    tq["compute_s"] / tq["n_pairs"] * n_all)
    record = {
        "benchmark": "cis_nominal",
        "git": C.git_revision(),
        "machine": machine,
        "simulation": params,
        "window": args.window,
        "phenotype_subset": subset,
        "runs": runs,
        "comparison": comparison,
        "loadavg_end": C.loadavg(),
        "total_s": time.perf_counter() - t_start,
        "command": " ".join(["python", "benchmarks/cis_nominal.py", *(argv or sys.argv[1:])]),
    }
    if not args.keep_outputs:
        shutil.rmtree(work, ignore_errors=True)
    C.write_record(record, args.out or (args.cache_dir / "cis_nominal.json"))
    sys.stdout.write(report(record) + "\n")
    return 0


def report(rec: dict[str, Any]) -> str:
    """Markdown summary of a record (also used to fill benchmarks/RESULTS.md)."""
    m, sim, cmpd = rec["machine"], rec["simulation"], rec["comparison"]
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture', '')} "
                     f"x{b.get('num_threads')}" for b in m["blas"])
    lines = [
        f"- date: {m['date']}; git {rec['git']}",
        f"- machine: {m['host_cpu']}, {m['logical_cores']} cores, {m['memory_gib']} GiB; "
        f"dqtl BLAS: {blas}; OPENBLAS_CORETYPE/L2_SIZE before unset: {m['blas_env_before_unset']}",
        f"- load average at start {m['loadavg']}, at end {rec['loadavg_end']}",
        f"- data: {sim['n_samples']} samples, {sim['n_variants']:,} variants on {sim['n_contigs']} "
        f"contigs of {sim['contig_length']:,} bp, {sim['n_phenotypes']:,} phenotypes, "
        f"{sim['n_covariates']} covariates, window ±{rec['window']:,} (seed {sim['seed']})",
        f"- command: `{rec['command']}` (total {rec['total_s']:.0f} s)",
        "",
    ]
    rows = []
    for name, r in rec["runs"].items():
        rows.append({
            "run": name, "genes": r.get("n_phenotypes"), "pairs": r.get("n_pairs"),
            "load s": r.get("load_s"), "compute s": r.get("compute_s"),
            "compute CPU s": r.get("compute_cpu_s"),
            "process wall s": r.get("process_wall_s"), "Mpairs/s": r["pairs_per_s"] / 1e6,
            "peak RSS MiB": r.get("peak_rss_mib"), "load avg before": str(r.get("loadavg_before")),
        })
    lines.append(C.markdown_table(rows, ["run", "genes", "pairs", "load s", "compute s",
                                         "compute CPU s",
                                         "process wall s", "Mpairs/s", "peak RSS MiB",
                                         "load avg before"]))
    if cmpd:
        lines += [
            "",
            f"- dqtl float64 / tensorQTL (same genes), compute time: "
            f"**{cmpd['ratio_compute_dqtl_over_tensorqtl']:.3f}** "
            f"(tensorQTL takes {cmpd['speedup_tensorqtl_over_dqtl_compute']:.1f}x as long); "
            f"process wall: {cmpd['ratio_process_wall_dqtl_over_tensorqtl']:.3f}; "
            f"peak RSS: {cmpd['ratio_peak_rss_dqtl_over_tensorqtl']:.2f}",
            f"- sanity: pairs dqtl {cmpd['n_pairs_dqtl']:,} vs tensorQTL "
            f"{cmpd['n_pairs_tensorqtl']:,}; same pairs in the same order: "
            f"{cmpd['same_pairs_same_order']}; max relative pval difference "
            f"{cmpd['max_rel_pval']:.2e} (median {cmpd['median_rel_pval']:.1e}; "
            f"{cmpd['max_rel_pval_p_ge_1e-10']:.1e} for p >= 1e-10); max |Δ log10 p| "
            f"{cmpd['max_abs_log10p']:.1e}; max |Δslope|/se {cmpd['max_abs_slope_diff_over_se']:.1e}",
        ]
        if "tensorqtl_all_genes_compute_s_EXTRAPOLATED" in cmpd:
            lines.append(
                f"- EXTRAPOLATED (not measured): tensorQTL on all genes ≈ "
                f"{cmpd['tensorqtl_all_genes_compute_s_EXTRAPOLATED']:.1f} s "
                f"(its time per pair on the subset × all pairs)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
