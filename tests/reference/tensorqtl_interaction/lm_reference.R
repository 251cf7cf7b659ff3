# R lm() of y ~ covariates + g + i + g:i for the top pair of every gene in tensorQTL's interaction
# top table (geuvadis.cis_qtl_top_assoc.txt.gz), on the bundled GEUVADIS files; genotypes read
# from the VCF (ALT dosage, missing calls mean-imputed per variant over the 90 samples).
#   Rscript tests/reference/tensorqtl_interaction/lm_reference.R
data <- "dqtl/data/geuvadis"
out <- "tests/reference/tensorqtl_interaction/lm_top_pairs.tsv"
vcf <- read.delim(gzfile(file.path(data, "geuvadis_ceu90_maf01.vcf.gz")), comment.char = "",
                  skip = sum(startsWith(readLines(gzfile(file.path(data, "geuvadis_ceu90_maf01.vcf.gz")), n = 200), "##")),
                  check.names = FALSE, colClasses = "character")
samples <- colnames(vcf)[10:ncol(vcf)]
dosage <- function(gt) {
  a <- ifelse(gt %in% c("./.", ".|."), NA,
              (substr(gt, 1, 1) == "1") + (substr(gt, 3, 3) == "1"))
  a[is.na(a)] <- mean(a, na.rm = TRUE)
  a
}
bed <- read.delim(gzfile(file.path(data, "expression.bed.gz")), check.names = FALSE)
cov <- read.delim(file.path(data, "covariates_without_cov1.txt"), row.names = 1, check.names = FALSE)
inter <- read.delim(file.path(data, "interaction_cov1.txt"), header = FALSE, row.names = 1)
top <- read.delim(gzfile("tests/reference/tensorqtl_interaction/geuvadis.cis_qtl_top_assoc.txt.gz"))
C <- t(as.matrix(cov[, samples]))
i <- inter[samples, 1]
rows <- lapply(seq_len(nrow(top)), function(r) {
  y <- as.numeric(bed[bed$gene_id == top$phenotype_id[r], samples])
  g <- dosage(unlist(vcf[vcf$ID == top$variant_id[r], samples]))
  fit <- summary(lm(y ~ C + g + i + g:i))$coefficients
  data.frame(phenotype_id = top$phenotype_id[r], variant_id = top$variant_id[r],
             b_g = fit["g", 1], b_g_se = fit["g", 2], b_i = fit["i", 1], b_gi = fit["g:i", 1],
             b_gi_se = fit["g:i", 2], pval_gi = fit["g:i", 4])
})
res <- do.call(rbind, rows)
for (c in names(res)[-(1:2)]) res[[c]] <- sprintf("%.17g", res[[c]])
write.table(res, out, sep = "\t", quote = FALSE, row.names = FALSE)
