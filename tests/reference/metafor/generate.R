# metafor 3.8 references for dqtl meta (heterogeneous effects, pairs reported by 1 to 6 studies).
# The layout of the shared case homogeneous_k2to8 (copied here from shared/reference/metafor).
#   Rscript tests/reference/metafor/generate.R      (R 4.2, Debian r-cran-metafor)
suppressPackageStartupMessages(library(metafor))
out <- "tests/reference/metafor/heterogeneous_k1to6"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
set.seed(602)
rows <- list(); exp <- list()
for (p in 1:250) {
  k <- sample(1:6, 1)
  studies <- sort(sample(paste0("study", 1:6), k))
  tau <- if (p %% 3 == 0) 0 else runif(1, 0, 0.3)
  mu <- rnorm(1, 0, 0.2)
  n <- sample(200:3000, k, replace = TRUE)
  se <- 1 / sqrt(n) * runif(k, 0.8, 1.5)
  yi <- rnorm(k, mu, sqrt(tau^2 + se^2))
  pid <- sprintf("G%04d", p); vid <- sprintf("chr2_%d_C_T", 5000 + p)
  rows[[p]] <- data.frame(phenotype_id = pid, variant_id = vid, study = studies, slope = yi,
                          slope_se = se, n = n)
  fe <- rma.uni(yi = yi, sei = se, method = "FE")
  re <- rma.uni(yi = yi, sei = se, method = "DL")
  exp[[p]] <- data.frame(phenotype_id = pid, variant_id = vid, n_studies = k,
                         beta_fe = fe$beta[1], se_fe = fe$se, z_fe = fe$zval, pval_fe = fe$pval,
                         beta_re = re$beta[1], se_re = re$se, z_re = re$zval, pval_re = re$pval,
                         tau2 = re$tau2, q_het = fe$QE, pval_het = fe$QEp, i2 = re$I2)
}
fmt <- function(df) { for (c in names(df)) if (is.double(df[[c]])) df[[c]] <- sprintf("%.17g", df[[c]]); df }
write.table(fmt(do.call(rbind, rows)), file.path(out, "studies.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
write.table(fmt(do.call(rbind, exp)), file.path(out, "expected.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
writeLines(sprintf('{"case": "heterogeneous_k1to6", "seed": 602, "call": "rma.uni(yi, sei, method = FE | DL)", "versions": {"R": "%s", "metafor": "%s"}}',
                   R.version.string, packageVersion("metafor")), file.path(out, "case.json"))
