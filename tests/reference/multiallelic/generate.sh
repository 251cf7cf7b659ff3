#!/usr/bin/env bash
# Reference for `--multiallelic split`: a small VCF with multiallelic sites (GT and per-ALT DS,
# Number=A) and its split made by bcftools (Debian bcftools 1.16): `bcftools norm -m -any`.
# Run from this folder: bash generate.sh
set -euo pipefail
python3 - <<'PY'
import random
random.seed(7)
n = 24
alts = {3: "T,G", 8: "C,T,A", 12: "G,A", 17: "AT,C"}
lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000000>",
         '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
         '##FORMAT=<ID=DS,Number=A,Type=Float,Description="ALT dosage">',
         "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
         + "\t".join(f"s{i}" for i in range(n))]
for v in range(20):
    alt = alts.get(v, random.choice("ACGT".replace("A", "")) if v % 2 else "A")
    ref = "C" if "C" not in alt.split(",") else "G"
    k = len(alt.split(","))
    cells = []
    for s in range(n):
        if random.random() < 0.05:
            cells.append("./.:" + ",".join(["."] * k))
            continue
        a, b = (random.choices(range(k + 1), weights=[3] + [1] * k)[0] for _ in range(2))
        ds = [str((a == j) + (b == j)) for j in range(1, k + 1)]
        cells.append(f"{a}/{b}:" + ",".join(ds))
    lines.append(f"chr1\t{1000 + 100 * v}\tv{v}\t{ref}\t{alt}\t.\tPASS\t.\tGT:DS\t" + "\t".join(cells))
open("multi.vcf", "w").write("\n".join(lines) + "\n")
PY
bcftools norm -m -any multi.vcf -o split.vcf 2>norm.log
bcftools --version | head -1 > bcftools_version.txt
