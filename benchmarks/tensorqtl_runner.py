"""Run tensorQTL on given files and print one JSON line of timings and peak RSS.

Runs under the tensorQTL virtualenv, never under dqtl's interpreter::

    /work/tqvenv/bin/python benchmarks/tensorqtl_runner.py nominal \\
        --pgen-prefix DIR/sim --bed DIR/sim.expression.bed.gz --covariates DIR/sim.covariates.txt \\
        --outdir OUT [--window 1000000]
    /work/tqvenv/bin/python benchmarks/tensorqtl_runner.py cis ... --nperm 10000 --seed 0

``nominal`` calls ``cis.map_nominal`` (which writes ``OUT/tq.cis_qtl_pairs.<chr>.parquet``, as the
CLI does); ``cis`` calls ``cis.map_cis`` and writes ``OUT/tq.cis_qtl.parquet``. Inputs are read
as tensorQTL's CLI reads them, except the phenotype BED: tensorQTL 1.0.10's
``core.read_phenotype_bed`` fails under pandas 3 (its sort check relies on ``groupby().apply``
passing the grouping column), so the BED is read with the same semantics here, as in
``tests/reference/tensorqtl/generate.py``. Timings: ``load_s`` (phenotypes, covariates and
genotypes into memory), ``compute_s`` (the map_* call, including its own file writing), ``compute_cpu_s`` (CPU seconds
of all threads during that call) and
``peak_rss_mib`` (``getrusage`` of this process, which is the whole of tensorQTL's memory).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DISABLE_PANDERA_IMPORT_WARNING", "True")


def read_phenotype_bed(path: str):
    """tensorQTL's BED semantics without its pandas-3 sort-check bug (see module docstring)."""
    import pandas as pd

    df = pd.read_csv(path, sep="\t", index_col=3, dtype={"#chr": str, "#Chr": str})
    df = df.rename(columns={c: c.lower().replace("#chr", "chr") for c in df.columns[:3]})
    pos_df = df[["chr", "start", "end"]].copy()
    pos_df["start"] += 1
    for chrom, g in pos_df.groupby("chr", sort=False):
        keys = list(zip(g["start"], g["end"], strict=True))
        if keys != sorted(keys):
            raise ValueError(f"{path}: positions on {chrom} are not sorted by (start, end)")
    if (pos_df["start"] == pos_df["end"]).all():
        pos_df = pos_df[["chr", "end"]].rename(columns={"end": "pos"})
    return df.drop(columns=["chr", "start", "end"]), pos_df


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("nominal", "cis", "susie", "interaction"))
    p.add_argument("--interaction", default=None, help="interaction file (sample<TAB>value)")
    p.add_argument("--pgen-prefix", required=True)
    p.add_argument("--bed", required=True)
    p.add_argument("--covariates", required=True)
    p.add_argument("--outdir", default=None, help="output folder (default: a temporary one, removed)")
    p.add_argument("--window", type=int, default=1_000_000)
    p.add_argument("--maf-threshold", type=float, default=0.0)
    p.add_argument("--nperm", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t_import = time.perf_counter()
    import pandas as pd
    import torch
    from tensorqtl import cis, genotypeio
    from tensorqtl import susie as tq_susie

    import_s = time.perf_counter() - t_import
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                for d in threadpool_info()]
    except ImportError:
        blas = []

    t0 = time.perf_counter()
    phenotype_df, phenotype_pos_df = read_phenotype_bed(args.bed)
    covariates_df = pd.read_csv(args.covariates, sep="\t", index_col=0).T
    covariates_df = covariates_df.loc[phenotype_df.columns]
    genotype_df, variant_df = genotypeio.load_genotypes(args.pgen_prefix,
                                                        select_samples=phenotype_df.columns)
    load_s = time.perf_counter() - t0

    tmp = None
    outdir = args.outdir
    if outdir is None:
        tmp = tempfile.TemporaryDirectory()
        outdir = tmp.name
    Path(outdir).mkdir(parents=True, exist_ok=True)
    out: dict = {
        "tool": "tensorqtl",
        "mode": args.mode,
        "import_s": import_s,
        "load_s": load_s,
        "n_samples": int(phenotype_df.shape[1]),
        "n_phenotypes": int(phenotype_df.shape[0]),
        "n_variants": int(len(variant_df)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "blas": blas,
    }
    import importlib.metadata as md

    out["tensorqtl"] = md.version("tensorqtl")
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    if args.mode == "nominal":
        cis.map_nominal(genotype_df, variant_df, phenotype_df, phenotype_pos_df, "tq",
                        covariates_df=covariates_df, maf_threshold=args.maf_threshold,
                        window=args.window, output_dir=outdir, verbose=False)
        out["compute_s"] = time.perf_counter() - t0
        files = sorted(Path(outdir).glob("tq.cis_qtl_pairs.*.parquet"))
        out["files"] = [str(f) for f in files]
        out["n_pairs"] = int(sum(pd.read_parquet(f, columns=["pval_nominal"]).shape[0]
                                 for f in files))
    elif args.mode == "interaction":
        inter = pd.read_csv(args.interaction, sep="\t", index_col=0, header=None)
        inter = inter.loc[phenotype_df.columns].astype("float32")
        cis.map_nominal(genotype_df, variant_df, phenotype_df, phenotype_pos_df, "tq",
                        covariates_df=covariates_df, interaction_df=inter,
                        maf_threshold_interaction=0.05, run_eigenmt=True, window=args.window,
                        output_dir=outdir, verbose=False)
        out["compute_s"] = time.perf_counter() - t0
        files = sorted(Path(outdir).glob("tq.cis_qtl_pairs.*.parquet"))
        out["files"] = [str(f) for f in files] + [str(Path(outdir) / "tq.cis_qtl_top_assoc.txt.gz")]
        out["n_pairs"] = int(sum(pd.read_parquet(f, columns=["pval_gi"]).shape[0] for f in files))
    elif args.mode == "susie":
        summary = tq_susie.map(genotype_df, variant_df, phenotype_df, phenotype_pos_df,
                               covariates_df, L=10, summary_only=True,
                               maf_threshold=args.maf_threshold, window=args.window, verbose=False)
        out["compute_s"] = time.perf_counter() - t0
        path = Path(outdir) / "tq.susie_cs.parquet"
        summary.to_parquet(path)
        out["files"] = [str(path)]
        out["n_cs_rows"] = int(len(summary))
    else:
        df = cis.map_cis(genotype_df, variant_df, phenotype_df, phenotype_pos_df,
                         covariates_df=covariates_df, nperm=args.nperm, seed=args.seed,
                         window=args.window, maf_threshold=args.maf_threshold, verbose=False)
        out["compute_s"] = time.perf_counter() - t0
        path = Path(outdir) / "tq.cis_qtl.parquet"
        df.reset_index().to_parquet(path)
        out["files"] = [str(path)]
        out["n_phenotypes_out"] = int(len(df))
    out["compute_cpu_s"] = _cpu_s() - cpu0
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if tmp is not None:
        tmp.cleanup()
        out["files"] = []
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
