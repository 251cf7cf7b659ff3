"""Readers for RNA-seq expression matrices (counts, TPM) and the small sample tables around them.

Expression matrices are genes x samples:

* **GCT** (``.gct``, ``.gct.gz``; GTEx): line 1 ``#1.2``, line 2 ``<genes>\\t<samples>``, then a
  header ``Name  Description  sample...`` and one row per gene;
* **TSV / CSV** (``.tsv``, ``.txt``, ``.csv``, optionally ``.gz``/``.bz2``/``.zst``): first column
  gene ids, optionally a ``Description``/``gene_name`` column, then one column per sample (a
  header one field shorter than the rows, as R ``write.table`` writes row names, is accepted);
* **parquet** (``.parquet``; GTEx writes its GCTs as parquet too): gene ids as the index or as
  the first (text) column, optional ``Description``, then samples.

Every reader returns a :class:`pandas.DataFrame` indexed by gene id (named ``gene_id``) with one
numeric column per sample, after checking that the ids are unique, the matrix is not empty and
every value is a finite number; :func:`validate_counts` adds the rules for read counts
(non-negative integers). Errors are :class:`~dqtl.errors.InputError` naming the file, what was
expected, what was found and how to fix it.

Also here: :func:`read_sample_participant_lookup` (GTEx sample -> participant ids) and
:func:`read_reported_sex` (sample -> F/M), and :func:`write_gct`.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from dqtl.errors import InputError
from dqtl.io.atomic import atomic_path
from dqtl.io.fs import gzip_writer

__all__ = [
    "EXPRESSION_FORMATS",
    "expression_format",
    "read_expression_matrix",
    "expression_from_frame",
    "validate_counts",
    "write_gct",
    "read_sample_participant_lookup",
    "read_reported_sex",
    "parse_sex",
]

log = logging.getLogger(__name__)

#: Matrix formats understood by :func:`read_expression_matrix`.
EXPRESSION_FORMATS = ("gct", "tsv", "csv", "parquet")

ExpressionFormat = Literal["gct", "tsv", "csv", "parquet"]

#: Column names taken as a gene description (symbol) rather than a sample.
DESCRIPTION_COLUMNS = ("description", "gene_name", "gene_symbol", "symbol", "name")

_COMPRESSION = (".gz", ".bz2", ".zst", ".xz")


def _strip_compression(name: str) -> str:
    for ext in _COMPRESSION:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def expression_format(path: str | os.PathLike[str]) -> ExpressionFormat:
    """The matrix format of ``path`` from its name (see :data:`EXPRESSION_FORMATS`).

    >>> expression_format("GTEx_gene_reads.gct.gz"), expression_format("tpm.csv")
    ('gct', 'csv')
    """
    name = _strip_compression(Path(path).name.lower())
    if name.endswith(".gct"):
        return "gct"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    raise InputError(
        f"{path}: cannot tell the expression matrix format from the file name; expected a name "
        "ending in .gct, .tsv, .txt, .csv or .parquet (optionally .gz); rename the file or pass "
        "format= ('gct', 'tsv', 'csv' or 'parquet')"
    )


def _open_text(path: Path):  # noqa: ANN202 - a text file object
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt")
    return open(path)  # noqa: SIM115


def _gct_header(path: Path) -> tuple[int, int, list[str]]:
    """(genes, samples, column names) declared by a GCT file's first three lines."""
    try:
        with _open_text(path) as fh:
            version = fh.readline().strip()
            dims = fh.readline().strip().split("\t")
            header = fh.readline().rstrip("\r\n").split("\t")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"{path}: cannot read the GCT header: {exc}") from None
    if not version.startswith("#1."):
        raise InputError(
            f"{path}: expected a GCT file whose first line is '#1.2', found {version[:40]!r}; "
            "is it a plain table? name it .tsv/.csv instead"
        )
    try:
        n_genes, n_samples = (int(v) for v in dims[:2])
    except ValueError:
        found = " ".join(dims)[:40]
        raise InputError(
            f"{path}: expected GCT line 2 to be '<genes> TAB <samples>', found {found!r}"
        ) from None
    return n_genes, n_samples, header


