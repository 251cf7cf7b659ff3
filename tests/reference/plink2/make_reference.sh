#!/bin/sh
# Regenerate the plink2 reference outputs of the bundled GEUVADIS genotypes (see README.md).
# Needs Debian's plink2 (apt-get install plink2; PLINK v2.00a3.5 AVX2 (9 Aug 2022)).
set -eu
cd "$(dirname "$0")"
PFILE=../../../dqtl/data/geuvadis/geuvadis_ceu90_maf01
plink2 --pfile "$PFILE" --hardy --freq --missing --out geuvadis_ceu90_maf01
plink2 --pfile "$PFILE" --het --out geuvadis_ceu90_maf01.het_run
mv geuvadis_ceu90_maf01.het_run.het geuvadis_ceu90_maf01.het
for f in geuvadis_ceu90_maf01.hardy geuvadis_ceu90_maf01.afreq geuvadis_ceu90_maf01.vmiss \
         geuvadis_ceu90_maf01.smiss geuvadis_ceu90_maf01.het; do
    gzip -n -f -9 "$f"
done
