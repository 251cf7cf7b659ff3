"""``dqtl cis``: cis-eQTL mapping (nominal pass)."""

from __future__ import annotations

import argparse
import logging

import numpy as np

from dqtl.cli._common import (
    add_genotype_args,
    add_scheduler_args,
    genotypes_from,
    non_negative_int,
    scheduler,
)

log = logging.getLogger("dqtl")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cis",
        help="cis-eQTL mapping",
        description=(
            "cis-eQTL mapping. --mode nominal writes every variant-phenotype pair within the window "
            "as OUTPUT_PREFIX.cis_qtl_pairs.<chr>.parquet (tensorQTL's columns)."
        ),
    )
    p.add_argument("genotypes", metavar="GENOTYPES", help="VCF Zarr store, or VCF/BCF, PLINK 1/2 prefix, BGEN")
    p.add_argument("phenotypes", metavar="PHENOTYPES", help="phenotype BED (.bed, .bed.gz, .bed.parquet)")
    p.add_argument("output_prefix", metavar="OUTPUT_PREFIX")
    p.add_argument("--mode", choices=["nominal"], default="nominal")
    p.add_argument("--covariates", metavar="FILE", default=None, help="covariates (tensorQTL layout or samples x covariates)")
    p.add_argument("--window", type=non_negative_int, default=1_000_000, help="cis window half-width in bp (default 1000000)")
    p.add_argument("--maf-threshold", type=float, default=0.0, help="skip variants with MAF below this (default 0)")
    p.add_argument("--precision", choices=["float64", "float32"], default="float64",
                   help="precision of the genotype x phenotype product (default float64)")
    p.add_argument("--allow-sample-intersection", action="store_true",
                   help="analyse the samples shared by all inputs instead of failing on a mismatch")
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dqtl.io.phenotypes import read_covariates, read_phenotype_bed
    from dqtl.workflows import run_cis_nominal

    progress = not args.no_progress
    phen = read_phenotype_bed(args.phenotypes)
    cov = read_covariates(args.covariates, sample_ids=phen["sample_id"].values) if args.covariates else None
    with genotypes_from(args.genotypes, fmt=args.genotype_format, progress=progress) as geno, \
            scheduler(args.scheduler_address) as client:
        run_cis_nominal(
            geno, phen, cov, args.output_prefix,
            window=args.window, maf_threshold=args.maf_threshold,
            variants_chunk_size=args.variants_chunk_size,
            dtype=np.float32 if args.precision == "float32" else np.float64,
            client=client, allow_sample_intersection=args.allow_sample_intersection,
            progress=progress,
        )
    return 0
