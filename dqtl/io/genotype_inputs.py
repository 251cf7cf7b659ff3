"""Genotype inputs before conversion: format resolution, sample and variant table checks.

:func:`resolve_input` finds the files of a VCF/BCF, PLINK 1, PLINK 2 or BGEN input from a path
or prefix; the ``check_*`` functions validate sample IDs and variant tables before any native
reader sees the data, so bad input is one clear error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from dqtl.errors import InputError
from dqtl.io.genotypes import check_variant_order, is_zarr_store

__all__ = [
    "FORMATS",
    "GenotypeInput",
    "resolve_input",
    "check_plink1",
    "check_vcf",
    "check_unique_samples",
    "read_fam_like",
    "contig_codes",
    "DEFAULT_SAMPLES_CHUNK",
    "READ_BUFFER_BYTES",
]

log = logging.getLogger(__name__)


#: genotype input formats understood by :func:`convert`
FORMATS: tuple[str, ...] = ("vcf", "plink", "pgen", "bgen")
#: which format a prefix shared by several is read as (tensorQTL reads the pgen first)
PREFIX_PREFERENCE: tuple[str, ...] = ("pgen", "plink", "bgen", "vcf")

_SUFFIXES: dict[str, tuple[str, ...]] = {
    "vcf": (".vcf.gz", ".vcf.bgz", ".vcf", ".bcf"),
    "plink": (".bed", ".bim", ".fam"),
    "pgen": (".pgen", ".pvar.zst", ".pvar", ".psam"),
    "bgen": (".bgen", ".sample"),
}
_MAIN_SUFFIXES: dict[str, tuple[str, ...]] = {
    "vcf": _SUFFIXES["vcf"],
    "plink": (".bed",),
    "pgen": (".pgen",),
    "bgen": (".bgen",),
}
DEFAULT_SAMPLES_CHUNK = 10_000
READ_BUFFER_BYTES = 64 << 20



@dataclasses.dataclass(frozen=True)
class GenotypeInput:
    """A resolved genotype input.

    Attributes
    ----------
    format : str
        One of :data:`FORMATS`.
    path : pathlib.Path
        The main file (``.vcf.gz``/``.bcf``, ``.bed``, ``.pgen`` or ``.bgen``).
    files : dict of str to pathlib.Path
        Companion files by role: ``bim``/``fam`` (plink), ``pvar``/``psam`` (pgen),
        ``sample`` (bgen, when present), ``index`` (vcf, when present).
    """

    format: str
    path: Path
    files: dict[str, Path] = dataclasses.field(default_factory=dict, hash=False, compare=False)

    def __hash__(self) -> int:
        return hash((self.format, self.path))


def _split_suffix(path: Path) -> tuple[str | None, str | None]:
    """Return (format, suffix) of a genotype file name, or (None, None)."""
    name = path.name.lower()
    for fmt, suffixes in _SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                return fmt, suffix
    return None, None


def _check_format(format: str | None) -> str | None:
    if format is None:
        return None
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise InputError(
            f"unknown genotype format {format!r}: expected one of {', '.join(FORMATS)} "
            "(or leave it unset to detect it from the file names)"
        )
    return fmt


def resolve_input(input: str | os.PathLike[str], *, format: str | None = None) -> GenotypeInput:
    """Find the genotype files that ``input`` names and settle their format.

    Parameters
    ----------
    input : str or path-like
        A genotype file (``.vcf.gz``, ``.vcf``, ``.bcf``, ``.bed``/``.bim``/``.fam``,
        ``.pgen``/``.pvar``/``.psam``, ``.bgen``/``.sample``) or a prefix shared by such files.
    format : {"vcf", "plink", "pgen", "bgen"}, optional
        Settles a prefix that several formats share; detected from the file names otherwise.

    Returns
    -------
    GenotypeInput

    Raises
    ------
    InputError
        Unknown format, nothing found, or a missing companion file. A prefix shared by several
        formats is read as pgen, else PLINK 1, else BGEN, else VCF (tensorQTL's order).
    """
    fmt = _check_format(format)
    path = Path(input).expanduser()
    if path.is_dir():
        what = "a Zarr store: open it with dqtl.io.genotypes.open_genotypes" if is_zarr_store(
            path
        ) else "a directory"
        raise InputError(
            f"genotype input {str(input)!r} is {what}; expected a VCF/BCF, PLINK 1, PLINK 2 or "
            "BGEN file, or the prefix those files share"
        )
    if path.is_file():
        file_fmt, suffix = _split_suffix(path)
        if file_fmt is None:
            raise InputError(
                f"genotype input {str(input)!r} has an unknown file type; expected one of "
                f"{', '.join(s for v in _SUFFIXES.values() for s in v)}: rename it with its "
                "format's suffix"
            )
        assert suffix is not None
        prefix = str(path)[: -len(suffix)]
        if fmt is None:
            fmt = file_fmt
        elif fmt != file_fmt and not (fmt == "pgen" and suffix in (".bim", ".fam")):
            raise InputError(
                f"genotype input {str(input)!r} looks like {file_fmt} but the format {fmt!r} was "
                f"given (--genotype-format, or --format of dqtl convert): give {file_fmt!r} or "
                f"the {fmt} file itself"
            )
        if fmt == "vcf":
            return _complete("vcf", path, prefix)
    else:
        if _split_suffix(path)[0] is not None:
            raise InputError(f"genotype file {str(input)!r} does not exist")
        prefix = str(path)
        found = {
            f: [Path(prefix + s) for s in _MAIN_SUFFIXES[f] if Path(prefix + s).is_file()]
            for f in FORMATS
        }
        found = {f: v for f, v in found.items() if v}
        looked = ", ".join(f"{path.name}{s}" for f in FORMATS for s in _MAIN_SUFFIXES[f])
        if not found:
            where = path.parent if path.parent.is_dir() else f"{path.parent} (no such directory)"
            raise InputError(
                f"genotype input {str(input)!r}: no such file, and no genotype files with that "
                f"prefix in {where} (looked for {looked})"
            )
        listing = "; ".join(f"{f}: {', '.join(p.name for p in v)}" for f, v in found.items())
        if fmt is None:
            # tensorQTL's order for a shared prefix: PLINK 2, then PLINK 1, then the others
            fmt = next(f for f in PREFIX_PREFERENCE if f in found)
            if len(found) > 1:
                log.info("genotype prefix %s holds %s: using %s (tensorQTL's order pgen, bed, bgen, "
                         "vcf; --genotype-format chooses another)", input, listing, fmt)
        elif fmt not in found:
            raise InputError(
                f"genotype prefix {str(input)!r} has no {fmt} files (looked for "
                f"{', '.join(path.name + s for s in _MAIN_SUFFIXES[fmt])}); found {listing}"
            )
        if fmt == "vcf":
            if len(found["vcf"]) > 1:
                raise InputError(
                    f"genotype prefix {str(input)!r} matches several VCF/BCF files "
                    f"({', '.join(p.name for p in found['vcf'])}): pass the file itself"
                )
            return _complete("vcf", found["vcf"][0], prefix)
    return _complete(fmt, Path(prefix + _MAIN_SUFFIXES[fmt][0]), prefix)


def _complete(fmt: str, main: Path, prefix: str) -> GenotypeInput:
    """Attach companion files to a main genotype file, checking that they exist."""

    def first(*suffixes: str) -> Path | None:
        return next((Path(prefix + s) for s in suffixes if Path(prefix + s).is_file()), None)

    files: dict[str, Path] = {}
    need: tuple[str, ...] = {
        "vcf": (),
        "plink": (".bed", ".bim", ".fam"),
        "pgen": (".pgen",),
        "bgen": (".bgen",),
    }[fmt]
    missing = [prefix + s for s in need if not Path(prefix + s).is_file()]
    if fmt == "plink":
        files = {"bim": Path(prefix + ".bim"), "fam": Path(prefix + ".fam")}
    elif fmt == "pgen":
        pvar, psam = first(".pvar", ".pvar.zst", ".bim"), first(".psam", ".fam")
        if pvar is None:
            missing.append(f"{prefix}.pvar (or .pvar.zst or .bim)")
        if psam is None:
            missing.append(f"{prefix}.psam (or .fam)")
        files = {"pvar": pvar, "psam": psam} if pvar and psam else {}
    elif fmt == "bgen":
        sample = first(".sample")
        if sample is not None:
            files = {"sample": sample}
    else:  # vcf
        if main.name.lower().endswith((".gz", ".bgz", ".bcf")):
            index = next(
                (Path(str(main) + s) for s in (".tbi", ".csi") if Path(str(main) + s).is_file()),
                None,
            )
            if index is None:
                raise InputError(
                    f"VCF/BCF {str(main)!r} has no index ({main.name}.tbi or .csi): bgzip it and "
                    f"index it with 'bcftools index {main.name}' (or 'tabix -p vcf')"
                )
            files = {"index": index}
    if missing:
        raise InputError(
            f"{fmt} genotype input {prefix!r} is incomplete: missing {', '.join(missing)}"
        )
    return GenotypeInput(fmt, main, files)


# --------------------------------------------------------------------------------------------
# sample and variant tables
# --------------------------------------------------------------------------------------------


def check_unique_samples(ids: np.ndarray, source: Path | str) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise InputError(
            f"sample IDs in {str(source)!r} are not unique: {len(dup)} duplicated "
            f"({', '.join(map(str, dup[:5]))}{', ...' if len(dup) > 5 else ''}); sample IDs must "
            "be unique to align genotypes with phenotypes: rename or remove the duplicates"
        )


def read_fam_like(path: Path, *, psam: bool) -> np.ndarray:
    """Sample IDs (IID) of a ``.fam`` or ``.psam`` file as a str array."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("##")]
    iid_col, start = 1, 0
    if psam and lines and lines[0].startswith("#"):
        header = lines[0][1:].split()
        if "IID" not in header:
            raise InputError(f".psam {str(path)!r}: header {lines[0]!r} has no IID column")
        iid_col, start = header.index("IID"), 1
    rows = [ln.split() for ln in lines[start:]]
    bad = next((i for i, r in enumerate(rows) if len(r) <= iid_col), None)
    if bad is not None or (not psam and any(len(r) != 6 for r in rows)):
        i = bad if bad is not None else next(i for i, r in enumerate(rows) if len(r) != 6)
        raise InputError(
            f"{str(path)!r} line {i + start + 1}: expected "
            f"{'an IID column' if psam else '6 columns (FID IID father mother sex phenotype)'}, "
            f"found {len(rows[i])} fields: {lines[i + start][:80]!r}"
        )
    ids = np.array([r[iid_col] for r in rows], dtype=str)
    check_unique_samples(ids, path)
    return ids


def _read_bim(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Contig names and positions of a ``.bim`` file, checking its shape."""
    contigs, positions = [], []
    with open(path) as fh:
        for i, line in enumerate(fh):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise InputError(
                    f".bim {str(path)!r} line {i + 1}: expected 6 columns (chrom id cM pos A1 "
                    f"A2), found {len(fields)}: {line.strip()[:80]!r}"
                )
            try:
                positions.append(int(fields[3]))
            except ValueError:
                raise InputError(
                    f".bim {str(path)!r} line {i + 1}: position {fields[3]!r} is not an integer"
                ) from None
            contigs.append(fields[0])
    return np.array(contigs, dtype=str), np.array(positions, dtype=np.int64)


def contig_codes(names: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Contig IDs in order of first appearance and each variant's index into them."""
    uniq, first, inverse = np.unique(names, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return [str(c) for c in uniq[order]], rank[inverse]


def check_plink1(gi: GenotypeInput) -> None:
    """Validate a PLINK 1 fileset before handing it to bio2zarr."""
    samples = read_fam_like(gi.files["fam"], psam=False)
    contigs, positions = _read_bim(gi.files["bim"])
    n, m = len(samples), len(contigs)
    if n == 0 or m == 0:
        raise InputError(f"PLINK fileset {str(gi.path)!r} has {m} variants and {n} samples")
    with open(gi.path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] != b"\x6c\x1b" or magic[2:] != b"\x01":
        what = "individual-major" if magic == b"\x6c\x1b\x00" else "not a PLINK 1 .bed"
        raise InputError(
            f".bed {str(gi.path)!r} is {what} (first bytes {magic.hex()}, expected 6c1b01 for a "
            "variant-major .bed): rewrite it with 'plink --make-bed' or 'plink2 --make-bed'"
        )
    expected = 3 + m * ((n + 3) // 4)
    found = gi.path.stat().st_size
    if found != expected:
        raise InputError(
            f".bed {str(gi.path)!r} has {found} bytes, expected {expected} for {m} variants "
            f"(.bim lines) x {n} samples (.fam lines): the .bed is truncated or the .bed, .bim "
            "and .fam do not belong together"
        )
    names, codes = contig_codes(contigs)
    check_variant_order(codes, positions, np.array(names), source=str(gi.files["bim"]))


#: the empty block that ends every complete BGZF file (SAM/BAM specification, section 4.1.2)
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def check_bgzf_complete(path: Path) -> None:
    """A BGZF-compressed file (``.vcf.gz``, ``.bcf``) must end with the BGZF end-of-file block;
    without it the file was cut short (an interrupted copy or download), and readers would
    convert the records before the cut without a word."""
    with open(path, "rb") as fh:
        head = fh.read(18)
        if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
            return  # not BGZF (plain text or plain gzip): nothing to check
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - len(BGZF_EOF)))
        tail = fh.read()
    if tail != BGZF_EOF:
        raise InputError(
            f"VCF/BCF {str(path)!r} is truncated: it lacks the BGZF end-of-file block that every "
            "complete bgzip/bcftools output ends with; copy or download it again (an index does "
            "not help: the records after the cut are gone)")


def check_vcf(gi: GenotypeInput) -> None:
    """Check that a VCF/BCF header can be read and names unique samples."""
    try:
        import cyvcf2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("VCF/BCF input needs cyvcf2: pip install 'bio2zarr[vcf]'") from exc
    check_bgzf_complete(gi.path)
    try:
        reader = cyvcf2.VCF(str(gi.path), lazy=True)
    except Exception as exc:  # cyvcf2 raises a bare Exception for a bad header
        raise InputError(
            f"VCF/BCF {str(gi.path)!r} could not be read ({exc}): check its header (e.g. with "
            "'bcftools view -h'); duplicated sample names are one cause"
        ) from None
    try:
        samples = np.array(reader.samples, dtype=str)
        try:
            first = next(iter(reader), None)
        except Exception as exc:  # a corrupt first record
            raise InputError(f"VCF/BCF {str(gi.path)!r}: its first record cannot be read ({exc}); "
                             "check the file with 'bcftools view'") from None
    finally:
        reader.close()
    if samples.size == 0:
        raise InputError(f"VCF/BCF {str(gi.path)!r} has no samples (no genotype columns)")
    if first is None:
        raise InputError(f"VCF/BCF {str(gi.path)!r} has a header but no variant records: "
                         "nothing to convert (was it filtered or truncated?)")
    check_unique_samples(samples, gi.path)
