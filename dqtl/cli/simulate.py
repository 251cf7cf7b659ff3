"""``dqtl simulate``: write a seeded simulated eQTL data set with planted truth."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from dqtl.errors import InputError

#: dqtl.simulation.SIMULATION_FORMATS, spelled here so that building the parser imports nothing
#: heavy (tests/cli check that the two agree)
SIMULATION_FORMATS = ("zarr", "bed", "covariates", "truth", "hidden", "vcf", "pgen")

log = logging.getLogger(__name__)

# simulate() keyword -> (option, type, default, help)
_OPTIONS: dict[str, tuple[str, type, Any, str]] = {
    "n_samples": ("--samples", int, 200, "number of samples (>= 3)"),
    "n_variants": ("--variants", int, 5000, "number of variants"),
    "n_phenotypes": ("--phenotypes", int, 200, "number of phenotypes (genes)"),
    "n_contigs": ("--contigs", int, 2, "number of contigs"),
    "n_covariates": ("--covariates", int, 3, "number of known covariates"),
    "n_hidden": ("--hidden", int, 2, "number of hidden confounders (not in the covariates)"),
    "ploidy": ("--ploidy", int, 2, "haplotypes per sample ('pgen' needs 2)"),
    "seed": ("--seed", int, 0, "random seed (>= 0)"),
    "fraction_egenes": ("--fraction-egenes", float, 0.3,
                        "fraction of phenotypes with a planted cis-eQTL, in [0, 1]"),
    "effect_size": ("--effect-size", float, 0.5, "planted effect per ALT allele (noise SD 1)"),
    "hidden_effect": ("--hidden-effect", float, 1.0, "SD of the hidden-factor loadings"),
    "ld_rho": ("--ld-rho", float, 0.6, "latent correlation of adjacent variants, in [0, 1)"),
    "missing_genotype_rate": ("--missing-genotype-rate", float, 0.0,
                              "fraction of missing genotype calls, in [0, 1)"),
    "missing_phenotype_rate": ("--missing-phenotype-rate", float, 0.0,
                               "fraction of missing phenotype values, in [0, 1)"),
    "contig_length": ("--contig-length", int, 10_000_000, "contig length in bp"),
    "window": ("--window", int, 1_000_000, "causal variants lie within +-WINDOW bp of the TSS"),
    "contig_prefix": ("--contig-prefix", str, "", "contig name prefix, e.g. 'chr'"),
    "variants_chunk_size": ("--chunk-size", int, 10_000, "genotype chunk length along variants"),
}


def register(subparsers: Any) -> None:
    """Add the ``simulate`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "simulate",
        help="write a simulated eQTL data set with planted truth",
        description=(
            "Simulate genotypes with LD and expression with planted cis-eQTLs, covariates and "
            "hidden confounders (dqtl.simulation.simulate), and write them to OUTDIR "
            "(dqtl.simulation.write_simulation)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("outdir", metavar="OUTDIR", help="output folder (created if missing)")
    for key, (flag, typ, default, text) in _OPTIONS.items():
        p.add_argument(flag, dest=key, type=typ, default=default, help=text,
                       metavar={int: "N", float: "X", str: "TEXT"}[typ])
    p.add_argument(
        "--formats", default="zarr,bed,covariates,truth",
        help=f"comma-separated output formats, any of {','.join(SIMULATION_FORMATS)}",
    )
    p.add_argument("--prefix", default="sim", help="file name prefix")
    p.add_argument("--force", action="store_true",
                   help="replace files of the same names already in OUTDIR (default: refuse)")
    p.set_defaults(func=run, run_log=lambda a: f"{a.outdir.rstrip('/')}/{a.prefix}.dqtl.simulate.log")


def run(args: argparse.Namespace) -> int:
    """Validate every option, then simulate and write; return the exit code."""
    params = {key: getattr(args, key) for key in _OPTIONS}
    from dqtl.simulation import check_simulation_parameters, simulate
    from dqtl.simulation_files import write_simulation

    check_simulation_parameters(params, names={k: v[0] for k, v in _OPTIONS.items()})
    formats = [f.strip() for f in str(args.formats).split(",") if f.strip()]
    unknown = [f for f in formats if f not in SIMULATION_FORMATS]
    if unknown or not formats:
        raise InputError(
            f"--formats: expected a comma-separated list of {','.join(SIMULATION_FORMATS)}, "
            f"found {args.formats!r}; drop or fix {unknown or 'the empty list'}"
        )
    if "pgen" in formats and args.ploidy != 2:
        raise InputError(
            f"--formats: 'pgen' needs --ploidy 2, found --ploidy {args.ploidy}; "
            "drop 'pgen' or simulate diploid genotypes"
        )
    if not args.prefix or "/" in args.prefix:
        raise InputError(
            f"--prefix: expected a file name prefix without '/', found {args.prefix!r}; "
            "put folders in OUTDIR instead"
        )
    if not args.force:  # before the simulation, which can take a while
        from dqtl.simulation_files import refuse_existing

        refuse_existing(args.outdir, formats, args.prefix)
    ds = simulate(**params)
    written = write_simulation(ds, args.outdir, formats=formats, prefix=args.prefix,
                               overwrite=args.force)
    n_egenes = int(ds["phenotype_is_egene"].sum())
    log.info(
        "simulated %d samples, %d variants, %d phenotypes (%d eGenes), seed %d; wrote %s",
        ds.sizes["samples"], ds.sizes["variants"], ds.sizes["phenotypes"], n_egenes, args.seed,
        ", ".join(str(p) for paths in written.values() for p in paths),
    )
    return 0
