"""Benchmark: genotype x interaction cost against plain cis on the same data, and against
tensorQTL's interaction mode, whole processes in one run.

    python benchmarks/interaction.py                           # ~10,000 variants per window
    python benchmarks/interaction.py --contig-length 250000000 # array density, ~400 per window

Runs, on the cached simulation (500 samples, 100,000 variants) and a subset of genes: dqtl cis
nominal, dqtl cis --interaction (nominal), tensorQTL map_nominal(interaction_df=...), dqtl cis
--mode permute and dqtl cis --interaction --mode permute (same permutation count). The interaction
term is a seeded binary covariate ("sex"). Prints the ratios and checks that the interaction
pairs and top variants agree with tensorQTL.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("dqtl.benchmarks")


def _dqtl(out: Path, zarr: Path, bed: Path, cov: Path, window: int, *extra: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dqtl", "-q", "cis", str(zarr), str(bed), str(out),
                        "--covariates", str(cov), "--window", str(window), "--no-progress", *extra],
                       capture_output=True, text=True, cwd=out.parent)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_data_args(p)
    p.add_argument("--phenotype-subset", type=int, default=100)
    p.add_argument("--permutations", type=int, default=1000)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    C.prepare_blas_env(keep=args.keep_blas_env)
    paths = C.ensure_simulation(C.simulation_params(args), args.cache_dir)
    bed = C.subset_bed(paths["bed"], args.phenotype_subset, paths["dir"])
    out = args.cache_dir / "run_interaction"
    out.mkdir(parents=True, exist_ok=True)
    import numpy as np
    import pandas as pd

    samples = pd.read_csv(bed, sep="\t", nrows=0).columns[4:]
    inter = out / "sex.txt"
    pd.Series(np.random.default_rng(0).integers(0, 2, len(samples)), index=samples).to_csv(
        inter, sep="\t", header=False)
    z, cov, w = paths["zarr"], paths["covariates"], args.window
    rows = []
    t = {"plain": _dqtl(out / "plain", z, bed, cov, w),
         "interaction": _dqtl(out / "inter", z, bed, cov, w, "--interaction", str(inter))}
    rows += [{"run": "dqtl cis nominal", "wall_s": t["plain"]},
             {"run": "dqtl cis --interaction (nominal, eigenMT)", "wall_s": t["interaction"]}]
    tq = None
    if args.tensorqtl_python:
        t0 = time.perf_counter()
        tq = C.run_child([args.tensorqtl_python, str(C.TQ_RUNNER), "interaction", "--pgen-prefix",
                          str(paths["pgen_prefix"]), "--bed", str(bed), "--covariates", str(cov),
                          "--window", str(w), "--interaction", str(inter), "--outdir", str(out / "tq")])
        t["tq"] = time.perf_counter() - t0
        rows.append({"run": "tensorQTL map_nominal(interaction_df) (eigenMT)", "wall_s": t["tq"]})
    n = str(args.permutations)
    t["plain_perm"] = _dqtl(out / "plainp", z, bed, cov, w, "--mode", "permute", "--permutations", n)
    t["inter_perm"] = _dqtl(out / "interp", z, bed, cov, w, "--mode", "permute", "--permutations", n,
                            "--interaction", str(inter))
    amin = str(max(1, args.permutations // 10))
    t["inter_adapt"] = _dqtl(out / "interpa", z, bed, cov, w, "--mode", "permute", "--permutations",
                             f"{amin},{n}", "--interaction", str(inter))
    rows += [{"run": f"dqtl cis --mode permute ({n})", "wall_s": t["plain_perm"]},
             {"run": f"dqtl cis --interaction --mode permute ({n}, Freedman-Lane)", "wall_s": t["inter_perm"]},
             {"run": f"dqtl cis --interaction --mode permute (adaptive {amin},{n})",
              "wall_s": t["inter_adapt"]}]
    print(C.markdown_table(rows, ["run", "wall_s"]))
    print(f"interaction nominal / plain nominal: {t['interaction'] / t['plain']:.2f}; interaction "
          f"permute / plain permute: {t['inter_perm'] / t['plain_perm']:.2f} (adaptive "
          f"{t['inter_adapt'] / t['plain_perm']:.2f})")
    record = {"machine": C.machine_info(), "git": C.git_revision(), "args": vars(args), "rows": rows}
    if tq is not None:
        print(f"dqtl interaction / tensorQTL interaction (wall): {t['interaction'] / t['tq']:.3f}")
        ours = pd.read_csv(out / "inter.cis_qtl_top_assoc.txt.gz", sep="\t")
        theirs = pd.read_csv(out / "tq" / "tq.cis_qtl_top_assoc.txt.gz", sep="\t")
        m = ours.merge(theirs, on="phenotype_id", suffixes=("", "_tq"))
        record["same_top"] = float((m["variant_id"] == m["variant_id_tq"]).mean())
        record["same_tests_emt"] = float((m["tests_emt"] == m["tests_emt_tq"]).mean())
        print(f"top variant identical for {record['same_top']:.3f} of genes, tests_emt for "
              f"{record['same_tests_emt']:.3f}")
    C.write_record(record, args.out or args.cache_dir / "interaction.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