def _raw_header(path: Path, sep: str, skiprows: int) -> tuple[list[str], int]:
    """The header fields after ``skiprows`` lines and the number of fields of the next line."""
    try:
        with _open_text(path) as fh:
            for _ in range(skiprows):
                fh.readline()
            lines = [fh.readline(), fh.readline()]
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"{path}: cannot read the header line: {exc}") from None
    rows = [next(csv.reader([ln.rstrip("\r\n")], delimiter=sep)) if ln.strip() else [] for ln in lines]
    return rows[0], len(rows[1])


def read_expression_matrix(
    path: str | os.PathLike[str],
    *,
    format: ExpressionFormat | None = None,
    sample_ids: list[str] | None = None,
    what: str = "expression",
    return_description: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.Series | None]:
    """Read a genes x samples expression matrix (GCT, TSV, CSV or parquet).

    Parameters
    ----------
    path
        The matrix file; its format comes from the name (:func:`expression_format`) unless
        ``format`` is given.
    format
        ``"gct"``, ``"tsv"``, ``"csv"`` or ``"parquet"``.
    sample_ids
        Keep only these samples, in this order (each must be present).
    what
        Word used in messages (``"counts"``, ``"TPM"``).
    return_description
        Also return the description column (GCT ``Description``: gene symbols), or None.

    Returns
    -------
    pandas.DataFrame or (pandas.DataFrame, pandas.Series | None)
        (genes, samples) numeric values (int64 when every column is integer, else float64),
        index ``gene_id`` (str), columns the sample ids (str); with ``return_description`` also
        the (genes,) description Series (or None when the file has none).

    Raises
    ------
    InputError
        Unknown format, malformed GCT header or dimensions, a table that does not parse, empty
        matrix, duplicated gene or sample ids, non-numeric or missing values, absent
        ``sample_ids``.
    FileNotFoundError
        ``path`` does not exist.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "counts.tsv"
    >>> _ = p.write_text("gene_id\\tS1\\tS2\\nG1\\t5\\t0\\nG2\\t3\\t7\\n")
    >>> read_expression_matrix(p).to_dict("index")
    {'G1': {'S1': 5, 'S2': 0}, 'G2': {'S1': 3, 'S2': 7}}
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    fmt = format or expression_format(path)
    if fmt not in EXPRESSION_FORMATS:
        raise InputError(f"format: expected one of {', '.join(EXPRESSION_FORMATS)}, found {fmt!r}")
    source = f"{what} file {path}"
    declared: tuple[int, int] | None = None
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
            if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
                df = df.reset_index()
        else:
            sep = "," if fmt == "csv" else "\t"
            skip = 0
            if fmt == "gct":
                n_genes, n_samples, _ = _gct_header(path)
                declared, skip = (n_genes, n_samples), 2
            header, n_next = _raw_header(path, sep, skip)
            if header and n_next == len(header) + 1:  # R write.table: no name for the row names
                log.info("%s: header has one field less than the rows (R row names); first column "
                         "taken as gene ids", source)
                header = ["gene_id", *header]
            if not header:
                raise InputError(f"{source}: the file is empty; expected a header line and one row per gene")
            dup = pd.Index(header)[pd.Index(header).duplicated()].unique().tolist()
            if dup:
                raise InputError(
                    f"{source}: duplicated column names {dup[:5]}; sample ids must be unique: "
                    "rename or remove the duplicated samples"
                )
            if n_next == 0:
                n_s = len(header) - 1 - int(len(header) > 1 and header[1].lower() in DESCRIPTION_COLUMNS)
                raise InputError(
                    f"{source}: empty matrix (0 genes x {n_s} samples); expected at least one gene "
                    "row after the header"
                )
            df = pd.read_csv(path, sep=sep, skiprows=skip + 1, header=None, names=header,
                             engine="pyarrow", dtype={header[0]: str},
                             na_values=["", "NA", "NaN", "nan", "N/A"], keep_default_na=False)
    except InputError:
        raise
    except FileNotFoundError:
        raise
    except Exception as exc:  # pandas/pyarrow parse errors of every kind
        raise InputError(
            f"{source}: cannot parse it as a {fmt.upper()} matrix: {' '.join(str(exc).split())}"
        ) from None
    out, desc = expression_from_frame(df, source=source)
    if declared is not None and declared != (out.shape[0], out.shape[1]):
        raise InputError(
            f"{source}: the GCT header declares {declared[0]} genes x {declared[1]} samples but the "
            f"file holds {out.shape[0]} x {out.shape[1]}; the file is truncated or the header is "
            "stale: rewrite it (dqtl.io.expression.write_gct)"
        )
    if sample_ids is not None:
        want = [str(s) for s in sample_ids]
        missing = [s for s in want if s not in out.columns]
        if missing:
            raise InputError(
                f"{source}: {len(missing)} requested samples are not columns of the matrix "
                f"(e.g. {', '.join(missing[:3])}); check the sample id list"
            )
        out = out[want]
    log.info("%s: %d genes x %d samples", source, out.shape[0], out.shape[1])
    return (out, desc) if return_description else out


def expression_from_frame(
    df: pd.DataFrame, *, source: str = "expression matrix"
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Split a raw table into a checked (genes x samples) numeric matrix and its description.

    The first column holds gene ids; a following column named like a description
    (``Description``, ``gene_name``, ``symbol``, ...) is taken as gene symbols; every other
    column must be numeric and becomes a sample.

    Returns
    -------
    (pandas.DataFrame, pandas.Series | None)
        Matrix indexed by ``gene_id`` and the description (or None).
    """
    if df.shape[1] == 0:
        raise InputError(f"{source}: no columns; expected gene ids then one column per sample")
    cols = [str(c) for c in df.columns]
    df = df.copy(deep=False)
    df.columns = cols
    gene_ids = df.iloc[:, 0]
    rest = cols[1:]
    desc: pd.Series | None = None
    if rest and rest[0].lower() in DESCRIPTION_COLUMNS and not pd.api.types.is_numeric_dtype(df[rest[0]]):
        desc = pd.Series(df[rest[0]].astype(str).to_numpy(), name="gene_name")
        rest = rest[1:]
    if df.shape[0] == 0 or not rest:
        raise InputError(
            f"{source}: empty matrix ({df.shape[0]} genes x {len(rest)} samples); expected at least "
            "one gene row and one sample column"
        )
    if gene_ids.isna().any():
        i = int(np.flatnonzero(gene_ids.isna().to_numpy())[0])
        raise InputError(f"{source}: gene id missing on data row {i + 1}; every row needs a gene id")
    ids = pd.Index(gene_ids.astype(str).to_numpy(), name="gene_id")
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()
        raise InputError(
            f"{source}: {int(ids.duplicated().sum())} duplicated gene ids (e.g. "
            f"{', '.join(map(str, dup[:5]))}); gene ids must be unique: sum or drop the duplicates "
            "(or use versioned Ensembl ids)"
        )
    values = df[rest]
    bad = [c for c in rest if not pd.api.types.is_numeric_dtype(values[c]) or pd.api.types.is_bool_dtype(values[c])]
    if bad:
        c = bad[0]
        num = pd.to_numeric(values[c], errors="coerce")
        r = int(np.flatnonzero((num.isna() & values[c].notna()).to_numpy())[0]) if (num.isna() & values[c].notna()).any() else 0
        raise InputError(
            f"{source}: non-numeric value {values[c].iloc[r]!r} for gene {ids[r]}, sample {c}; "
            "expression values must be numbers (is a second annotation column present? name it "
            "'Description' or drop it)"
        )
    if all(v.kind in "iu" for v in values.dtypes):
        mat = values.to_numpy(dtype=np.int64)
    else:
        mat = values.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(mat)
        if not finite.all():
            i, j = (int(k[0]) for k in np.nonzero(~finite))
            raise InputError(
                f"{source}: missing or infinite value for gene {ids[i]}, sample {rest[j]}; "
                "expression matrices must be complete: fill with 0 or drop the gene"
            )
    out = pd.DataFrame(mat, index=ids, columns=pd.Index(rest))
    if desc is not None:
        desc.index = ids
    return out, desc


