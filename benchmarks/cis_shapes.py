"""Whole processes at the shapes users have: dqtl and tensorQTL's CLI side by side, one run.

    python benchmarks/cis_shapes.py                          # ~25 min on 2 cores
    python benchmarks/cis_shapes.py --dqtl-path /tmp/old     # also another checkout ("old")
    python benchmarks/cis_shapes.py --quick                  # 1,000 permutations only (~8 min)

Data: ``dqtl.simulate`` of 500 samples x 100,000 variants x 2,000 genes with 8 covariates on two
250 Mb contigs (cached). Two shapes:

- **array**: all 2,000 genes, window ±1 Mb: ~410 variants per cis window (genotyping-array
  density);
- **sequencing**: 300 of the genes (evenly spaced), window ±10 Mb: ~4,100 variants per window.

For each shape, every command is a fresh process started as users start it (``dqtl ...`` from
this checkout, ``python -m tensorqtl ...`` from ``--tensorqtl-python``), timed from start to exit
(interpreter start, imports, reading, writing included), with the peak RSS of its process tree,
each right after a throwaway process that touches and frees ``--settle-mib`` of memory (untimed;
``_common.settle``: on this VM the first process to touch memory another one freed pays ~7 s per
GiB for the host to back it again, which fell on whichever tool ran next):

- cis permutations, 1,000 and 10,000 (same seed: the same permutations in both tools), and
  dqtl's adaptive ``1000,10000``;
- cis nominal (every pair to parquet);
- independent signals (forward-backward) from the 1,000-permutation results of the same tool.

Baselines printed as ratios: tensorQTL's wall time, and a same-run float32 GEMM of the same
multiply-adds as the permutation products (sum over genes of 2 x samples x window variants x
permutations), timed here on (1,000 x samples) @ (samples x mean window) blocks with one
single-threaded BLAS per core (the way dqtl runs) and scaled; the GEMM is timed right before each
timed permutation process, and a tool's "/ GEMM" is the median over its runs of the run's wall
time over the GEMM timed just before it. Agreement: the same eGenes (q <=
0.05), the same top variants, pval_perm equal (in units of 1 / (N + 1)).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("dqtl.benchmarks.cis_shapes")

SHAPES = {"array": (None, 1_000_000), "sequencing": (300, 10_000_000)}


#: runs of each command (``--repeats``); the median wall time and the largest peak RSS count
REPEATS = 1


def run_process(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path,
                gemm: Any = None) -> dict[str, Any]:
    """Median wall seconds and largest peak tree RSS of :data:`REPEATS` runs of one command, one
    after another (an error if one fails), each right after :func:`_common.settle` (without it
    the first run after another tool's paid for the memory that tool freed: a 2.5 s dqtl run
    took 3.8-4.0 s right after tensorQTL).

    ``gemm``: a function timing the GEMM baseline (seconds), called right before each run (after
    the settle): the run's ratio to the GEMM is then taken against the machine as it was during
    that run (this VM's speed drifts by 10-40% within minutes; one GEMM timed before all the
    runs of a shape put that drift into the ratios). ``gemm_s``: the median of those timings,
    ``/ GEMM`` the median of the runs' ratios."""
    import statistics

    runs = [_run_once(argv, env=env, cwd=cwd, gemm=gemm) for _ in range(REPEATS)]
    out = {"wall_s": statistics.median(r["wall_s"] for r in runs),
           "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
           "walls_s": [round(r["wall_s"], 3) for r in runs],
           "settle_s": [round(r["settle_s"], 2) for r in runs]}
    if gemm is not None:
        out["gemm_s"] = statistics.median(r["gemm_s"] for r in runs)
        out["gemms_s"] = [round(r["gemm_s"], 3) for r in runs]
        out["/ GEMM"] = statistics.median(r["wall_s"] / r["gemm_s"] for r in runs)
    return out


def _run_once(argv: list[str], *, env: dict[str, str] | None, cwd: Path, gemm: Any = None) -> dict[str, Any]:
    settled = C.settle()  # the memory the previous process freed backed again (not timed)
    g = gemm() if gemm is not None else None  # the baseline timed after the settle, before the run
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    with C.TreeRSSSampler(proc.pid) as sampler:
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-4000:]}")
    return {"wall_s": wall, "peak_rss_mib": sampler.peak / 2**20, "settle_s": settled, "gemm_s": g}


