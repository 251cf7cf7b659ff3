"""``dqtl genotype-qc``: per-variant and per-sample genotype QC tables."""

from __future__ import annotations

import argparse
import logging

from dqtl.cli.common import add_genotype_args, add_scheduler_args, genotypes_from, scheduler

log = logging.getLogger("dqtl")

VARIANT_COLUMNS = {
    "variant_n_called": "n_called",
    "variant_call_rate": "call_rate",
    "variant_allele_total": "allele_total",
    "variant_alt_count": "alt_count",
    "variant_alt_frequency": "alt_freq",
    "variant_maf": "maf",
    "variant_mac": "mac",
    "variant_n_hom_ref": "n_hom_ref",
    "variant_n_het": "n_het",
    "variant_n_hom_alt": "n_hom_alt",
    "variant_hwe_p_value": "hwe_p",
}
SAMPLE_COLUMNS = {
    "sample_n_called": "n_called",
    "sample_call_rate": "call_rate",
    "sample_n_hom_ref": "n_hom_ref",
    "sample_n_het": "n_het",
    "sample_n_hom_alt": "n_hom_alt",
    "sample_heterozygosity": "heterozygosity",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "genotype-qc",
        help="variant and sample genotype QC tables",
        description=(
            "Genotype QC in one pass over the genotypes. Writes OUTPUT_PREFIX.variant_qc.tsv.gz "
            "(chrom, pos, variant_id, ref, alt, n_called, call_rate, allele_total, alt_count, "
            "alt_freq, maf, mac, n_hom_ref, n_het, n_hom_alt, hwe_p: exact HWE test as plink2 "
            "--hardy) and OUTPUT_PREFIX.sample_qc.tsv (sample_id, n_called, call_rate, n_hom_ref, "
            "n_het, n_hom_alt, heterozygosity)."
        ),
    )
    p.add_argument("genotypes", metavar="GENOTYPES", help="VCF Zarr store, or VCF/BCF, PLINK 1/2 prefix, BGEN")
    p.add_argument("output_prefix", metavar="OUTPUT_PREFIX")
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from dqtl.compute import compute
    from dqtl.errors import InputError
    from dqtl.io.fs import Publication, check_bucket
    from dqtl.preprocess.genotype_qc import sample_qc, variant_qc

    prefix = str(args.output_prefix)
    if not prefix or prefix.endswith(("/", "\\")):
        raise InputError(f"OUTPUT_PREFIX: expected a file name prefix, found {prefix!r}")
    check_bucket(prefix)
    progress = not args.no_progress
    with genotypes_from(args.genotypes, fmt=args.genotype_format, progress=progress) as geno, \
            scheduler(args.scheduler_address, progress=progress):
        vq = variant_qc(geno, variants_chunk_size=args.variants_chunk_size, merge=False)
        sq = sample_qc(geno, variants_chunk_size=args.variants_chunk_size, merge=False)
        # compute the arrays of both tables in one pass (one graph, shared genotype reads)
        lazy = {k: vq[k].data for k in VARIANT_COLUMNS} | {k: sq[k].data for k in SAMPLE_COLUMNS}
        keys = list(lazy)
        values = compute([lazy[k] for k in keys], label="genotype QC chunks", blas_threads=None)
        computed = dict(zip(keys, values, strict=True))
        contigs = np.asarray(geno["contig_id"].values).astype(str)
        # IDs and alleles as Python strings: a fixed-width copy would be sized by the longest indel
        alleles = np.asarray(geno["variant_allele"].values, dtype=object)
        variants = pd.DataFrame({
            "chrom": contigs[np.asarray(geno["variant_contig"].values).astype(np.int64)],
            "pos": np.asarray(geno["variant_position"].values).astype(np.int64),
            "variant_id": np.asarray(geno["variant_id"].values, dtype=object),
            "ref": alleles[:, 0],
            "alt": alleles[:, 1] if alleles.shape[1] > 1 else "",
        })
        sample_ids = np.asarray(geno["sample_id"].values).astype(str)
    for var, col in VARIANT_COLUMNS.items():
        variants[col] = np.asarray(computed[var])
    samples = pd.DataFrame({"sample_id": sample_ids})
    for var, col in SAMPLE_COLUMNS.items():
        samples[col] = np.asarray(computed[var])
    vpath, spath = f"{prefix}.variant_qc.tsv.gz", f"{prefix}.sample_qc.tsv"
    with Publication() as pub:  # both tables appear together, or neither
        variants.to_csv(pub.stage(vpath), sep="\t", index=False, na_rep="NA", compression="gzip")
        samples.to_csv(pub.stage(spath), sep="\t", index=False, na_rep="NA")
    v = variants
    log.info(
        "genotype-qc: %d variants (%d with call rate < 0.95, %d with MAF < 0.01, %d with HWE "
        "p < 1e-6), %d samples (%d with call rate < 0.95); wrote %s and %s",
        len(v), int((v.call_rate < 0.95).sum()), int((v.maf < 0.01).sum()),
        int((v.hwe_p < 1e-6).sum()), len(samples), int((samples.call_rate < 0.95).sum()),
        vpath, spath,
    )
    return 0
