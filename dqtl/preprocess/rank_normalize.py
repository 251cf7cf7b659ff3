"""Rank-based normalisation of expression: the inverse normal transform (tensorQTL/GTEx) and
quantile normalisation, on numpy, pandas, xarray or dask input (whole rows or columns per block).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import dask.array as da
import numpy as np
import pandas as pd
import scipy.special
import xarray as xr

from dqtl.compute import local_threads, map_ranges
from dqtl.errors import InputError
from dqtl.preprocess.normalize import check_numeric, check_numeric_pandas

__all__ = ["inverse_normal_transform", "quantile_normalize", "INT_OFFSETS"]

log = logging.getLogger(__name__)

#: Inverse-normal-transform plotting positions ``q = (r - a) / (n + b)`` (r: average rank, n: number
#: of non-missing values). All are ``(r - c) / (n + 1 - 2c)`` for the named ``c``.
INT_OFFSETS: dict[str, tuple[float, float]] = {
    "blom": (0.375, 0.25),  # c = 3/8: (r - 3/8) / (n + 1/4)
    "rankit": (0.5, 0.0),  # c = 1/2: (r - 1/2) / n
    "van_der_waerden": (0.0, 1.0),  # c = 0: r / (n + 1)  (GTEx / tensorQTL eqtl_prepare_expression.py)
    "tukey": (1.0 / 3.0, 1.0 / 3.0),  # c = 1/3: (r - 1/3) / (n + 1/3)
}


def average_ranks(y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks along ``axis`` with ties averaged and NaN kept as NaN (the others ranked among
    themselves): ``scipy.stats.rankdata(y, axis=axis, nan_policy="omit")``, bit for bit, from
    one argsort and a few vectorized passes.

    >>> average_ranks(np.array([[3.0, 1.0, 3.0, np.nan, 2.0]])).tolist()
    [[3.5, 1.0, 3.5, nan, 2.0]]
    """
    x = np.moveaxis(np.asarray(y, dtype=np.float64), axis, -1)
    if x.shape[-1] == 0:
        return np.moveaxis(np.empty(x.shape, dtype=np.float64), -1, axis)
    order = np.argsort(x, axis=-1)  # NaN last; the order within ties does not matter
    sv = np.take_along_axis(x, order, axis=-1)
    out = _scatter(_sorted_average_ranks(sv), order)
    out[np.isnan(x)] = np.nan
    return np.moveaxis(out, -1, axis)


