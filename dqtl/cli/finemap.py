"""``dqtl finemap``: SuSiE fine-mapping of cis-eQTL genes."""

from __future__ import annotations

import argparse

from dqtl.cli.common import (
    add_genotype_args,
    add_scheduler_args,
    add_study_args,
    genotypes_from,
    positive_int,
    read_study_covariates,
    scheduler,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finemap",
        help="SuSiE fine-mapping of cis-eQTL genes",
        description=(
            "SuSiE fine-mapping (susieR 0.12.35 defaults) of the cis window of each eGene of "
            "--cis-results (q-value <= --fdr), or of every tested phenotype; genotypes and "
            "phenotypes residualized on the covariates. Writes OUTPUT_PREFIX.susie_cs.txt.gz "
            "(phenotype_id, cs_id, variant_id, pip, cs_coverage, cs_min_abs_corr, cs_size) and "
            "OUTPUT_PREFIX.susie_pips.parquet (phenotype_id, variant_id, pip)."
        ),
    )
    p.add_argument("genotypes", metavar="GENOTYPES", help="VCF Zarr store, or VCF/BCF, PLINK 1/2 prefix, BGEN")
    p.add_argument("phenotypes", metavar="PHENOTYPES", help="phenotype BED (.bed, .bed.gz, .bed.parquet)")
    p.add_argument("output_prefix", metavar="OUTPUT_PREFIX")
    p.add_argument("--cis-results", metavar="FILE", default=None,
                   help="cis_qtl.txt.gz of 'dqtl cis --mode permute' (or tensorQTL): fine-map its eGenes")
    p.add_argument("--fdr", type=float, default=0.05, help="q-value threshold of eGenes (default 0.05)")
    p.add_argument("--max-effects", type=positive_int, default=10, help="L, the maximum number of effects (default 10)")
    p.add_argument("--coverage", type=float, default=0.95, help="credible set coverage (default 0.95)")
    p.add_argument("--min-abs-corr", type=float, default=0.5, help="purity threshold of credible sets (default 0.5)")
    add_study_args(p)
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dqtl.errors import InputError
    from dqtl.io.fs import check_bucket
    from dqtl.io.phenotypes import read_phenotype_bed
    from dqtl.workflows import run_finemap

    check_bucket(args.output_prefix)
    if not 0 < args.fdr < 1:
        raise InputError(f"--fdr must be in (0, 1), got {args.fdr}")
    if not 0 < args.coverage < 1:
        raise InputError(f"--coverage must be in (0, 1), got {args.coverage}")
    if not 0 <= args.min_abs_corr <= 1:
        raise InputError(f"--min-abs-corr must be in [0, 1], got {args.min_abs_corr}")
    progress = not args.no_progress
    phen = read_phenotype_bed(args.phenotypes)
    cov = read_study_covariates(args, phen)
    with genotypes_from(args.genotypes, fmt=args.genotype_format, progress=progress) as geno, \
            scheduler(args.scheduler_address, progress=progress):
        run_finemap(geno, phen, cov, args.output_prefix, cis_results=args.cis_results, fdr=args.fdr,
                    window=args.window, maf_threshold=args.maf_threshold,
                    max_effects=args.max_effects, coverage=args.coverage,
                    min_abs_corr=args.min_abs_corr,
                    allow_sample_intersection=args.allow_sample_intersection)
    return 0