def validate_counts(
    counts: pd.DataFrame, *, source: str = "counts", allow_non_integer: bool = False
) -> None:
    """Check read counts: numeric, finite, non-negative, integer (unless allowed), not empty.

    Parameters
    ----------
    counts
        (genes, samples) matrix (e.g. from :func:`read_expression_matrix`).
    source
        Name used in messages.
    allow_non_integer
        Accept fractional counts (salmon/RSEM expected counts); edgeR accepts them too.

    Raises
    ------
    InputError
        The first problem found, naming the gene and sample.
    """
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        raise InputError(
            f"{source}: empty matrix ({counts.shape[0]} genes x {counts.shape[1]} samples); "
            "expected at least one gene and one sample"
        )
    for what, idx in (("gene", counts.index), ("sample", counts.columns)):
        if idx.has_duplicates:
            dup = idx[idx.duplicated()].unique()[:5].tolist()
            raise InputError(f"{source}: duplicated {what} ids {dup}; {what} ids must be unique")
    bad = [c for c, t in counts.dtypes.items() if not pd.api.types.is_numeric_dtype(t)
           or pd.api.types.is_bool_dtype(t)]
    if bad:
        raise InputError(f"{source}: non-numeric sample columns {bad[:5]}; counts must be numbers")
    x = counts.to_numpy()

    def where(mask: np.ndarray) -> str:
        r, c = (int(k[0]) for k in np.nonzero(mask))
        return f"gene {counts.index[r]}, sample {counts.columns[c]} = {x[r, c]!r}"

    if x.dtype.kind == "f":
        fin = np.isfinite(x)
        if not fin.all():
            raise InputError(
                f"{source}: {int((~fin).sum())} missing or infinite counts (first at {where(~fin)}); "
                "counts must be complete: set them to 0 or drop the genes"
            )
    neg = x < 0
    if neg.any():
        raise InputError(
            f"{source}: {int(neg.sum())} negative counts (first at {where(neg)}); expected raw read "
            "counts >= 0 (not log-transformed, centred or normalised values)"
        )
    if x.dtype.kind == "f" and not allow_non_integer:
        frac = x != np.floor(x)
        if frac.any():
            raise InputError(
                f"{source}: {int(frac.sum())} non-integer counts (first at {where(frac)}); expected "
                "integer read counts: for salmon/RSEM expected counts round them or allow "
                "non-integer counts (--allow-non-integer-counts); TPM goes to --tpm"
            )