def _sorted_average_ranks(sv: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of the values of each row of ``sv``, sorted along the last axis."""
    m = sv.shape[-1]
    idx = np.broadcast_to(np.arange(m), sv.shape)
    new = np.ones(sv.shape, dtype=bool)
    new[..., 1:] = sv[..., 1:] != sv[..., :-1]
    start = np.maximum.accumulate(np.where(new, idx, 0), axis=-1)
    last = np.ones(sv.shape, dtype=bool)
    last[..., :-1] = new[..., 1:]
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, idx, m - 1), -1), axis=-1), -1)
    return 0.5 * ((end + 1) + start + 1)  # scipy: .5 * (count[dense] + count[dense - 1] + 1)


def _tied_scores(sv: np.ndarray, scores: np.ndarray, a: float, b: float) -> np.ndarray:
    """Normal scores of sorted rows without NaN: ``scores`` where a value is untied (its average
    rank is its position + 1), ``ndtri((r - a) / (m + b))`` of the tie's average rank elsewhere."""
    m = sv.shape[1]
    eq = sv[:, 1:] == sv[:, :-1]
    in_tie = np.zeros(sv.shape, dtype=bool)
    in_tie[:, 1:] = eq
    in_tie[:, :-1] |= eq
    ri, ci = np.nonzero(in_tie)  # row-major: each tie is a run of consecutive positions
    first = np.ones(ri.size, dtype=bool)
    first[1:] = ~((ri[1:] == ri[:-1]) & (ci[1:] == ci[:-1] + 1) & eq[ri[1:], np.maximum(ci[1:] - 1, 0)])
    group = np.cumsum(first) - 1
    start = ci[first][group]
    last = np.ones(ri.size, dtype=bool)
    last[:-1] = first[1:]
    end = ci[last][group]
    avg = 0.5 * ((end + 1) + start + 1)  # as _sorted_average_ranks
    z = np.array(np.broadcast_to(scores, sv.shape))
    z[ri, ci] = scipy.special.ndtri((avg - a) / (m + b))
    return z


def _scatter(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``out[..., order] = values`` along the last axis (values may broadcast)."""
    out = np.empty(order.shape, dtype=np.float64)
    np.put_along_axis(out, order, np.broadcast_to(values, order.shape), axis=-1)
    return out


def _int_kernel(block: np.ndarray, *, axis: int, a: float, b: float) -> np.ndarray:
    """Rank-based INT along ``axis``: NaN kept, ties averaged, n = non-missing count per slice.

    Slices without ties or NaN (most expressed genes) share one vector of normal scores
    ``ndtri((k - a) / (m + b))``, k = 1..m, scattered by each slice's argsort; the others take
    their average ranks. Either way each value is ``ndtri((r - a) / (n + b))`` of the same floats.
    """
    x = np.moveaxis(np.asarray(block, dtype=np.float64), axis, -1)
    shape = x.shape
    m = shape[-1]
    x = x.reshape(-1, m)
    out = np.empty(x.shape, dtype=np.float64)
    if m == 0 or x.shape[0] == 0:
        return np.moveaxis(out.reshape(shape), -1, axis)
    order = np.argsort(x, axis=-1)  # NaN last
    sv = np.take_along_axis(x, order, axis=-1)
    special = np.isnan(sv[:, -1]) | (sv[:, 1:] == sv[:, :-1]).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = scipy.special.ndtri((np.arange(1, m + 1, dtype=np.float64) - a) / (m + b))
        np.put_along_axis(out, order, np.broadcast_to(scores, order.shape), axis=-1)  # every row
        tied = np.flatnonzero(special & ~np.isnan(sv[:, -1]))
        if tied.size:  # rows with ties: new scores only where a value is tied
            out[tied] = _scatter(_tied_scores(sv[tied], scores, a, b), order[tied])
        missing = np.flatnonzero(np.isnan(sv[:, -1]))
        if missing.size:  # rows with NaN: their own counts
            sv_r = sv[missing]
            r = _scatter(_sorted_average_ranks(sv_r), order[missing])
            n = np.sum(~np.isnan(sv_r), axis=-1, keepdims=True).astype(np.float64)
            z = scipy.special.ndtri((r - a) / (n + b))
            z[np.isnan(x[missing])] = np.nan
            out[missing] = z
    return np.moveaxis(out.reshape(shape), -1, axis)


def _int_offsets(offset: str | float) -> tuple[float, float]:
    if isinstance(offset, str):
        if offset not in INT_OFFSETS:
            raise InputError(f"offset: expected one of {sorted(INT_OFFSETS)} or a number c in [0, 1), "
                             f"found {offset!r}.")
        return INT_OFFSETS[offset]
    if isinstance(offset, int | float) and 0 <= offset < 1:
        return float(offset), 1.0 - 2.0 * float(offset)
    raise InputError(f"offset: expected a name in {sorted(INT_OFFSETS)} or a number c in [0, 1), "
                     f"found {offset!r}.")


def inverse_normal_transform(
    x: Any,
    *,
    axis: int | str = -1,
    offset: Literal["blom", "rankit", "van_der_waerden", "tukey"] | float = "blom",
) -> Any:
    """Rank-based inverse normal transform of every 1-D slice along ``axis``.

    ``z = Phi^-1((r - a) / (n + b))`` with ``r`` the average rank of a value among the
    non-missing values of its slice (ties share their mean rank) and ``n`` their count. Offsets:

    ============================  ===========================  ==========================================
    ``offset``                    formula                      note
    ============================  ===========================  ==========================================
    ``"blom"`` (default)          ``(r - 3/8) / (n + 1/4)``    Blom (1958)
    ``"rankit"``                  ``(r - 1/2) / n``            Bliss (1956)
    ``"van_der_waerden"``         ``r / (n + 1)``              GTEx / tensorQTL expression preparation
    ``"tukey"``                   ``(r - 1/3) / (n + 1/3)``    Tukey (1962)
    number ``c`` in [0, 1)        ``(r - c) / (n + 1 - 2c)``
    ============================  ===========================  ==========================================

    NaN stays NaN and is not counted in ``n``. See Beasley, Erickson & Allison (2009), Behav Genet
    39:580-595, doi:10.1007/s10519-009-9281-0.

    Parameters
    ----------
    x
        Numeric array of any shape: numpy, pandas DataFrame/Series, xarray DataArray or dask array.
        For expression (genes x samples) the default ``axis=-1`` transforms each gene across samples.
    axis
        Axis along which values are ranked; for a DataArray also a dim name.
    offset
        Plotting position, see the table.

    Returns
    -------
    same container as ``x``
        float64; lazy for dask input (``map_blocks``: the ranked axis must be one chunk).

    Raises
    ------
    InputError
        Non-numeric input, unknown ``offset``, or a dask array chunked along ``axis`` (the message
        gives the ``rechunk`` call).

    Examples
    --------
    >>> import numpy as np
    >>> inverse_normal_transform(np.array([[3.0, 1.0, np.nan, 2.0]]), offset="rankit").round(4)
    array([[ 0.9674, -0.9674,     nan,  0.    ]])
    """
    a, b = _int_offsets(offset)
    if isinstance(x, pd.DataFrame | pd.Series):
        check_numeric_pandas(x, "x")
        vals = x.to_numpy(dtype=np.float64, na_value=np.nan)
        ax = _norm_axis(axis, vals.ndim)
        out = _threaded_int(vals, ax, a, b)
        if isinstance(x, pd.Series):
            return pd.Series(out, index=x.index, name=x.name)
        return pd.DataFrame(out, index=x.index, columns=x.columns)
    if isinstance(x, xr.DataArray):
        ax = x.get_axis_num(axis) if isinstance(axis, str) else _norm_axis(axis, x.ndim)
        return x.copy(data=_int_any(x.data, ax, a, b))
    arr = x if isinstance(x, da.Array) else np.asarray(x)
    return _int_any(arr, _norm_axis(axis, arr.ndim), a, b)


def _norm_axis(axis: Any, ndim: int) -> int:
    if not isinstance(axis, int | np.integer) or not -ndim <= int(axis) < ndim:
        raise InputError(f"axis: expected an integer in [{-ndim}, {ndim - 1}], found {axis!r}.")
    return int(axis) % ndim


def _int_any(arr: Any, ax: int, a: float, b: float) -> Any:
    check_numeric(np.dtype(arr.dtype), "x")
    if isinstance(arr, da.Array):
        if arr.numblocks[ax] != 1:
            raise InputError(
                f"x: the ranked axis {ax} is split into {arr.numblocks[ax]} chunks; the inverse "
                f"normal transform needs each slice whole: x = x.rechunk({{{ax}: -1}}) "
                "(and chunk along the other axis instead)."
            )
        return da.map_blocks(_int_kernel, arr, axis=ax, a=a, b=b, dtype=np.float64,
                             meta=np.empty((0,) * arr.ndim, dtype=np.float64))
    return _threaded_int(arr, ax, a, b)


def _threaded_int(arr: np.ndarray, ax: int, a: float, b: float) -> np.ndarray:
    """The INT kernel on slabs of an in-memory array cut along another axis, in a local thread
    pool (dask's ``num_workers`` or the cores): each slice is ranked whole, so the numbers do not
    depend on the split."""
    split = next((k for k in range(arr.ndim) if k != ax), -1)
    if split < 0:  # 1-D: one slice
        return _int_kernel(arr, axis=ax, a=a, b=b)
    out = np.empty(arr.shape, dtype=np.float64)

    def part(i0: int, i1: int) -> None:
        sl = (slice(None),) * split + (slice(i0, i1),)
        out[sl] = _int_kernel(arr[sl], axis=ax, a=a, b=b)

    map_ranges(part, arr.shape[split], local_threads(arr.size, arr.shape[split]))
    return out


# --------------------------------------------------------------------------------------------
# quantile normalisation
# --------------------------------------------------------------------------------------------
def _sorted_cols(block: np.ndarray) -> np.ndarray:
    y = np.asarray(block, dtype=np.float64)
    if np.isnan(y).any():
        raise InputError("x: expected no missing values for quantile normalisation, found NaN; "
                         "impute or drop them first.")
    return np.sort(y, axis=0)


def _row_means(sorted_block: np.ndarray, n_cols: int) -> np.ndarray:
    """Correctly rounded row means (``math.fsum``): the same number for any column blocking."""
    return np.array([math.fsum(row) / n_cols for row in sorted_block.tolist()], dtype=np.float64)


def _qn_assign(block: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Give each column the reference quantiles by rank; tied values get their block's mean."""
    y = np.asarray(block, dtype=np.float64)
    out = np.empty_like(y)
    n = y.shape[0]
    for j in range(y.shape[1]):
        order = np.argsort(y[:, j], kind="stable")
        v = y[order, j]
        starts = np.concatenate(([0], np.flatnonzero(v[1:] != v[:-1]) + 1))
        sizes = np.diff(np.append(starts, n))
        means = np.add.reduceat(ref, starts) / sizes
        out[order, j] = np.repeat(means, sizes)
    return out


def quantile_normalize(x: Any, *, axis: int | str = 0) -> Any:
    """Quantile normalisation: give every sample the same distribution.

    Each 1-D slice along ``axis`` (for genes x samples input and the default ``axis=0``: each
    sample's values over genes) is sorted; the reference distribution is the mean over slices of
    the k-th smallest values (``ref_k = mean_j sort(x_j)_k``, correctly rounded); the value of rank
    k in each slice is replaced by ``ref_k``. Tied values in a slice occupy a block of ranks and
    all get the mean of ``ref`` over that block (so with ties a slice's sorted values differ from
    ``ref`` only inside tie blocks; preprocessCore instead interpolates at the average rank).
    Order within every slice is preserved. Bolstad et al. (2003), Bioinformatics 19:185-193,
    doi:10.1093/bioinformatics/19.2.185.

    Parameters
    ----------
    x
        2-D numeric array without NaN: numpy, pandas DataFrame, xarray DataArray or dask array.
    axis
        Axis along which each distribution runs (0: columns are samples); a dim name for a DataArray.

    Returns
    -------
    same container as ``x``
        float64; lazy for dask input, which must have ``axis`` in one chunk (error says how to
        rechunk).

    Examples
    --------
    >>> import numpy as np
    >>> quantile_normalize(np.array([[5.0, 4.0], [2.0, 1.0], [3.0, 6.0]]))
    array([[5.5, 3.5],
           [1.5, 1.5],
           [3.5, 5.5]])
    """
    if isinstance(x, pd.DataFrame):
        vals = np.asarray(x.to_numpy(dtype=np.float64, na_value=np.nan))
        out = _qn_any(vals, _norm_axis(axis, 2))
        return pd.DataFrame(out, index=x.index, columns=x.columns)
    if isinstance(x, xr.DataArray):
        if x.ndim != 2:
            raise InputError(f"x: expected a 2-D DataArray, found dims {x.dims}.")
        ax = x.get_axis_num(axis) if isinstance(axis, str) else _norm_axis(axis, 2)
        return x.copy(data=_qn_any(x.data, ax))
    arr = x if isinstance(x, da.Array) else np.asarray(x)
    if arr.ndim != 2:
        raise InputError(f"x: expected a 2-D array, found {arr.ndim} dims.")
    return _qn_any(arr, _norm_axis(axis, 2))


def _qn_any(arr: Any, ax: int) -> Any:
    check_numeric(np.dtype(arr.dtype), "x")
    if 0 in arr.shape:
        raise InputError(f"x: expected a non-empty matrix, found shape {arr.shape}.")
    y = arr if ax == 0 else arr.T
    n_cols = int(y.shape[1])
    if not isinstance(y, da.Array):
        ref = _row_means(_sorted_cols(y), n_cols)
        out = _qn_assign(y, ref)
        return out if ax == 0 else out.T
    if y.numblocks[0] != 1:
        raise InputError(
            f"x: the distribution axis {ax} is split into {y.numblocks[0]} chunks; quantile "
            f"normalisation needs whole slices: x = x.rechunk({{{ax}: -1}})."
        )
    srt = da.map_blocks(_sorted_cols, y, dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64))
    ref = da.map_blocks(_row_means, srt.rechunk({0: "auto", 1: -1}), n_cols, drop_axis=1,
                        dtype=np.float64, meta=np.empty((0,), dtype=np.float64))
    out = da.blockwise(_qn_assign, "ij", y, "ij", ref.rechunk(-1), "i", concatenate=True,
                       dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64))
    return out if ax == 0 else out.T
