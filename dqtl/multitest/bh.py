"""Benjamini-Hochberg adjusted p-values, identical to R's ``p.adjust(p, "BH")``.

Blockwise use
-------------
A trans scan keeps only the hits ``p <= t`` of ``m`` tests. Passing those hits with
``n_tests=m`` computes ``q_(k) = min(1, min_{j >= k} p_(j) m / j)`` over the hits alone (ranks
``j`` counted from the smallest p), which is what R's ``p.adjust(hits, "BH", n = m)`` and
MatrixEQTL report. Every q-value ``<= t`` is then *exactly* the q-value BH would give with all
``m`` p-values present (each left-out test contributes ``p_(j) m / j > t``); a q-value above
``t`` is an upper bound of the full-data one (still ``> t``), so the set of discoveries at any
FDR level ``<= t`` is exact.
"""

from __future__ import annotations

import numbers

import numpy as np

from dqtl.errors import InputError

__all__ = ["bh"]


def as_pvalues(p: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name}: expected an array of p-values (floats in [0, 1]), got {type(p).__name__} "
            f"that cannot be converted to float ({exc}); pass a numeric array."
        ) from None
    finite = arr[~np.isnan(arr)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        bad = finite[(finite < 0) | (finite > 1)]
        raise InputError(
            f"{name}: expected p-values in [0, 1] (NaN allowed for missing), found {bad.size} "
            f"value(s) outside, e.g. {bad[0]!r}; check that the input holds p-values, not "
            f"statistics or -log10 p."
        )
    return arr


def bh(p: np.ndarray, *, n_tests: int | None = None) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``p.adjust(p, "BH", n = n_tests)`` in R).

    Parameters
    ----------
    p : array_like
        P-values in [0, 1]; NaN marks a missing value and is kept as NaN (not counted as a test).
        Any shape; the result has the same shape.
    n_tests : int, optional
        Total number of tests ``m``. Default: the number of non-NaN p-values. A larger ``m``
        means the other ``m - len(p)`` tests all had p-values above ``max(p)`` (blockwise FDR,
        see the module docstring).

    Returns
    -------
    np.ndarray
        float64 adjusted p-values ``q_(k) = min(1, min_{j >= k} (m / j) p_(j))``, computed with
        R's operation order so that results match ``p.adjust`` bit for bit.

    Raises
    ------
    InputError
        p-values outside [0, 1], or ``n_tests`` smaller than the number of non-NaN p-values.
    """
    arr = as_pvalues(p, "bh(p)")
    shape = arr.shape
    flat = arr.ravel()
    keep = ~np.isnan(flat)
    lp = int(keep.sum())
    if n_tests is None:
        n = lp
    else:
        if isinstance(n_tests, bool) or not isinstance(n_tests, numbers.Integral | float):
            raise InputError(
                f"bh(n_tests): expected a whole number of tests, got {type(n_tests).__name__}; "
                f"pass the total test count as an int."
            )
        if float(n_tests) != int(n_tests):
            raise InputError(f"bh(n_tests): expected a whole number of tests, got {n_tests!r}.")
        n = int(n_tests)
        if n < lp:
            raise InputError(
                f"bh(n_tests): expected at least as many tests as non-missing p-values ({lp}), "
                f"got n_tests={n}; pass the total number of tests performed (or omit it)."
            )
    out = flat.copy()
    if n <= 1 or lp == 0:
        return out.reshape(shape)
    pv = flat[keep]
    order = np.argsort(-pv, kind="stable")  # decreasing p, ties in input order (R's order)
    i = np.arange(lp, 0, -1, dtype=np.float64)
    adj = np.minimum.accumulate((n / i) * pv[order])
    res = np.empty(lp)
    res[order] = np.minimum(1.0, adj)
    out[keep] = res
    return out.reshape(shape)