def write_gct(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    description: pd.Series | None = None,
    float_format: str | None = None,
) -> Path:
    """Write a genes x samples DataFrame as GCT v1.2 (gzip when the name ends in ``.gz``), atomically.

    Parameters
    ----------
    df
        (genes, samples) values, index = gene ids.
    path
        Output ``.gct`` or ``.gct.gz``.
    description
        (genes,) descriptions (gene symbols); default: the gene id.
    float_format
        ``printf`` format for floats (default: shortest round-trip representation).
    """
    path = Path(path)
    desc = (pd.Series(df.index.astype(str), index=df.index) if description is None
            else description.reindex(df.index).astype(str))
    out = df.copy()
    out.insert(0, "Description", desc.to_numpy())
    out.index = pd.Index(df.index.astype(str), name="Name")
    with atomic_path(path) as tmp:
        with contextlib.ExitStack() as stack:
            if path.name.endswith(".gz"):  # no name or time in the gzip header: the same bytes every run
                raw = stack.enter_context(open(tmp, "wb"))
                gz = stack.enter_context(gzip_writer(raw))
                fh: Any = stack.enter_context(io.TextIOWrapper(gz))
            else:
                fh = stack.enter_context(open(tmp, "w"))
            fh.write(f"#1.2\n{df.shape[0]}\t{df.shape[1]}\n")
            out.to_csv(fh, sep="\t", float_format=float_format)
    return path


# ----------------------------------------------------------------------------------------------
# small sample tables


