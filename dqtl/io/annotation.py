"""Gene annotation -> one row per gene with its transcription start site (TSS).

Inputs:

* **GTF** (``.gtf[.gz]``, GENCODE/Ensembl/GTEx collapsed models): rows of feature ``gene``
  (or, when a file has none, the span of each gene's ``transcript`` rows, else ``exon`` rows);
  attributes ``gene_id`` and ``gene_name`` (and ``gene_type``/``gene_biotype`` when present);
* **GFF3** (``.gff``, ``.gff3``): gene-like rows (``gene``, ``ncRNA_gene``, ``pseudogene``);
  ``gene_id`` attribute, else ``ID`` without a ``gene:`` prefix; name from ``Name``/``gene_name``;
* **BED** (``.bed[.gz]``): ``chrom start end name [score strand]`` (0-based half-open; a
  tensorQTL TSS template ``#chr start end gene_id`` with ``end = start + 1`` needs no strand);
* **table** (``.tsv``/``.txt``/``.csv``/``.parquet``): columns ``gene_id`` and ``chr`` plus either
  ``tss`` or ``start``/``end``/``strand`` (1-based inclusive, GTF convention); optional
  ``gene_name``. Column-name aliases are accepted (``chrom``, ``#chr``, ``seqname``; ``symbol``...).

The TSS is the first base of the gene on its strand, as GTEx ``gtf_to_tss_bed``: ``start`` on
``+``, ``end`` on ``-`` (1-based). A phenotype BED row is then ``start = tss - 1, end = tss``.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dqtl.errors import InputError

__all__ = [
    "ANNOTATION_FORMATS",
    "ANNOTATION_COLUMNS",
    "read_gene_annotation",
    "annotation_from_frame",
    "chrom_sort_key",
    "set_chrom_prefix",
]

log = logging.getLogger(__name__)

ANNOTATION_FORMATS = ("gtf", "gff", "bed", "table")

#: Columns of the annotation DataFrame (index: ``gene_id``).
ANNOTATION_COLUMNS = ("gene_name", "chr", "start", "end", "strand", "tss")

_GFF_GENE_FEATURES = ("gene", "ncRNA_gene", "pseudogene")
_GTF_ATTR = re.compile(r'\s*([^\s;]+)\s+(?:"([^"]*)"|([^;\s]+))\s*;?')

_ALIASES: dict[str, tuple[str, ...]] = {
    "gene_id": ("gene_id", "geneid", "gene", "id", "phenotype_id", "pid", "name"),
    "chr": ("chr", "#chr", "chrom", "#chrom", "chromosome", "seqname", "seqid", "contig", "#contig"),
    "start": ("start", "gene_start", "txstart", "start_position"),
    "end": ("end", "gene_end", "txend", "end_position"),
    "strand": ("strand", "gene_strand"),
    "tss": ("tss", "tss_position", "tss_pos", "pos"),
    "gene_name": ("gene_name", "symbol", "gene_symbol", "description", "hgnc_symbol", "external_gene_name"),
}


def _annotation_format(path: Path) -> str:
    name = path.name.lower()
    for ext in (".gz", ".bz2", ".zst"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    if name.endswith(".gtf"):
        return "gtf"
    if name.endswith((".gff", ".gff3")):
        return "gff"
    if name.endswith(".bed"):
        return "bed"
    if name.endswith((".tsv", ".txt", ".csv", ".parquet", ".tab")):
        return "table"
    raise InputError(
        f"annotation {path}: cannot tell the format from the file name; expected .gtf, .gff3, "
        ".bed, .tsv, .txt, .csv or .parquet (optionally .gz): rename it with its format's suffix"
    )


def _lines(path: Path) -> Iterable[str]:
    opener = gzip.open(path, "rt") if path.name.lower().endswith(".gz") else open(path)  # noqa: SIM115
    with opener as fh:
        yield from fh


def read_gene_annotation(
    path: str | os.PathLike[str],
    *,
    format: Literal["gtf", "gff", "bed", "table"] | None = None,
    feature: str | None = None,
    gene_id_attribute: str = "gene_id",
) -> pd.DataFrame:
    """Read a gene annotation (GTF, GFF3, BED or a table) into one row per gene with its TSS.

    Parameters
    ----------
    path
        Annotation file; format from the name unless ``format`` is given.
    format
        ``"gtf"``, ``"gff"``, ``"bed"`` or ``"table"``.
    feature
        GTF/GFF feature type whose rows are genes (default ``gene``; GTF falls back to the span of
        ``transcript``, then ``exon`` rows per gene when there is no ``gene`` row).
    gene_id_attribute
        GTF/GFF attribute holding the gene id.

    Returns
    -------
    pandas.DataFrame
        Index ``gene_id`` (str, unique); columns ``gene_name`` (str, may be empty), ``chr`` (str,
        as in the file), ``start``, ``end`` (int64, 1-based inclusive gene span), ``strand``
        (``+``/``-``/``.``), ``tss`` (int64, 1-based TSS).

    Raises
    ------
    InputError
        Unknown format, a line that does not parse, a gene without a strand whose TSS is not
        given, no genes.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "genes.gtf"
    >>> _ = p.write_text('chr1\\tX\\tgene\\t100\\t200\\t.\\t-\\t.\\tgene_id "G1"; gene_name "A";\\n')
    >>> ann = read_gene_annotation(p)
    >>> str(ann.at["G1", "chr"]), int(ann.at["G1", "tss"]), str(ann.at["G1", "strand"])
    ('chr1', 200, '-')
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    fmt = format or _annotation_format(path)
    source = f"annotation {path}"
    if fmt == "gtf":
        df = _read_gtf(path, source, feature, gene_id_attribute, gff=False)
    elif fmt == "gff":
        df = _read_gtf(path, source, feature, gene_id_attribute, gff=True)
    elif fmt == "bed":
        df = _read_bed(path, source)
    elif fmt == "table":
        df = _read_table(path, source)
    else:
        raise InputError(f"format: expected one of {', '.join(ANNOTATION_FORMATS)}, found {format!r}")
    log.info("%s: %d genes on %d contigs", source, len(df), df["chr"].nunique())
    return df


