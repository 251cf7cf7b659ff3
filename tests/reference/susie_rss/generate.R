# Reference outputs of susieR 0.12.35 susie_rss() and coloc 5.2.3 coloc.susie() for dqtl's tests.
#
# Run from the repository root with R 4.2 (Debian: r-base-core r-cran-susier r-cran-data.table
# r-cran-ggplot2 r-cran-viridis; coloc 5.2.3 installed from its source tag v5.2.3):
#   Rscript tests/reference/susie_rss/generate.R
# Writes tests/reference/susie_rss/<case>/ and tests/reference/coloc_susie/<case>/.
suppressPackageStartupMessages({library(susieR); library(coloc); library(jsonlite)})
stopifnot(packageVersion("susieR") == "0.12.35", packageVersion("coloc") == "5.2.3")

fmt <- function(x) sprintf("%.17g", x)
write_vec <- function(df, path) {
  for (c in names(df)) if (is.double(df[[c]])) df[[c]] <- fmt(df[[c]])
  write.table(df, path, sep = "\t", quote = FALSE, row.names = FALSE)
}
write_mat <- function(m, path) {
  df <- data.frame(effect = seq_len(nrow(m)), m, check.names = FALSE)
  colnames(df) <- c("effect", paste0("v", seq_len(ncol(m))))
  write_vec(df, path)
}
# genotypes with LD: two haplotypes per sample from an AR(1) latent Gaussian (rho), thresholded
simulate_x <- function(n, p, rho, seed) {
  set.seed(seed)
  maf <- runif(p, 0.05, 0.5)
  hap <- function() {
    Z <- matrix(0, n, p)
    Z[, 1] <- rnorm(n)
    for (j in 2:p) Z[, j] <- rho * Z[, j - 1] + sqrt(1 - rho^2) * rnorm(n)
    sweep(Z, 2, qnorm(1 - maf), ">") * 1
  }
  X <- hap() + hap()
  X[, apply(X, 2, var) > 0]
}
zscores <- function(X, y) {
  u <- univariate_regression(X, y)
  list(bhat = u$betahat, shat = u$sebetahat, z = u$betahat / u$sebetahat)
}
write_fit <- function(fit, dir, meta) {
  write_vec(data.frame(pip = fit$pip), file.path(dir, "expected_pip.tsv"))
  write_mat(fit$alpha, file.path(dir, "expected_alpha.tsv"))
  write_mat(fit$mu, file.path(dir, "expected_mu.tsv"))
  write_mat(fit$mu2, file.path(dir, "expected_mu2.tsv"))
  write_mat(fit$lbf_variable, file.path(dir, "expected_lbf_variable.tsv"))
  write_vec(data.frame(V = fit$V, lbf = fit$lbf, KL = fit$KL), file.path(dir, "expected_effects.tsv"))
  write_vec(data.frame(elbo = fit$elbo), file.path(dir, "expected_elbo.tsv"))
  cs <- fit$sets
  if (length(cs$cs)) {
    write_vec(data.frame(cs = names(cs$cs),
                         variables = sapply(cs$cs, function(v) paste(v, collapse = ",")),
                         coverage = cs$coverage, min_abs_corr = cs$purity$min.abs.corr),
              file.path(dir, "expected_cs.tsv"))
  } else {
    write.table(data.frame(cs = character(), variables = character(), coverage = numeric(),
                           min_abs_corr = numeric()),
                file.path(dir, "expected_cs.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
  }
  meta$result <- list(sigma2 = fit$sigma2, niter = fit$niter, converged = fit$converged,
                      n_cs = length(cs$cs))
  meta$versions <- list(R = paste(R.version$major, R.version$minor, sep = "."),
                        susieR = as.character(packageVersion("susieR")))
  writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "case.json"))
}

