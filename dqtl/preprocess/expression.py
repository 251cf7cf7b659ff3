"""RNA-seq counts -> mapping-ready phenotype BED (GTEx ``eqtl_prepare_expression.py`` pipeline).

:func:`prepare_expression` follows GTEx (``gtex-pipeline/qtl/src/eqtl_prepare_expression.py``):

1. read counts are checked (non-negative integers, unique ids) and, when given, TPM aligned to
   them;
2. sample QC (:func:`dqtl.preprocess.qc.sample_qc`): depth, detected genes, log-CPM PCA
   outliers, sex check; flagged samples are removed only with ``exclude_flagged=True``;
3. gene filter: ``TPM >= tpm_threshold`` in ``>= sample_frac_threshold * n`` samples and
   ``count >= count_threshold`` in ``>= sample_frac_threshold * n`` samples (GTEx: 0.1, 6, 0.2);
4. normalisation (``normalization``):

   * ``"tmm"`` (default, GTEx): edgeR TMM factors computed on **all** genes (as GTEx does), then
     CPM with the effective library sizes ``colSums * factor`` (edgeR ``cpm(DGEList)``);
   * ``"cpm"``: CPM with plain library sizes; ``"qn"``: quantile-normalised TPM (GTEx ``qn``);
     ``"none"``: the raw counts;

5. rank-based inverse normal transform of each expressed gene across samples (ties averaged)
   with ``int_offset`` (default ``"van_der_waerden"``: ``Phi^-1(r / (n + 1))``, the offset of
   GTEx/tensorQTL's ``inverse_normal_transform``; ``None`` skips the transform);
6. genes are placed at their TSS from the annotation (BED ``start = TSS - 1, end = TSS``),
   samples renamed to participant ids when a lookup is given, rows sorted by chromosome
   (1..22, X, Y, M, others) and TSS.

With ``samples_chunk_size`` the filter counts and TMM factors are computed by dask in blocks of
whole sample columns (default: in memory, the kernels threaded over columns); CPM and the inverse
normal transform always run on blocks of whole genes, threaded over rows, writing into one
preallocated output (memory: the output plus a few blocks). The numbers are bit-identical
whatever the blocking or threading.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from dqtl.errors import InputError
from dqtl.io.annotation import chrom_sort_key, set_chrom_prefix
from dqtl.io.atomic import atomic_path
from dqtl.io.expression import validate_counts
from dqtl.io.fs import basename, gzip_writer, is_url
from dqtl.preprocess.normalize import cpm, effective_lib_size, tmm_norm_factors
from dqtl.preprocess.qc import SampleQC, aligned_tpm, filter_counts, sample_qc
from dqtl.preprocess.rank_normalize import INT_OFFSETS, inverse_normal_transform, quantile_normalize

__all__ = [
    "NORMALIZATIONS",
    "PreparedExpression",
    "prepare_expression",
    "write_phenotype_bed",
    "check_bed_output",
]

log = logging.getLogger(__name__)

NORMALIZATIONS = ("tmm", "cpm", "qn", "none")
_AUTO_BLOCK = 20_000_000  # matrix elements per dask block in "auto" mode (160 MB of float64)


@dataclass
class PreparedExpression:
    """Result of :func:`prepare_expression`.

    Attributes
    ----------
    bed
        tensorQTL phenotype BED: ``#chr``, ``start`` (TSS - 1), ``end`` (TSS), ``gene_id``, then
        one float64 column per sample (participant id when a lookup was given), sorted by
        chromosome and TSS.
    qc
        Sample QC (None when not run); ``qc.table['excluded']`` marks removed samples.
    norm_factors
        (samples,) normalisation factors of the kept samples (1 unless ``normalization="tmm"``),
        indexed by the original sample id.
    expressed
        (genes,) bool: the gene filter over every gene of the counts.
    excluded_samples
        Samples removed by ``exclude_flagged``.
    params
        The settings used.
    """

    bed: pd.DataFrame
    qc: SampleQC | None
    norm_factors: pd.Series
    expressed: pd.Series
    excluded_samples: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dataset(self) -> xr.Dataset:
        """The BED as a phenotype Dataset (as :func:`dqtl.io.phenotypes.read_phenotype_bed`)."""
        from dqtl.io.phenotypes import phenotypes_from_frame

        return phenotypes_from_frame(self.bed, source="prepare_expression")


def _check_options(normalization: str, int_offset: Any, chrom_prefix: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise InputError(f"normalization: expected one of {', '.join(NORMALIZATIONS)}, found {normalization!r}")
    if int_offset is not None and not (
        (isinstance(int_offset, str) and int_offset in INT_OFFSETS)
        or (isinstance(int_offset, int | float) and not isinstance(int_offset, bool) and 0 <= int_offset < 1)
    ):
        raise InputError(
            f"int_offset: expected one of {', '.join(INT_OFFSETS)}, a number c in [0, 1) for "
            f"(r - c)/(n + 1 - 2c), or None to skip the transform; found {int_offset!r}"
        )
    if chrom_prefix not in ("keep", "add", "strip"):
        raise InputError(f"chrom_prefix: expected 'keep', 'add' or 'strip', found {chrom_prefix!r}")


def _align_reported_sex(reported: pd.Series | None, samples: pd.Index,
                        lookup: pd.Series | None) -> pd.Series | None:
    """Reported sex by sample id; a table keyed by participant id is mapped through the lookup."""
    if reported is None:
        return None
    rep = reported.copy()
    rep.index = rep.index.astype(str)
    out = rep.reindex(samples).set_axis(samples)
    matched = int(samples.isin(rep.index).sum())
    if lookup is not None:
        parts = lookup.reindex(samples)
        by_part = int(parts.isin(rep.index).sum())
        if by_part > matched:
            out, matched = pd.Series(rep.reindex(parts.to_numpy()).to_numpy(), index=samples), by_part
    out = out.rename("reported_sex")
    if matched == 0:
        raise InputError(
            f"reported sex: none of its {len(rep)} ids is a sample of the counts (e.g. "
            f"{', '.join(map(str, rep.index[:3]))} vs {', '.join(map(str, samples[:3]))}); give "
            "sample ids (or participant ids with the sample-participant lookup)"
        )
    n_missing = int(out.isna().sum())
    if n_missing:
        log.warning("reported sex: missing or unknown for %d of %d samples (sex not checked for them)",
                    n_missing, len(samples))
    return out


def _participants(samples: pd.Index, lookup: pd.Series | None) -> pd.Index:
    if lookup is None:
        return pd.Index([str(s) for s in samples], dtype=object)
    missing = samples[~samples.isin(lookup.index)]
    if len(missing):
        raise InputError(
            f"sample-participant lookup: {len(missing)} of {len(samples)} expression samples are "
            f"missing from it (e.g. {', '.join(map(str, missing[:3]))}); add them, or remove those "
            "samples from the expression matrices"
        )
    parts = pd.Index(lookup.reindex(samples).astype(str).to_numpy(), dtype=object)
    if parts.has_duplicates:
        dup = parts[parts.duplicated()].unique()[:3].tolist()
        raise InputError(
            f"sample-participant lookup: several kept samples map to the same participant {dup}; "
            "keep one sample per participant (a genotype sample can only be used once)"
        )
    return parts


def _strip_version(ids: pd.Index) -> pd.Index:
    return pd.Index([s.rsplit(".", 1)[0] if "." in s and s.rsplit(".", 1)[1].isdigit() else s
                     for s in map(str, ids)], dtype=object)


def _annotate(gene_ids: pd.Index, annotation: pd.DataFrame) -> pd.DataFrame:
    """Annotation rows for ``gene_ids`` (NaN where absent), matching versions loosely if needed."""
    ann = annotation.reindex(gene_ids)
    n_exact = int(ann["tss"].notna().sum())
    if n_exact < len(gene_ids):
        loose_ann = annotation.copy()
        loose_ann.index = _strip_version(annotation.index)
        loose_ids = _strip_version(gene_ids)
        if loose_ann.index.is_unique and loose_ids.is_unique:
            alt = loose_ann.reindex(loose_ids)
            if int(alt["tss"].notna().sum()) > n_exact:
                log.info("annotation: matched gene ids without version suffixes (%d genes instead of %d)",
                         int(alt["tss"].notna().sum()), n_exact)
                alt.index = gene_ids
                ann = alt
    return ann


def _chunking(n_genes: int, n_samples: int, samples_chunk_size: int | str | None) -> int | None:
    if samples_chunk_size is None:
        return None
    if samples_chunk_size == "auto":  # in memory: the numpy kernels thread over columns themselves
        return None
    if isinstance(samples_chunk_size, int) and not isinstance(samples_chunk_size, bool) and samples_chunk_size > 0:
        return samples_chunk_size
    raise InputError(f"samples_chunk_size: expected a positive integer, 'auto' or None, found {samples_chunk_size!r}")


def _row_blocks(n_rows: int, n_cols: int) -> list[tuple[int, int]]:
    step = max(1, _AUTO_BLOCK // max(n_cols, 1))
    return [(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def _normalise(
    x: np.ndarray,
    t: np.ndarray | None,
    *,
    normalization: str,
    int_offset: Any,
    tpm_threshold: float,
    count_threshold: float,
    sample_frac_threshold: float,
    chunk: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expressed mask over all genes, factors, normalised values of the expressed genes).

    Filters and TMM factors read whole sample columns (dask column blocks when ``chunk``, else
    the in-memory kernels, threaded over columns); CPM and the inverse normal transform then run
    on blocks of whole genes (rows), each threaded over its rows and writing into one
    preallocated output. CPM is element-wise
    (``count * 1e6 / (lib_size * factor)``, exactly :func:`~dqtl.preprocess.normalize.cpm`), so
    the numbers do not depend on the blocking.
    """
    n_genes, n = x.shape
    if chunk is not None:
        xs: Any = da.from_array(x, chunks=(n_genes, chunk))
        ts: Any = None if t is None else da.from_array(t, chunks=(n_genes, chunk))
    else:
        xs, ts = x, t
    parts = [filter_counts(xs, count_threshold)]
    if ts is not None:
        parts.append(filter_counts(ts, tpm_threshold))
    parts = list(dask.compute(*parts)) if chunk is not None else parts
    mask = np.asarray(parts[0]) >= sample_frac_threshold * n
    if len(parts) > 1:
        mask = mask & (np.asarray(parts[1]) >= sample_frac_threshold * n)
    rows = np.flatnonzero(mask)
    nf = np.ones(n)
    if rows.size == 0:
        return mask, nf, np.empty((0, n))
    if normalization == "qn" and t is None:
        raise InputError("normalization 'qn' quantile-normalises TPM: pass the TPM matrix (--tpm)")
    if normalization == "tmm":
        nf = np.asarray(tmm_norm_factors(xs), dtype=np.float64)
    eff = None
    if normalization in ("tmm", "cpm"):
        eff = np.asarray(effective_lib_size(xs, nf), dtype=np.float64)  # colSums * factor
    qn = quantile_normalize(t[rows], axis=0) if normalization == "qn" else None  # type: ignore[index]

    out = np.empty((rows.size, n), dtype=np.float64)

    def block(i0: int, i1: int) -> None:
        if qn is not None:
            v = qn[i0:i1]
        elif eff is not None:
            v = cpm(x[rows[i0:i1]], lib_size=eff)
        else:
            v = x[rows[i0:i1]].astype(np.float64)
        out[i0:i1] = v if int_offset is None else inverse_normal_transform(v, axis=1, offset=int_offset)

    for i0, i1 in _row_blocks(rows.size, n):  # cpm and the INT thread over each block's rows
        block(i0, i1)
    return mask, nf, out


