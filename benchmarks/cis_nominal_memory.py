"""Benchmark: peak memory of ``dqtl cis --mode nominal`` (whole process) as the pairs grow.

Runs the CLI as users run it, at a base window and at a window giving ~10x the pairs, and reports
pairs, process wall time and the process's own peak RSS (``VmHWM``). ``--dqtl-path DIR`` runs
another checkout of dqtl (e.g. the commit before a change, from ``git worktree add``) in the same
run, so old and new are measured side by side on the same machine.

    python benchmarks/cis_nominal_memory.py --dqtl-path /tmp/old
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("dqtl.benchmarks")


def run_cli(paths: dict[str, Path], bed: Path, prefix: Path, window: int, pythonpath: str | None
            ) -> dict[str, object]:
    res = C.run_dqtl_process(["-q", "cis", paths["zarr"], bed, prefix, "--covariates", paths["covariates"],
                              "--window", window, "--no-progress"], pythonpath, prefix.parent)
    import pyarrow.parquet as pq

    files = sorted(prefix.parent.glob(prefix.name + ".cis_qtl_pairs.*.parquet"))
    res["pairs"] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    for f in files:
        f.unlink()
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_data_args(p)
    p.add_argument("--windows", default="500000,5000000", help="base,large window in bp")
    p.add_argument("--phenotype-subset", type=int, default=500)
    p.add_argument("--dqtl-path", default=None, help="another dqtl checkout to run beside this one")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    C.prepare_blas_env(keep=args.keep_blas_env)
    paths = C.ensure_simulation(C.simulation_params(args), args.cache_dir)
    bed = C.subset_bed(paths["bed"], args.phenotype_subset, paths["dir"])
    out_dir = args.cache_dir / "run_nominal_memory"
    out_dir.mkdir(parents=True, exist_ok=True)
    windows = [int(w) for w in args.windows.split(",")]
    versions = [("this checkout", None)] + ([("--dqtl-path", args.dqtl_path)] if args.dqtl_path else [])
    rows = []
    for label, path in versions:
        for w in windows:
            r = run_cli(paths, bed, out_dir / f"m{w}", w, path)
            rows.append({"dqtl": label, "window": w, **r})
            log.info("%s window %d: %d pairs, %.1f s, peak %.0f MiB", label, w, r["pairs"],
                     r["process_wall_s"], r["peak_rss_mib"])
    for label, _ in versions:
        base, big = [r for r in rows if r["dqtl"] == label]
        print(f"{label}: pairs x{big['pairs'] / base['pairs']:.1f} -> peak RSS "
              f"x{big['peak_rss_mib'] / base['peak_rss_mib']:.2f} "
              f"({base['peak_rss_mib']:.0f} -> {big['peak_rss_mib']:.0f} MiB)")
    print(C.markdown_table(rows, ["dqtl", "window", "pairs", "process_wall_s", "peak_rss_mib"]))
    record = {"machine": C.machine_info(), "git": C.git_revision(), "args": vars(args), "rows": rows}
    C.write_record(record, args.out or args.cache_dir / "cis_nominal_memory.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
