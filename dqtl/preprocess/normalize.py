"""RNA-seq normalisation: edgeR TMM factors, CPM, rank-based inverse normal transform, quantile normalisation.

Three layers, as everywhere in dqtl:

* numpy kernels (``_column_sums``, ``_column_quantile7``, ``_tmm_slab``, ``_cpm_block``,
  ``rank_normalize``'s kernels) that see one in-memory block;
* dask graphs that tile those kernels over blocks of *whole columns* (samples) or whole rows
  (genes), so every number is computed by the same kernel on the same data whatever the
  chunking: numpy, pandas, xarray and dask inputs give bit-identical results;
* thin wrappers that accept a numpy array, a pandas DataFrame, an xarray DataArray or a dask
  array (genes x samples) and return the matching container.

TMM (:func:`tmm_norm_factors`) reproduces edgeR 3.40.2 ``calcNormFactors(method = "TMM")``
(``calcNormFactors.default`` / ``.calcFactorTMM``) step by step; :func:`cpm` reproduces edgeR
``cpm()`` (C++ ``calculate_cpm_raw`` / ``calculate_cpm_log``). Both are tested against outputs of
edgeR 3.40.2 under ``tests/reference/edger_tmm`` (agreement ~1e-15 relative).

Input rules (counts): a 2-D numeric array, genes x samples, at least one gene and one sample;
values finite and non-negative (negative, NaN or infinite counts raise
:class:`~dqtl.errors.InputError`, as edgeR stops on NA counts and DGEList on negative ones);
non-integer counts (e.g. salmon/RSEM expected counts) are accepted, as edgeR accepts them;
labelled inputs must have unique gene and sample ids.

References
----------
Robinson MD, Oshlack A (2010). A scaling normalization method for differential expression
analysis of RNA-seq data. Genome Biology 11:R25. doi:10.1186/gb-2010-11-3-r25
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, TypeAlias

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from dqtl.compute import local_threads, local_workers, map_ranges
from dqtl.errors import InputError
from dqtl.kernels.stats import exact_sum, exact_sums

__all__ = [
    "tmm_norm_factors",
    "effective_lib_size",
    "cpm",
    "check_numeric",
    "check_numeric_pandas",
]

log = logging.getLogger(__name__)

ArrayInput: TypeAlias = np.ndarray | pd.DataFrame | xr.DataArray | da.Array

_LN_MILLION = math.log(1e6)
_LN_TWO = math.log(2.0)


# --------------------------------------------------------------------------------------------
# input adaptation
# --------------------------------------------------------------------------------------------
@dataclass
class _Matrix:
    """A genes x samples matrix with the labels needed to wrap results like the input."""

    values: Any  # np.ndarray or da.Array, (genes, samples)
    kind: str  # "numpy" | "dask" | "pandas" | "xarray"
    gene_ids: pd.Index | None = None
    sample_ids: pd.Index | None = None
    source: Any = None
    gene_dim: str | None = None
    sample_dim: str | None = None

    @property
    def is_dask(self) -> bool:
        return isinstance(self.values, da.Array)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.values.shape)  # type: ignore[return-value]

    def sample_label(self, j: int) -> str:
        return repr(self.sample_ids[j]) if self.sample_ids is not None else f"column {j}"

    def gene_label(self, i: int) -> str:
        return repr(self.gene_ids[i]) if self.gene_ids is not None else f"row {i}"

    def wrap_samples(self, v: np.ndarray, name: str) -> Any:
        if self.kind == "pandas":
            return pd.Series(v, index=self.sample_ids, name=name)
        if self.kind == "xarray":
            src = self.source
            coords = {k: c for k, c in src.coords.items() if c.dims == (self.sample_dim,)}
            return xr.DataArray(v, dims=(self.sample_dim,), coords=coords, name=name)
        return v

    def wrap_matrix(self, out: Any, name: str | None = None) -> Any:
        if self.kind == "pandas":
            return pd.DataFrame(out, index=self.gene_ids, columns=self.sample_ids)
        if self.kind == "xarray":
            src = self.source.transpose(self.gene_dim, self.sample_dim)
            res = src.copy(data=out)
            if name is not None:
                res.name = name
            return res.transpose(*self.source.dims)
        return out


def check_numeric(dtype: np.dtype, name: str) -> None:
    if dtype.kind not in "iuf":
        raise InputError(
            f"{name}: expected a numeric (integer or float) matrix, found dtype {dtype}; "
            "convert it first, e.g. counts.astype('float64')."
        )


def check_numeric_pandas(x: pd.DataFrame | pd.Series, name: str) -> None:
    frame = x.to_frame() if isinstance(x, pd.Series) else x
    bad = [c for c, t in frame.dtypes.items()
           if not pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t)]
    if bad:
        raise InputError(
            f"{name}: expected only numeric sample columns, found non-numeric columns "
            f"{bad[:5]}; move gene ids/annotation into the index (df.set_index('gene_id'))."
        )


def _check_unique(index: pd.Index, name: str, what: str) -> None:
    if index.has_duplicates:
        dups = index[index.duplicated()].unique()[:5].tolist()
        raise InputError(
            f"{name}: expected unique {what} ids, found duplicates {dups}; "
            f"aggregate or drop duplicated {what}s before normalising."
        )


def _as_matrix(x: Any, name: str) -> _Matrix:
    """Genes x samples view of any supported input, with labels checked for duplicates."""
    if isinstance(x, pd.DataFrame):
        dtypes = list(x.dtypes)
        check_numeric_pandas(x, name)
        if all(isinstance(t, np.dtype) and t.kind in "iu" for t in dtypes) and dtypes:
            values = x.to_numpy()
        else:
            values = x.to_numpy(dtype=np.float64, na_value=np.nan)
        m = _Matrix(values, "pandas", pd.Index(x.index), pd.Index(x.columns), x)
    elif isinstance(x, xr.DataArray):
        if x.ndim != 2:
            raise InputError(f"{name}: expected a 2-D DataArray (genes x samples), found dims {x.dims}.")
        if "samples" in x.dims:
            sample_dim = "samples"
            gene_dim = next(d for d in x.dims if d != "samples")
        else:
            gene_dim, sample_dim = (str(d) for d in x.dims)
        xt = x.transpose(gene_dim, sample_dim)
        gids = x.indexes[gene_dim] if gene_dim in x.indexes else None
        sids = x.indexes[sample_dim] if sample_dim in x.indexes else None
        m = _Matrix(xt.data, "xarray", gids, sids, x, str(gene_dim), str(sample_dim))
    elif isinstance(x, da.Array):
        m = _Matrix(x, "dask")
    else:
        m = _Matrix(np.asarray(x), "numpy")
    if m.values.ndim != 2:
        raise InputError(f"{name}: expected a 2-D genes x samples matrix, found {m.values.ndim} dims.")
    check_numeric(np.dtype(m.values.dtype), name)
    if 0 in m.values.shape:
        raise InputError(
            f"{name}: expected at least one gene and one sample, found shape {m.values.shape} "
            "(genes x samples); check filtering upstream."
        )
    if m.gene_ids is not None:
        _check_unique(m.gene_ids, name, "gene")
    if m.sample_ids is not None:
        _check_unique(m.sample_ids, name, "sample")
    return m


def _per_sample(value: Any, m: _Matrix, name: str) -> np.ndarray:
    """A per-sample float vector, aligned by sample id when both sides are labelled."""
    if isinstance(value, xr.DataArray):
        value = value.to_series() if value.ndim == 1 and value.dims[0] in value.indexes else value.values
    if isinstance(value, pd.Series) and m.sample_ids is not None:
        if set(value.index) != set(m.sample_ids) or value.index.has_duplicates:
            raise InputError(
                f"{name}: expected one value per sample of counts ({len(m.sample_ids)}), indexed by "
                f"the same sample ids; found {len(value)} values whose index differs; reindex it."
            )
        value = value.reindex(m.sample_ids)
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.shape[0] != m.shape[1]:
        raise InputError(
            f"{name}: expected {m.shape[1]} values (one per sample), found {v.shape[0]}; "
            "pass one value per column of counts."
        )
    if not np.all(np.isfinite(v)):
        raise InputError(f"{name}: expected finite values, found NaN/inf at positions "
                         f"{np.flatnonzero(~np.isfinite(v))[:5].tolist()}.")
    return v


def _count_problems(x: np.ndarray) -> tuple[int, int]:
    """(number of negative values, number of NaN/inf values) of a count block."""
    if x.dtype.kind == "f":
        n_bad = int(np.count_nonzero(~np.isfinite(x)))
        n_neg = int(np.count_nonzero(x < 0))
    else:
        n_bad, n_neg = 0, int(np.count_nonzero(x < 0)) if x.dtype.kind == "i" else 0
    return n_neg, n_bad


def _raise_count_problems(n_neg: int, n_bad: int, name: str, where: str = "") -> None:
    if n_bad:
        raise InputError(
            f"{name}: expected finite counts, found {n_bad} NaN/infinite values{where}; "
            "edgeR does not permit missing counts: drop those genes or set them to 0."
        )
    if n_neg:
        raise InputError(
            f"{name}: expected non-negative counts, found {n_neg} negative values{where}; "
            "pass raw (not log-transformed or centred) counts."
        )


def _validate_counts_numpy(m: _Matrix, name: str) -> None:
    x = m.values
    n_neg, n_bad = _count_problems(x)
    if n_neg or n_bad:
        bad = ~np.isfinite(x) if n_bad else x < 0
        i, j = (int(k[0]) for k in np.nonzero(bad))
        _raise_count_problems(n_neg, n_bad, name, f" (first at gene {m.gene_label(i)}, sample {m.sample_label(j)})")


# --------------------------------------------------------------------------------------------
# numpy kernels (one block of whole columns)
# --------------------------------------------------------------------------------------------
def _column_sums(block: np.ndarray) -> np.ndarray:
    """Column sums, exact (integers) or correctly rounded (``math.fsum``): order independent."""
    if block.dtype.kind in "iu":
        return block.sum(axis=0, dtype=np.int64).astype(np.float64)
    b = np.asarray(block, dtype=np.float64)
    s = b.sum(axis=0)
    if np.all(b == np.trunc(b)) and np.all(np.abs(b).sum(axis=0) < 2.0**53):
        return s  # integer valued: every partial sum is exact, in any order
    return np.array([math.fsum(b[:, j].tolist()) for j in range(b.shape[1])], dtype=np.float64)


_SLAB_COLUMNS = 256  # columns per transposed slab
_SLAB_ROWS = 128  # rows gathered and transposed at a time (a few hundred KiB: in cache)


def _column_slabs(block: np.ndarray, rows: np.ndarray, dtype: Any = None) -> Any:
    """Yield ``(j0, j1, slab)``: ``slab = block[rows, j0:j1].T`` as a C-contiguous array (columns
    as rows), built a band of rows at a time: a strided column gather from a wide row-major matrix
    misses the TLB on every row (2.5x slower at 20,000 x 10,000)."""
    block = np.asarray(block)
    dt = block.dtype if dtype is None else np.dtype(dtype)
    for j0 in range(0, block.shape[1], _SLAB_COLUMNS):
        j1 = min(j0 + _SLAB_COLUMNS, block.shape[1])
        slab = np.empty((j1 - j0, rows.size), dtype=dt)
        for i0 in range(0, rows.size, _SLAB_ROWS):
            i1 = min(i0 + _SLAB_ROWS, rows.size)
            slab[:, i0:i1] = block[rows[i0:i1], j0:j1].T
        yield j0, j1, slab


def _column_quantile7(block: np.ndarray, p: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Per-column quantile exactly as R ``quantile(x, p, type = 7)`` (R's interpolation formula),
    of the ``rows`` (default all) of each column."""
    block = np.asarray(block)
    rows = np.arange(block.shape[0]) if rows is None else np.asarray(rows)
    n = rows.size
    index = 1 + max(n - 1, 0) * p
    lo = math.floor(index)  # R: hi = ceiling(index) = lo + 1 when index > lo
    qs = np.empty(block.shape[1], dtype=np.float64)
    xhi = np.empty(block.shape[1], dtype=np.float64)
    # columns as contiguous rows (a strided partition of a wide matrix is slow); selection on
    # the original values (integers or floats) is exact
    for j0, j1, bt in _column_slabs(block, rows):
        bt.partition(lo - 1, axis=1)
        qs[j0:j1] = bt[:, lo - 1]
        if index > lo:  # hi = lo + 1: the smallest value above the lo-th
            xhi[j0:j1] = bt[:, lo:].min(axis=1)
    if index > lo:
        h = index - lo
        sel = xhi != qs
        qs[sel] = (1 - h) * qs[sel] + h * xhi[sel]
    return qs


