#!/usr/bin/env bash
# GEUVADIS end to end on the bundled data (90 CEU samples): hidden factors -> one covariate file
# (known covariates + genotype PCs + factors) -> cis permutations -> independent signals -> trans,
# with the plots and HTML reports the commands write.   bash examples/geuvadis_end_to_end.sh OUTDIR
set -euo pipefail
out=${1:-geuvadis_results}
data=$(python -c "import dqtl, os; print(os.path.join(os.path.dirname(dqtl.__file__), 'data', 'geuvadis'))")
geno=$data/geuvadis_ceu90_maf01            # PLINK 2 prefix (converted once, then cached)
expr=$data/expression.bed.gz
mkdir -p "$out"
dqtl factors "$expr" "$out/factors.txt" --method peer --n-factors 3 --covariates "$data/covariates.txt" --seed 1
dqtl covariates "$out/covariates.txt" --known "$data/covariates.txt" --factors "$out/factors.txt" \
    --genotype-pcs 3 --genotypes "$geno" --seed 1
dqtl cis "$geno" "$expr" "$out/geuvadis" --covariates "$out/covariates.txt" --mode permute \
    --permutations 1000 --seed 1
dqtl cis "$geno" "$expr" "$out/geuvadis" --covariates "$out/covariates.txt" --mode independent \
    --cis-results "$out/geuvadis.cis_qtl.txt.gz" --permutations 1000 --seed 1
dqtl trans "$geno" "$expr" "$out/geuvadis" --covariates "$out/covariates.txt"
echo "results, plots and reports in $out:"; ls "$out"
