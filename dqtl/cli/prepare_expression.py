"""``dqtl prepare-expression``: RNA-seq counts (+ TPM) -> normalised phenotype BED and QC report."""

from __future__ import annotations

import argparse
import contextlib
import logging
from typing import Any

from dqtl.cli.common import positive_int
from dqtl.errors import InputError

log = logging.getLogger(__name__)


def _offset(text: str) -> str | float | None:
    from dqtl.preprocess.rank_normalize import INT_OFFSETS

    if text.lower() == "none":
        return None
    if text in INT_OFFSETS:
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(INT_OFFSETS)}, none, or a number c in [0, 1), got {text!r}"
        ) from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number c in [0, 1), got {text!r}")
    return v


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def _fraction(text: str) -> float:
    v = _non_negative(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return v


def _positive(text: str) -> float:
    v = _non_negative(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return v


def register(subparsers: Any) -> None:
    """Add the ``prepare-expression`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "prepare-expression",
        help="RNA-seq counts -> filtered, TMM-normalised, inverse-normal phenotype BED (GTEx)",
        description=(
            "GTEx eqtl_prepare_expression.py pipeline: keep genes with TPM >= --tpm-threshold and "
            "counts >= --count-threshold in >= --sample-frac-threshold of samples, TMM-normalise "
            "the counts (edgeR factors on all genes) to CPM, inverse-normal transform each gene "
            "across samples (default offset r/(n+1), as GTEx), place genes at their TSS and write a "
            "tensorQTL BED (#chr start end gene_id samples...; .bed.gz, .bed or .bed.parquet). "
            "Sample QC (depth, detected genes, log-CPM PCA outliers, sex check from XIST and chrY "
            "genes) is logged and written with --qc-report; flagged samples are removed only "
            "with --exclude-flagged."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("output", metavar="OUTPUT", help="output BED: .bed.gz, .bed or .bed.parquet")
    io = p.add_argument_group("inputs")
    io.add_argument("--counts", required=True, metavar="FILE",
                    help="read counts, genes x samples: GCT (.gct[.gz]), TSV/CSV or parquet")
    io.add_argument("--tpm", metavar="FILE", default=None,
                    help="TPM, same genes and samples (without it genes are filtered on counts only)")
    io.add_argument("--annotation", required=True, metavar="FILE",
                    help="gene annotation: GTF/GFF3, BED or a table with gene_id, chr, tss "
                         "(or start, end, strand)")
    io.add_argument("--annotation-feature", default=None, metavar="TYPE",
                    help="GTF/GFF feature type of gene rows; None: 'gene' rows, else the span of "
                         "each gene's transcript (then exon) rows")
    io.add_argument("--sample-participant-lookup", metavar="FILE", default=None,
                    help="two columns: sample id, participant id; output columns are participants")
    io.add_argument("--sex", metavar="FILE", default=None,
                    help="reported sex: two columns (sample or participant id, F/M or PLINK 2/1)")
    io.add_argument("--allow-non-integer-counts", action="store_true",
                    help="accept fractional counts (salmon/RSEM expected counts)")
    f = p.add_argument_group("gene filters and normalisation")
    f.add_argument("--tpm-threshold", type=_non_negative, default=0.1, metavar="X",
                   help="a sample expresses a gene when TPM >= X")
    f.add_argument("--count-threshold", type=_non_negative, default=6, metavar="N",
                   help="... and counts >= N")
    f.add_argument("--sample-frac-threshold", type=_fraction, default=0.2, metavar="F",
                   help="keep genes expressed (each threshold) in >= F of the samples")
    f.add_argument("--normalization", choices=["tmm", "cpm", "qn", "none"], default="tmm",
                   help="tmm: TMM-CPM (GTEx); cpm: CPM; qn: quantile-normalised TPM; none: raw counts")
    f.add_argument("--int-offset", type=_offset, default="van_der_waerden", metavar="OFFSET",
                   help="inverse normal transform offset: van_der_waerden (r/(n+1), GTEx), rankit "
                        "((r-0.5)/n), blom, tukey, a number c for (r-c)/(n+1-2c), or none")
    q = p.add_argument_group("sample QC")
    q.add_argument("--qc-report", metavar="DIR", default=None,
                   help="write qc_samples.tsv and PNG plots to DIR")
    q.add_argument("--exclude-flagged", action="store_true",
                   help="remove QC-flagged samples (PCA outliers, sex mismatches) before normalising")
    q.add_argument("--outlier-sd", type=_positive, default=6.0, metavar="K",
                   help="flag samples beyond K (robust) SDs on the leading log-CPM PCs")
    q.add_argument("--outlier-pcs", type=positive_int, default=2, metavar="N",
                   help="number of leading PCs searched for outliers")
    q.add_argument("--outlier-method", choices=["mad", "sd"], default="mad",
                   help="mad: median and 1.4826*MAD (robust); sd: mean and SD")
    q.add_argument("--xist-cpm-threshold", type=_non_negative, default=10.0, metavar="X",
                   help="inferred female needs XIST CPM >= X ...")
    q.add_argument("--chry-cpm-threshold", type=_non_negative, default=10.0, metavar="X",
                   help="... and summed chrY CPM < X")
    o = p.add_argument_group("output")
    o.add_argument("--chrom-prefix", choices=["keep", "add", "strip"], default="keep",
                   help="contig names as in the annotation, with 'chr' added, or stripped")
    o.add_argument("--chromosomes", default=None, metavar="LIST",
                   help="comma-separated contigs to keep (e.g. 1,2,...,22,X); default all")
    o.add_argument("--float-format", default=None, metavar="FMT",
                   help="printf format of values in text BED (default: exact round trip), e.g. %%.6g")
    o.add_argument("--samples-chunk-size", type=positive_int, default=None, metavar="N",
                   help="samples per dask block for the filters and TMM (default: in memory, "
                        "threaded over the cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the inputs, run :func:`dqtl.preprocess.expression.prepare_expression`, write outputs."""
    from dqtl.io.annotation import read_gene_annotation
    from dqtl.io.expression import (
        read_expression_matrix,
        read_reported_sex,
        read_sample_participant_lookup,
    )
    from dqtl.preprocess.expression import (
        check_bed_output,
        prepare_expression,
        write_phenotype_bed,
    )
    from dqtl.preprocess.qc import write_qc_report

    check_bed_output(args.output)
    if args.float_format is not None:
        try:
            args.float_format % 1.5
        except (TypeError, ValueError):
            raise InputError(f"--float-format: expected a printf format such as %.6g, found "
                             f"{args.float_format!r}") from None
    from dqtl.io.fs import absolute, check_bucket, localized

    if args.qc_report and absolute(args.qc_report) == absolute(args.output):
        raise InputError("--qc-report: must differ from OUTPUT")
    check_bucket(args.output)  # fail before any work when the output bucket is missing
    with contextlib.ExitStack() as stack:  # URL inputs are read from local copies
        def local(path: str, what: str) -> str:
            return stack.enter_context(localized(path, what=what))

        counts, names = read_expression_matrix(local(args.counts, "--counts"), what="counts",
                                               return_description=True)
        tpm = read_expression_matrix(local(args.tpm, "--tpm"), what="TPM") if args.tpm else None
        annotation = read_gene_annotation(local(args.annotation, "--annotation"),
                                          feature=args.annotation_feature)
        lookup = read_sample_participant_lookup(local(args.sample_participant_lookup,
                                                      "--sample-participant-lookup")) \
            if args.sample_participant_lookup else None
        sex = read_reported_sex(local(args.sex, "--sex")) if args.sex else None
    chromosomes = None
    if args.chromosomes:
        chromosomes = [c.strip() for c in args.chromosomes.split(",") if c.strip()]
        if not chromosomes:
            raise InputError(f"--chromosomes: expected a comma-separated list, found {args.chromosomes!r}")
    res = prepare_expression(
        counts, tpm=tpm, annotation=annotation, gene_names=names,
        tpm_threshold=args.tpm_threshold, count_threshold=args.count_threshold,
        sample_frac_threshold=args.sample_frac_threshold, normalization=args.normalization,
        int_offset=args.int_offset, reported_sex=sex, sample_participant=lookup,
        exclude_flagged=args.exclude_flagged, outlier_sd_threshold=args.outlier_sd,
        outlier_pcs=args.outlier_pcs, outlier_method=args.outlier_method,
        xist_cpm_threshold=args.xist_cpm_threshold, chry_cpm_threshold=args.chry_cpm_threshold,
        chrom_prefix=args.chrom_prefix, chromosomes=chromosomes,
        allow_non_integer=args.allow_non_integer_counts,
        samples_chunk_size=args.samples_chunk_size or "auto",
    )
    if args.qc_report and res.qc is not None:
        paths = write_qc_report(res.qc, args.qc_report)
        log.info("QC report: %s", ", ".join(str(p) for p in paths))
    write_phenotype_bed(res.bed, args.output, float_format=args.float_format)
    log.info("prepare-expression: %d genes x %d samples -> %s (%d samples excluded)",
             len(res.bed), res.bed.shape[1] - 4, args.output, len(res.excluded_samples))
    return 0
