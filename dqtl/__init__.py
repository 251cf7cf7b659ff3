"""dqtl: Dask-distributed, out-of-core eQTL mapping on VCF Zarr genotypes."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily: no import-time side effects or cost)
_EXPORTS: dict[str, str] = {
    "InputError": "dqtl.errors",
    # ingestion
    "convert": "dqtl.io.convert",
    "open_genotypes": "dqtl.io.genotypes",
    "load_genotypes": "dqtl.io.convert",
    "contig_names": "dqtl.io.genotypes",
    "normalize_contig": "dqtl.io.genotypes",
    "read_phenotype_bed": "dqtl.io.phenotypes",
    "read_covariates": "dqtl.io.phenotypes",
    "align_samples": "dqtl.io.samples",
    "to_tensorqtl_pairs": "dqtl.io.results",
    # the study plan (shared by every method), compute, variables
    "StudyPlan": "dqtl.study",
    "plan_study": "dqtl.study",
    "show_progress": "dqtl.compute",
    "VARIABLES": "dqtl.variables",
    "Residualizer": "dqtl.kernels.linalg",
    # association
    "map_cis_nominal": "dqtl.association.cis",
    "run_cis_nominal": "dqtl.workflows",
    "run_cis_permute": "dqtl.workflows",
    "run_cis_independent": "dqtl.workflows",
    "map_cis_permutations": "dqtl.association.permutation",
    "PermutationSpec": "dqtl.association.permutation",
    "map_cis_independent": "dqtl.association.independent",
    "plan_trans": "dqtl.association.trans",
    "map_trans": "dqtl.association.trans",
    "run_trans": "dqtl.association.trans",
    # fine-mapping and colocalization
    "susie": "dqtl.finemap.susie",
    "susie_rss": "dqtl.finemap.susie",
    "susie_suff_stat": "dqtl.finemap.susie",
    "coloc_abf": "dqtl.finemap.coloc",
    "coloc_susie": "dqtl.finemap.coloc",
    "map_finemap": "dqtl.finemap.mapping",
    "read_gwas_sumstats": "dqtl.io.sumstats",
    # meta-analysis
    "meta_analysis": "dqtl.kernels.meta",
    "meta_pairs": "dqtl.meta",
    "run_meta": "dqtl.meta",
    # genotype x interaction
    "map_cis_interaction": "dqtl.association.interaction",
    "map_cis_interaction_permute": "dqtl.association.interaction",
    "read_interaction": "dqtl.io.phenotypes",
    # multiple testing
    "bh": "dqtl.multitest.bh",
    "qvalue": "dqtl.multitest.qvalue",
    "QValueResult": "dqtl.multitest.qvalue",
    "beta_approx_pval": "dqtl.multitest.beta",
    # preprocessing
    "tmm_norm_factors": "dqtl.preprocess.normalize",
    "effective_lib_size": "dqtl.preprocess.normalize",
    "cpm": "dqtl.preprocess.normalize",
    "inverse_normal_transform": "dqtl.preprocess.rank_normalize",
    "quantile_normalize": "dqtl.preprocess.rank_normalize",
    "prepare_expression": "dqtl.preprocess.expression",
    "write_phenotype_bed": "dqtl.preprocess.expression",
    "read_expression_matrix": "dqtl.io.expression",
    "read_gene_annotation": "dqtl.io.annotation",
    "write_qc_report": "dqtl.preprocess.qc",
    "simulate_counts": "dqtl.simulate_counts",
    "variant_qc": "dqtl.preprocess.genotype_qc",
    "sample_qc": "dqtl.preprocess.genotype_qc",
    "hwe_exact_p": "dqtl.preprocess.genotype_qc",
    "genotype_pcs": "dqtl.preprocess.pca",
    "project_samples": "dqtl.preprocess.pca",
    "ld_prune": "dqtl.preprocess.pca",
    "peer_factors": "dqtl.preprocess.factors",
    "expression_pcs": "dqtl.preprocess.factors",
    "gtex_n_factors": "dqtl.preprocess.factors",
    "choose_n_factors_by_discovery": "dqtl.preprocess.factor_discovery",
    "combine_covariates": "dqtl.preprocess.factors",
    # simulation
    "simulate": "dqtl.simulation",
    "write_simulation": "dqtl.simulation_files",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dqtl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