def _parse_attributes(text: str, gff: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    if gff:
        for part in text.strip().strip(";").split(";"):
            if "=" in part:
                k, v = part.split("=", 1)
                out.setdefault(k.strip(), urllib.parse.unquote(v.strip()))
        return out
    for m in _GTF_ATTR.finditer(text):
        out.setdefault(m.group(1), m.group(2) if m.group(2) is not None else m.group(3))
    return out


def _read_gtf(path: Path, source: str, feature: str | None, id_attr: str, *, gff: bool) -> pd.DataFrame:
    wanted = (feature,) if feature else (_GFF_GENE_FEATURES if gff else ("gene",))
    fallbacks = () if (feature or gff) else ("transcript", "exon")
    rows: dict[str, list[tuple[str, int, int, str, str, str]]] = {f: [] for f in (*wanted, *fallbacks)}
    n_lines = 0
    try:
        for lineno, line in enumerate(_lines(path), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            n_lines += 1
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 9:
                raise InputError(
                    f"{source}, line {lineno}: expected 9 tab-separated {'GFF3' if gff else 'GTF'} "
                    f"fields, found {len(parts)}; is this a {'GFF3' if gff else 'GTF'} file?"
                )
            feat = parts[2]
            if feat not in rows:
                continue
            attrs = _parse_attributes(parts[8], gff)
            gid = attrs.get(id_attr)
            if gid is None and gff:
                gid = attrs.get("ID")
                if gid is not None and gid.startswith("gene:"):
                    gid = gid[5:]
            if gid is None:
                raise InputError(
                    f"{source}, line {lineno}: {feat} row without a {id_attr!r} attribute; "
                    f"pass gene_id_attribute= naming the attribute that holds gene ids"
                )
            name = attrs.get("gene_name") or attrs.get("Name") or attrs.get("gene") or ""
            try:
                start, end = int(parts[3]), int(parts[4])
            except ValueError:
                raise InputError(
                    f"{source}, line {lineno}: start/end {parts[3]!r}/{parts[4]!r} are not integers"
                ) from None
            rows[feat].append((gid, start, end, parts[6], parts[0], name))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"{source}: cannot read it: {exc}") from None
    used = next((f for f in (*wanted, *fallbacks) if rows[f]), None)
    if used is None:
        raise InputError(
            f"{source}: no {' / '.join(wanted)} rows among {n_lines} lines; expected gene records "
            f"(pass feature= naming the feature type of gene rows)"
        )
    recs = [r for f in wanted for r in rows[f]] if used in wanted else rows[used]
    df = pd.DataFrame(recs, columns=["gene_id", "start", "end", "strand", "chr", "gene_name"])
    if used not in wanted:
        log.info("%s: no %s rows; gene spans taken from %s rows", source, wanted[0], used)
        df = df.groupby("gene_id", sort=False).agg(
            start=("start", "min"), end=("end", "max"), strand=("strand", "first"),
            chr=("chr", "first"), gene_name=("gene_name", "first")).reset_index()
    return _finish(df, source)


def _read_bed(path: Path, source: str) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, sep="\t", header=None, dtype=str, comment=None, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{source} is empty; expected BED rows 'chrom start end name [score strand]'") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: cannot parse it as BED: {' '.join(str(exc).split())}") from None
    first = str(raw.iat[0, 0])
    if first.startswith("#") or first.lower() in ("chr", "chrom"):
        raw = raw.iloc[1:]
    raw = raw[~raw.iloc[:, 0].str.startswith(("track", "browser"))]
    if raw.shape[1] < 4 or raw.empty:
        raise InputError(
            f"{source}: expected BED rows with at least 4 columns 'chrom start end name', found "
            f"{raw.shape[1]} columns and {len(raw)} rows"
        )
    start0 = _ints(raw.iloc[:, 1], "start", source)
    end = _ints(raw.iloc[:, 2], "end", source)
    strand = raw.iloc[:, 5].to_numpy(dtype=object) if raw.shape[1] >= 6 else np.full(len(raw), ".", dtype=object)
    df = pd.DataFrame({"gene_id": raw.iloc[:, 3].to_numpy(), "chr": raw.iloc[:, 0].to_numpy(),
                       "start": start0 + 1, "end": end, "strand": strand, "gene_name": ""})
    return _finish(df, source)