## susie_rss cases -----------------------------------------------------------------------------
out <- "tests/reference/susie_rss"
shared <- "tests/reference/susie/two_causal_n500_p300_L10"
X1 <- as.matrix(read.delim(file.path(shared, "X.tsv"))[, -1])
y1 <- read.delim(file.path(shared, "y.tsv"))$y
X2 <- simulate_x(800, 250, 0.9, 11)
set.seed(12)
b2 <- rep(0, ncol(X2)); b2[c(40, 120, 200)] <- c(0.5, -0.45, 0.4)
y2 <- drop(X2 %*% b2 + rnorm(nrow(X2)))
gz <- gzfile(file.path(out, "X_ar1_n800.tsv.gz"), "w")
write.table(X2, gz, sep = "\t", quote = FALSE, row.names = FALSE, col.names = paste0("v", seq_len(ncol(X2))))
close(gz)

cases <- list(
  list(name = "z_n", X = "shared", call = "susie_rss(z, R = cor(X), n = 500, L = 10)"),
  list(name = "z_no_n", X = "shared", call = "susie_rss(z, R = cor(X), L = 10)"),
  list(name = "bhat_shat_var_y", X = "shared",
       call = "susie_rss(bhat = bhat, shat = shat, R = cor(X), n = 500, var_y = var(y), L = 10, estimate_residual_variance = TRUE)"),
  list(name = "ar1_three_causal", X = "ar1",
       call = "susie_rss(z, R = cor(X), n = 800, L = 10)")
)
for (cs in cases) {
  dir <- file.path(out, cs$name); dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  X <- if (cs$X == "shared") X1 else X2
  y <- if (cs$X == "shared") y1 else y2
  s <- zscores(X, y)
  z <- s$z; bhat <- s$bhat; shat <- s$shat
  R <- cor(X)
  fit <- suppressWarnings(eval(parse(text = cs$call)))
  write_vec(data.frame(z = z, bhat = bhat, shat = shat), file.path(dir, "sumstats.tsv"))
  write_fit(fit, dir, list(case = cs$name, call = cs$call, var_y = var(y), n = nrow(X),
                           X = if (cs$X == "shared") "../../susie/two_causal_n500_p300_L10/X.tsv"
                               else "../X_ar1_n800.tsv.gz",
                           R = "cor(X) (the tests use numpy.corrcoef of the same X)"))
}

## coloc.susie cases ---------------------------------------------------------------------------
out <- "tests/reference/coloc_susie"
X <- simulate_x(1000, 200, 0.9, 21)
gz <- gzfile(file.path(out, "X.tsv.gz"), "w")
write.table(X, gz, sep = "\t", quote = FALSE, row.names = FALSE, col.names = paste0("s", seq_len(ncol(X))))
close(gz)
R <- cor(X)
snp <- sprintf("s%03d", seq_len(ncol(X)))
dimnames(R) <- list(snp, snp)
ccases <- list(
  list(name = "shared_one_signal", seed = 31, b1 = c(`60` = 0.45), b2 = c(`60` = 0.35)),
  list(name = "two_signals_one_shared", seed = 32, b1 = c(`50` = 0.45, `150` = -0.4),
       b2 = c(`150` = 0.4, `100` = 0.4))
)
for (cc in ccases) {
  dir <- file.path(out, cc$name); dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  set.seed(cc$seed)
  mk <- function(b) {
    beta <- rep(0, ncol(X)); beta[as.integer(names(b))] <- b
    y <- drop(X %*% beta + rnorm(nrow(X)))
    u <- univariate_regression(X, y)
    list(beta = u$betahat, varbeta = u$sebetahat^2, snp = snp, position = seq_len(ncol(X)) * 1000,
         N = nrow(X), type = "quant", sdY = sd(y), LD = R)
  }
  D1 <- mk(cc$b1); D2 <- mk(cc$b2)
  res <- suppressWarnings(suppressMessages(coloc.susie(D1, D2)))
  for (k in 1:2) {
    D <- list(D1, D2)[[k]]
    write_vec(data.frame(snp = D$snp, position = D$position, beta = D$beta, varbeta = D$varbeta),
              file.path(dir, sprintf("dataset%d.tsv", k)))
  }
  write_vec(as.data.frame(res$summary), file.path(dir, "expected_summary.tsv"))
  write_vec(as.data.frame(res$results), file.path(dir, "expected_results.tsv"))
  meta <- list(case = cc$name, seed = cc$seed, call = "coloc.susie(D1, D2)  # p1 = p2 = 1e-4, p12 = 5e-6",
               causal1 = cc$b1, causal2 = cc$b2, N = nrow(X), type = "quant",
               LD = "cor(X), X.tsv.gz (the tests use numpy.corrcoef of the same X)",
               versions = list(R = paste(R.version$major, R.version$minor, sep = "."),
                               susieR = as.character(packageVersion("susieR")),
                               coloc = as.character(packageVersion("coloc"))))
  writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "case.json"))
}