class Runs:
    """The command lines of one shape (tensorQTL's and dqtl's), run in ``tmp``."""

    def __init__(self, shape: str, tq: str, pgen: str, zarr: str, bed: str, cov: str, window: int,
                 tmp: Path) -> None:
        self.shape, self.tq, self.pgen, self.zarr, self.bed = shape, tq, pgen, zarr, bed
        self.cov, self.window, self.tmp = cov, window, tmp

    def tq_run(self, label: str, mode: str, extra: list[str], out: Path, gemm: Any = None) -> dict[str, Any]:
        out.mkdir(parents=True, exist_ok=True)
        r = run_process([self.tq, "-m", "tensorqtl", self.pgen, self.bed, "tq", "--covariates", self.cov,
                         "--mode", mode, "--window", str(self.window), "-o", str(out), *extra], cwd=self.tmp,
                        gemm=gemm)
        log.info("%s | tensorQTL %s: %.1f s %s (settle %s s), %.0f MiB", self.shape, label, r["wall_s"], r["walls_s"], r["settle_s"],
                 r["peak_rss_mib"])
        return r

    def dq_run(self, name: str, argv0: list[str], env: dict[str, str], label: str, extra: list[str],
               out: Path, gemm: Any = None) -> dict[str, Any]:
        out.mkdir(parents=True, exist_ok=True)
        r = run_process([*argv0, "-q", "cis", self.zarr, self.bed, str(out / "dq"), "--covariates", self.cov,
                         "--window", str(self.window), "--no-progress", *extra], env=env, cwd=self.tmp,
                        gemm=gemm)
        log.info("%s | %s %s: %.1f s %s (settle %s s), %.0f MiB", self.shape, name, label, r["wall_s"], r["walls_s"], r["settle_s"],
                 r["peak_rss_mib"])
        return r


def gemm_seconds(n: int, v_mean: float, total_flop: float, threads: int = 2) -> dict[str, float]:
    """Seconds a float32 GEMM needs for ``total_flop`` at the rate of (1,000 x n) @ (n x v_mean)
    products, one single-threaded BLAS per thread on ``threads`` threads (measured here)."""
    code = f"""
import time, threading, numpy as np
from threadpoolctl import threadpool_limits
threadpool_limits(1, user_api="blas")
n, v = {n}, {max(int(round(v_mean)), 1)}
rng = np.random.default_rng(0)
Y = rng.standard_normal((1000, n)).astype(np.float32)
G = rng.standard_normal((v, n)).astype(np.float32)
reps = max(3, int(4e10 / (2 * 1000 * n * v)))
def work():
    out = np.empty((1000, v), np.float32)
    for _ in range(reps):
        np.matmul(Y, G.T, out=out)
work()
best = 1e9
for _ in range(3):
    ts = [threading.Thread(target=work) for _ in range({threads})]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    best = min(best, time.perf_counter() - t0)
print({threads} * reps * 2 * 1000 * n * v / best / 1e9)
"""
    rate = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.strip())
    return {"gflops": rate, "seconds": total_flop / (rate * 1e9)}


