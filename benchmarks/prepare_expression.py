"""Benchmark: TMM + inverse normal transform on a simulated 20k genes x 10k samples RNA-seq matrix.

Phases, each timed with its peak resident memory (RSS sampled every 20 ms by a thread):

* ``argsort`` (baseline, same process): ``np.argsort(cpm, axis=1)`` on the same float64 matrix,
  i.e. the bare sort that any rank-based transform of each gene across samples must do (best of
  3 runs, and the first run; every other phase runs once, on the machine's threads and again
  on one thread);
* ``tmm``: :func:`dqtl.preprocess.normalize.tmm_norm_factors` on the counts (all genes);
* ``cpm``: :func:`dqtl.preprocess.normalize.cpm` with the TMM factors;
* ``int``: :func:`dqtl.preprocess.normalize.inverse_normal_transform` of each gene across samples
  (``van_der_waerden``), in blocks of 2,000 genes;
* ``pipeline``: :func:`dqtl.preprocess.expression.prepare_expression` end to end without QC
  (gene filters + TMM factors in dask column blocks, then CPM + INT in blocks of genes in a
  thread pool, BED assembly).

Sizes: ``--samples`` (comma list) columns of one simulation with the largest sample count.

    python benchmarks/prepare_expression.py                        # 20k x 1k,2.5k,5k,10k
    python benchmarks/prepare_expression.py --genes 2000 --samples 200,500 --no-results   # smoke

Writes ``benchmarks/prepare_expression.json``, ``benchmarks/prepare_expression.png`` and (unless
``--no-results``) the ``## prepare-expression`` section of ``benchmarks/RESULTS.md`` (only that
section is replaced; the others are left as they are).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil

BENCH = Path(__file__).resolve().parent
SECTION = "## prepare-expression"

log = logging.getLogger("dqtl.benchmarks.prepare_expression")


class PeakRSS:
    """Sample this process's RSS in a thread; ``peak`` in MiB over the ``with`` block."""

    def __init__(self, interval: float = 0.02) -> None:
        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self.proc.memory_info().rss / 2**20
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss / 2**20)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """(result, seconds, peak RSS MiB, RSS before MiB)."""
    gc.collect()
    before = psutil.Process().memory_info().rss / 2**20
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        out = fn()
        sec = time.perf_counter() - t0
    return out, sec, rss.peak, before


def int_blocks(x: np.ndarray, block: int = 2000) -> np.ndarray:
    from dqtl.preprocess.rank_normalize import inverse_normal_transform

    out = np.empty(x.shape, dtype=np.float64)
    for i in range(0, x.shape[0], block):
        out[i:i + block] = inverse_normal_transform(x[i:i + block], axis=1, offset="van_der_waerden")
    return out


