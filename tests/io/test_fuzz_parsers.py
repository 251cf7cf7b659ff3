"""Fuzzing the text parsers: whatever the bytes, a clean result or one clear error (InputError,
FileNotFoundError), never a traceback of another kind. Brief runs (a few dozen examples per parser)
so the suite stays short; raise ``DQTL_FUZZ_EXAMPLES`` to fuzz longer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqtl.errors import InputError

EXAMPLES = int(os.environ.get("DQTL_FUZZ_EXAMPLES", "40"))

# table-shaped text: fields from awkward tokens, tabs, ragged rows, headers
TOKENS = st.sampled_from(["", "0", "1", "-1", "2.5", "1e400", "nan", "NA", "inf", "-inf", "abc", "4O",
                          "chr1", "1", "X", "gene1", "s1", "s2", "S1", "#chr", "start", "end",
                          "gene_id", "id", "phenotype_id", "sample", "chromosome", "base_pair_location",
                          "effect_allele", "other_allele", "beta", "standard_error", "p_value", "A", "C",
                          "G", "T", "+", "-", "\u00e9", "\"q\"", " ", "#", "1.0", "0.5", "variant_id",
                          "context", "gene", "transcript", "exon"])
ROW = st.lists(TOKENS, min_size=0, max_size=7).map("\t".join)
TABLE = st.lists(ROW, min_size=0, max_size=8).map("\n".join)
RAW = st.binary(max_size=200)
TEXT = st.one_of(TABLE, TABLE.map(lambda t: t + "\n"), RAW)

OK = (InputError, FileNotFoundError)


def _write(data: str | bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return Path(name)


def _parsers():
    from dqtl.cli.cis import read_phenotype_groups
    from dqtl.contexts import read_contexts
    from dqtl.io.annotation import read_gene_annotation
    from dqtl.io.expression import read_expression_matrix
    from dqtl.io.phenotypes import read_covariates, read_interaction, read_phenotype_bed
    from dqtl.io.sumstats import read_gwas_sumstats, read_ld_matrix

    return {
        "phenotype_bed": (read_phenotype_bed, ".bed"),
        "covariates": (read_covariates, ".txt"),
        "expression_gct": (read_expression_matrix, ".gct"),
        "expression_tsv": (read_expression_matrix, ".tsv"),
        "annotation": (read_gene_annotation, ".tsv"),
        "annotation_gtf": (read_gene_annotation, ".gtf"),
        "phenotype_groups": (read_phenotype_groups, ".txt"),
        "sumstats": (read_gwas_sumstats, ".tsv"),
        "ld_matrix": (read_ld_matrix, ".tsv"),
        "interaction": (read_interaction, ".txt"),
        "contexts": (read_contexts, ".txt"),
    }


@pytest.mark.parametrize("parser", sorted(_parsers()))
def test_parser__clean_result_or_one_clear_error(parser):
    fn, suffix = _parsers()[parser]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(TEXT)
    def run(data):
        path = _write(data, suffix)
        try:
            fn(str(path))
        except OK:
            pass
        finally:
            path.unlink()

    run()
