"""Benchmark: ``dqtl finemap`` (whole process) vs tensorQTL ``susie.map`` on the same genes.

Same simulated data as the cis benchmarks (``_common.ensure_simulation``); both fine-map the same
evenly spaced subset of genes with L = 10 in their cis windows. Prints the wall-time ratio and the
agreement of the credible sets.

    python benchmarks/finemap.py                       # 500 samples, 100k variants, 100 of 2000 genes
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_data_args(p)
    p.add_argument("--phenotype-subset", type=int, default=100)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    C.prepare_blas_env(keep=args.keep_blas_env)
    paths = C.ensure_simulation(C.simulation_params(args), args.cache_dir)
    bed = C.subset_bed(paths["bed"], args.phenotype_subset, paths["dir"])
    out = args.cache_dir / "run_finemap"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dqtl", "-q", "finemap", str(paths["zarr"]), str(bed),
                        str(out / "dqtl"), "--covariates", str(paths["covariates"]), "--window",
                        str(args.window), "--no-progress"], capture_output=True, text=True, cwd=out)
    dqtl_s = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    rows = [{"tool": "dqtl finemap (process)", "wall_s": dqtl_s}]
    tq = None
    if args.tensorqtl_python:
        t0 = time.perf_counter()
        tq = C.run_child([args.tensorqtl_python, str(C.TQ_RUNNER), "susie", "--pgen-prefix",
                          str(paths["pgen_prefix"]), "--bed", str(bed), "--covariates",
                          str(paths["covariates"]), "--window", str(args.window), "--outdir",
                          str(out / "tq")])
        rows.append({"tool": "tensorQTL susie.map (process)", "wall_s": time.perf_counter() - t0,
                     "compute_s": tq["compute_s"]})
    import pandas as pd

    ours = pd.read_csv(out / "dqtl.susie_cs.txt.gz", sep="\t")
    print(C.markdown_table(rows, ["tool", "wall_s", "compute_s"]))
    record = {"machine": C.machine_info(), "git": C.git_revision(), "args": vars(args), "rows": rows,
              "dqtl_cs_rows": int(len(ours))}
    if tq is not None:
        theirs = pd.read_parquet(out / "tq" / "tq.susie_cs.parquet")
        key = lambda d, c: {(g, frozenset(x.variant_id)) for (g, _), x in d.groupby(["phenotype_id", c])}  # noqa: E731
        a, b = key(ours, "cs_id"), key(theirs, "cs_id")
        record["same_sets"], record["dqtl_only"], record["tensorqtl_only"] = len(a & b), len(a - b), len(b - a)
        print(f"dqtl / tensorQTL wall: {dqtl_s / rows[1]['wall_s']:.3f}; credible sets: {len(a & b)} "
              f"identical, {len(a - b)} dqtl only, {len(b - a)} tensorQTL only")
    truth = pd.read_csv(paths["dir"] / "sim.truth.tsv", sep="\t")
    subset = set(pd.read_csv(bed, sep="\t", usecols=[3]).iloc[:, 0].astype(str))
    planted = truth[truth["is_egene"] & truth["phenotype_id"].astype(str).isin(subset)]
    tables = {"dqtl": ours}
    if tq is not None:
        tables["tensorQTL"] = theirs
    for name, cs in tables.items():
        record[f"planted_{name}"] = stats = planted_coverage(cs, planted)
        print(f"{name}: planted causal variant in a 95% set for {stats['covered']}/{stats['planted']} "
              f"eGenes; {stats['sets']} sets, median size {stats['median_size']}, "
              f"{stats['sets_without_causal']} sets on genes without a planted effect")
    C.write_record(record, args.out or args.cache_dir / "finemap.json")
    return 0


def planted_coverage(cs, planted) -> dict:  # noqa: ANN001
    """How the credible sets of one tool cover the simulation's planted causal variants."""
    causal = dict(zip(planted["phenotype_id"].astype(str), planted["causal_variant_id"].astype(str),
                      strict=True))
    sets = cs.groupby(["phenotype_id", "cs_id"])["variant_id"].apply(lambda v: set(v.astype(str)))
    covered = {g for (g, _), members in sets.items() if causal.get(str(g)) in members}
    sizes = sets.map(len)
    return {"planted": len(causal), "covered": len(covered), "sets": int(len(sets)),
            "median_size": float(sizes.median()) if len(sizes) else 0.0,
            "sets_without_causal": int(sum(str(g) not in causal for g, _ in sets.index))}


if __name__ == "__main__":
    raise SystemExit(main())