def run_size(counts: Any, tpm: Any, annotation: Any, n: int) -> dict[str, Any]:
    import dask

    from dqtl.preprocess.expression import prepare_expression
    from dqtl.preprocess.normalize import cpm, tmm_norm_factors

    c = counts.iloc[:, :n]
    t = tpm.iloc[:, :n]
    x = np.ascontiguousarray(c.to_numpy())
    row: dict[str, Any] = {"genes": x.shape[0], "samples": n}
    row["load_1min"] = os.getloadavg()[0]
    # first touch of fresh memory is slow on some VMs (~2 s per GiB here) and would land on
    # whichever phase allocates first: touch as much as the phases below use, once, untimed
    warm = np.ones(4 * x.size)
    del warm
    with dask.config.set(num_workers=1):  # one thread: the kernels alone
        nf1, row["tmm_1t_s"], _, _ = timed(lambda: tmm_norm_factors(x))
        vals1, row["cpm_1t_s"], _, _ = timed(lambda: cpm(x, norm_factors=nf1))
        _, row["int_1t_s"], _, _ = timed(partial(int_blocks, vals1))
    del vals1
    nf, row["tmm_s"], row["tmm_peak_mib"], base = timed(lambda: tmm_norm_factors(x))
    assert np.array_equal(nf, nf1)
    vals, row["cpm_s"], row["cpm_peak_mib"], _ = timed(lambda: cpm(x, norm_factors=nf))
    # argsort: the first run allocates its output afresh (as every phase above does); best of 3
    runs = [timed(partial(np.argsort, vals, axis=1))[1:3] for _ in range(3)]
    row["argsort_first_s"] = runs[0][0]
    row["argsort_s"], row["argsort_peak_mib"] = min(b[0] for b in runs), max(b[1] for b in runs)
    z, row["int_s"], row["int_peak_mib"], _ = timed(partial(int_blocks, vals))
    assert np.isfinite(z).all()
    z = vals = None  # free them before the pipeline
    res, row["pipeline_s"], row["pipeline_peak_mib"], pbase = timed(
        lambda: prepare_expression(c, tpm=t, annotation=annotation, run_qc=False))
    row["pipeline_genes_kept"] = len(res.bed)
    del res
    row["rss_before_mib"] = round(base, 1)
    row["rss_before_pipeline_mib"] = round(pbase, 1)
    row["tmm_int_s"] = row["tmm_s"] + row["cpm_s"] + row["int_s"]
    row["tmm_int_1t_s"] = row["tmm_1t_s"] + row["cpm_1t_s"] + row["int_1t_s"]
    row["tmm_int_1t_over_argsort"] = row["tmm_int_1t_s"] / row["argsort_s"]
    row["int_over_argsort"] = row["int_s"] / row["argsort_s"]
    row["tmm_int_over_argsort"] = row["tmm_int_s"] / row["argsort_s"]
    row["pipeline_over_argsort"] = row["pipeline_s"] / row["argsort_s"]
    log.info("%s", json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    return row


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["samples"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("argsort_s", "baseline: np.argsort (genes x samples, axis=1)"),
                       ("tmm_s", "TMM factors"), ("cpm_s", "CPM"), ("int_s", "inverse normal transform"),
                       ("tmm_int_s", "TMM + CPM + INT"), ("pipeline_s", "prepare_expression (no QC)")):
        a1.plot(n, [r[key] for r in rows], marker="o", label=label)
    a1.set_xlabel("samples")
    a1.set_ylabel("seconds")
    a1.set_title(f"{rows[0]['genes']:,} genes, 2 cores")
    a1.legend(fontsize=7, frameon=False)
    for key, label in (("argsort_peak_mib", "argsort"), ("int_peak_mib", "INT"),
                       ("pipeline_peak_mib", "prepare_expression")):
        a2.plot(n, [r[key] / 1024 for r in rows], marker="o", label=label)
    a2.plot(n, [r["genes"] * r["samples"] * 8 / 2**30 for r in rows], ls="--", color="0.5",
            label="one float64 matrix")
    a2.set_xlabel("samples")
    a2.set_ylabel("peak RSS of the process (GiB)")
    a2.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_section(record: dict[str, Any], fig_name: str, previous: dict[str, Any] | None = None) -> str:
    rows = record["rows"]
    m = record["machine"]
    cores = m["cores"]
    lines = [
        SECTION,
        "",
        f"`python benchmarks/prepare_expression.py` ({record['date']}; {m['cpu']}, "
        f"{cores} cores, {m['memory_gib']} GiB; numpy {m['numpy']}, scipy {m['scipy']}, "
        f"dask {m['dask']}). Counts simulated by `dqtl.simulate_counts.simulate_counts("
        f"{record['genes']}, {max(r['samples'] for r in rows)}, seed={record['seed']})` "
        f"({record['simulate_s']:.0f} s, not timed below); smaller sizes are the first columns. "
        "TMM: edgeR-exact factors on all genes; CPM with effective library sizes; INT: average "
        "ranks, r/(n+1), per gene across samples (blocks of 2,000 genes). Baseline: "
        "`np.argsort(cpm, axis=1)` on the same float64 matrix in the same process, single-threaded "
        "(numpy), best of 3 ('first' = its first run). Before the timed phases of each size the process "
        "touches 4 matrices' worth of memory once (first-touch page faults cost ~2 s per GiB on this "
        "VM and would otherwise land on whichever phase allocates first). TMM, CPM and INT "
        f"run on in-memory input in a local thread pool ({cores} threads); the '1 thread' columns "
        "are the same calls under `dask.config.set(num_workers=1)` (identical numbers, asserted). "
        "`prepare_expression` = GTEx filters + TMM + CPM + INT + BED assembly, no sample QC. Peak "
        "RSS is the whole process (the counts, TPM and annotation are already resident: see "
        "'RSS before'); 'load' is the 1-minute load average when the size started.",
        "",
        "| genes | samples | load | TMM s | CPM s | INT s | TMM+CPM+INT s | argsort s (first) "
        "| **TMM+CPM+INT / argsort** | 1 thread: TMM+CPM+INT s | 1 thread / argsort "
        "| prepare_expression s | / argsort | RSS before GiB | peak RSS INT GiB "
        "| peak RSS prepare_expression GiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['genes']:,} | {r['samples']:,} | {r.get('load_1min', float('nan')):.1f} | "
            f"{r['tmm_s']:.1f} | {r['cpm_s']:.1f} | {r['int_s']:.1f} | {r['tmm_int_s']:.1f} | "
            f"{r['argsort_s']:.1f} ({r['argsort_first_s']:.1f}) | **{r['tmm_int_over_argsort']:.2f}** | "
            f"{r['tmm_int_1t_s']:.1f} | {r['tmm_int_1t_over_argsort']:.2f} | {r['pipeline_s']:.1f} | "
            f"{r['pipeline_over_argsort']:.2f} | {r['rss_before_mib'] / 1024:.1f} | "
            f"{r['int_peak_mib'] / 1024:.1f} | {r['pipeline_peak_mib'] / 1024:.1f} |"
        )
    if previous:
        old = {r["samples"]: r for r in previous["rows"]}
        lines += [
            "",
            f"Old beside new, same machine, same session ({previous.get('label', 'old')} run just "
            "before; each ratio is against the argsort of its own run):",
            "",
            "| samples | TMM s old / new | CPM s old / new | INT s old / new | TMM+CPM+INT / argsort old "
            "| new | prepare_expression / argsort old | new |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            o = old.get(r["samples"])
            if o is None:
                continue
            lines.append(
                f"| {r['samples']:,} | {o['tmm_s']:.1f} / {r['tmm_s']:.1f} | {o['cpm_s']:.1f} / "
                f"{r['cpm_s']:.1f} | {o['int_s']:.1f} / {r['int_s']:.1f} | {o['tmm_int_over_argsort']:.2f} "
                f"| **{r['tmm_int_over_argsort']:.2f}** | {o['pipeline_over_argsort']:.2f} | "
                f"{r['pipeline_over_argsort']:.2f} |"
            )
    big = rows[-1]
    lines += [
        "",
        f"At {big['genes']:,} x {big['samples']:,}: TMM + CPM + INT take "
        f"{big['tmm_int_over_argsort']:.2f}x the argsort ({big['tmm_int_1t_over_argsort']:.2f}x on "
        "one thread). TMM factors: per block of 8 samples, M and A of all genes at once, the trimmed "
        "genes by exact order statistics (a sort per row and the tie groups at the two bounds, the "
        "same genes as R's average ranks), and correctly rounded sums of all the block's samples in "
        "one pass (`kernels.stats.exact_sums`, = `math.fsum`); columns read in transposed "
        "slabs. INT: one argsort per gene; genes without ties or NaN share one vector of normal "
        "scores, tied values get theirs from their average rank. `prepare_expression` holds the "
        "inputs, one float64 output of the expressed genes and a few blocks: its peak is "
        f"{(big['pipeline_peak_mib'] - big['rss_before_pipeline_mib']) / 1024:.1f} GiB above the "
        f"resident inputs for a {big['pipeline_genes_kept'] * big['samples'] * 8 / 2**30:.1f} GiB "
        "output.",
        "",
        f"![prepare-expression timings]({fig_name})",
        "",
    ]
    return "\n".join(lines)


def update_results(text: str, path: Path) -> None:
    """Replace (or append) only the ``## prepare-expression`` section of RESULTS.md."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if SECTION in old.splitlines():
        lines = old.splitlines()
        i = lines.index(SECTION)
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        new = "\n".join(lines[:i] + text.rstrip("\n").splitlines() + ([""] + lines[j:] if j < len(lines) else [])) + "\n"
    else:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--samples", default="1000,2500,5000,10000", help="comma-separated sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=BENCH / "prepare_expression.json")
    p.add_argument("--figure", type=Path, default=BENCH / "prepare_expression.png")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    p.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--previous", type=Path, default=None,
                   help="JSON record of an earlier run (e.g. the previous code) shown old beside new")
    p.add_argument("--render-only", action="store_true",
                   help="only rewrite the RESULTS.md section from the existing --out JSON")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = sorted(int(s) for s in args.samples.split(","))
    previous = json.loads(args.previous.read_text()) if args.previous else None
    if args.render_only:
        update_results(results_section(json.loads(args.out.read_text()), args.figure.name, previous),
                       args.results)
        return

    import dask
    import scipy

    from dqtl.simulate_counts import simulate_counts

    t0 = time.perf_counter()
    sim = simulate_counts(args.genes, sizes[-1], seed=args.seed)
    simulate_s = time.perf_counter() - t0
    log.info("simulated %d x %d in %.1f s", args.genes, sizes[-1], simulate_s)
    counts, tpm, annotation = sim.counts, sim.tpm, sim.annotation
    del sim
    rows = [run_size(counts, tpm, annotation, n) for n in sizes]
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "genes": args.genes,
        "seed": args.seed,
        "simulate_s": simulate_s,
        "machine": {"cpu": cpu, "cores": len(os.sched_getaffinity(0)),
                    "memory_gib": round(psutil.virtual_memory().total / 2**30),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "scipy": scipy.__version__, "dask": dask.__version__},
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    figure(rows, args.figure)
    if not args.no_results:
        update_results(results_section(record, args.figure.name, previous), args.results)
    log.info("wrote %s, %s%s", args.out, args.figure, "" if args.no_results else f", {args.results}")


if __name__ == "__main__":
    main()
