"""Convert VCF/BCF, PLINK 1, PLINK 2 (pgen) and BGEN genotypes into VCF Zarr stores.

VCF/BCF and PLINK 1 go through bio2zarr (``vcf2zarr`` and ``plink2zarr``); PLINK 2 is read with
``pgenlib`` and BGEN with ``cbgen``, and both are written here, one variant chunk at a time, in the
same layout (sgkit / VCF Zarr naming, see :mod:`dqtl.io.genotypes`).

Allele convention: dosages count the ALT allele. For PLINK 1 the counted allele A1 (``.bim``
column 5) is ALT and A2 (column 6) is REF: bio2zarr 0.2.1's PLINK reader already does this
(``variant_allele = [A2, A1]``, a ``.bed`` code 00 = homozygous A1 becomes ``[1, 1]``), and on the
bundled GEUVADIS data the dosages from ``.bed``, ``.pgen`` and ``.vcf.gz`` are identical. For BGEN
the first allele is REF and the dosage counts the other alleles (the convention of bgen-reader,
sgkit and UK Biobank); for PLINK 2 the dosage counts the non-REF alleles.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from dqtl.errors import InputError
from dqtl.io.atomic import atomic_dir
from dqtl.io.genotypes import check_variant_order, is_zarr_store

__all__ = ["FORMATS", "GenotypeInput", "resolve_input", "convert"]

log = logging.getLogger(__name__)

#: genotype input formats understood by :func:`convert`
FORMATS: tuple[str, ...] = ("vcf", "plink", "pgen", "bgen")

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
_DEFAULT_SAMPLES_CHUNK = 10_000
_READ_BUFFER_BYTES = 64 << 20


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
        Unknown format, nothing found, an ambiguous prefix, or a missing companion file.
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
                f"{', '.join(s for v in _SUFFIXES.values() for s in v)} (or pass format=)"
            )
        assert suffix is not None
        prefix = str(path)[: -len(suffix)]
        if fmt is None:
            fmt = file_fmt
        elif fmt != file_fmt and not (fmt == "pgen" and suffix in (".bim", ".fam")):
            raise InputError(
                f"genotype input {str(input)!r} looks like {file_fmt} but format={fmt!r} was "
                f"given: pass format={file_fmt!r} or the {fmt} file itself"
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
            if len(found) > 1:
                raise InputError(
                    f"genotype prefix {str(input)!r} is ambiguous: found {listing}; "
                    f"choose one with format= (--format for convert, --genotype-format for cis/trans) {' or '.join(found)}"
                )
            fmt = next(iter(found))
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


def _check_unique_samples(ids: np.ndarray, source: Path | str) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise InputError(
            f"sample IDs in {str(source)!r} are not unique: {len(dup)} duplicated "
            f"({', '.join(map(str, dup[:5]))}{', ...' if len(dup) > 5 else ''}); sample IDs must "
            "be unique to align genotypes with phenotypes: rename or remove the duplicates"
        )


def _read_fam_like(path: Path, *, psam: bool) -> np.ndarray:
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
    _check_unique_samples(ids, path)
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


def _contig_codes(names: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Contig IDs in order of first appearance and each variant's index into them."""
    uniq, first, inverse = np.unique(names, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return [str(c) for c in uniq[order]], rank[inverse]


def _check_plink1(gi: GenotypeInput) -> None:
    """Validate a PLINK 1 fileset before handing it to bio2zarr."""
    samples = _read_fam_like(gi.files["fam"], psam=False)
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
    names, codes = _contig_codes(contigs)
    check_variant_order(codes, positions, np.array(names), source=str(gi.files["bim"]))


def _check_vcf(gi: GenotypeInput) -> None:
    """Check that a VCF/BCF header can be read and names unique samples."""
    try:
        import cyvcf2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("VCF/BCF input needs cyvcf2: pip install 'bio2zarr[vcf]'") from exc
    try:
        reader = cyvcf2.VCF(str(gi.path), lazy=True)
    except Exception as exc:  # cyvcf2 raises a bare Exception for a bad header
        raise InputError(
            f"VCF/BCF {str(gi.path)!r} could not be read ({exc}): check its header (e.g. with "
            "'bcftools view -h'); duplicated sample names are one cause"
        ) from None
    try:
        samples = np.array(reader.samples, dtype=str)
    finally:
        reader.close()
    if samples.size == 0:
        raise InputError(f"VCF/BCF {str(gi.path)!r} has no samples (no genotype columns)")
    _check_unique_samples(samples, gi.path)


# --------------------------------------------------------------------------------------------
# sources written by dqtl itself (pgen, bgen)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Block:
    variant_id: np.ndarray  # (m,) object
    variant_allele: np.ndarray  # (m, alleles) object
    call_genotype: np.ndarray  # (m, n, 2) int8
    call_genotype_phased: np.ndarray  # (m, n) bool
    call_dosage: np.ndarray | None  # (m, n) float32


@dataclasses.dataclass
class _Scan:
    sample_id: np.ndarray
    contig_id: list[str]
    variant_contig: np.ndarray
    variant_position: np.ndarray
    max_alleles: int
    has_dosage: bool  # write call_dosage


class _PgenSource:
    """PLINK 2 reader: pgenlib for genotypes and the .pvar, the .psam parsed here."""

    def __init__(self, gi: GenotypeInput) -> None:
        import pgenlib

        self.gi = gi
        try:
            self.pvar = pgenlib.PvarReader(str(gi.files["pvar"]).encode())
            self.reader = pgenlib.PgenReader(str(gi.path).encode(), pvar=self.pvar)
        except RuntimeError as exc:
            msg = exc.args[0].decode() if isinstance(exc.args[0], bytes) else str(exc)
            raise InputError(
                f"PLINK 2 fileset {str(gi.path)!r} (variants {gi.files['pvar'].name}) could not "
                f"be read: {msg.strip()}"
            ) from None
        self.n_samples = self.reader.get_raw_sample_ct()
        self.n_variants = self.reader.get_variant_ct()
        self.phased = bool(self.reader.hardcall_phase_present())

    def close(self) -> None:
        self.reader.close()
        self.pvar.close()

    def scan(self) -> _Scan:
        psam = self.gi.files["psam"]
        samples = _read_fam_like(psam, psam=psam.suffix == ".psam")
        if len(samples) != self.n_samples:
            raise InputError(
                f"{psam.name} lists {len(samples)} samples but {self.gi.path.name} holds "
                f"{self.n_samples}: the .pgen and its sample file do not belong together"
            )
        m = self.pvar.get_variant_ct()
        if m != self.n_variants:
            raise InputError(
                f"{self.gi.files['pvar'].name} lists {m} variants but {self.gi.path.name} holds "
                f"{self.n_variants}: the .pgen and its variant file do not belong together"
            )
        pv = self.pvar
        chrom = np.array([pv.get_variant_chrom(i).decode() for i in range(m)], dtype=str)
        pos = np.fromiter((pv.get_variant_pos(i) for i in range(m)), dtype=np.int64, count=m)
        names, codes = _contig_codes(chrom)
        return _Scan(samples, names, codes, pos, max(2, pv.get_max_allele_ct()), self._has_dosage())

    def _has_dosage(self) -> bool:
        """True if any dosage differs from its hard call (a fast pass, no decoding to Zarr)."""
        n = self.n_samples
        step = max(1, min(self.n_variants, _READ_BUFFER_BYTES // (5 * n)))
        for a in range(0, self.n_variants, step):
            b = min(a + step, self.n_variants)
            hard = np.empty((b - a, n), dtype=np.int8)
            dose = np.empty((b - a, n), dtype=np.float32)
            self.reader.read_range(a, b, hard)
            self.reader.read_dosages_range(a, b, dose)
            if (dose != hard).any():  # missing is -9 in both
                return True
        return False

    def read_block(self, v0: int, v1: int, max_alleles: int, with_dosage: bool) -> _Block:
        m, n, pv = v1 - v0, self.n_samples, self.pvar
        ids = np.array([pv.get_variant_id(i).decode() for i in range(v0, v1)], dtype=object)
        alleles = np.full((m, max_alleles), "", dtype=object)
        for j, i in enumerate(range(v0, v1)):
            for k in range(pv.get_allele_ct(i)):
                alleles[j, k] = pv.get_allele_code(i, k).decode()
        gt = np.empty((m, n, 2), dtype=np.int8)
        phased = np.zeros((m, n), dtype=bool)
        step = max(1, min(m, _READ_BUFFER_BYTES // (8 * n)))
        for a in range(v0, v1, step):
            b = min(a + step, v1)
            buf = np.empty((b - a, 2 * n), dtype=np.int32)
            if self.phased:
                ph = np.empty((b - a, n), dtype=bool)
                self.reader.read_alleles_and_phasepresent_range(a, b, buf, ph)
                phased[a - v0 : b - v0] = ph
            else:
                self.reader.read_alleles_range(a, b, buf)
            buf[buf < 0] = -1
            gt[a - v0 : b - v0] = buf.reshape(b - a, n, 2)
        # PLINK 2 records phase for heterozygous calls only
        phased &= gt[:, :, 0] != gt[:, :, 1]
        dosage = None
        if with_dosage:
            ref = np.empty((m, n), dtype=np.float32)
            self.reader.read_dosages_range(v0, v1, ref, allele_idx=0)
            dosage = np.where(ref < 0, np.float32(np.nan), np.float32(2) - ref)
        return _Block(ids, alleles, gt, phased, dosage)


def _bgen_sample_ids(gi: GenotypeInput, bgen: Any) -> np.ndarray:
    n = bgen.nsamples
    sample = gi.files.get("sample")
    if sample is not None:
        rows = [ln.split() for ln in sample.read_text().splitlines() if ln.strip()]
        if len(rows) < 2:
            raise InputError(f".sample {str(sample)!r} has no header and type lines")
        header, body = rows[0], rows[2:]
        col = header.index("ID") if "ID" in header else 0
        ids = np.array([r[col] for r in body], dtype=str)
        if "ID_2" in header and len(np.unique(ids)) < len(ids):
            ids2 = np.array([r[header.index("ID_2")] for r in body], dtype=str)
            if len(np.unique(ids2)) == len(ids2):
                ids = ids2
        if len(ids) != n:
            raise InputError(
                f".sample {str(sample)!r} lists {len(ids)} samples but {gi.path.name} holds {n}"
            )
    elif bgen.contain_samples:
        ids = np.array([s.decode() for s in bgen.read_samples()], dtype=str)
    else:
        log.warning(
            "%s has no sample IDs and no .sample file beside it: naming samples sample_0 ... "
            "(they will not match phenotype sample IDs)",
            gi.path,
        )
        ids = np.array([f"sample_{i}" for i in range(n)], dtype=str)
    _check_unique_samples(ids, sample or gi.path)
    return ids


class _BgenSource:
    """BGEN reader on cbgen; variant metadata from a cbgen metafile made in ``workdir``."""

    def __init__(self, gi: GenotypeInput, metafile: Path) -> None:
        import cbgen

        self.gi = gi
        with open(gi.path, "rb") as fh:
            head = fh.read(20)
        if len(head) < 20 or head[16:20] not in (b"bgen", b"\x00" * 4):
            raise InputError(
                f"{str(gi.path)!r} is not a BGEN file (no 'bgen' magic number in its header)"
            )
        try:
            self.bgen = cbgen.bgen_file(gi.path)
            if not metafile.exists():
                self.bgen.create_metafile(metafile)
            self.meta = cbgen.bgen_metafile(metafile)
        except RuntimeError as exc:
            raise InputError(f"BGEN {str(gi.path)!r} could not be read: {exc}") from None
        self.n_samples = self.bgen.nsamples
        self.n_variants = self.meta.nvariants
        self.part_size = self.meta.partition_size

    def close(self) -> None:
        self.meta.close()
        self.bgen.close()

    def _variants(self, v0: int, v1: int) -> dict[str, np.ndarray]:
        parts = range(v0 // self.part_size, (v1 - 1) // self.part_size + 1)
        vs = [self.meta.read_partition(p).variants for p in parts]
        base = parts[0] * self.part_size
        sl = slice(v0 - base, v1 - base)
        return {
            k: np.concatenate([getattr(v, k) for v in vs])[sl]
            for k in ("id", "rsid", "chromosome", "position", "nalleles", "allele_ids", "offset")
        }

    def scan(self) -> _Scan:
        samples = _bgen_sample_ids(self.gi, self.bgen)
        chrom, pos, max_alleles = [], [], 2
        for p in range(self.meta.npartitions):
            v = self.meta.read_partition(p).variants
            chrom.append(v.chromosome.astype(str))
            pos.append(v.position.astype(np.int64))
            max_alleles = max(max_alleles, int(v.nalleles.max(initial=2)))
        names, codes = _contig_codes(np.concatenate(chrom))
        return _Scan(samples, names, codes, np.concatenate(pos), max_alleles, True)

    def read_block(self, v0: int, v1: int, max_alleles: int, with_dosage: bool) -> _Block:
        m, n = v1 - v0, self.n_samples
        v = self._variants(v0, v1)
        rsid = v["rsid"].astype(str)
        ids = np.where(np.isin(rsid, ["", "."]), v["id"].astype(str), rsid).astype(object)
        alleles = np.full((m, max_alleles), "", dtype=object)
        gt = np.empty((m, n, 2), dtype=np.int8)
        phased = np.zeros((m, n), dtype=bool)
        dosage = np.empty((m, n), dtype=np.float32)
        for j in range(m):
            names = v["allele_ids"][j].decode().split(",")
            alleles[j, : len(names)] = names
            g = self.bgen.read_genotype(int(v["offset"][j]), precision=32)
            gt[j], dosage[j] = _decode_bgen(
                g.probability, bool(g.phased), g.ploidy, g.missing, int(v["nalleles"][j])
            )
            if g.phased:
                phased[j] = (g.ploidy <= 2) & ~g.missing
        return _Block(ids, alleles, gt, phased, dosage)


@functools.cache
def _diploid_pairs(n_alleles: int) -> tuple[np.ndarray, np.ndarray]:
    """Allele pairs (a, b) of unphased diploid BGEN genotypes, in BGEN (colex) order."""
    pairs = [(a, b) for b in range(n_alleles) for a in range(b + 1)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _decode_bgen(
    probs: np.ndarray, phased: bool, ploidy: np.ndarray, missing: np.ndarray, n_alleles: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hard calls (n, 2) int8 and non-first-allele dosage (n,) float32 of one BGEN variant.

    Hard calls are the most probable genotype (per haplotype when phased) for haploid and diploid
    samples; other ploidies get -1, and a haploid call's second allele is -2 (not present).
    """
    n = probs.shape[0]
    gt = np.full((n, 2), -1, dtype=np.int8)
    filled = np.nan_to_num(probs, nan=-1.0)
    hap, dip = (ploidy == 1) & ~missing, (ploidy == 2) & ~missing
    if phased:
        p = probs.reshape(n, -1, n_alleles)
        present = np.arange(p.shape[1])[None, :] < ploidy[:, None]
        dosage = np.where(present, 1.0 - p[:, :, 0], 0.0).sum(1)
        calls = filled.reshape(n, -1, n_alleles).argmax(-1)
        gt[dip] = calls[dip, :2]
        gt[hap, 0] = calls[hap, 0]
        gt[hap, 1] = -2
    elif n_alleles <= 2:
        dosage = np.nansum(probs * np.arange(probs.shape[1]), axis=1)
        best = filled.argmax(1)
        gt[dip] = np.array([[0, 0], [0, 1], [1, 1]], dtype=np.int8)[np.minimum(best[dip], 2)]
        gt[hap, 0] = best[hap]
        gt[hap, 1] = -2
    else:
        first, second = _diploid_pairs(n_alleles)
        if probs.shape[1] == len(first) and (ploidy[~missing] == 2).all():
            dosage = probs @ ((first > 0).astype(float) + (second > 0))
            best = filled.argmax(1)
            gt[dip, 0], gt[dip, 1] = first[best[dip]], second[best[dip]]
        else:
            dosage = np.full(n, np.nan)
    dosage = np.asarray(dosage, dtype=np.float32)
    dosage[missing] = np.nan
    gt[missing] = -1
    return gt, dosage


# --------------------------------------------------------------------------------------------
# the Zarr writer for dqtl's own sources
# --------------------------------------------------------------------------------------------


def _compressor(zarr_format: int, *, bitshuffle: bool) -> Any:
    import numcodecs
    from zarr.codecs import BloscCodec, BloscShuffle

    if zarr_format == 2:
        shuffle = numcodecs.Blosc.BITSHUFFLE if bitshuffle else numcodecs.Blosc.SHUFFLE
        return numcodecs.Blosc(cname="zstd", clevel=7, shuffle=shuffle)
    return BloscCodec(
        cname="zstd",
        clevel=7,
        shuffle=BloscShuffle.bitshuffle if bitshuffle else BloscShuffle.shuffle,
    )


def _create_array(
    group: Any, name: str, dims: list[str], shape: tuple[int, ...], chunks: tuple[int, ...],
    dtype: Any, zarr_format: int, description: str,
) -> Any:
    import numcodecs

    kwargs: dict[str, Any] = {}
    is_str = dtype == "T"
    if zarr_format == 3:
        kwargs["dimension_names"] = dims
    elif is_str:
        kwargs["filters"] = [numcodecs.VLenUTF8()]
    bitshuffle = np.dtype(dtype).itemsize == 1 if not is_str else False
    arr = group.create_array(
        name, shape=shape, chunks=chunks, dtype=dtype, fill_value=None,
        compressors=[_compressor(zarr_format, bitshuffle=bitshuffle)], **kwargs,
    )
    attrs: dict[str, Any] = {"description": description}
    if zarr_format == 2:
        attrs["_ARRAY_DIMENSIONS"] = dims
    arr.attrs.update(attrs)
    return arr


def _open_source(gi: GenotypeInput, metafile: str) -> Any:
    return _PgenSource(gi) if gi.format == "pgen" else _BgenSource(gi, Path(metafile))


_worker_source: Any = None  # set in each worker process by _init_worker


def _init_worker(gi: GenotypeInput, metafile: str) -> None:
    global _worker_source
    _worker_source = _open_source(gi, metafile)


def _write_chunk_in_worker(*args: Any) -> None:
    _write_chunk(_worker_source, *args)


def _write_chunk(
    source: Any, store: str, v0: int, v1: int, max_alleles: int, with_dosage: bool
) -> None:
    """Read variants [v0, v1) and write them into the store."""
    import zarr

    block = source.read_block(v0, v1, max_alleles, with_dosage)
    values = {
        "variant_id": block.variant_id,
        "variant_id_mask": np.isin(block.variant_id, ["", "."]),
        "variant_allele": block.variant_allele,
        "call_genotype": block.call_genotype,
        "call_genotype_mask": block.call_genotype < 0,
        "call_genotype_phased": block.call_genotype_phased,
    }
    if with_dosage and block.call_dosage is not None:
        values["call_dosage"] = block.call_dosage
    for name, value in values.items():
        zarr.open_array(store, path=name, mode="r+")[v0:v1] = value


def _write_store(
    gi: GenotypeInput, store: Path, workdir: Path, *, variants_chunk_size: int,
    samples_chunk_size: int | None, zarr_format: int, worker_processes: int, show_progress: bool,
) -> None:
    """Write a VCF Zarr store from a pgen or bgen input, one variant chunk per task."""

    metafile = str(workdir / "bgen.metafile")
    source = _open_source(gi, metafile)
    try:
        _write_from(source, gi, metafile, store, variants_chunk_size=variants_chunk_size,
                    samples_chunk_size=samples_chunk_size, zarr_format=zarr_format,
                    worker_processes=worker_processes, show_progress=show_progress)
    finally:
        source.close()


def _write_from(
    source: Any, gi: GenotypeInput, metafile: str, store: Path, *, variants_chunk_size: int,
    samples_chunk_size: int | None, zarr_format: int, worker_processes: int, show_progress: bool,
) -> None:
    import zarr
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    scan = source.scan()
    m, n = len(scan.variant_position), len(scan.sample_id)
    if m == 0 or n == 0:
        raise InputError(f"{gi.format} input {str(gi.path)!r} has {m} variants and {n} samples")
    check_variant_order(
        scan.variant_contig, scan.variant_position, np.array(scan.contig_id), source=str(gi.path)
    )
    vc = min(variants_chunk_size, m)
    sc = min(samples_chunk_size or _DEFAULT_SAMPLES_CHUNK, n)
    buffer_bytes = vc * n * 12
    try:
        import psutil

        if buffer_bytes > psutil.virtual_memory().available // 2:
            log.warning(
                "converting %s buffers %.1f GiB per variant chunk (%d variants x %d samples); "
                "lower variants_chunk_size if memory runs out",
                gi.path, buffer_bytes / 2**30, vc, n,
            )
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass

    from dqtl import __version__

    root = zarr.open_group(store, mode="w-", zarr_format=cast(Literal[2, 3], zarr_format))
    root.attrs.update({"vcf_zarr_version": "0.5", "source": f"dqtl-{__version__}"})
    fmt = zarr_format
    contig_dtype = np.int8 if len(scan.contig_id) < 128 else np.int32
    pos_dtype = np.int32 if scan.variant_position.max() < 2**31 else np.int64
    a = _create_array(root, "sample_id", ["samples"], (n,), (sc,), "T", fmt, "Sample IDs")
    a[:] = scan.sample_id.astype(object)
    k = len(scan.contig_id)
    a = _create_array(root, "contig_id", ["contigs"], (k,), (k,), "T", fmt, "Contig names")
    a[:] = np.array(scan.contig_id, dtype=object)
    a = _create_array(
        root, "variant_contig", ["variants"], (m,), (vc,), contig_dtype, fmt,
        "Contig/chromosome index for each variant",
    )
    a[:] = scan.variant_contig.astype(contig_dtype)
    a = _create_array(
        root, "variant_position", ["variants"], (m,), (vc,), pos_dtype, fmt,
        "The reference position (1-based)",
    )
    a[:] = scan.variant_position.astype(pos_dtype)
    _create_array(root, "variant_id", ["variants"], (m,), (vc,), "T", fmt, "Variant IDs")
    _create_array(root, "variant_id_mask", ["variants"], (m,), (vc,), bool, fmt, "ID is missing")
    _create_array(
        root, "variant_allele", ["variants", "alleles"], (m, scan.max_alleles),
        (vc, scan.max_alleles), "T", fmt, "List of the reference and alternate alleles",
    )
    gdims, gshape, gchunks = ["variants", "samples", "ploidy"], (m, n, 2), (vc, sc, 2)
    _create_array(root, "call_genotype", gdims, gshape, gchunks, np.int8, fmt, "Hard calls")
    _create_array(root, "call_genotype_mask", gdims, gshape, gchunks, bool, fmt, "Call < 0")
    _create_array(
        root, "call_genotype_phased", gdims[:2], (m, n), (vc, sc), bool, fmt, "Call is phased"
    )
    if not scan.has_dosage:
        log.info("%s has no dosages beyond its hard calls: call_dosage not written", gi.path)
    else:
        _create_array(
            root, "call_dosage", gdims[:2], (m, n), (vc, sc), np.float32, fmt,
            "Expected ALT (non-REF) allele count; NaN = missing",
        )

    starts = list(range(0, m, vc))
    args = [(str(store), s, min(s + vc, m), scan.max_alleles, scan.has_dosage) for s in starts]
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), disable=not show_progress, transient=False,
    )
    with progress:
        task = progress.add_task(f"{gi.format}2zarr", total=m)
        if worker_processes > 0:
            with concurrent.futures.ProcessPoolExecutor(
                worker_processes, initializer=_init_worker, initargs=(gi, metafile)
            ) as pool:
                futures = {pool.submit(_write_chunk_in_worker, *a): a for a in args}
                for fut in concurrent.futures.as_completed(futures):
                    fut.result()
                    progress.advance(task, futures[fut][2] - futures[fut][1])
        else:
            for a in args:
                _write_chunk(source, *a)
                progress.advance(task, a[2] - a[1])


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(output: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.work.", dir=output.parent) as tmp:
        yield Path(tmp)


def _check_output(output: Path, force: bool) -> None:
    if not output.exists() and not output.is_symlink():
        return
    if not force:
        raise InputError(
            f"output {str(output)!r} already exists: choose another path or pass force=True "
            "(--force) to replace it"
        )
    if output.is_dir() and any(output.iterdir()) and not is_zarr_store(output):
        raise InputError(
            f"output {str(output)!r} is a non-empty directory that is not a Zarr store; "
            "refusing to replace it even with force: choose another path"
        )


def _positive(name: str, value: Any, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def convert(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    format: str | None = None,
    variants_chunk_size: int = 10_000,
    samples_chunk_size: int | None = None,
    worker_processes: int = 0,
    show_progress: bool = True,
    zarr_format: int | None = None,
    force: bool = False,
) -> Path:
    """Convert VCF/BCF, PLINK 1, PLINK 2 or BGEN genotypes into a VCF Zarr store.

    Parameters
    ----------
    input : str or path-like
        A genotype file or the prefix its files share (see :func:`resolve_input`).
    output : str or path-like
        Directory of the Zarr store to write. It appears atomically (written beside it, then
        renamed) and is never left half-written.
    format : {"vcf", "plink", "pgen", "bgen"}, optional
        Input format; detected from the file names when unset.
    variants_chunk_size : int, default 10_000
        Variants per Zarr chunk.
    samples_chunk_size : int, optional
        Samples per Zarr chunk (default: 10,000, or all samples when fewer).
    worker_processes : int, default 0
        Worker processes (0 = convert in this process). With more than 0 the calling script
        needs an ``if __name__ == "__main__":`` guard.
    show_progress : bool, default True
        Show a progress bar on stderr.
    zarr_format : {2, 3}, optional
        Zarr format of the store (default 2, bio2zarr's default).
    force : bool, default False
        Replace an existing output store.

    Returns
    -------
    pathlib.Path
        The store written, with variables ``call_genotype`` (variants, samples, ploidy) int8,
        ``call_genotype_mask``, ``call_genotype_phased``, ``variant_contig``, ``contig_id``,
        ``variant_position``, ``variant_id``, ``variant_allele`` (REF first), ``sample_id`` and,
        where the input has dosages (PLINK 2 dosages, BGEN probabilities),
        ``call_dosage`` (variants, samples) float32 ALT dosage.

    Raises
    ------
    InputError
        Missing, malformed, unsorted or ambiguous input, bad options, or an existing output.

    Examples
    --------
    >>> from importlib.resources import files
    >>> import tempfile, pathlib
    >>> prefix = files("dqtl.data") / "geuvadis" / "geuvadis_ceu90_maf01"
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "geuvadis.vcz"
    >>> convert(str(prefix), out, format="pgen", show_progress=False).name
    'geuvadis.vcz'
    """
    gi = resolve_input(input, format=format)
    output = Path(output).expanduser()
    _positive("variants_chunk_size", variants_chunk_size)
    _positive("samples_chunk_size", samples_chunk_size, allow_none=True)
    _positive("worker_processes", worker_processes, allow_zero=True)
    if zarr_format not in (None, 2, 3):
        raise InputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    fmt = zarr_format or 2
    _check_output(output, force)
    if gi.format == "plink":
        _check_plink1(gi)
    elif gi.format == "vcf":
        _check_vcf(gi)
    t0 = time.perf_counter()
    log.info("converting %s (%s) to %s", gi.path, gi.format, output)
    with atomic_dir(output) as tmp, _workdir(output) as work:
        tmp.rmdir()  # the writers create the store directory themselves
        try:
            if gi.format == "vcf":
                from bio2zarr import vcf as b2z_vcf

                b2z_vcf.convert(
                    [str(gi.path)], str(tmp), variants_chunk_size=variants_chunk_size,
                    samples_chunk_size=samples_chunk_size, worker_processes=worker_processes,
                    show_progress=show_progress, icf_path=str(work / "icf"), zarr_format=fmt,
                )
            elif gi.format == "plink":
                from bio2zarr import plink as b2z_plink

                b2z_plink.convert(
                    str(gi.path)[: -len(".bed")], str(tmp),
                    variants_chunk_size=variants_chunk_size,
                    samples_chunk_size=samples_chunk_size, worker_processes=worker_processes,
                    show_progress=show_progress, zarr_format=fmt,
                )
            else:
                _write_store(
                    gi, tmp, work, variants_chunk_size=variants_chunk_size,
                    samples_chunk_size=samples_chunk_size, zarr_format=fmt,
                    worker_processes=worker_processes, show_progress=show_progress,
                )
        except InputError:
            raise
        except (ImportError, MemoryError):
            raise
        except Exception as exc:
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise InputError(
                f"could not convert {gi.format} input {str(gi.path)!r}: {msg}"
            ) from exc
        _stamp(tmp, gi)
    log.info("wrote %s in %.1f s", output, time.perf_counter() - t0)
    return output


def _source_signature(gi: GenotypeInput) -> dict[str, Any]:
    """Name, size and modification time of the input files (to recognise a cached store)."""
    paths = [gi.path, *(p for p in gi.files.values() if p is not None)]
    return {
        "format": gi.format,
        "files": [
            {"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in paths
        ],
    }


def _stamp(store: Path, gi: GenotypeInput) -> None:
    import zarr

    root = zarr.open_group(store, mode="r+")
    root.attrs["dqtl_source"] = _source_signature(gi)