def _r_sum_narm(a: np.ndarray) -> float:
    """R ``sum(a, na.rm = TRUE)``: NaN dropped; finite values summed with correct rounding."""
    a = a[~np.isnan(a)]
    if not np.all(np.isfinite(a)):
        return float(np.sum(a))  # +-inf (or inf - inf = NaN) as in R
    return exact_sum(a)


def _trim_rows(x: np.ndarray, n: np.ndarray, trim: float) -> np.ndarray:
    """Per row of ``x`` (non-finite entries set to +inf, ``n`` finite ones per row): the
    entries whose R average rank (ties = "average") among the row's finite entries lies in
    ``[lo, n + 1 - lo]``, ``lo = floor(n * trim) + 1``.

    Values strictly between the ``lo``-th and ``hi``-th smallest have average ranks strictly
    inside ``[lo, hi]`` and values outside them strictly outside: only the tie groups of those two
    order statistics need their average rank, ``(#less + 1 + #less-or-equal) / 2``.
    """
    lo = (np.floor(n * trim) + 1).astype(np.intp)  # as R: floor(n * trim) + 1 in double
    hi = n + 1 - lo
    srt = np.sort(x, axis=1)
    rows = np.arange(x.shape[0])
    v_lo = srt[rows, np.maximum(lo - 1, 0)][:, None]
    v_hi = srt[rows, np.maximum(hi - 1, 0)][:, None]
    keep = (x > v_lo) & (x < v_hi)
    for v in (v_lo, v_hi):
        eq = x == v
        twice_rank = 2 * np.count_nonzero(x < v, axis=1) + 1 + np.count_nonzero(eq, axis=1)
        tie_kept = (2 * lo <= twice_rank) & (twice_rank <= 2 * hi)
        keep |= eq & tie_kept[:, None]
    return keep


