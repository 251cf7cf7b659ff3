"""Benchmark: variant IDs at biobank variant counts, whole ``dqtl cis`` processes, old beside new.

The cost of variant IDs grows with the variants, not the samples: a store of a few million
variants and few samples shows what a 10-million-variant, 10,000-sample study pays for them. One
variant carries a long indel-style ID (``--long-id`` characters, as long indels have): reading the
whole ``variant_id`` column as a fixed-width numpy ``str`` array costs ``4 x longest x variants``
bytes. ``--multiallelic-every K`` gives every K-th site a second ALT allele (a third allele column,
as a VCF with any multiallelic site has) and runs with ``--multiallelic drop``. Runs
``dqtl cis --mode permute`` (the results table names each gene's top variant) and
``--mode independent`` (the top variants looked up by ID) as users run them, with this checkout
and, with ``--dqtl-path DIR``, another one (e.g. ``git worktree add /tmp/old HEAD~3``), and
reports each process's wall time and peak RSS (``VmHWM``) side by side.

    python benchmarks/variant_ids.py --dqtl-path /tmp/old
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

log = logging.getLogger("dqtl.benchmarks")

def ensure_store(args: argparse.Namespace) -> dict[str, Path]:
    """The simulated study (cached): VCF Zarr store, BED and covariates; one long variant ID."""
    import numpy as np

    import dqtl
    from dqtl.simulation_files import write_simulation

    d = args.cache_dir / (f"variant_ids_v{args.variants}_s{args.samples}_g{args.genes}_l{args.long_id}"
                          + (f"_m{args.multiallelic_every}" if args.multiallelic_every else ""))
    files = {"zarr": d / "s.vcz", "bed": d / "s.expression.bed.gz", "covariates": d / "s.covariates.txt"}
    if all(f.exists() for f in files.values()):
        return files
    t0 = time.perf_counter()
    sim = dqtl.simulate(n_samples=args.samples, n_variants=args.variants, n_phenotypes=args.genes,
                        n_contigs=2, contig_length=250_000_000, n_covariates=3, seed=0,
                        variants_chunk_size=10_000)
    ids = np.asarray(sim["variant_id"].values, dtype=object)
    k = len(ids) // 3
    ids[k] = f"{ids[k]}{'ACGT' * (args.long_id // 4)}"[: max(args.long_id, len(ids[k]))]
    sim = sim.assign(variant_id=("variants", ids))
    if args.multiallelic_every:  # a second ALT allele at every K-th site: a third allele column
        al = np.asarray(sim["variant_allele"].values, dtype=object)
        third = np.full((len(al), 1), "", dtype=object)
        third[:: args.multiallelic_every, 0] = "T"
        al[:: args.multiallelic_every, 1] = "C"
        sim = sim.assign(variant_allele=(("variants", "alleles"), np.concatenate([al, third], axis=1)))
    write_simulation(sim, d, formats=("zarr", "bed", "covariates"), prefix="s")
    log.info("simulated %d variants x %d samples in %.0f s", args.variants, args.samples,
             time.perf_counter() - t0)
    return files


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", type=int, default=2_000_000)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--genes", type=int, default=300)
    p.add_argument("--long-id", type=int, default=300, help="characters of the one long variant ID")
    p.add_argument("--multiallelic-every", type=int, default=0,
                   help="K > 0: every K-th site gets a second ALT allele; the runs pass --multiallelic drop")
    p.add_argument("--permutations", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dqtl-path", default=None, help="another dqtl checkout to run beside this one")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "dqtl-benchmarks")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    files = ensure_store(args)
    out_dir = args.cache_dir / "run_variant_ids"
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = [("new", None)] + ([("old", args.dqtl_path)] if args.dqtl_path else [])
    rows = []
    for rep in range(args.repeats):
        for label, path in versions:  # alternating, so drift falls on both
            prefix = out_dir / label
            common = [str(files["zarr"]), str(files["bed"]), str(prefix), "--covariates", str(files["covariates"]),
                      "--permutations", str(args.permutations), "--seed", "1", "--no-progress",
                      *(["--multiallelic", "drop"] if args.multiallelic_every else [])]
            for mode, extra in (("permute", []),
                                ("independent", ["--cis-results", f"{prefix}.cis_qtl.txt.gz"])):
                r = C.run_dqtl_process(["-q", "cis", *common, "--mode", mode, *extra], path, out_dir)
                rows.append({"dqtl": label, "mode": mode, "repeat": rep, **r})
                log.info("%s %s: %.2f s, peak %.0f MiB", label, mode, r["process_wall_s"], r["peak_rss_mib"])
    import pandas as pd

    tab = pd.DataFrame(rows).groupby(["mode", "dqtl"])[["process_wall_s", "peak_rss_mib"]].median()
    print(tab.to_string())
    if args.dqtl_path:
        for mode in ("permute", "independent"):
            old, new = tab.loc[(mode, "old")], tab.loc[(mode, "new")]
            print(f"{mode}: wall new/old {new.process_wall_s / old.process_wall_s:.2f}, "
                  f"peak RSS new/old {new.peak_rss_mib / old.peak_rss_mib:.2f} "
                  f"({old.peak_rss_mib:.0f} -> {new.peak_rss_mib:.0f} MiB)")
        same = all(pd.read_csv(out_dir / f"new.{f}", sep="\t").equals(pd.read_csv(out_dir / f"old.{f}", sep="\t"))
                   for f in ("cis_qtl.txt.gz", "cis_independent_qtl.txt.gz"))
        print(f"old and new outputs identical: {same}")
    record = {"machine": C.machine_info(), "git": C.git_revision(), "args": {k: str(v) for k, v in vars(args).items()},
              "rows": rows}
    C.write_record(record, args.out or args.cache_dir / "variant_ids.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
