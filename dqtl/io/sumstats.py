"""GWAS summary statistics in the GWAS-SSF / GWAS Catalog harmonised layout, and LD matrices.

Required columns: ``chromosome``, ``base_pair_location``, ``effect_allele``, ``other_allele``,
``beta``, ``standard_error``; optional ``p_value``, ``effect_allele_frequency``, ``n``,
``variant_id`` / ``rsid``. Tab-separated, optionally gzipped, local path or URL. Every problem is
one :class:`~dqtl.errors.InputError` naming the file, the column and the first bad row.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from dqtl.errors import InputError
from dqtl.io.fs import absolute, exists, is_url, storage_options

__all__ = ["read_gwas_sumstats", "read_ld_matrix", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("chromosome", "base_pair_location", "effect_allele", "other_allele", "beta",
                    "standard_error")


def read_gwas_sumstats(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a GWAS-SSF summary statistics file.

    Returns a DataFrame with the required columns (alleles upper-case, ``chromosome`` as str,
    ``base_pair_location`` int64) and whichever optional columns are present.
    """
    src = absolute(path)
    if not exists(src):
        raise FileNotFoundError(f"summary statistics {src} do not exist")
    kw = {"storage_options": storage_options(src) or None} if is_url(src) else {}
    try:
        df = pd.read_csv(src, sep="\t", dtype={"chromosome": str, "effect_allele": str,
                                                "other_allele": str}, low_memory=False, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"cannot read summary statistics {src}: {' '.join(str(exc).split())}; "
                         "expected a tab-separated GWAS-SSF table") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{src}: missing columns {missing}; GWAS-SSF needs {list(REQUIRED_COLUMNS)}")
    if df.empty:
        raise InputError(f"{src}: no rows")
    for col in ("base_pair_location", "beta", "standard_error", "p_value",
                "effect_allele_frequency", "n"):
        if col in df.columns:
            v = pd.to_numeric(df[col], errors="coerce")
            bad = v.isna() & df[col].notna()
            if bad.any() or (col in REQUIRED_COLUMNS and v.isna().any()):
                i = int(np.flatnonzero(bad | (v.isna() if col in REQUIRED_COLUMNS else bad))[0])
                raise InputError(f"{src}: column {col} row {i + 2} is not a number "
                                 f"({df[col].iloc[i]!r})")
            df[col] = v
    se = df["standard_error"].to_numpy(dtype=float)
    if not ((se > 0) & np.isfinite(se)).all():
        i = int(np.flatnonzero(~((se > 0) & np.isfinite(se)))[0])
        raise InputError(f"{src}: standard_error must be > 0 (row {i + 2}: {se[i]})")
    if "p_value" in df.columns:
        p = df["p_value"].to_numpy(dtype=float)
        bad = ~((p > 0) & (p <= 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{src}: p_value must be in (0, 1] (row {i + 2}: {p[i]})")
    if "effect_allele_frequency" in df.columns:
        f = df["effect_allele_frequency"].to_numpy(dtype=float)
        bad = ~((f > 0) & (f < 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{src}: effect_allele_frequency must be in (0, 1) (row {i + 2})")
    df["base_pair_location"] = df["base_pair_location"].astype(np.int64)
    df["chromosome"] = df["chromosome"].astype(str)
    for col in ("effect_allele", "other_allele"):
        df[col] = df[col].astype(str).str.upper()
    key = df["chromosome"] + ":" + df["base_pair_location"].astype(str) + ":" + \
        df[["effect_allele", "other_allele"]].apply(lambda r: "/".join(sorted(r)), axis=1)
    dup = key.duplicated()
    if dup.any():
        raise InputError(f"{src}: variant {key[dup].iloc[0]} appears more than once (row "
                         f"{int(np.flatnonzero(dup)[0]) + 2}); remove the duplicates")
    return df


def read_ld_matrix(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a signed LD (correlation) matrix: a tab-separated table (optionally gzipped) or a
    parquet file whose first column ``variant_id`` names the rows and whose other columns are
    the same variant IDs in the same order (the genotype store's IDs).

    Checked: square, the same IDs on both axes, unique IDs, finite values in [-1, 1], unit
    diagonal and symmetry (to 1e-6); each problem is one :class:`~dqtl.errors.InputError`.
    """
    src = absolute(path)
    if not exists(src):
        raise FileNotFoundError(f"LD matrix {src} does not exist")
    kw = {"storage_options": storage_options(src) or None} if is_url(src) else {}
    try:
        if str(src).endswith(".parquet"):
            df = pd.read_parquet(src, **kw)
        else:
            df = pd.read_csv(src, sep="\t", low_memory=False, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError) as exc:
        raise InputError(f"cannot read LD matrix {src}: {' '.join(str(exc).split())}") from None
    if df.columns.empty or df.columns[0] != "variant_id":
        raise InputError(f"{src}: the first column must be variant_id (the row names)")
    ids = df["variant_id"].astype(str).to_numpy()
    cols = np.asarray(df.columns[1:]).astype(str)
    if ids.size == 0 or not np.array_equal(ids, cols):
        raise InputError(f"{src}: the LD matrix must be square with the same variant IDs, in the "
                         f"same order, as rows and columns ({ids.size} rows, {cols.size} columns)")
    if len(set(ids.tolist())) != ids.size:
        raise InputError(f"{src}: duplicated variant IDs in the LD matrix")
    try:
        R = df.iloc[:, 1:].to_numpy(dtype=float)
    except ValueError:
        raise InputError(f"{src}: the LD matrix has non-numeric entries") from None
    if not np.isfinite(R).all() or (np.abs(R) > 1 + 1e-6).any():
        raise InputError(f"{src}: LD entries must be finite correlations in [-1, 1]")
    if np.abs(np.diag(R) - 1).max() > 1e-6 or np.abs(R - R.T).max() > 1e-6:
        raise InputError(f"{src}: the LD matrix must be symmetric with a unit diagonal")
    return pd.DataFrame(R, index=pd.Index(ids, name="variant_id"), columns=ids)
