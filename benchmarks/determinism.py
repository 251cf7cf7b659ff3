"""What bit-identical results cost: whole processes of this checkout beside another (the commit
before the determinism work, from ``git worktree add``), on threads and on a real cluster.

The determinism work pins BLAS to one thread in every cluster task (a worker plugin) and runs the
genotype PCA on blocks fixed by the sample count (with fixed signs). This runs, for each dqtl
checkout, ``dqtl cis --mode nominal``, ``dqtl cis --mode permute`` (1,000 permutations) and
``dqtl covariates --genotype-pcs 10`` at array density (~400 variants per cis window) and at
sequencing density (~4,000), on the threaded scheduler and on a ``dask scheduler`` with two
single-thread ``dask worker`` processes started with that checkout on ``PYTHONPATH``; each
command ``--repeats`` times, interleaved, the median kept. It also checks that the new checkout
gives the same bytes on threads and on the cluster.

    git worktree add /tmp/old <commit before the change>
    git worktree add /tmp/new <the change>
    python benchmarks/determinism.py --dqtl-path /tmp/old --dqtl-new-path /tmp/new
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("dqtl.benchmarks")

SHAPES = {  # contig length (bp) for 100,000 variants on 2 contigs: variants per 2 Mb window
    "array (~400 per window)": 250_000_000,
    "sequencing (~4,000 per window)": 25_000_000,
}


class Cluster:
    """``dask scheduler`` + two single-thread ``dask worker`` processes for one checkout."""

    def __init__(self, tmp: Path, pythonpath: str | None) -> None:
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        tmp.mkdir(parents=True, exist_ok=True)
        self.file = tmp / "scheduler.json"
        exe = shutil.which("dask")
        dask_cli = [exe] if exe else [sys.executable, "-m", "dask"]
        self.procs = [subprocess.Popen(
            [*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
             str(self.file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp)]
        while not self.file.exists():
            time.sleep(0.2)
        time.sleep(0.5)
        import json

        self.address = json.loads(self.file.read_text())["address"]
        for i in range(2):
            self.procs.append(subprocess.Popen(
                [*dask_cli, "worker", self.address, "--nthreads",
                 "1", "--no-dashboard", "--memory-limit", "6GiB", "--local-directory",
                 str(tmp / f"w{i}")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                cwd=tmp))
        from distributed import Client

        with Client(self.address, timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=60)


def commands(paths: dict[str, Path], bed: Path, out: Path) -> dict[str, list[str]]:
    g, c = str(paths["zarr"]), str(paths["covariates"])
    return {
        "cis nominal": ["cis", g, str(bed), str(out / "nom"), "--covariates", c],
        "cis permute 1,000": ["cis", g, str(bed), str(out / "perm"), "--covariates", c, "--mode",
                              "permute", "--permutations", "1000", "--seed", "1"],
        "genotype PCs (10)": ["covariates", str(out / "pcs.txt"), "--known", c, "--genotype-pcs",
                              "10", "--genotypes", g, "--seed", "1"],
    }


def run(argv: list[str], pythonpath: str | None, cwd: Path) -> float:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dqtl", "-q", *argv, "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:2]}: {proc.stderr[-2000:]}")
    return wall


def outputs(out: Path) -> dict[str, bytes]:
    import pandas as pd

    got = {}
    for f in sorted(out.iterdir()):
        if f.suffix == ".parquet":
            got[f.name] = pd.read_parquet(f).to_csv().encode()
        elif f.suffix in (".gz", ".txt", ".tsv"):
            got[f.name] = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
    return got


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_data_args(p)
    p.set_defaults(phenotypes=300, covariates=8)
    p.add_argument("--dqtl-path", default=None, help="the other checkout (e.g. the commit before)")
    p.add_argument("--dqtl-new-path", default=None,
                   help="the checkout measured as 'new' (default: this one)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    C.prepare_blas_env(keep=args.keep_blas_env)
    versions = [("new", args.dqtl_new_path)] + ([("old", args.dqtl_path)] if args.dqtl_path else [])
    rows = []
    for shape, length in SHAPES.items():
        args.contig_length = length
        paths = C.ensure_simulation(C.simulation_params(args), args.cache_dir)
        times: dict[tuple[str, str, str], list[float]] = {}
        same = {}
        with tempfile.TemporaryDirectory(prefix="dqtl-bench-det-") as tmp_s:
            tmp = Path(tmp_s)
            for label, path in versions:
                for where in ("threads", "cluster"):
                    cluster = Cluster(tmp / f"{label}-c", path) if where == "cluster" else None
                    extra = ["--scheduler-address", cluster.address] if cluster else []
                    try:
                        for rep in range(args.repeats):
                            out = tmp / f"{label}-{where}-{rep}"
                            out.mkdir()
                            for name, argv in commands(paths, paths["bed"], out).items():
                                t = run([*argv, *extra], path, tmp)
                                times.setdefault((label, where, name), []).append(t)
                                log.info("%s | %s %s %s: %.2f s", shape, label, where, name, t)
                    finally:
                        if cluster:
                            cluster.close()
            same["new"] = outputs(tmp / "new-threads-0") == outputs(tmp / "new-cluster-0")
            if args.dqtl_path:
                same["old"] = outputs(tmp / "old-threads-0") == outputs(tmp / "old-cluster-0")
        for name in commands(paths, paths["bed"], Path(".")):
            for where in ("threads", "cluster"):
                row = {"shape": shape, "command": name, "where": where,
                       "new_s": statistics.median(times[("new", where, name)])}
                if args.dqtl_path:
                    row["old_s"] = statistics.median(times[("old", where, name)])
                    row["new/old"] = row["new_s"] / row["old_s"]
                rows.append(row)
        log.info("%s: threads and cluster outputs identical: %s", shape, same)
        rows.append({"shape": shape, "command": "threads == cluster (bytes)", "where": str(same)})
    cols = ["shape", "command", "where", "old_s", "new_s", "new/old"] if args.dqtl_path else \
        ["shape", "command", "where", "new_s"]
    print(C.markdown_table(rows, cols))
    record = {"machine": C.machine_info(), "git": C.git_revision(), "args": vars(args), "rows": rows}
    C.write_record(record, args.out or args.cache_dir / "determinism.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
