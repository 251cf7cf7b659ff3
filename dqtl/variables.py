"""One registry of the variables dqtl reads and writes: name, dims, dtype kinds, doc.

Inputs follow the sgkit / VCF Zarr data model (the prefix names the leading dimension);
results use spelled-out names. :func:`validate` checks a Dataset against the registry and
raises one :class:`~dqtl.errors.InputError` naming the input, the variable, what was expected
and what was found. The file writers map result names to the columns tensorQTL users parse
(:data:`dqtl.io.results.TENSORQTL_COLUMNS`); nothing else renames.

>>> spec = VARIABLES["call_genotype"]
>>> spec.dims, spec.kinds
(('variants', 'samples', 'ploidy'), 'iu')
>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"sample_id": ("samples", np.array(["a", "b"]))})
>>> validate(ds, ["sample_id"], source="genotypes")
>>> validate(ds, ["variant_position"], source="genotypes")
Traceback (most recent call last):
...
dqtl.errors.InputError: genotypes has no variable variant_position (variants,): 1-based position of each variant
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import xarray as xr

from dqtl.errors import InputError

__all__ = ["Variable", "VARIABLES", "validate", "GENOTYPE_REQUIRED", "GENOTYPE_OPTIONAL",
           "string_kinds"]

#: dtype kinds of string variables: fixed-width, bytes, object (python str) and numpy StringDType
string_kinds = "OSUT"


@dataclass(frozen=True)
class Variable:
    """One registered variable.

    Attributes
    ----------
    name : str
    dims : tuple of str
        Dimension names, in order.
    kinds : str
        Accepted numpy dtype kinds (``"iu"`` integers, ``"f"`` floats, :data:`string_kinds`
        strings, ``"b"`` bool).
    doc : str
        One line for messages and documentation.
    """

    name: str
    dims: tuple[str, ...]
    kinds: str
    doc: str

    def check(self, ds: xr.Dataset, *, source: str) -> None:
        """Raise :class:`InputError` unless ``ds[name]`` has the registered dims and dtype kind."""
        if self.name not in ds.variables:
            raise InputError(f"{source} has no variable {self.name} {_dims(self.dims)}: {self.doc}")
        var = ds[self.name]
        if tuple(var.dims) != self.dims:
            raise InputError(
                f"{source}: variable {self.name} has dims {_dims(var.dims)}, expected "
                f"{_dims(self.dims)} ({self.doc})"
            )
        if var.dtype.kind not in self.kinds:
            raise InputError(
                f"{source}: variable {self.name} has dtype {var.dtype}, expected {_kind_name(self.kinds)}"
            )


def _dims(dims: Iterable[object]) -> str:
    d = tuple(str(x) for x in dims)
    return "(" + ", ".join(d) + ("," if len(d) == 1 else "") + ")"


def _kind_name(kinds: str) -> str:
    if set(kinds) <= set(string_kinds):
        return "strings"
    if set(kinds) <= set("iu"):
        return "integers"
    if kinds == "f":
        return "floats"
    if set(kinds) <= set("iuf"):
        return "numbers"
    return f"dtype kind in {kinds!r}"


_ALL = [
    # ---- genotypes (VCF Zarr / sgkit model)
    Variable("call_genotype", ("variants", "samples", "ploidy"), "iu",
             "allele indices of each call, -1 missing, -2 not present (mixed ploidy)"),
    Variable("call_genotype_mask", ("variants", "samples", "ploidy"), "b", "True where an allele is missing"),
    Variable("call_dosage", ("variants", "samples"), "f", "ALT allele dosage, NaN missing"),
    Variable("variant_contig", ("variants",), "iu", "index of each variant's contig into contig_id"),
    Variable("variant_position", ("variants",), "iu", "1-based position of each variant"),
    Variable("variant_id", ("variants",), string_kinds, "variant identifier"),
    Variable("variant_allele", ("variants", "alleles"), string_kinds, "alleles, REF first"),
    Variable("contig_id", ("contigs",), string_kinds, "contig names"),
    Variable("sample_id", ("samples",), string_kinds, "sample identifiers, unique"),
    # ---- phenotypes
    Variable("phenotype_id", ("phenotypes",), string_kinds, "phenotype identifiers, unique"),
    Variable("phenotype_contig", ("phenotypes",), string_kinds, "contig of each phenotype (chr1 and 1 match)"),
    Variable("phenotype_start", ("phenotypes",), "iu", "BED start, 0-based"),
    Variable("phenotype_end", ("phenotypes",), "iu", "BED end, half-open (start + 1 marks a TSS)"),
    Variable("phenotype_values", ("phenotypes", "samples"), "f", "normalized expression, NaN missing"),
    Variable("phenotype_group", ("phenotypes",), string_kinds, "group of each phenotype (e.g. gene of an isoform)"),
    Variable("phenotype_strand", ("phenotypes",), string_kinds, "strand, + or -"),
    # ---- covariates
    Variable("covariate_id", ("covariates",), string_kinds, "covariate names"),
    Variable("covariate_values", ("samples", "covariates"), "f", "covariate values, finite"),
    # ---- results (spelled out; files use tensorQTL's columns, see dqtl.io.results)
    Variable("p_value", ("pairs",), "f", "nominal two-sided p-value of the genotype effect"),
    Variable("t_value", ("pairs",), "f", "t statistic of the genotype effect"),
    Variable("beta", ("pairs",), "f", "effect of one ALT allele on the phenotype"),
    Variable("beta_se", ("pairs",), "f", "standard error of beta"),
    Variable("af", ("pairs",), "f", "ALT allele frequency in the analysed samples"),
    Variable("ma_samples", ("pairs",), "iu", "samples carrying the minor allele"),
    Variable("ma_count", ("pairs",), "iu", "copies of the minor allele"),
    Variable("start_distance", ("pairs",), "iu", "variant position minus (phenotype start + 1)"),
    Variable("end_distance", ("pairs",), "iu", "variant position minus phenotype end"),
    Variable("q_value", ("pairs",), "f", "Benjamini-Hochberg or Storey q-value"),
]

#: name -> :class:`Variable`
VARIABLES: dict[str, Variable] = {v.name: v for v in _ALL}

#: the variables every genotype Dataset must have, besides ``call_genotype`` or ``call_dosage``
GENOTYPE_REQUIRED = ("variant_contig", "variant_position", "contig_id", "sample_id")
#: checked when present
GENOTYPE_OPTIONAL = ("call_genotype", "call_dosage", "variant_id", "variant_allele")


def validate(ds: xr.Dataset, names: Iterable[str], *, source: str) -> None:
    """Check that ``ds`` has each registered variable of ``names`` with its dims and dtype kind.

    Raises
    ------
    InputError
        Naming ``source``, the variable, what was expected and what was found.
    """
    for name in names:
        VARIABLES[name].check(ds, source=source)
