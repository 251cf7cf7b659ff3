"""Regenerate the BGEN test fixtures in this folder (not run by the test suite).

Needs the ``bgen`` package (PyPI ``bgen``, a BGEN writer; not a dqtl dependency)::

    pip install --target /tmp/bgenpkg bgen
    PYTHONPATH=/tmp/bgenpkg python tests/data/genotypes/make_bgen_fixtures.py

Writes

- ``geuvadis_subset.bgen``: the first 20 chr1 and 20 chr2 variants of the bundled GEUVADIS
  genotypes (``dqtl/data/geuvadis/geuvadis_ceu90_maf01.pvar/.pgen``), 90 samples with sample IDs
  embedded, layout 2, zlib, 8-bit, hard-call probabilities (P = 0 or 1) so dosages equal the
  hard calls; first allele = REF, second = ALT; missing calls stay missing.
- ``mixed.bgen`` + ``mixed.sample``: 4 samples, no embedded IDs (IDs only in the .sample file),
  layout 2, zstd, 16-bit probabilities: soft unphased biallelic with one missing sample, phased
  biallelic, unphased triallelic diploid, and a variant with per-sample ploidy [1, 2, 2, 2].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pgenlib
from bgen import BgenWriter

HERE = Path(__file__).resolve().parent
GEUV = HERE.parents[2] / "dqtl" / "data" / "geuvadis" / "geuvadis_ceu90_maf01"


def geuvadis_subset() -> None:
    pvar = pgenlib.PvarReader(str(GEUV.with_suffix(".pvar")).encode())
    samples = [line.split()[0] for line in GEUV.with_suffix(".psam").read_text().splitlines()[1:]]
    reader = pgenlib.PgenReader(str(GEUV.with_suffix(".pgen")).encode(), pvar=pvar)
    chrom = np.array([pvar.get_variant_chrom(i).decode() for i in range(pvar.get_variant_ct())])
    idx = np.r_[np.flatnonzero(chrom == "1")[:20], np.flatnonzero(chrom == "2")[:20]]
    n = len(samples)
    with BgenWriter(HERE / "geuvadis_subset.bgen", n, samples=samples, compression="zlib") as out:
        for i in idx:
            geno = np.empty(n, dtype=np.int8)
            reader.read(int(i), geno)
            probs = np.zeros((n, 3), dtype=np.float64)
            ok = geno >= 0
            probs[np.flatnonzero(ok), geno[ok]] = 1.0
            probs[~ok] = np.nan
            vid = pvar.get_variant_id(int(i)).decode()
            alleles = [pvar.get_allele_code(int(i), 0).decode(), pvar.get_allele_code(int(i), 1).decode()]
            out.add_variant(vid, vid, chrom[i], pvar.get_variant_pos(int(i)), alleles, probs)


def mixed() -> None:
    samples = ["s1", "s2", "s3", "s4"]
    (HERE / "mixed.sample").write_text(
        "ID_1 ID_2 missing sex\n0 0 0 D\n" + "".join(f"{s} {s} 0 1\n" for s in samples)
    )
    nan = np.nan
    with BgenWriter(HERE / "mixed.bgen", 4, compression="zstd") as out:
        # soft unphased biallelic; s3 missing
        p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [nan, nan, nan], [0.0, 1.0, 0.0]])
        out.add_variant("v1", "rs1", "chr1", 100, ["A", "G"], p, bit_depth=16)
        # phased biallelic: per haplotype [P(allele 1), P(allele 2)]
        p = np.array(
            [[1.0, 0.0, 0.0, 1.0], [0.2, 0.8, 0.9, 0.1], [0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]]
        )
        out.add_variant("v2", "rs2", "chr1", 200, ["C", "T"], p, phased=True, bit_depth=16)
        # unphased triallelic diploid; order 11, 12, 22, 13, 23, 33
        p = np.array(
            [
                [1.0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0.9, 0.1, 0],
                [0, 0.5, 0.5, 0, 0, 0],
                [0, 0, 0, 0, 0, 1.0],
            ]
        )
        out.add_variant("v3", ".", "chr1", 300, ["A", "C", "T"], p, bit_depth=16)
        # mixed ploidy: s1 haploid (2 probabilities), the rest diploid
        p = np.array([[0.25, 0.75, nan], [1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
        ploidy = np.array([1, 2, 2, 2], dtype=np.uint8)
        out.add_variant("v4", "rs4", "chrX", 50, ["G", "A"], p, ploidy=ploidy, bit_depth=16)


if __name__ == "__main__":
    geuvadis_subset()
    mixed()