## an individual-level susie() case of our own (into ../susie/, the layout of the shared cases) --
dir <- "tests/reference/susie/ar1_three_causal_n800_L10"
dir.create(dir, showWarnings = FALSE, recursive = TRUE)
fit <- susie(X2, y2, L = 10)
write_vec(data.frame(y = y2), file.path(dir, "y.tsv"))
write_fit(fit, dir, list(case = "ar1_three_causal_n800_L10", call = "susie(X, y, L = 10)",
                         n = nrow(X2), p = ncol(X2), causal_variables_1based = c(40, 120, 200)))
write_vec(data.frame(pip = fit$pip, coef = coef(fit)[-1]), file.path(dir, "expected_pip.tsv"))
meta <- fromJSON(file.path(dir, "case.json"))
meta$result$intercept <- fit$intercept
meta$files <- list(X = "../../susie_rss/X_ar1_n800.tsv.gz")
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "case.json"))

## a coloc.abf case of our own: quant (beta/varbeta, sdY estimated) x case-control (p-values) --
dir <- "tests/reference/coloc/cc_pvalues_sdY_estimated"
dir.create(dir, showWarnings = FALSE, recursive = TRUE)
set.seed(41)
maf <- runif(150, 0.05, 0.5)
Xc <- sapply(maf, function(f) rbinom(1500, 2, f))
yq <- drop(0.4 * Xc[, 70] + rnorm(1500, sd = 1.5))
uq <- univariate_regression(Xc, yq)
lp <- -1.5 + 0.6 * Xc[, 70]
cc <- rbinom(1500, 1, plogis(lp))
pc <- sapply(seq_len(ncol(Xc)), function(j)
  summary(glm(cc ~ Xc[, j], family = binomial))$coefficients[2, 4])
snp <- sprintf("rs%05d", seq_len(ncol(Xc)))
afq <- colMeans(Xc) / 2
D1 <- list(snp = snp, position = seq_len(ncol(Xc)) * 500, beta = uq$betahat,
           varbeta = uq$sebetahat^2, MAF = pmin(afq, 1 - afq), N = 1500, type = "quant")
D2 <- list(snp = snp, position = seq_len(ncol(Xc)) * 500, pvalues = pc, MAF = pmin(afq, 1 - afq),
           N = 1500, s = mean(cc), type = "cc")
res <- suppressWarnings(suppressMessages(coloc.abf(D1, D2)))
write_vec(data.frame(snp = snp, position = D1$position, beta = D1$beta, varbeta = D1$varbeta,
                     MAF = D1$MAF), file.path(dir, "dataset1.tsv"))
write_vec(data.frame(snp = snp, position = D2$position, pvalues = D2$pvalues, MAF = D2$MAF),
          file.path(dir, "dataset2.tsv"))
write_vec(as.data.frame(t(res$summary)), file.path(dir, "expected_summary.tsv"))
write_vec(as.data.frame(res$results), file.path(dir, "expected_results.tsv"))
meta <- list(method = "coloc", case = "cc_pvalues_sdY_estimated", seed = 41,
             description = paste("quant trait (beta/varbeta, sdY estimated from MAF and N) x",
                                 "case-control trait (p-values + MAF, s = case fraction), both",
                                 "causal at rs00070, n = 1500"),
             call = "coloc.abf(dataset1, dataset2)",
             dataset1 = list(type = "quant", N = 1500,
                             columns_used = c("snp", "position", "beta", "varbeta", "MAF")),
             dataset2 = list(type = "cc", N = 1500, s = mean(cc),
                             columns_used = c("snp", "position", "pvalues", "MAF")),
             versions = list(R = paste(R.version$major, R.version$minor, sep = "."),
                             coloc = as.character(packageVersion("coloc"))))
writeLines(toJSON(meta, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "case.json"))
