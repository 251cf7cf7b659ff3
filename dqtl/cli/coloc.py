"""``dqtl coloc``: colocalization of eQTL genes with a GWAS (coloc's approximate Bayes factors)."""

from __future__ import annotations

import argparse

from dqtl.cli.common import add_genotype_args, add_scheduler_args, genotypes_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "coloc",
        help="colocalization of eQTL genes with GWAS summary statistics",
        description=(
            "coloc.abf and/or coloc.susie (coloc 5.2.3 semantics) of every eGene of an eQTL run "
            "(--eqtl PREFIX: the files of 'dqtl cis' with that prefix) with GWAS summary "
            "statistics in the GWAS-SSF layout; GWAS alleles harmonised against GENOTYPES "
            "(swapped alleles flipped, strand-ambiguous A/T and C/G SNPs dropped). For susie, "
            "both traits are fine-mapped by SuSiE-RSS with LD computed from GENOTYPES (or --ld "
            "for the GWAS). Genes run in parallel as a dask graph. Writes "
            "OUTPUT_PREFIX.coloc.txt.gz and a locus plot OUTPUT_PREFIX.coloc.<gene>.png per "
            "colocalized gene (PP.H4 > 0.8)."
        ),
    )
    p.add_argument("output_prefix", metavar="OUTPUT_PREFIX")
    p.add_argument("--gwas", required=True, metavar="SUMSTATS",
                   help="GWAS-SSF TSV (chromosome, base_pair_location, effect_allele, other_allele, "
                        "beta, standard_error[, effect_allele_frequency, n, p_value])")
    p.add_argument("--eqtl", required=True, metavar="PREFIX",
                   help="prefix of PREFIX.cis_qtl_pairs.*.parquet (and PREFIX.cis_qtl.txt.gz for eGenes)")
    p.add_argument("--genotypes", required=True, metavar="STORE", help="the genotypes of the eQTL run")
    p.add_argument("--method", choices=["abf", "susie", "both"], default="abf",
                   help="abf: one causal variant per trait (coloc.abf); susie: every pair of SuSiE "
                        "credible sets (coloc.susie); both (default abf)")
    p.add_argument("--ld", default=None, metavar="FILE",
                   help="LD matrix for the GWAS fit of --method susie (TSV/parquet, first column "
                        "variant_id, columns the same IDs; default: LD from GENOTYPES)")
    p.add_argument("--max-effects", type=int, default=10, help="SuSiE effects L (default 10)")
    p.add_argument("--fdr", type=float, default=0.05, help="eGene q-value threshold (default 0.05)")
    p.add_argument("--eqtl-n", type=int, default=None, help="eQTL sample size (default: the store's samples)")
    p.add_argument("--gwas-type", choices=["quant", "cc"], default="quant", help="GWAS trait type")
    p.add_argument("--gwas-s", type=float, default=None, help="case fraction of a case-control GWAS")
    p.add_argument("--gwas-n", type=float, default=None, help="GWAS sample size (default: its n column)")
    p.add_argument("--p1", type=float, default=1e-4)
    p.add_argument("--p2", type=float, default=1e-4)
    p.add_argument("--p12", type=float, default=None,
                   help="prior of a shared causal variant (default: 1e-5 for abf, 5e-6 for susie)")
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dqtl.errors import InputError
    from dqtl.io.fs import check_bucket
    from dqtl.workflows import run_coloc

    check_bucket(args.output_prefix)
    if args.gwas_type == "cc" and not (args.gwas_s and 0 < args.gwas_s < 1):
        raise InputError("--gwas-type cc needs --gwas-s, the case fraction in (0, 1)")
    if args.max_effects < 1:
        raise InputError("--max-effects must be at least 1")
    for name in ("p1", "p2", "p12"):
        if getattr(args, name) is not None and not 0 < getattr(args, name) < 1:
            raise InputError(f"--{name} must be in (0, 1)")
    with genotypes_from(args.genotypes, fmt=args.genotype_format, progress=not args.no_progress) as geno:
        run_coloc(args.gwas, args.eqtl, geno, args.output_prefix, fdr=args.fdr, eqtl_n=args.eqtl_n,
                  gwas_type=args.gwas_type, gwas_s=args.gwas_s, gwas_n=args.gwas_n, p1=args.p1,
                  p2=args.p2, p12=args.p12, method=args.method, ld_path=args.ld,
                  max_effects=args.max_effects)
    return 0