def _tmm_slab(obs: np.ndarray, n_obs: np.ndarray, ref_scaled: np.ndarray, log_ref: np.ndarray,
              v_ref: np.ndarray, params: tuple[float, float, bool, float]) -> np.ndarray:
    """edgeR ``.calcFactorTMM`` for each row of ``obs`` (samples x genes, float64) against the
    reference, vectorised over the rows: the same elementwise operations as edgeR, the same kept
    genes (exact order statistics) and correctly rounded sums."""
    log_ratio_trim, sum_trim, do_weighting, a_cutoff = params
    n_rows = obs.shape[0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        obs_scaled = obs / n_obs
        log_r = np.log2(obs_scaled / ref_scaled)
        abs_e = (np.log2(obs_scaled) + log_ref) / 2
    fin = np.isfinite(log_r) & np.isfinite(abs_e) & (abs_e > a_cutoff)
    n = np.count_nonzero(fin, axis=1)
    # R: factor 1 when no gene is left or max|M| < 1e-6 (max(numeric(0)) = -Inf < 1e-6)
    max_abs = np.max(np.abs(np.where(fin, log_r, 0.0)), axis=1, initial=-np.inf)
    live = (n > 0) & ~(max_abs < 1e-6)
    keep = fin & _trim_rows(np.where(fin, log_r, np.inf), n, log_ratio_trim)
    keep &= _trim_rows(np.where(fin, abs_e, np.inf), n, sum_trim)
    keep &= live[:, None]
    flat = np.flatnonzero(keep)
    r_idx = flat // obs.shape[1]
    g_idx = flat - r_idx * obs.shape[1]
    m_kept = log_r.ravel()[flat]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if do_weighting:
            o = obs.ravel()[flat]
            n_o = n_obs[r_idx, 0]
            v = (n_o - o) / n_o / o + v_ref[g_idx]
            num, den = m_kept / v, 1 / v
        else:
            num, den = m_kept, np.ones_like(m_kept)
        finite = np.isfinite(num) & np.isfinite(den)
        sums = exact_sums(np.concatenate([num, den]), np.concatenate([r_idx, r_idx + n_rows]),
                          2 * n_rows)
        s_num, s_den = sums[:n_rows], sums[n_rows:]
        for r in np.unique(r_idx[~finite]).tolist():  # R sum(na.rm = TRUE) with +-Inf: rare
            sel = r_idx == r
            s_num[r], s_den[r] = _r_sum_narm(num[sel]), _r_sum_narm(den[sel])
        f = s_num / s_den  # R: 0/0 = NaN (no kept gene), then f <- 0
    out = np.ones(n_rows, dtype=np.float64)
    for r in np.flatnonzero(live).tolist():
        fr = 0.0 if math.isnan(f[r]) else float(f[r])
        with np.errstate(over="ignore"):
            out[r] = float(np.power(2.0, fr))  # C pow(), as R's 2^f
    return out


_TMM_SAMPLES = 8  # samples per vectorised pass: the temporaries stay in the L2 cache


def _tmm_block(block: np.ndarray, lib: np.ndarray, *, keep: np.ndarray, ref: np.ndarray,
               lib_ref: float, params: tuple[float, float, bool, float]) -> np.ndarray:
    """TMM factors of a block of whole sample columns against the reference vector (the
    reference's genes, ``keep``-filtered)."""
    # genes with a zero reference count have a non-finite M in every sample: never used
    rows = np.flatnonzero(keep)[ref > 0]
    ref = ref[ref > 0]
    block = np.asarray(block)
    lib = np.asarray(lib, dtype=np.float64)
    out = np.empty(block.shape[1], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ref_scaled = ref / lib_ref
        log_ref = np.log2(ref_scaled)
        v_ref = (lib_ref - ref) / lib_ref / ref
    for s0, _, slab in _column_slabs(block, rows, np.float64):  # samples x genes
        for k0 in range(0, slab.shape[0], _TMM_SAMPLES):
            j0, j1 = s0 + k0, s0 + min(k0 + _TMM_SAMPLES, slab.shape[0])
            out[j0:j1] = _tmm_slab(slab[k0:k0 + _TMM_SAMPLES], lib[j0:j1, None], ref_scaled,
                                   log_ref, v_ref, params)
    return out


def _q75_block(block: np.ndarray, *, keep: np.ndarray) -> np.ndarray:
    return _column_quantile7(block, 0.75, np.flatnonzero(keep))


def _sqrt_sums_block(block: np.ndarray, *, keep: np.ndarray) -> np.ndarray:
    return _column_sums(np.sqrt(np.asarray(block, dtype=np.float64)[keep]))


def _r_mean(a: np.ndarray) -> float:
    return math.fsum(np.asarray(a, dtype=np.float64).tolist()) / a.size


# --------------------------------------------------------------------------------------------
# TMM
# --------------------------------------------------------------------------------------------
def _by_columns(x: da.Array) -> da.Array:
    """Blocks of whole columns (all genes, a block of samples sized by dask's chunk-size config)."""
    return x.rechunk({0: -1, 1: "auto"})


def _colwise(func: Any, xb: da.Array, **kwargs: Any) -> da.Array:
    """Apply a block -> per-column-vector kernel over whole-column blocks (one value per sample)."""
    return da.blockwise(func, "j", xb, "ij", concatenate=True, dtype=np.float64,
                        meta=np.empty((0,), dtype=np.float64), **kwargs)


_THREAD_COLUMNS = 512  # numpy input: at least this many columns per thread (TMM passes)


def _threaded_columns(func: Any, x: np.ndarray, *col_args: np.ndarray, **kwargs: Any) -> np.ndarray:
    """``func(x[:, j0:j1], *(a[j0:j1] for a in col_args), **kwargs)`` over ranges of whole
    columns of an in-memory matrix, in a local thread pool (dask's ``num_workers`` or the cores),
    concatenated: every column is computed by the same kernel whatever the split."""
    n = x.shape[1]

    def part(j0: int, j1: int) -> np.ndarray:
        return np.asarray(func(x[:, j0:j1], *(a[j0:j1] for a in col_args), **kwargs), dtype=np.float64)

    return np.concatenate(map_ranges(part, n, min(local_workers(), n // _THREAD_COLUMNS)))


def _threaded_rows(func: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
    """``func(x[i0:i1], *args, out=out[i0:i1], **kwargs)`` (an element-wise kernel) over bands of
    rows of an in-memory matrix, in a local thread pool, into one float64 output."""
    out = np.empty(x.shape, dtype=np.float64)

    def part(i0: int, i1: int) -> None:
        func(x[i0:i1], *args, out=out[i0:i1], **kwargs)

    map_ranges(part, x.shape[0], local_threads(x.size, x.shape[0]))
    return out


def _run_colwise(xb: Any, jobs: dict[str, tuple[Any, dict[str, Any]]]) -> dict[str, np.ndarray]:
    """Per-column kernels over whole-column blocks; for dask all jobs share one pass (one compute)."""
    if not isinstance(xb, da.Array):
        return {k: _threaded_columns(f, xb, **kw) for k, (f, kw) in jobs.items()}
    vals = dask.compute(*[_colwise(f, xb, **kw) for f, kw in jobs.values()])
    return {k: np.asarray(v, dtype=np.float64) for k, v in zip(jobs, vals, strict=True)}


def _resolve_ref(ref_column: int | str, m: _Matrix) -> int:
    if isinstance(ref_column, str | bytes) or not isinstance(ref_column, int | np.integer):
        if m.sample_ids is not None and ref_column in m.sample_ids:
            return int(m.sample_ids.get_loc(ref_column))
        raise InputError(
            f"ref_column: expected a 0-based column index or a sample id of counts, found "
            f"{ref_column!r}; pick one of the samples."
        )
    j = int(ref_column)
    if not 0 <= j < m.shape[1]:
        raise InputError(
            f"ref_column: expected a 0-based column index in [0, {m.shape[1] - 1}], found {j}."
        )
    return j


def tmm_norm_factors(
    counts: ArrayInput,
    *,
    lib_size: Any = None,
    ref_column: int | str | None = None,
    log_ratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
) -> Any:
    """TMM normalisation factors, exactly as edgeR ``calcNormFactors(method = "TMM")``.

    Reproduces edgeR 3.40.2 ``calcNormFactors.default`` / ``.calcFactorTMM``:

    1. rows that are zero in every sample are dropped; ``lib.size`` = column sums of the original
       matrix (or ``lib_size``);
    2. with one sample, or no non-zero row, every factor is 1;
    3. reference sample: given, or ``argmin |f75 - mean(f75)|`` (first on ties) where
       ``f75 = quantile(column, 0.75, type 7) / lib.size``; if ``median(f75) < 1e-20`` it is
       ``argmax colSums(sqrt(x))`` instead;
    4. per sample, with ``nO, nR`` the library sizes of sample and reference:
       ``M = log2((obs/nO)/(ref/nR))``, ``A = (log2(obs/nO) + log2(ref/nR))/2``,
       ``v = (nO-obs)/nO/obs + (nR-ref)/nR/ref``; keep finite ``M``, ``A`` with ``A > a_cutoff``;
       factor 1 if ``max|M| < 1e-6``; keep genes with average rank of ``M`` in
       ``[floor(n*log_ratio_trim)+1, n+1-that]`` and of ``A`` in ``[floor(n*sum_trim)+1, n+1-that]``;
       factor ``2^(sum(M/v)/sum(1/v))`` (``2^mean(M)`` without weighting; 1 if undefined);
    5. factors divided by their geometric mean (they multiply to 1).

    Zero library sizes (a sample with all-zero counts): edgeR 3.40.2 stops with "missing value
    where TRUE/FALSE needed" when it must choose the reference (``f75`` is 0/0); here that is an
    :class:`~dqtl.errors.InputError` naming the samples. With ``ref_column`` given, edgeR gives such
    a sample a factor of 1 before the geometric-mean scaling, and so does this function (with a
    logged warning).

    Parameters
    ----------
    counts
        (genes, samples) non-negative finite counts: numpy array, pandas DataFrame (index = genes,
        columns = samples), xarray DataArray (dim ``samples`` if present, else dims read as
        (genes, samples)) or dask array (computed here, out of core: three passes over the data,
        each in blocks of whole sample columns).
    lib_size
        (samples,) library sizes; default: column sums. A pandas Series is aligned by sample id.
        Zero is allowed only for a sample whose counts are all zero.
    ref_column
        Reference sample: 0-based column index, or a sample id for labelled input. Default: edgeR's
        upper-quartile rule (step 3).
    log_ratio_trim, sum_trim
        Fractions trimmed from each end of ``M`` and ``A``, in ``[0, 0.5)``.
    do_weighting
        Precision-weighted mean of ``M`` (edgeR ``doWeighting``).
    a_cutoff
        Genes with ``A <= a_cutoff`` are dropped before trimming (edgeR ``Acutoff``).

    Returns
    -------
    numpy.ndarray, pandas.Series or xarray.DataArray
        (samples,) float64 factors (Series indexed by sample for DataFrame input, DataArray along
        the samples dim for DataArray input), named ``norm_factor``.

    Raises
    ------
    InputError
        Empty, non-numeric, negative, NaN or infinite counts; duplicated gene or sample ids;
        bad ``lib_size``, ``ref_column`` or trim values; a zero library size when the reference
        must be chosen.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> counts = rng.poisson(rng.gamma(2.0, 50.0, size=(500, 1)) * [1.0, 2.0, 0.5], size=(500, 3))
    >>> f = tmm_norm_factors(counts)
    >>> f.shape, bool(np.isclose(np.prod(f), 1.0))
    ((3,), True)
    """
    for nm, val in (("log_ratio_trim", log_ratio_trim), ("sum_trim", sum_trim)):
        if not (isinstance(val, int | float) and 0 <= val < 0.5):
            raise InputError(f"{nm}: expected a fraction in [0, 0.5), found {val!r}.")
    params = (float(log_ratio_trim), float(sum_trim), bool(do_weighting), float(a_cutoff))
    m = _as_matrix(counts, "counts")
    n_samples = m.shape[1]
    x = m.values

    # pass 1: validation, non-zero rows, samples with any count (exact, any chunking)
    if m.is_dask:
        checks = [(x > 0).any(axis=1), (x > 0).any(axis=0), (x < 0).sum()]
        if x.dtype.kind == "f":
            checks.append((~da.isfinite(x)).sum())
        res = dask.compute(*checks)
        keep, col_any = np.asarray(res[0]), np.asarray(res[1])
        _raise_count_problems(int(res[2]), int(res[3]) if len(res) > 3 else 0, "counts")
    else:
        _validate_counts_numpy(m, "counts")
        keep, col_any = (x > 0).any(axis=1), (x > 0).any(axis=0)
    ref_idx = None if ref_column is None else _resolve_ref(ref_column, m)
    lib = None
    if lib_size is not None:
        lib = _per_sample(lib_size, m, "lib_size")
        bad = (lib < 0) | ((lib == 0) & col_any)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"lib_size: expected positive library sizes (zero only for an all-zero sample), "
                f"found {lib[j]!r} for sample {m.sample_label(j)}; pass the total counts per sample."
            )

    # pass 2: library sizes and upper quartiles, per block of whole columns
    degenerate = n_samples == 1 or not keep.any()
    xb = _by_columns(x) if m.is_dask else x
    jobs: dict[str, tuple[Any, dict[str, Any]]] = {}
    if lib is None:
        jobs["lib"] = (_column_sums, {})
    if ref_idx is None and not degenerate:
        jobs["q75"] = (_q75_block, {"keep": keep})
    got = _run_colwise(xb, jobs)
    lib = got.get("lib", lib)
    assert lib is not None

    if degenerate:
        log.info("tmm_norm_factors: %s; all factors are 1 (edgeR method 'none')",
                 "one sample" if n_samples == 1 else "no gene has a positive count")
        return m.wrap_samples(np.ones(n_samples), "norm_factor")
    zero = lib == 0
    if zero.any():
        names = [m.sample_label(j) for j in np.flatnonzero(zero)[:5]]
        if ref_idx is None:
            raise InputError(
                f"counts: expected every sample to have a positive library size, found "
                f"{int(zero.sum())} with library size 0 ({', '.join(names)}); edgeR calcNormFactors "
                "fails here. Remove those samples, or pass ref_column= to give them factor 1 as edgeR does."
            )
        log.warning("tmm_norm_factors: samples %s have library size 0; their factor is 1 (as edgeR)",
                    ", ".join(names))

    # reference column
    if ref_idx is None:
        f75 = got["q75"] / lib
        if float(np.median(f75)) < 1e-20:
            sq = _run_colwise(xb, {"sq": (_sqrt_sums_block, {"keep": keep})})["sq"]
            ref_idx = int(np.argmax(sq))
        else:
            ref_idx = int(np.argmin(np.abs(f75 - _r_mean(f75))))
    log.debug("tmm_norm_factors: reference sample %s", m.sample_label(ref_idx))

    # pass 3: one factor per sample against the reference
    ref_vec = np.asarray(x[:, ref_idx].compute() if m.is_dask else x[:, ref_idx], dtype=np.float64)[keep]
    lib_ref = float(lib[ref_idx])
    if m.is_dask:
        lib_d = da.from_array(lib, chunks=(xb.chunks[1],))
        fac_d = da.blockwise(_tmm_block, "j", xb, "ij", lib_d, "j", concatenate=True,
                             dtype=np.float64, meta=np.empty((0,), dtype=np.float64),
                             keep=keep, ref=ref_vec, lib_ref=lib_ref, params=params)
        (f,) = dask.compute(fac_d)
        f = np.asarray(f, dtype=np.float64)
    else:
        f = _threaded_columns(_tmm_block, x, lib, keep=keep, ref=ref_vec, lib_ref=lib_ref, params=params)
    f = f / math.exp(_r_mean(np.log(f)))
    return m.wrap_samples(f, "norm_factor")


def effective_lib_size(counts: ArrayInput, norm_factors: Any, *, lib_size: Any = None) -> Any:
    """Effective library sizes ``lib_size * norm_factors`` (edgeR ``getNormLibSizes``).

    Parameters
    ----------
    counts
        (genes, samples) counts (any supported container, see :func:`tmm_norm_factors`).
    norm_factors
        (samples,) factors, e.g. from :func:`tmm_norm_factors` (a Series is aligned by sample id).
    lib_size
        (samples,) library sizes; default: column sums of ``counts``.

    Returns
    -------
    numpy.ndarray, pandas.Series or xarray.DataArray
        (samples,) float64 effective library sizes, named ``effective_lib_size``.

    Examples
    --------
    >>> import numpy as np
    >>> effective_lib_size(np.array([[1, 2], [3, 4]]), np.array([0.5, 2.0]))
    array([ 2., 12.])
    """
    m = _as_matrix(counts, "counts")
    nf = _per_sample(norm_factors, m, "norm_factors")
    if np.any(nf <= 0):
        raise InputError("norm_factors: expected positive factors, found values <= 0.")
    if lib_size is None:
        xb = _by_columns(m.values) if m.is_dask else m.values
        lib = _run_colwise(xb, {"lib": (_column_sums, {})})["lib"]
    else:
        lib = _per_sample(lib_size, m, "lib_size")
    return m.wrap_samples(np.asarray(lib, dtype=np.float64) * nf, "effective_lib_size")


# --------------------------------------------------------------------------------------------
# CPM
# --------------------------------------------------------------------------------------------
def _cpm_block(block: np.ndarray, lib: np.ndarray, lib_all: np.ndarray, *, log2: bool,
               prior_count: float, validated: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """edgeR C++ ``calculate_cpm_raw`` / ``calculate_cpm_log`` on one block of columns (into
    ``out`` when given)."""
    if not validated:
        n_neg, n_bad = _count_problems(np.asarray(block))
        _raise_count_problems(n_neg, n_bad, "counts")
    if np.any(lib_all <= 0) or not np.all(np.isfinite(lib_all)):
        raise InputError(
            "cpm: expected positive finite (effective) library sizes, found "
            f"{lib_all[(lib_all <= 0) | ~np.isfinite(lib_all)][:5].tolist()}; "
            "remove samples with no counts (edgeR: 'Library sizes should be greater than zero')."
        )
    if not log2:  # bit-identical to edgeR 3.40.2
        return np.multiply(block, 1e6 / lib, dtype=np.float64, out=out)
    y = np.asarray(block, dtype=np.float64)
    ave = 0.0
    for val in lib_all.tolist():  # C++: sequential double sum
        ave += val
    ave /= lib_all.size
    adj_prior = prior_count * lib / ave
    offset = np.log(lib + 2 * adj_prior)
    res = (np.log(y + adj_prior) - offset + _LN_MILLION) / _LN_TWO
    if out is None:
        return res
    out[...] = res
    return out


def cpm(
    counts: ArrayInput,
    *,
    norm_factors: Any = None,
    lib_size: Any = None,
    log: bool = False,
    prior_count: float = 2.0,
) -> Any:
    """Counts per million, exactly as edgeR ``cpm()`` (of a DGEList when ``norm_factors`` is given).

    With ``E_j = lib_size_j * norm_factor_j`` (edgeR's effective library size):

    * ``log=False``: ``count * (1e6 / E_j)``;
    * ``log=True``: ``pc_j = prior_count * E_j / mean(E)`` and
      ``(ln(count + pc_j) - ln(E_j + 2 pc_j) + ln(1e6)) / ln(2)``, i.e.
      ``log2((count + pc_j) / (E_j + 2 pc_j) * 1e6)`` evaluated as edgeR's C++ code does.

    Parameters
    ----------
    counts
        (genes, samples) non-negative finite counts (numpy, pandas, xarray or dask).
    norm_factors
        (samples,) normalisation factors (e.g. :func:`tmm_norm_factors`); default 1.
    lib_size
        (samples,) library sizes; default: column sums.
    log
        Return log2-CPM with the library-size-scaled prior count.
    prior_count
        Average prior count added before the log (>= 0).

    Returns
    -------
    same container as ``counts``
        (genes, samples) float64; lazy (a dask array) for dask input, whose count checks then
        run at compute time.

    Raises
    ------
    InputError
        Bad counts (see :func:`tmm_norm_factors`), non-positive effective library sizes (edgeR:
        "Library sizes should be greater than zero"), negative ``prior_count``.

    Examples
    --------
    >>> import numpy as np
    >>> cpm(np.array([[1, 3], [3, 1]]))
    array([[250000., 750000.],
           [750000., 250000.]])
    """
    if not (isinstance(prior_count, int | float) and math.isfinite(prior_count) and prior_count >= 0):
        raise InputError(f"prior_count: expected a finite number >= 0, found {prior_count!r}.")
    m = _as_matrix(counts, "counts")
    nf = None if norm_factors is None else _per_sample(norm_factors, m, "norm_factors")
    if nf is not None and np.any(nf <= 0):
        raise InputError("norm_factors: expected positive factors, found values <= 0.")
    given = None if lib_size is None else _per_sample(lib_size, m, "lib_size")
    x = m.values
    if not m.is_dask:
        _validate_counts_numpy(m, "counts")
        lib = _column_sums(x) if given is None else given
        if nf is not None:
            lib = lib * nf
        return m.wrap_matrix(_threaded_rows(_cpm_block, x, lib, lib, log2=bool(log),
                                            prior_count=float(prior_count), validated=True), "cpm")
    if given is None:
        lib_d = _colwise(_column_sums, _by_columns(x))
        if nf is not None:
            lib_d = lib_d * da.from_array(nf, chunks=(lib_d.chunks[0],))
    else:
        lib_d = da.from_array(given if nf is None else given * nf, chunks=-1)
    lib_j = lib_d.rechunk((x.chunks[1],))
    lib_all = lib_d.rechunk(-1)
    out = da.blockwise(_cpm_block, "ij", x, "ij", lib_j, "j", lib_all, "k", concatenate=True,
                       dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64),
                       log2=bool(log), prior_count=float(prior_count))
    return m.wrap_matrix(out, "cpm")
