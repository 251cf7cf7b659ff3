"""Result writers and the one table mapping dqtl result names to the columns users parse.

| dqtl (Dataset)  | tensorQTL / FastQTL file column |
|-----------------|---------------------------------|
| p_value         | pval_nominal                    |
| beta            | slope                           |
| beta_se         | slope_se                        |
| t_value         | (not written by tensorQTL)      |
| q_value         | qval                            |

Writers hold no statistics; each output appears atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

from dqtl.io.atomic import atomic_path

__all__ = ["TENSORQTL_COLUMNS", "CIS_NOMINAL_COLUMNS", "to_tensorqtl_pairs", "write_parquet"]

#: dqtl result variable -> tensorQTL column name
TENSORQTL_COLUMNS: dict[str, str] = {
    "p_value": "pval_nominal",
    "beta": "slope",
    "beta_se": "slope_se",
    "q_value": "qval",
}

#: columns of tensorQTL's ``cis_qtl_pairs.<chr>.parquet``, in its order
CIS_NOMINAL_COLUMNS = [
    "phenotype_id",
    "variant_id",
    "start_distance",
    "af",
    "ma_samples",
    "ma_count",
    "pval_nominal",
    "slope",
    "slope_se",
]


def to_tensorqtl_pairs(ds: xr.Dataset, *, with_end_distance: bool = False) -> pd.DataFrame:
    """pandas view of a cis pairs Dataset with tensorQTL's columns and dtypes."""
    cols = {name: ds[name].values for name in ds.data_vars}
    df = pd.DataFrame(cols).rename(columns=TENSORQTL_COLUMNS)
    out = list(CIS_NOMINAL_COLUMNS)
    if with_end_distance:
        out.insert(3, "end_distance")
    df = df[out]
    df["phenotype_id"] = df["phenotype_id"].astype(str)
    df["variant_id"] = df["variant_id"].astype(str)
    df["start_distance"] = df["start_distance"].astype("int32")
    return df.reset_index(drop=True)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to parquet atomically (zstd compressed, no index)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, tmp, compression="zstd")
    return path