def prepare_expression(
    counts: pd.DataFrame,
    *,
    annotation: pd.DataFrame,
    tpm: pd.DataFrame | None = None,
    gene_names: pd.Series | None = None,
    tpm_threshold: float = 0.1,
    count_threshold: float = 6,
    sample_frac_threshold: float = 0.2,
    normalization: Literal["tmm", "cpm", "qn", "none"] = "tmm",
    int_offset: str | float | None = "van_der_waerden",
    reported_sex: pd.Series | None = None,
    sample_participant: pd.Series | None = None,
    run_qc: bool = True,
    exclude_flagged: bool = False,
    outlier_sd_threshold: float = 6.0,
    outlier_pcs: int = 2,
    outlier_method: Literal["mad", "sd"] = "mad",
    xist_cpm_threshold: float = 10.0,
    chry_cpm_threshold: float = 10.0,
    chrom_prefix: Literal["keep", "add", "strip"] = "keep",
    chromosomes: Sequence[str] | None = None,
    allow_non_integer: bool = False,
    samples_chunk_size: int | Literal["auto"] | None = "auto",
) -> PreparedExpression:
    """Filter, normalise and inverse-normal-transform RNA-seq counts into a phenotype BED.

    See the module documentation for the steps (GTEx ``eqtl_prepare_expression.py``).

    Parameters
    ----------
    counts
        (genes, samples) read counts, index gene ids, columns sample ids.
    annotation
        Gene annotation (:func:`dqtl.io.annotation.read_gene_annotation`): index ``gene_id``,
        columns ``chr``, ``tss`` (1-based) and ``gene_name``. Expressed genes without an
        annotation are dropped with a warning (versions ignored if that matches more genes).
    tpm
        (genes, samples) TPM with the same genes and samples; without it the TPM filter is skipped.
    gene_names
        (genes,) gene symbols by id (GCT ``Description``) for the sex check when the annotation
        has no ``gene_name``.
    tpm_threshold, count_threshold, sample_frac_threshold
        Gene filter (GTEx defaults 0.1, 6, 0.2).
    normalization
        ``"tmm"``, ``"cpm"``, ``"qn"`` or ``"none"``.
    int_offset
        Inverse-normal-transform offset: a name of
        :data:`dqtl.preprocess.normalize.INT_OFFSETS` (``"van_der_waerden"``: r/(n+1), GTEx;
        ``"rankit"``: (r - 0.5)/n; ``"blom"``; ``"tukey"``), a number c for (r - c)/(n + 1 - 2c),
        or None for no transform.
    reported_sex
        ``"F"``/``"M"``/NaN by sample id (or by participant id with ``sample_participant``).
    sample_participant
        Participant id by sample id: output columns are renamed to participants.
    run_qc
        Compute the sample QC (always done when ``exclude_flagged``).
    exclude_flagged
        Remove QC-flagged samples before filtering and normalising.
    outlier_sd_threshold, outlier_pcs, outlier_method, xist_cpm_threshold, chry_cpm_threshold
        Sample QC settings (:func:`dqtl.preprocess.qc.sample_qc`).
    chrom_prefix
        Output contig names: ``"keep"``, ``"add"`` (``chr1``) or ``"strip"`` (``1``).
    chromosomes
        Keep genes on these contigs only (names compared without ``chr``); default all.
    allow_non_integer
        Accept fractional counts (salmon/RSEM expected counts).
    samples_chunk_size
        Samples per dask block for the filters and TMM factors (None or ``"auto"``: in memory,
        the kernels threaded over columns).

    Returns
    -------
    PreparedExpression

    Raises
    ------
    InputError
        Bad counts (negative, non-integer, duplicated or missing ids, empty), TPM that does not
        match the counts, samples missing from the lookup, no expressed annotated gene, bad
        options.

    Examples
    --------
    >>> from dqtl.simulate_counts import simulate_counts
    >>> sim = simulate_counts(300, 40, seed=0)
    >>> res = prepare_expression(sim.counts, tpm=sim.tpm, annotation=sim.annotation)
    >>> list(res.bed.columns[:5]), bool((res.bed["end"] - res.bed["start"] == 1).all())
    (['#chr', 'start', 'end', 'gene_id', 'S00001'], True)
    """
    _check_options(normalization, int_offset, chrom_prefix)
    for name, v in (("tpm_threshold", tpm_threshold), ("count_threshold", count_threshold)):
        if not (isinstance(v, int | float) and np.isfinite(v) and v >= 0):
            raise InputError(f"{name}: expected a finite number >= 0, found {v!r}")
    if not (isinstance(sample_frac_threshold, int | float) and 0 <= sample_frac_threshold <= 1):
        raise InputError(f"sample_frac_threshold: expected a fraction in [0, 1], found {sample_frac_threshold!r}")
    validate_counts(counts, source="counts", allow_non_integer=allow_non_integer)
    samples = pd.Index([str(s) for s in counts.columns], dtype=object)
    counts = counts.set_axis(samples, axis=1)
    if tpm is not None:
        tpm = aligned_tpm(tpm.set_axis([str(s) for s in tpm.columns], axis=1), counts)
        tv = tpm.to_numpy(dtype=np.float64)
        if not np.isfinite(tv).all() or (tv < 0).any():
            r, c = (int(k[0]) for k in np.nonzero(~np.isfinite(tv) | (tv < 0)))
            raise InputError(f"TPM: value {float(tv[r, c])!r} for gene {tpm.index[r]}, sample {tpm.columns[c]}; "
                             "TPM must be finite and >= 0")
    else:
        log.warning("no TPM matrix: genes are filtered on read counts only")
    if not {"chr", "tss"}.issubset(annotation.columns):
        raise InputError(f"annotation: expected columns 'chr' and 'tss' (read_gene_annotation), "
                         f"found {list(annotation.columns)}")
    lookup = None if sample_participant is None else sample_participant.set_axis(
        sample_participant.index.astype(str)).astype(str)
    _participants(samples, lookup)  # fail early
    sex = _align_reported_sex(reported_sex, samples, lookup)

    qc: SampleQC | None = None
    excluded: list[str] = []
    x_all = counts.to_numpy()
    if run_qc or exclude_flagged:
        expressed_all = filter_counts(x_all, count_threshold) >= sample_frac_threshold * x_all.shape[1]
        if tpm is not None:
            expressed_all &= filter_counts(tpm.to_numpy(), tpm_threshold) >= sample_frac_threshold * x_all.shape[1]
        qc = sample_qc(counts, annotation=annotation, gene_names=gene_names, reported_sex=sex,
                       expressed=expressed_all, outlier_sd_threshold=outlier_sd_threshold,
                       outlier_pcs=outlier_pcs, outlier_method=outlier_method,
                       xist_cpm_threshold=xist_cpm_threshold, chry_cpm_threshold=chry_cpm_threshold)
        flagged = qc.flagged
        if flagged and exclude_flagged:
            excluded = flagged
            qc.table.loc[excluded, "excluded"] = True
            log.warning("excluding %d QC-flagged samples: %s", len(excluded), ", ".join(
                f"{s} ({qc.table.at[s, 'reason']})" for s in excluded[:20]))
        elif flagged:
            log.warning("%d samples flagged by QC and kept (pass exclude_flagged to remove them): %s",
                        len(flagged), ", ".join(f"{s} ({qc.table.at[s, 'reason']})" for s in flagged[:20]))
    keep_samples = samples[~samples.isin(excluded)]
    if len(keep_samples) < 3:
        raise InputError(f"only {len(keep_samples)} samples remain after QC exclusion; at least 3 are "
                         "needed: inspect the QC report or run without excluding flagged samples")
    x = counts[keep_samples].to_numpy() if excluded else x_all
    t = None if tpm is None else tpm[keep_samples].to_numpy(dtype=np.float64)
    chunk = _chunking(x.shape[0], x.shape[1], samples_chunk_size)
    mask, nf, vals = _normalise(
        x, t, normalization=normalization, int_offset=int_offset, tpm_threshold=float(tpm_threshold),
        count_threshold=float(count_threshold), sample_frac_threshold=float(sample_frac_threshold),
        chunk=chunk)
    genes = counts.index[mask]
    log.info("%d of %d genes pass the filters (TPM >= %g and counts >= %g in >= %g of %d samples)",
             int(mask.sum()), len(mask), tpm_threshold, count_threshold, sample_frac_threshold,
             len(keep_samples))
    if genes.size == 0:
        raise InputError(
            f"no gene passes the expression filters (TPM >= {tpm_threshold}, counts >= "
            f"{count_threshold} in >= {sample_frac_threshold:g} of {len(keep_samples)} samples); "
            "lower the thresholds or check the inputs"
        )

    ann = _annotate(pd.Index(genes.astype(str)), annotation)
    has = ann["tss"].notna().to_numpy()
    if chromosomes is not None:
        wanted = {str(c) for c in set_chrom_prefix(list(chromosomes), "strip")}
        on = np.isin(set_chrom_prefix(ann["chr"].fillna("").astype(str).to_numpy(), "strip"), list(wanted))
        log.info("%d expressed genes lie outside the chosen chromosomes", int((has & ~on).sum()))
        has = has & on
    if not has.any():
        raise InputError(
            f"annotation: none of the {len(genes)} expressed genes is in the annotation on the chosen "
            f"chromosomes (e.g. {', '.join(map(str, genes[:3]))} vs "
            f"{', '.join(map(str, annotation.index[:3]))}); use the annotation the counts were made with"
        )
    if not has.all():
        miss = genes[~has]
        log.warning("%d expressed genes have no annotation (or are on other chromosomes) and are "
                    "dropped (e.g. %s)", len(miss), ", ".join(map(str, miss[:3])))
    ann = ann[has]
    chrom = set_chrom_prefix(ann["chr"].astype(str).to_numpy(), chrom_prefix)
    tss = ann["tss"].to_numpy(dtype=np.int64)
    ids = ann.index.astype(str).to_numpy()
    contig_rank = {c: i for i, c in enumerate(sorted(set(chrom.tolist()), key=chrom_sort_key))}
    rank = np.array([contig_rank[c] for c in chrom], dtype=np.int64)
    order = np.lexsort((ids, tss, rank))
    parts = _participants(keep_samples, lookup)
    bed = pd.DataFrame(vals[np.flatnonzero(has)[order]], columns=parts, copy=False)  # one copy
    del vals
    for i, (name, col) in enumerate((("#chr", chrom[order]), ("start", tss[order] - 1),
                                     ("end", tss[order]), ("gene_id", ids[order]))):
        bed.insert(i, name, col)
    if lookup is not None:
        log.info("renamed %d samples to participant ids", len(parts))
    return PreparedExpression(
        bed=bed, qc=qc,
        norm_factors=pd.Series(nf, index=keep_samples, name="norm_factor"),
        expressed=pd.Series(mask, index=counts.index, name="expressed"),
        excluded_samples=excluded,
        params={"tpm_threshold": tpm_threshold, "count_threshold": count_threshold,
                "sample_frac_threshold": sample_frac_threshold, "normalization": normalization,
                "int_offset": int_offset, "chrom_prefix": chrom_prefix,
                "exclude_flagged": exclude_flagged, "samples_chunk_size": chunk},
    )