def _read_table(path: Path, source: str) -> pd.DataFrame:
    try:
        if path.name.lower().endswith(".parquet"):
            raw = pd.read_parquet(path)
            if raw.index.name is not None:
                raw = raw.reset_index()
        else:
            sep = "," if ".csv" in path.name.lower() else "\t"
            raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{source} is empty; expected a table with gene_id, chr and tss (or start/end/strand)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: cannot parse it as a table: {' '.join(str(exc).split())}") from None
    except Exception as exc:  # corrupt parquet
        raise InputError(f"{source}: cannot read it: {' '.join(str(exc).split())}") from None
    return annotation_from_frame(raw, source=source)


def annotation_from_frame(df: pd.DataFrame, *, source: str = "annotation table") -> pd.DataFrame:
    """Gene annotation from a table with ``gene_id``, ``chr`` and ``tss`` or ``start/end/strand``.

    Coordinates are 1-based inclusive (GTF convention; ``tss`` a 1-based position). Column names
    are matched case-insensitively with aliases (see module docs). Returns the frame described
    in :func:`read_gene_annotation`.
    """
    lower = {str(c).lower(): c for c in df.columns}
    found: dict[str, str] = {}
    for key, names in _ALIASES.items():
        for n in names:
            if n in lower and lower[n] not in found.values():
                found[key] = lower[n]
                break
    missing = [k for k in ("gene_id", "chr") if k not in found]
    has_tss = "tss" in found
    has_span = all(k in found for k in ("start", "end", "strand"))
    if missing or not (has_tss or has_span):
        raise InputError(
            f"{source}: expected columns gene_id, chr and tss (or start, end, strand), found "
            f"{[str(c) for c in df.columns][:10]}; rename the columns"
        )
    if df.empty:
        raise InputError(f"{source}: no gene rows")
    out = pd.DataFrame({"gene_id": df[found["gene_id"]].astype(str).to_numpy(),
                        "chr": df[found["chr"]].astype(str).to_numpy()})
    out["gene_name"] = df[found["gene_name"]].astype(str).to_numpy() if "gene_name" in found else ""
    if has_span:
        out["start"] = _ints(df[found["start"]], "start", source)
        out["end"] = _ints(df[found["end"]], "end", source)
        out["strand"] = df[found["strand"]].astype(str).to_numpy()
    if has_tss:
        tss = _ints(df[found["tss"]], "tss", source)
        out["tss"] = tss
        if not has_span:
            out["start"], out["end"] = tss, tss
            out["strand"] = df[found["strand"]].astype(str).to_numpy() if "strand" in found else "."
    return _finish(out, source)


