"""RNA-seq sample QC (depth, detected genes, PCA outliers, sex check) and GTEx gene filters.

Sample QC (:func:`sample_qc`) reports, per sample:

* ``library_size`` (total counts) and ``detected_genes`` (genes with a count > 0);
* ``pc1``, ``pc2``: principal components of the log2-CPM (edgeR ``cpm(log=TRUE)``, prior count 2,
  TMM effective library sizes) of the expressed autosomal genes with median CPM >= 1, each gene
  centred;
  ``outlier_sd``: the largest ``|pc_k - centre_k| / scale_k`` over the first ``outlier_pcs``
  components. With ``outlier_method="mad"`` (default) centre is the median and scale
  ``1.4826 * MAD`` (a robust SD, so that a group of outliers cannot inflate the SD and hide
  itself); with ``"sd"`` the mean and the SD. A sample beyond ``outlier_sd_threshold`` (default 6)
  is flagged ``pca_outlier``;
* ``inferred_sex``: ``F`` when XIST is high (CPM >= ``xist_cpm_threshold``) and the summed CPM
  of the chrY genes is low (< ``chry_cpm_threshold``), else ``M``; missing when the XIST gene
  or every chrY gene is absent. chrY genes come from the annotation's chromosome (``Y``/``chrY``;
  GENCODE ``_PAR_Y`` copies excluded), XIST from the ``gene_name`` column/attribute. A sample whose
  inferred sex differs from a reported sex is flagged ``sex_mismatch``.

Flagged samples are only reported here; :func:`dqtl.preprocess.expression.prepare_expression`
removes them when asked (``exclude_flagged``). :func:`write_qc_report` writes ``qc_samples.tsv``
and three PNG plots (``library_size.png``, ``pca.png``, ``sex_check.png``); each plot function
takes ``ax=None`` and returns the axes.

Gene filters (:func:`gene_filter`) are GTEx's (``eqtl_prepare_expression.py``): keep a gene when
``TPM >= tpm_threshold`` in at least ``sample_frac_threshold * n`` samples **and**
``count >= count_threshold`` in at least ``sample_frac_threshold * n`` samples.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import pandas as pd

from dqtl.errors import InputError
from dqtl.preprocess.normalize import cpm, tmm_norm_factors

__all__ = [
    "QC_COLUMNS",
    "SampleQC",
    "gene_filter",
    "filter_counts",
    "sex_check_genes",
    "infer_sex",
    "expression_pcs",
    "outlier_sd",
    "sample_qc",
    "write_qc_report",
    "plot_library_sizes",
    "plot_expression_pca",
    "plot_sex_check",
]

log = logging.getLogger(__name__)

#: Leading columns of ``qc_samples.tsv`` (more follow: norm_factor, xist_cpm, chry_cpm, excluded).
QC_COLUMNS = ("sample", "library_size", "detected_genes", "pc1", "pc2", "outlier_sd",
              "inferred_sex", "reported_sex", "flagged", "reason")

_MAD_TO_SD = 1.482602218505602  # 1 / Phi^-1(3/4)
_SEX_CONTIGS = {"X", "Y", "MT"}


# --------------------------------------------------------------------------------------------
# gene filters
# --------------------------------------------------------------------------------------------
def _check_fraction(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and 0 <= value <= 1):
        raise InputError(f"{name}: expected a fraction in [0, 1], found {value!r}")
    return float(value)


def _check_threshold(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
        raise InputError(f"{name}: expected a finite number >= 0, found {value!r}")
    return float(value)


def filter_counts(values: Any, threshold: float) -> Any:
    """(genes,) number of samples with ``value >= threshold`` (numpy or lazy dask, column-blocked)."""
    if isinstance(values, da.Array):
        return (values >= threshold).sum(axis=1, dtype=np.int64)
    return np.count_nonzero(np.asarray(values) >= threshold, axis=1)


def gene_filter(
    counts: pd.DataFrame,
    tpm: pd.DataFrame | None = None,
    *,
    tpm_threshold: float = 0.1,
    count_threshold: float = 6,
    sample_frac_threshold: float = 0.2,
) -> pd.Series:
    """GTEx expression filter: which genes are expressed enough to map.

    A gene is kept when ``#{samples: TPM >= tpm_threshold} >= sample_frac_threshold * n`` and
    ``#{samples: count >= count_threshold} >= sample_frac_threshold * n`` (n: number of samples;
    the comparison is made in floating point, as GTEx does). Without ``tpm`` only the count rule
    applies.

    Parameters
    ----------
    counts
        (genes, samples) read counts.
    tpm
        (genes, samples) TPM with the same genes and samples (any order).
    tpm_threshold, count_threshold
        Per-sample expression thresholds (>= 0).
    sample_frac_threshold
        Fraction of samples, in [0, 1], that must pass each threshold.

    Returns
    -------
    pandas.Series
        (genes,) bool indexed like ``counts``, named ``expressed``.

    Examples
    --------
    >>> c = pd.DataFrame({"a": [10, 0], "b": [6, 0], "c": [0, 9]}, index=["G1", "G2"])
    >>> gene_filter(c, sample_frac_threshold=0.5).tolist()
    [True, False]
    """
    t_tpm = _check_threshold("tpm_threshold", tpm_threshold)
    t_cnt = _check_threshold("count_threshold", count_threshold)
    frac = _check_fraction("sample_frac_threshold", sample_frac_threshold)
    n = counts.shape[1]
    keep = filter_counts(counts.to_numpy(), t_cnt) >= frac * n
    if tpm is not None:
        tpm = aligned_tpm(tpm, counts)
        keep &= filter_counts(tpm.to_numpy(), t_tpm) >= frac * n
    return pd.Series(keep, index=counts.index, name="expressed")


def aligned_tpm(tpm: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """TPM reordered to the genes and samples of ``counts`` (same sets required)."""
    if not tpm.columns.equals(counts.columns):
        miss = counts.columns.difference(tpm.columns)
        extra = tpm.columns.difference(counts.columns)
        if len(miss) or len(extra):
            raise InputError(
                f"TPM and counts must hold the same samples: {len(miss)} count samples are not in "
                f"the TPM (e.g. {', '.join(map(str, miss[:3]))}) and {len(extra)} TPM samples are not "
                f"in the counts (e.g. {', '.join(map(str, extra[:3]))}); use matrices from the same run"
            )
        tpm = tpm[counts.columns]
    if not tpm.index.equals(counts.index):
        miss = counts.index.difference(tpm.index)
        if len(miss) or len(tpm.index) != len(counts.index):
            extra = tpm.index.difference(counts.index)
            raise InputError(
                f"TPM and counts must hold the same genes: {len(miss)} count genes are not in the "
                f"TPM (e.g. {', '.join(map(str, miss[:3]))}) and {len(extra)} TPM genes are not in "
                f"the counts (e.g. {', '.join(map(str, extra[:3]))}); use matrices from the same "
                "quantification and annotation"
            )
        tpm = tpm.loc[counts.index]
    return tpm


# --------------------------------------------------------------------------------------------
# sex check
# --------------------------------------------------------------------------------------------
def _bare_contig(name: str) -> str:
    s = str(name).strip()
    if len(s) > 3 and s[:3].lower() == "chr":
        s = s[3:]
    up = s.upper()
    return "MT" if up in ("M", "MT") else up


def sex_check_genes(
    gene_ids: pd.Index,
    annotation: pd.DataFrame | None,
    *,
    gene_names: pd.Series | None = None,
) -> tuple[list[str], list[str]]:
    """The XIST gene(s) and the chrY genes among ``gene_ids``.

    Parameters
    ----------
    gene_ids
        Genes of the count matrix.
    annotation
        Gene annotation (:func:`dqtl.io.annotation.read_gene_annotation`: index ``gene_id``,
        columns ``chr`` and ``gene_name``).
    gene_names
        (genes,) symbols indexed by gene id (e.g. a GCT ``Description``), used where the
        annotation has no name.

    Returns
    -------
    (list of str, list of str)
        XIST gene ids (name ``XIST``, any case) and chrY gene ids (GENCODE ``_PAR_Y`` excluded).
    """
    names = pd.Series("", index=gene_ids, dtype=object)
    chrom = pd.Series("", index=gene_ids, dtype=object)
    if annotation is not None:
        ann = annotation.reindex(gene_ids)
        if "gene_name" in ann:
            names = ann["gene_name"].fillna("").astype(str)
        chrom = ann["chr"].fillna("").astype(str).map(_bare_contig)
    if gene_names is not None:
        alt = gene_names.reindex(gene_ids).fillna("").astype(str)
        names = names.where(names != "", alt)
    xist = [str(g) for g in gene_ids[(names.str.upper() == "XIST").to_numpy()]]
    par = np.array([str(g).upper().endswith("_PAR_Y") for g in gene_ids])
    chry = [str(g) for g in gene_ids[((chrom == "Y").to_numpy()) & ~par]]
    return xist, chry


def infer_sex(
    xist_cpm: np.ndarray,
    chry_cpm: np.ndarray,
    *,
    xist_cpm_threshold: float = 10.0,
    chry_cpm_threshold: float = 10.0,
) -> np.ndarray:
    """``"F"`` where XIST CPM >= threshold and summed chrY CPM < threshold, else ``"M"``.

    >>> infer_sex(np.array([150.0, 0.2, 90.0]), np.array([0.1, 220.0, 60.0])).tolist()
    ['F', 'M', 'M']
    """
    xist = np.asarray(xist_cpm, dtype=np.float64)
    chry = np.asarray(chry_cpm, dtype=np.float64)
    female = (xist >= xist_cpm_threshold) & (chry < chry_cpm_threshold)
    return np.where(female, "F", "M").astype(object)


# --------------------------------------------------------------------------------------------
# PCA outliers
# --------------------------------------------------------------------------------------------
def expression_pcs(
    log_expr: np.ndarray, *, n_pcs: int = 2, seed: int = 0, exact_max: int = 3000
) -> tuple[np.ndarray, np.ndarray]:
    """Top principal components of samples from a (genes, samples) log-expression matrix.

    Each gene is centred over samples. With at most ``exact_max`` samples the components come
    from an eigendecomposition of the samples x samples Gram matrix (exact); beyond that from a
    seeded randomized SVD (Halko et al. 2011, doi:10.1137/090771806; 10 oversamples, 6 power
    iterations), deterministic for a given ``seed``. Signs are fixed so that each component's
    largest-magnitude gene loading is positive.

    Parameters
    ----------
    log_expr
        (genes, samples) float matrix (e.g. log2-CPM).
    n_pcs
        Number of components (>= 1); fewer when the matrix has lower rank.
    seed
        Seed of the randomized SVD.
    exact_max
        Largest sample count solved exactly.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Scores (samples, k) float64 and explained variance ratios (k,).
    """
    x = np.asarray(log_expr, dtype=np.float64)
    n_genes, n = x.shape
    xc = x - x.mean(axis=1, keepdims=True)
    total = float(np.einsum("ij,ij->", xc, xc))
    k = int(min(n_pcs, n - 1, n_genes))
    if k < 1 or total == 0:
        return np.zeros((n, max(k, 0))), np.zeros(max(k, 0))
    if n <= exact_max:
        gram = xc.T @ xc
        w, u = np.linalg.eigh(gram)
        order = np.argsort(w)[::-1][:k]
        w, u = np.clip(w[order], 0, None), u[:, order]
        s = np.sqrt(w)
    else:
        rng = np.random.default_rng(seed)
        p = min(k + 10, n)
        q = xc.T @ rng.standard_normal((n_genes, p))  # (samples, p) range of xc^T
        for _ in range(6):
            q, _r = np.linalg.qr(q)
            q, _r = np.linalg.qr(xc.T @ (xc @ q))
        q, _r = np.linalg.qr(q)
        b = xc @ q  # (genes, p)
        _ub, s_all, vt = np.linalg.svd(b, full_matrices=False)
        u = q @ vt.T[:, :k]
        s = s_all[:k]
    scores = u * s
    loadings = xc @ u  # (genes, k), proportional to the gene loadings
    flip = np.sign(loadings[np.argmax(np.abs(loadings), axis=0), np.arange(k)])
    flip[flip == 0] = 1
    return scores * flip, s**2 / total


def outlier_sd(scores: np.ndarray, *, method: Literal["mad", "sd"] = "mad") -> np.ndarray:
    """Per sample, the largest distance from the centre in (robust) SD units over the given PCs.

    Parameters
    ----------
    scores
        (samples, k) PC scores.
    method
        ``"mad"``: ``|x - median| / (1.4826 * MAD)``; ``"sd"``: ``|x - mean| / SD`` (ddof 1).

    Returns
    -------
    numpy.ndarray
        (samples,) float64; 0 where a component has no spread.

    >>> outlier_sd(np.array([[0.0], [1.0], [-1.0], [2.0], [50.0]])).round(2).tolist()
    [0.67, 0.0, 1.35, 0.67, 33.05]
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        return np.zeros(x.shape[0])
    if method == "mad":
        centre = np.median(x, axis=0)
        scale = _MAD_TO_SD * np.median(np.abs(x - centre), axis=0)
    elif method == "sd":
        centre = x.mean(axis=0)
        scale = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.zeros(x.shape[1])
    else:
        raise InputError(f"outlier_method: expected 'mad' or 'sd', found {method!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(x - centre) / scale
    z[:, scale <= 0] = 0.0
    return np.nan_to_num(z.max(axis=1), nan=0.0)


# --------------------------------------------------------------------------------------------
# sample QC
# --------------------------------------------------------------------------------------------
@dataclass
class SampleQC:
    """Per-sample QC table and what it was computed from.

    Attributes
    ----------
    table
        Indexed by sample id: the :data:`QC_COLUMNS` (``sample`` is the index name) then
        ``norm_factor``, ``xist_cpm``, ``chry_cpm``, ``excluded``.
    explained_variance
        (k,) explained variance ratio of the PCs.
    xist_genes, chry_genes
        Genes used by the sex check.
    n_pca_genes
        Genes in the PCA.
    params
        Thresholds used.
    """

    table: pd.DataFrame
    explained_variance: np.ndarray
    xist_genes: list[str] = field(default_factory=list)
    chry_genes: list[str] = field(default_factory=list)
    n_pca_genes: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> list[str]:
        """Ids of flagged samples."""
        return [str(s) for s in self.table.index[self.table["flagged"].to_numpy(dtype=bool)]]

    def to_frame(self) -> pd.DataFrame:
        """The table with ``sample`` as the first column (as written to ``qc_samples.tsv``)."""
        return self.table.reset_index()


def sample_qc(
    counts: pd.DataFrame,
    *,
    annotation: pd.DataFrame | None = None,
    gene_names: pd.Series | None = None,
    reported_sex: pd.Series | None = None,
    norm_factors: Any = None,
    expressed: pd.Series | np.ndarray | None = None,
    outlier_sd_threshold: float = 6.0,
    outlier_pcs: int = 2,
    outlier_method: Literal["mad", "sd"] = "mad",
    pca_min_cpm: float = 1.0,
    xist_cpm_threshold: float = 10.0,
    chry_cpm_threshold: float = 10.0,
    seed: int = 0,
) -> SampleQC:
    """Sample QC of an RNA-seq count matrix: depth, detected genes, PCA outliers, sex check.

    Parameters
    ----------
    counts
        (genes, samples) read counts (validated: see :func:`dqtl.io.expression.validate_counts`).
    annotation
        Gene annotation (index ``gene_id``; ``chr``, ``gene_name``): chrY genes, XIST, and the
        autosomes used by the PCA. Without it the PCA uses every expressed gene and the sex check
        uses ``gene_names`` for XIST only (no chrY genes: inferred sex missing).
    gene_names
        (genes,) gene symbols by gene id, used where the annotation has none.
    reported_sex
        ``"F"``/``"M"``/NaN indexed by sample id (:func:`dqtl.io.expression.parse_sex`).
    norm_factors
        (samples,) TMM factors; default :func:`dqtl.preprocess.normalize.tmm_norm_factors`.
    expressed
        (genes,) bool mask of genes used by the PCA; default: count >= 6 in >= 20% of samples.
    outlier_sd_threshold
        Flag samples whose ``outlier_sd`` exceeds this (> 0).
    outlier_pcs
        Number of leading PCs searched for outliers (>= 1).
    outlier_method
        ``"mad"`` (robust, default) or ``"sd"``; see :func:`outlier_sd`.
    pca_min_cpm
        The PCA uses expressed autosomal genes whose median CPM is at least this (default 1):
        near the detection limit the log-CPM prior count makes low-depth samples drift apart.
    xist_cpm_threshold, chry_cpm_threshold
        Sex-check thresholds on CPM (see :func:`infer_sex`).
    seed
        Seed of the randomized SVD (used only beyond 3000 samples).

    Returns
    -------
    SampleQC

    Examples
    --------
    >>> from dqtl.simulate_counts import simulate_counts
    >>> sim = simulate_counts(500, 60, seed=1, n_outliers=2, n_sex_swaps=2)
    >>> qc = sample_qc(sim.counts, annotation=sim.annotation, reported_sex=sim.reported_sex)
    >>> sorted(qc.flagged) == sorted(sim.truth.index[sim.truth.outlier | sim.truth.sex_swapped])
    True
    """
    if not (isinstance(outlier_sd_threshold, int | float) and outlier_sd_threshold > 0):
        raise InputError(f"outlier_sd_threshold: expected a number > 0, found {outlier_sd_threshold!r}")
    if not (isinstance(outlier_pcs, int) and outlier_pcs >= 1):
        raise InputError(f"outlier_pcs: expected an integer >= 1, found {outlier_pcs!r}")
    if outlier_method not in ("mad", "sd"):
        raise InputError(f"outlier_method: expected 'mad' or 'sd', found {outlier_method!r}")
    x = counts.to_numpy()
    samples = counts.columns
    lib = x.sum(axis=0, dtype=np.float64) if x.dtype.kind == "f" else x.sum(axis=0, dtype=np.int64).astype(np.float64)
    detected = np.count_nonzero(x > 0, axis=0)
    nf = np.asarray(tmm_norm_factors(x) if norm_factors is None else norm_factors, dtype=np.float64).reshape(-1)
    eff = lib * nf

    # PCA on log-CPM of expressed autosomal genes
    if expressed is None:
        keep = filter_counts(x, 6) >= 0.2 * x.shape[1]
    else:
        keep = np.asarray(expressed, dtype=bool).reshape(-1)
    if annotation is not None:
        chrom = annotation["chr"].reindex(counts.index).fillna("").astype(str).map(_bare_contig)
        keep = keep & ~chrom.isin(_SEX_CONTIGS).to_numpy()
    rows = np.flatnonzero(keep)
    if pca_min_cpm > 0 and rows.size:
        med = np.median(x[rows] * (1e6 / eff), axis=1)
        rows = rows[med >= pca_min_cpm]
    k_pcs = max(2, outlier_pcs)
    if rows.size >= 2 and x.shape[1] >= 3:
        logcpm = cpm(x[rows], lib_size=lib, norm_factors=nf, log=True, prior_count=2.0)
        scores, evr = expression_pcs(logcpm, n_pcs=k_pcs, seed=seed)
        del logcpm
    else:
        log.warning("sample QC: PCA skipped (%d expressed genes, %d samples)", rows.size, x.shape[1])
        scores, evr = np.zeros((x.shape[1], 0)), np.zeros(0)
    pcs = np.full((x.shape[1], 2), np.nan)
    pcs[:, : min(2, scores.shape[1])] = scores[:, :2]
    osd = outlier_sd(scores[:, :outlier_pcs], method=outlier_method)
    is_outlier = osd > outlier_sd_threshold

    # sex check
    xist, chry = sex_check_genes(counts.index, annotation, gene_names=gene_names)
    idx = counts.index
    xist_cpm = np.full(x.shape[1], np.nan)
    chry_cpm = np.full(x.shape[1], np.nan)
    inferred = np.full(x.shape[1], np.nan, dtype=object)
    if xist and chry:
        xist_cpm = x[idx.get_indexer(xist)].sum(axis=0, dtype=np.float64) * (1e6 / eff)
        chry_cpm = x[idx.get_indexer(chry)].sum(axis=0, dtype=np.float64) * (1e6 / eff)
        inferred = infer_sex(xist_cpm, chry_cpm, xist_cpm_threshold=xist_cpm_threshold,
                             chry_cpm_threshold=chry_cpm_threshold)
    else:
        log.warning("sample QC: sex check skipped: %s", "no XIST gene (gene_name XIST)" if not xist
                    else "no chrY gene in the annotation")
    reported = np.full(x.shape[1], np.nan, dtype=object)
    if reported_sex is not None:
        reported = reported_sex.reindex(samples).to_numpy(dtype=object)
    known = pd.notna(reported) & pd.notna(inferred)
    mismatch = np.zeros(x.shape[1], dtype=bool)
    mismatch[known] = reported[known] != inferred[known]

    reasons = []
    for o, m in zip(is_outlier, mismatch, strict=True):
        r = [name for name, hit in (("pca_outlier", o), ("sex_mismatch", m)) if hit]
        reasons.append(",".join(r))
    table = pd.DataFrame({
        "library_size": lib,
        "detected_genes": detected.astype(np.int64),
        "pc1": pcs[:, 0],
        "pc2": pcs[:, 1],
        "outlier_sd": osd,
        "inferred_sex": inferred,
        "reported_sex": reported,
        "flagged": is_outlier | mismatch,
        "reason": reasons,
        "norm_factor": nf,
        "xist_cpm": xist_cpm,
        "chry_cpm": chry_cpm,
        "excluded": False,
    }, index=pd.Index([str(s) for s in samples], name="sample"))
    qc = SampleQC(table, evr, xist, chry, int(rows.size), {
        "outlier_sd_threshold": float(outlier_sd_threshold), "outlier_pcs": outlier_pcs,
        "outlier_method": outlier_method, "pca_min_cpm": float(pca_min_cpm),
        "xist_cpm_threshold": float(xist_cpm_threshold),
        "chry_cpm_threshold": float(chry_cpm_threshold)})
    n_out, n_mis = int(is_outlier.sum()), int(mismatch.sum())
    log.info("sample QC: %d samples, %d PCA outliers (> %g SD), %d sex mismatches",
             x.shape[1], n_out, outlier_sd_threshold, n_mis)
    return qc


# --------------------------------------------------------------------------------------------
# report and plots
# --------------------------------------------------------------------------------------------
def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    from dqtl.plot import new_axes

    return new_axes(figsize=(6, 4.5))


def _label_flagged(ax: Any, x: np.ndarray, y: np.ndarray, names: pd.Index, mask: np.ndarray,
                   max_labels: int = 20) -> None:
    for xi, yi, n in list(zip(x[mask], y[mask], names[mask], strict=True))[:max_labels]:
        ax.annotate(str(n), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")


def plot_library_sizes(qc: SampleQC, *, ax: Any = None) -> Any:
    """Library size (millions of reads) against detected genes; flagged samples in red."""
    ax = _axes(ax)
    t = qc.table
    flag = t["flagged"].to_numpy(dtype=bool)
    x, y = t["library_size"].to_numpy() / 1e6, t["detected_genes"].to_numpy()
    ax.scatter(x[~flag], y[~flag], s=10, color="0.4", label="samples")
    if flag.any():
        ax.scatter(x[flag], y[flag], s=22, color="C3", label="flagged")
        _label_flagged(ax, x, y, t.index, flag)
    ax.set_xlabel("library size (million reads)")
    ax.set_ylabel("detected genes (count > 0)")
    ax.set_title("Sequencing depth")
    ax.legend(frameon=False, fontsize=8)
    return ax


def plot_expression_pca(qc: SampleQC, *, ax: Any = None) -> Any:
    """PC1 against PC2 of log-CPM; PCA outliers and other flagged samples highlighted."""
    ax = _axes(ax)
    t = qc.table
    x, y = t["pc1"].to_numpy(), t["pc2"].to_numpy()
    out = t["reason"].str.contains("pca_outlier").to_numpy()
    other = t["flagged"].to_numpy(dtype=bool) & ~out
    ok = ~(out | other)
    ax.scatter(x[ok], y[ok], s=10, color="0.4", label="samples")
    if other.any():
        ax.scatter(x[other], y[other], s=22, color="C1", label="flagged (other reason)")
    if out.any():
        ax.scatter(x[out], y[out], s=26, color="C3",
                   label=f"PCA outlier (> {qc.params.get('outlier_sd_threshold', 6):g} SD)")
        _label_flagged(ax, x, y, t.index, out)
    ev = list(qc.explained_variance) + [np.nan, np.nan]
    ax.set_xlabel(f"PC1 ({100 * ev[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.1f}% of variance)")
    ax.set_title(f"log-CPM PCA ({qc.n_pca_genes} expressed autosomal genes)")
    ax.legend(frameon=False, fontsize=8)
    return ax


def plot_sex_check(qc: SampleQC, *, ax: Any = None) -> Any:
    """log2(XIST CPM + 1) against log2(chrY CPM + 1), coloured by reported sex; mismatches ringed."""
    ax = _axes(ax)
    t = qc.table
    x = np.log2(t["xist_cpm"].to_numpy(dtype=np.float64) + 1)
    y = np.log2(t["chry_cpm"].to_numpy(dtype=np.float64) + 1)
    rep = t["reported_sex"].astype(object).to_numpy()
    for code, color, label in (("F", "C6", "reported F"), ("M", "C0", "reported M")):
        m = rep == code
        if m.any():
            ax.scatter(x[m], y[m], s=12, color=color, label=label)
    unk = ~np.isin(rep, ["F", "M"])
    if unk.any():
        ax.scatter(x[unk], y[unk], s=12, color="0.6", label="reported unknown")
    mis = t["reason"].str.contains("sex_mismatch").to_numpy()
    if mis.any():
        ax.scatter(x[mis], y[mis], s=80, facecolors="none", edgecolors="C3", linewidths=1.5,
                   label="sex mismatch")
        _label_flagged(ax, x, y, t.index, mis)
    ax.axvline(np.log2(qc.params.get("xist_cpm_threshold", 10.0) + 1), color="0.7", lw=0.8, ls="--")
    ax.axhline(np.log2(qc.params.get("chry_cpm_threshold", 10.0) + 1), color="0.7", lw=0.8, ls="--")
    ax.set_xlabel("log2(XIST CPM + 1)")
    ax.set_ylabel(f"log2(chrY CPM + 1)  ({len(qc.chry_genes)} genes)")
    ax.set_title("Sex check")
    ax.legend(frameon=False, fontsize=8)
    return ax


def write_qc_report(qc: SampleQC, outdir: str | os.PathLike[str]) -> list[Path]:
    """Write ``qc_samples.tsv`` and ``library_size.png``, ``pca.png``, ``sex_check.png`` into
    ``outdir`` (created when missing). The four files appear together (staged, then moved into
    place); anything else in ``outdir`` is left as it was. Returns the written paths."""
    from dqtl.io.fs import Publication
    from dqtl.plot import close_figure, new_axes

    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"--qc-report {outdir} is a file; give a folder")
    names = ["qc_samples.tsv", "library_size.png", "pca.png", "sex_check.png"]
    with Publication() as pub:
        qc.to_frame().to_csv(pub.stage(outdir / names[0]), sep="\t", index=False, na_rep="NA",
                             float_format="%.6g")
        for name, fn in zip(names[1:], (plot_library_sizes, plot_expression_pca, plot_sex_check),
                            strict=True):
            ax = new_axes(figsize=(6, 4.5))
            fig = ax.figure
            try:
                fn(qc, ax=ax)
                fig.tight_layout()
                fig.savefig(pub.stage(outdir / name), dpi=120, format="png")
            finally:
                close_figure(fig)
    return [outdir / n for n in names]
