"""``dqtl mediate``: mediation of trans-eQTLs through cis genes."""

from __future__ import annotations

import argparse

from dqtl.cli.common import (
    add_genotype_args,
    add_scheduler_args,
    add_study_args,
    genotypes_from,
    read_study_covariates,
    scheduler,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mediate",
        help="mediation of trans-eQTLs through cis genes",
        description=(
            "For every trans pair of --trans-results and every candidate mediator (a phenotype whose "
            "TSS lies within --cis-window of the variant; --mediators egenes: only cis-eGenes of "
            "--cis-results): total, direct and indirect effects, proportion mediated, Sobel p, a "
            "permutation p (mediator permuted within genotype classes, GMAC) and q-values over all "
            "trios. Writes OUTPUT_PREFIX.trans_mediation.txt.gz and OUTPUT_PREFIX.trans_mediation.json."
        ),
    )
    p.add_argument("genotypes", metavar="GENOTYPES", help="the genotypes of the trans run")
    p.add_argument("phenotypes", metavar="PHENOTYPES", help="the phenotype BED of the trans run")
    p.add_argument("output_prefix", metavar="OUTPUT_PREFIX")
    p.add_argument("--trans-results", required=True, metavar="FILE",
                   help="PREFIX.trans_qtl_pairs.parquet of dqtl trans (variant_id, phenotype_id, b)")
    p.add_argument("--cis-window", type=int, default=1_000_000, help="mediators within this many bp (default 1000000)")
    p.add_argument("--mediators", choices=["all", "egenes"], default="all")
    p.add_argument("--cis-results", metavar="FILE", default=None, help="cis_qtl.txt.gz for --mediators egenes")
    p.add_argument("--permutations", type=int, default=1000, help="at most this many per trio (adaptive; default 1000)")
    p.add_argument("--fdr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    add_study_args(p, window=False, maf=False)  # --covariates: those of the trans run
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from dqtl.errors import InputError
    from dqtl.io.fs import Publication, check_bucket, open_file
    from dqtl.io.phenotypes import read_phenotype_bed
    from dqtl.mediation import map_mediation
    from dqtl.workflows import read_cis_results, write_table_gz

    check_bucket(args.output_prefix)
    if not 0 < args.fdr < 1:
        raise InputError("--fdr must be in (0, 1)")
    if args.permutations < 1 or args.cis_window < 0:
        raise InputError("--permutations must be >= 1 and --cis-window >= 0")
    try:
        pairs = pd.read_parquet(args.trans_results)
    except FileNotFoundError:
        raise FileNotFoundError(f"--trans-results {args.trans_results} does not exist") from None
    except Exception as exc:  # pyarrow: not a parquet file
        raise InputError(f"--trans-results {args.trans_results}: not a readable parquet file ({exc})") from None
    summary_path = str(args.trans_results).replace(".trans_qtl_pairs.parquet", ".trans_summary.json")
    phen = read_phenotype_bed(args.phenotypes)
    cov = read_study_covariates(args, phen)
    egenes = None
    if args.cis_results:
        res = read_cis_results(args.cis_results)
        egenes = pd.DataFrame({k: res[k].values for k in ("phenotype_id", "q_value", "p_value_nominal_threshold")}
                              ).rename(columns={"q_value": "qval",
                                                "p_value_nominal_threshold": "pval_nominal_threshold"})
    progress = not args.no_progress
    with genotypes_from(args.genotypes, fmt=args.genotype_format, progress=progress) as geno, \
            scheduler(args.scheduler_address, progress=progress):
        import os

        if summary_path != str(args.trans_results) and os.path.exists(summary_path):
            try:
                with open(summary_path) as f:
                    n_trans = json.load(f).get("n_samples")
            except (ValueError, AttributeError):
                raise InputError(f"{summary_path}: not a trans summary (invalid JSON); remove it or "
                                 "give the trans results of a complete dqtl trans run") from None
            samples = set(phen["sample_id"].values.astype(str)) & set(geno["sample_id"].values.astype(str))
            if n_trans is not None and int(n_trans) != len(samples):
                raise InputError(f"--trans-results come from another sample set: the trans run had {n_trans} "
                                 f"samples, these inputs share {len(samples)}")
        trios, summary = map_mediation(geno, phen, cov, pairs, cis_window=args.cis_window,
                                       mediators=args.mediators, egenes=egenes, fdr=args.fdr,
                                       permutations=args.permutations, seed=args.seed,
                                       allow_sample_intersection=args.allow_sample_intersection)
    with Publication() as pub:
        write_table_gz(trios, pub.stage(f"{args.output_prefix}.trans_mediation.txt.gz"))
        with open_file(pub.stage(f"{args.output_prefix}.trans_mediation.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return 0
