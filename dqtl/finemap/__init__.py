"""From eQTL to complex trait: colocalization (coloc's ABF) and SuSiE fine-mapping kernels."""
