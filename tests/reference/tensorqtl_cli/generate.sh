#!/usr/bin/env bash
# Reference for `dqtl tensorqtl` (the drop-in): tensorQTL 1.0.10's own command line (CPU torch,
# R qvalue through rpy2) on the bundled GEUVADIS data, in the four modes the drop-in test runs.
# Writes here: manifest.json (every file each command wrote, with its columns and row count) and
# the small outputs (gene-level tables, independent signals, significant pairs, trans pairs).
# The nominal pairs themselves are not copied: ../tensorqtl/geuvadis.cis_qtl_pairs.parquet holds
# the same pairs (tensorQTL's API, same code path).
# Run from the repository root with tensorQTL's virtualenv:
#   TQ_PYTHON=/work/tqvenv/bin/python bash tests/reference/tensorqtl_cli/generate.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=$(cd "$here/../../../dqtl/data/geuvadis" && pwd)
py=${TQ_PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
G=$data/geuvadis_ceu90_maf01; P=$data/expression.bed.gz; C=$data/covariates.txt
cd "$work"
mkdir out
tq() { echo "+ tensorqtl $*" >&2; "$py" -m tensorqtl "$@" > "log.$(echo "$*" | md5sum | cut -c1-8).txt" 2>&1; }
tq "$G" "$P" tq --mode cis --covariates "$C" --permutations 1000 --seed 7 -o out
tq "$G" "$P" tq --mode cis_nominal --covariates "$C" --cis_output out/tq.cis_qtl.txt.gz -o out
tq "$G" "$P" tq --mode cis_independent --covariates "$C" --cis_output out/tq.cis_qtl.txt.gz \
   --permutations 1000 --seed 7 -o out
tq "$G" "$P" tq --mode trans --covariates "$C" -o out
"$py" - "$work/out" "$here" <<'PY'
import json, os, sys, shutil
import pandas as pd
out, here = sys.argv[1], sys.argv[2]
manifest = {}
for f in sorted(os.listdir(out)):
    p = os.path.join(out, f)
    if f.endswith(".parquet"):
        df = pd.read_parquet(p)
        manifest[f] = {"columns": list(df.columns), "rows": len(df)}
    elif f.endswith(".txt.gz"):
        df = pd.read_csv(p, sep="\t")
        manifest[f] = {"columns": list(df.columns), "rows": len(df)}
    else:
        manifest[f] = {}
import importlib.metadata as md
manifest["_versions"] = {"tensorqtl": md.version("tensorqtl"), "torch": md.version("torch")}
json.dump(manifest, open(os.path.join(here, "manifest.json"), "w"), indent=1)
for f in ["tq.cis_qtl.txt.gz", "tq.cis_independent_qtl.txt.gz", "tq.cis_qtl.signif_pairs.parquet",
          "tq.trans_qtl_pairs.parquet"]:
    shutil.copy(os.path.join(out, f), os.path.join(here, f))
PY