def check_tensorqtl_qvalues(python: str) -> None:
    """tensorQTL's CLI writes ``qval`` (the eGenes compared) only through R's qvalue via rpy2;
    without them it warns and writes no q-values, and the comparison would fail after its first
    run: fail at once, with the fix."""
    r = subprocess.run([python, "-c", "import tensorqtl.rfunc"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(
            f"{python} cannot import tensorqtl.rfunc (R's qvalue via rpy2), so tensorQTL would write "
            f"no q-values:\n{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}\n"
            "install R with qvalue (apt-get install r-base-core r-bioc-qvalue) and, in tensorQTL's "
            "venv, pip install 'rpy2==3.5.17' (rpy2 3.6 needs R >= 4.5); see benchmarks/README.md")


def read_cis(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path, sep="\t")


def agreement(ours: Any, ref: Any, nperm: int) -> dict[str, Any]:
    import numpy as np

    m = ours.merge(ref, on="phenotype_id", suffixes=("", "_ref"))
    sig = set(ours.loc[ours["qval"] <= 0.05, "phenotype_id"])
    sig_ref = set(ref.loc[ref["qval"] <= 0.05, "phenotype_id"])
    dperm = np.abs(m["pval_perm"] - m["pval_perm_ref"]) * (nperm + 1)
    return {
        "genes": f"{len(m)}/{len(ref)}",
        "same_egenes": f"{len(sig & sig_ref)}/{len(sig_ref)}" + ("" if sig == sig_ref else " (differ)"),
        "same_top": float((m["variant_id"] == m["variant_id_ref"]).mean()),
        "same_pval_perm": float((dperm < 0.5).mean()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_data_args(p)
    p.set_defaults(phenotypes=2000, covariates=8, contig_length=250_000_000)
    p.add_argument("--dqtl-path", default=None,
                   help="another checkout run as 'old' (its dqtl on PYTHONPATH, python -m dqtl)")
    p.add_argument("--quick", action="store_true", help="1,000 permutations only, no adaptive run")
    p.add_argument("--shapes", default="array,sequencing")
    p.add_argument("--only", default="", help="comma list of commands to run (permute1000, "
                   "permute10000, adaptive, nominal, independent); default all")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs of each command; the median wall time is reported (default 1)")
    args = p.parse_args()
    global REPEATS
    REPEATS = max(1, args.repeats)
    C.SETTLE_MIB = args.settle_mib
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    C.prepare_blas_env(keep=args.keep_blas_env)
    paths = C.ensure_simulation(C.simulation_params(args), args.cache_dir)
    from cis_permutations import window_sizes

    tq = args.tensorqtl_python
    check_tensorqtl_qvalues(tq)
    # the console script of this interpreter's environment, as a venv user starts it (a shim on
    # PATH, e.g. pyenv's, adds its own start-up: 0.05 s here; tensorQTL runs from its venv python)
    script = Path(sys.executable).with_name("dqtl")
    argv0 = str(script) if script.exists() else (shutil.which("dqtl") or "dqtl")
    versions: list[tuple[str, list[str], dict[str, str]]] = [("dqtl", [argv0], {})]
    if args.dqtl_path:
        versions.append(("dqtl old", [sys.executable, "-m", "dqtl"], {"PYTHONPATH": args.dqtl_path}))
    perms = [1000] if args.quick else [1000, 10_000]
    only = set(filter(None, args.only.split(",")))

    def wanted(name: str) -> bool:
        return not only or name in only

    rows: list[dict[str, Any]] = []
    record: dict[str, Any] = {"machine": C.machine_info(), "git": C.git_revision(), "args": vars(args)}
    for shape in args.shapes.split(","):
        subset, window = SHAPES[shape]
        bed = C.subset_bed(paths["bed"], subset, paths["dir"])
        sizes = window_sizes(bed, paths["pgen_prefix"].with_suffix(".pvar"), window)
        n = int(args.samples)
        v_mean = float(sizes.mean())
        log.info("%s: %d genes, %.0f variants per window on average", shape, len(sizes), v_mean)
        with tempfile.TemporaryDirectory(prefix=f"dqtl-bench-{shape}-") as tmp_s:
            tmp = Path(tmp_s)
            cov, zarr, pgen = str(paths["covariates"]), str(paths["zarr"]), str(paths["pgen_prefix"])

            ctx = Runs(shape, tq, pgen, zarr, str(bed), cov, window, tmp)
            tq_run, dq_run = ctx.tq_run, ctx.dq_run

            for nperm in perms:
                if not wanted(f"permute{nperm}"):
                    continue
                flop = 2.0 * n * float(sizes.sum()) * nperm

                def gemm(flop: float = flop, n: int = n, v_mean: float = v_mean, shape: str = shape) -> float:
                    g = gemm_seconds(n, v_mean, flop)
                    log.info("%s | GEMM baseline %.2f s (%.0f GFLOP/s)", shape, g["seconds"], g["gflops"])
                    return g["seconds"]

                base = tq_run(f"cis {nperm}", "cis", ["--permutations", str(nperm), "--seed", "1"],
                              tmp / f"tq{nperm}", gemm=gemm)
                ref = read_cis(tmp / f"tq{nperm}" / "tq.cis_qtl.txt.gz")
                rows.append({"shape": shape, "command": f"cis permutations {nperm:,}", "tool": "tensorQTL",
                             "wall_s": base["wall_s"], "walls_s": base["walls_s"], "settle_s": base["settle_s"], "peak_rss_mib": base["peak_rss_mib"], "/ tensorQTL": 1.0,
                             "/ GEMM": base["/ GEMM"], "gemm_s": base["gemm_s"], "gemms_s": base["gemms_s"]})
                for name, argv0, env in versions:
                    out = tmp / f"{name.replace(' ', '_')}{nperm}"
                    r = dq_run(name, argv0, env, f"permute {nperm}", ["--mode", "permute", "--permutations",
                               str(nperm), "--seed", "1"], out, gemm=gemm)
                    ours = read_cis(out / "dq.cis_qtl.txt.gz")
                    rows.append({"shape": shape, "command": f"cis permutations {nperm:,}", "tool": name,
                                 "wall_s": r["wall_s"], "walls_s": r["walls_s"], "settle_s": r["settle_s"], "peak_rss_mib": r["peak_rss_mib"],
                                 "/ tensorQTL": r["wall_s"] / base["wall_s"], "/ GEMM": r["/ GEMM"],
                                 "gemm_s": r["gemm_s"], "gemms_s": r["gemms_s"], **agreement(ours, ref, nperm)})
                if nperm == 1000 and wanted("independent"):
                    tq_cis = tmp / "tq1000" / "tq.cis_qtl.txt.gz"
                    b = tq_run("independent", "cis_independent", ["--cis_output", str(tq_cis), "--permutations",
                               "1000", "--seed", "1"], tmp / "tqind")
                    rows.append({"shape": shape, "command": "independent (1,000 permutations)", "tool": "tensorQTL",
                                 "wall_s": b["wall_s"], "walls_s": b["walls_s"], "settle_s": b["settle_s"], "peak_rss_mib": b["peak_rss_mib"], "/ tensorQTL": 1.0})
                    for name, argv0, env in versions:
                        cis_file = tmp / f"{name.replace(' ', '_')}1000" / "dq.cis_qtl.txt.gz"
                        r = dq_run(name, argv0, env, "independent", [
                            "--mode", "independent", "--cis-results", str(cis_file), "--permutations", "1000",
                            "--seed", "1"], tmp / f"{name.replace(' ', '_')}ind")
                        rows.append({"shape": shape, "command": "independent (1,000 permutations)", "tool": name,
                                     "wall_s": r["wall_s"], "walls_s": r["walls_s"], "settle_s": r["settle_s"], "peak_rss_mib": r["peak_rss_mib"],
                                     "/ tensorQTL": r["wall_s"] / b["wall_s"]})
            if not args.quick and wanted("adaptive"):
                for name, argv0, env in versions:
                    r = dq_run(name, argv0, env, "adaptive", ["--mode", "permute", "--permutations",
                               "1000,10000", "--seed", "1"], tmp / f"{name.replace(' ', '_')}adaptive")
                    ten = [x for x in rows if x["shape"] == shape and x["tool"] == "tensorQTL"
                           and x["command"] == "cis permutations 10,000"]
                    rows.append({"shape": shape, "command": "cis permutations adaptive 1,000-10,000",
                                 "tool": name, "wall_s": r["wall_s"], "walls_s": r["walls_s"], "settle_s": r["settle_s"], "peak_rss_mib": r["peak_rss_mib"],
                                 "/ tensorQTL": r["wall_s"] / ten[0]["wall_s"] if ten else float("nan")})
            if wanted("nominal"):
                b = tq_run("nominal", "cis_nominal", [], tmp / "tqnom")
                rows.append({"shape": shape, "command": "cis nominal", "tool": "tensorQTL", "wall_s": b["wall_s"], "walls_s": b["walls_s"], "settle_s": b["settle_s"],
                             "peak_rss_mib": b["peak_rss_mib"], "/ tensorQTL": 1.0})
                for name, argv0, env in versions:
                    r = dq_run(name, argv0, env, "nominal", ["--mode", "nominal"],
                               tmp / f"{name.replace(' ', '_')}nom")
                    rows.append({"shape": shape, "command": "cis nominal", "tool": name, "wall_s": r["wall_s"], "walls_s": r["walls_s"], "settle_s": r["settle_s"],
                                 "peak_rss_mib": r["peak_rss_mib"], "/ tensorQTL": r["wall_s"] / b["wall_s"],
                                 "rss / tensorQTL": r["peak_rss_mib"] / b["peak_rss_mib"]})
        record["rows"] = rows
        C.write_record(record, args.out or args.cache_dir / "cis_shapes.json")
    cols = ["shape", "command", "tool", "wall_s", "/ tensorQTL", "/ GEMM", "peak_rss_mib", "rss / tensorQTL",
            "genes", "same_egenes", "same_top", "same_pval_perm"]
    print(C.markdown_table(rows, cols))
    record["loadavg_end"] = C.loadavg()
    C.write_record(record, args.out or args.cache_dir / "cis_shapes.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
