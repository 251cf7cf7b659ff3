"""Readers of the formats dqtl converts itself: PLINK 2 (pgenlib) and BGEN (cbgen).

Each source yields variant blocks of calls (and dosages) for the Zarr writer of
:mod:`dqtl.io.convert`. Allele convention: for BGEN the first allele is REF and the dosage counts
the other alleles (bgen-reader, sgkit and UK Biobank); for PLINK 2 the dosage counts the
non-REF alleles.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from dqtl.errors import InputError
from dqtl.io.genotype_inputs import (
    READ_BUFFER_BYTES,
    GenotypeInput,
    check_unique_samples,
    contig_codes,
    read_fam_like,
)

__all__ = ["PgenSource", "BgenSource"]

log = logging.getLogger(__name__)

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


class PgenSource:
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
        samples = read_fam_like(psam, psam=psam.suffix == ".psam")
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
        names, codes = contig_codes(chrom)
        return _Scan(samples, names, codes, pos, max(2, pv.get_max_allele_ct()), self._has_dosage())

    def _has_dosage(self) -> bool:
        """True if any dosage differs from its hard call (a fast pass, no decoding to Zarr)."""
        n = self.n_samples
        step = max(1, min(self.n_variants, READ_BUFFER_BYTES // (5 * n)))
        for a in range(0, self.n_variants, step):
            b = min(a + step, self.n_variants)
            hard = np.empty((b - a, n), dtype=np.int8)
            dose = np.empty((b - a, n), dtype=np.float32)
            try:
                self.reader.read_range(a, b, hard)
                self.reader.read_dosages_range(a, b, dose)
            except (RuntimeError, ValueError) as exc:
                raise self._damaged(exc, a, b) from None
            if (dose != hard).any():  # missing is -9 in both
                return True
        return False

    def _damaged(self, exc: Exception, a: int, b: int) -> InputError:
        msg = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return InputError(
            f"PLINK 2 file {str(self.gi.path)!r}: variants {a + 1}-{b} cannot be read (pgenlib: "
            f"{msg.strip()}); the file is truncated or damaged: copy it again or rewrite it "
            "('plink2 --pfile PREFIX --make-pgen --out NEW')")

    def read_block(self, v0: int, v1: int, max_alleles: int, with_dosage: bool) -> _Block:
        try:
            return self._read_block(v0, v1, max_alleles, with_dosage)
        except (RuntimeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise self._damaged(exc, v0, v1) from None

    def _read_block(self, v0: int, v1: int, max_alleles: int, with_dosage: bool) -> _Block:
        m, n, pv = v1 - v0, self.n_samples, self.pvar
        ids = np.array([pv.get_variant_id(i).decode() for i in range(v0, v1)], dtype=object)
        alleles = np.full((m, max_alleles), "", dtype=object)
        for j, i in enumerate(range(v0, v1)):
            for k in range(pv.get_allele_ct(i)):
                alleles[j, k] = pv.get_allele_code(i, k).decode()
        gt = np.empty((m, n, 2), dtype=np.int8)
        phased = np.zeros((m, n), dtype=bool)
        step = max(1, min(m, READ_BUFFER_BYTES // (8 * n)))
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
    check_unique_samples(ids, sample or gi.path)
    return ids


def check_bgen_layout(path: Any) -> None:
    """Walk a BGEN file's header and every variant block's lengths (no genotype decoding) and
    check that each lies inside the file: a truncated or corrupt file is one clear error here
    instead of a crash in the native reader."""
    import mmap
    import struct

    name = str(path)
    size = os.path.getsize(path)
    if size < 24:
        raise InputError(f"BGEN {name!r} is truncated ({size} bytes; not even a header)")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        def u32(at: int) -> int:
            if at + 4 > size:
                raise EOFError
            return int(struct.unpack_from("<I", m, at)[0])

        def u16(at: int) -> int:
            if at + 2 > size:
                raise EOFError
            return int(struct.unpack_from("<H", m, at)[0])

        n_var, done = 0, 0
        try:
            offset = u32(0)
            lh = u32(4)
            n_var, n_samples = u32(8), u32(12)
            flags = u32(4 + lh - 4)
            layout = (flags >> 2) & 0xF
            compressed = flags & 3
            at = offset + 4
            for done in range(n_var):  # noqa: B007  (done: the variants walked so far)
                if layout == 1:
                    at += 4
                for _ in range(3):  # id, rsid, chromosome
                    at += 2 + u16(at)
                at += 4  # position
                k = u16(at) if layout == 2 else 2
                at += 2 if layout == 2 else 0
                for _ in range(k):
                    at += 4 + u32(at)
                at += 6 * n_samples if layout == 1 and not compressed else 4 + u32(at)
                if at > size:
                    raise EOFError
        except EOFError:
            raise InputError(
                f"BGEN {name!r} is truncated or corrupt: its variant blocks run past the end of the "
                f"file ({size} bytes) at variant {done + 1} of {n_var}; copy or export it again"
            ) from None


class BgenSource:
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
        check_bgen_layout(gi.path)  # native code must never see a truncated or corrupt layout
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
        names, codes = contig_codes(np.concatenate(chrom))
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