def _two_column_table(path: Path, what: str) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    sep = "," if _strip_compression(path.name.lower()).endswith(".csv") else "\t"
    try:
        df = pd.read_csv(path, sep=sep, header=None, dtype=str, comment=None, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{what} file {path} is empty; expected two columns") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} file {path}: cannot parse: {' '.join(str(exc).split())}") from None
    if df.shape[1] < 2:
        raise InputError(
            f"{what} file {path}: expected at least two {'tab' if sep == chr(9) else 'comma'}-"
            f"separated columns, found {df.shape[1]}"
        )
    df = df.iloc[:, :2].apply(lambda c: c.str.strip())
    df.columns = ["key", "value"]
    return df


def read_sample_participant_lookup(path: str | os.PathLike[str]) -> pd.Series:
    """Read a sample -> participant id table (GTEx ``sample_participant_lookup``).

    Two tab-separated columns (sample id, participant id), with or without a header line (a first
    line whose fields are named like ``sample_id``/``participant_id`` is skipped).

    Returns
    -------
    pandas.Series
        Participant ids indexed by sample id (both str).
    """
    path = Path(path)
    df = _two_column_table(path, "sample-participant lookup")
    first = [v.lstrip("#").lower() for v in df.iloc[0]]
    if any(k in first[0] for k in ("sample", "id")) and any(k in first[1] for k in ("participant", "subject", "donor", "id")):
        df = df.iloc[1:]
    if df.empty:
        raise InputError(f"sample-participant lookup file {path} has no data rows")
    s = pd.Series(df["value"].to_numpy(), index=pd.Index(df["key"].to_numpy(), name="sample_id"),
                  name="participant_id")
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()].unique()[:5].tolist()
        raise InputError(f"sample-participant lookup file {path}: samples listed twice {dup}; "
                         "give each sample one participant")
    return s


_FEMALE = {"f", "female", "2", "woman", "xx"}
_MALE = {"m", "male", "1", "man", "xy"}


def parse_sex(values: pd.Series) -> pd.Series:
    """Normalise sex codes to ``"F"``/``"M"``, anything else (0, NA, unknown, other) to missing.

    Accepted: F/female/2 (PLINK)/woman/XX and M/male/1 (PLINK)/man/XY, any case.

    >>> parse_sex(pd.Series(["female", "M", "2", "0", None])).tolist()
    ['F', 'M', 'F', nan, nan]
    """
    low = values.astype(object).map(lambda v: str(v).strip().lower() if v is not None and v == v else "")
    code = np.full(len(low), np.nan, dtype=object)
    code[low.isin(_MALE).to_numpy()] = "M"
    code[low.isin(_FEMALE).to_numpy()] = "F"
    return pd.Series(code, index=values.index, dtype=object, name="reported_sex")


def read_reported_sex(path: str | os.PathLike[str]) -> pd.Series:
    """Read reported sex: two columns (sample or participant id, sex), optional header line.

    Sex codes as :func:`parse_sex` (F/M, female/male, PLINK 2/1); others are missing.

    Returns
    -------
    pandas.Series
        ``"F"``/``"M"``/NaN indexed by id (str), named ``reported_sex``.
    """
    path = Path(path)
    df = _two_column_table(path, "reported sex")
    first = df.iloc[0, 1].lower()
    if first in ("sex", "gender", "reported_sex", "sex_reported"):
        df = df.iloc[1:]
    if df.empty:
        raise InputError(f"reported sex file {path} has no data rows")
    if df["key"].duplicated().any():
        dup = df["key"][df["key"].duplicated()].unique()[:5].tolist()
        raise InputError(f"reported sex file {path}: ids listed twice {dup}; give each id one sex")
    sex = parse_sex(pd.Series(df["value"].to_numpy(), index=pd.Index(df["key"].to_numpy(), name="sample_id")))
    unknown = sex.isna() & ~df["value"].str.lower().isin(["", "0", "na", "nan", "unknown", "-9"]).to_numpy()
    if unknown.any():
        raise InputError(
            f"reported sex file {path}: unrecognised sex code {df['value'][unknown.to_numpy()].iloc[0]!r}; "
            "expected F/M, female/male, 2/1 (PLINK) or 0/NA for unknown"
        )
    return sex