def check_bed_output(path: str | os.PathLike[str]) -> str:
    """The output kind for a BED path: ``"gz"``, ``"text"`` or ``"parquet"`` (else InputError)."""
    name = basename(os.fspath(path)).lower()
    if name.endswith(".bed.parquet") or name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".bed.gz"):
        return "gz"
    if name.endswith(".bed"):
        return "text"
    raise InputError(
        f"output {path}: expected a name ending in .bed.gz (gzip), .bed or .bed.parquet; rename it"
    )


def write_phenotype_bed(
    bed: pd.DataFrame, path: str | os.PathLike[str], *, float_format: str | None = None
) -> str | Path:
    """Write a phenotype BED atomically: ``.bed.gz`` (gzip), ``.bed`` or ``.bed.parquet``.

    Parameters
    ----------
    bed
        ``#chr start end gene_id samples...`` (e.g. :attr:`PreparedExpression.bed`).
    path
        Output path; its suffix picks the format.
    float_format
        ``printf`` format of values in text output (default: shortest exact representation).

    Returns
    -------
    pathlib.Path, or the URL (str) for an object-store output
    """
    kind = check_bed_output(path)
    path = os.fspath(path) if is_url(path) else Path(path)
    with atomic_path(path) as tmp:
        if kind == "parquet":
            bed.to_parquet(tmp, index=False)
        elif kind == "gz":
            with (open(tmp, "wb") as raw,
                  gzip_writer(raw, compresslevel=6) as gz,
                  io.TextIOWrapper(gz, encoding="utf-8", newline="") as fh):
                bed.to_csv(fh, sep="\t", index=False, float_format=float_format, na_rep="NA")
        else:
            bed.to_csv(tmp, sep="\t", index=False, float_format=float_format, na_rep="NA")
    log.info("wrote %d phenotypes x %d samples to %s", len(bed), bed.shape[1] - 4, path)
    return path