def _ints(col: pd.Series, name: str, source: str) -> np.ndarray:
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna().to_numpy() | (num.to_numpy() != np.floor(num.to_numpy()))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{source}: column {name!r} holds {col.iloc[i]!r} on row {i + 1}; expected an integer position")
    return num.to_numpy().astype(np.int64)


def _finish(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """TSS by strand, unique ids (first kept), column order and dtypes."""
    df = df.copy()
    df["strand"] = df["strand"].astype(str).replace({"1": "+", "-1": "-", "+1": "+"})
    if "tss" not in df.columns:
        plus, minus = (df["strand"] == "+").to_numpy(), (df["strand"] == "-").to_numpy()
        point = (df["start"] == df["end"]).to_numpy()
        undetermined = ~(plus | minus | point)
        if undetermined.any():
            i = int(np.flatnonzero(undetermined)[0])
            raise InputError(
                f"{source}: gene {df['gene_id'].iloc[i]} has strand {df['strand'].iloc[i]!r} and spans "
                f"{df['start'].iloc[i]}-{df['end'].iloc[i]}; the TSS needs a strand (+ or -): add "
                "the strand, or give the TSS itself (a 'tss' column, or a BED with end = start + 1)"
            )
        df["tss"] = np.where(minus, df["end"].to_numpy(), df["start"].to_numpy()).astype(np.int64)
    if (df["start"] > df["end"]).any() or (df["tss"] < 1).any():
        i = int(np.flatnonzero(((df["start"] > df["end"]) | (df["tss"] < 1)).to_numpy())[0])
        raise InputError(
            f"{source}: gene {df['gene_id'].iloc[i]} has start {df['start'].iloc[i]} > end "
            f"{df['end'].iloc[i]} or TSS {df['tss'].iloc[i]} < 1; positions are 1-based with start <= end"
        )
    dup = df["gene_id"].duplicated()
    if dup.any():
        log.warning("%s: %d gene ids occur more than once (e.g. %s; PAR genes?); kept the first record",
                    source, int(dup.sum()), ", ".join(df.loc[dup, "gene_id"].unique()[:3]))
        df = df[~dup.to_numpy()]
    if df.empty:
        raise InputError(f"{source}: no gene records")
    df["gene_name"] = df["gene_name"].fillna("").astype(str)
    out = df.set_index(pd.Index(df["gene_id"].astype(str).to_numpy(), name="gene_id"))
    out = out[list(ANNOTATION_COLUMNS)]
    out = out.astype({"chr": str, "start": np.int64, "end": np.int64, "strand": str, "tss": np.int64})
    return out


# ----------------------------------------------------------------------------------------------
# contig names


def _bare(name: str) -> str:
    s = str(name).strip()
    if len(s) > 3 and s[:3].lower() == "chr":
        s = s[3:]
    return "MT" if s.upper() in ("M", "MT") else (s.upper() if s.upper() in ("X", "Y") else s)


def chrom_sort_key(name: str) -> tuple[int, int, str]:
    """Natural chromosome order: 1..22 numerically, then X, Y, MT, then the rest by name.

    >>> sorted(["chrX", "chr10", "chr2", "chrM", "chrUn_x"], key=chrom_sort_key)
    ['chr2', 'chr10', 'chrX', 'chrM', 'chrUn_x']
    """
    s = _bare(name)
    if s.isdigit():
        return (0, int(s), "")
    order = {"X": 1, "Y": 2, "MT": 3}
    if s in order:
        return (1, order[s], "")
    return (2, 0, s)


def set_chrom_prefix(names: Sequence[str] | np.ndarray, mode: Literal["keep", "add", "strip"]) -> np.ndarray:
    """Rename contigs: ``keep`` as given, ``add`` a ``chr`` prefix (M/MT -> chrM), ``strip`` it
    (chrM -> MT).

    >>> set_chrom_prefix(["1", "chrX", "MT"], "add").tolist()
    ['chr1', 'chrX', 'chrM']
    >>> set_chrom_prefix(["chr1", "X", "chrM"], "strip").tolist()
    ['1', 'X', 'MT']
    """
    arr = np.asarray(names, dtype=object)
    if mode == "keep":
        return arr.astype(str)
    if mode == "strip":
        return np.array([_bare(n) for n in arr], dtype=str)
    if mode == "add":
        return np.array(["chrM" if _bare(n) == "MT" else "chr" + _bare(n) for n in arr], dtype=str)
    raise InputError(f"chrom_prefix: expected 'keep', 'add' or 'strip', found {mode!r}")
