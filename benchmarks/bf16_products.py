"""The permutation kernel's products by window size: bfloat16 (oneDNN, AMX) against float32.

    python benchmarks/bf16_products.py                 # windows of 410, 4,100 and 10,000 variants
    python benchmarks/bf16_products.py --windows 4100 --permutations 10000

One thread (as each of dqtl's task threads runs), 500 samples, 8 covariates, hard calls with
linkage (runs of copied haplotypes), one phenotype. For each window size, in this process:

- ``sgemm``: numpy's float32 GEMM (v x n) @ (n x (P + 1)): the products of the float32 path;
- ``bf16 pair``: the bfloat16 product of the integer rows (v x (2n + 3r)) against the split
  phenotypes (the products of the bfloat16 path, ``dqtl.kernels.bf16.gemm_nt``);
- ``kernel float32`` / ``kernel bf16``: ``permutation_gene_kernel`` on the same window, each
  path (products, maxima, the float64 rechecks of the observed statistic and of the permutations
  near it), with its ``ResidualizedBlock`` built beforehand.

Printed as milliseconds (best of ``--repeats``) and ratios to ``sgemm``; the two kernels' results
are checked equal (top variant, r, hit count) and their permutation maxima within 5e-5. Also the
build of each path's rows (``ResidualizedBlock.build``, float32 residuals or integer rows), and how
each product scales over the machine's threads (``--threads``, default the cores this process
may use): one product per thread at once, as dqtl's task threads run them, against one alone (a
CPU whose threads share one AMX unit runs the bfloat16 products one at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _best(fn: Any, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _window(rng: np.random.Generator, v: int, n: int) -> np.ndarray:
    f = rng.uniform(0.05, 0.5, v)
    H = rng.random((v, 2 * n)) < f[:, None]
    for s in range(1, v):
        if rng.random() < 0.8:
            H[s] = np.where(rng.random(2 * n) < 0.9, H[s - 1], H[s])
    return (H[:, :n].astype(np.float64) + H[:, n:]).astype(np.float64)


def run(v: int, n: int, nperm: int, repeats: int) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from dqtl.association.permutation import GeneInput, PermutationSpec
    from dqtl.association.permutation_kernel import (
        PermutationBatches,
        QBasis,
        ResidualizedBlock,
        permutation_gene_kernel,
    )
    from dqtl.kernels import bf16
    from dqtl.kernels.linalg import Residualizer

    rng = np.random.default_rng(v)
    G = _window(rng, v, n)
    res = Residualizer.from_covariates(rng.standard_normal((n, 8)))
    y = 0.1 * G[v // 2] + rng.standard_normal(n)
    spec = PermutationSpec(nperm_min=nperm, nperm_max=nperm, seed=1)
    batches = PermutationBatches.build(np.array([rng.permutation(n) for _ in range(nperm)]), spec)
    gene = GeneInput(index=0, group=-1, y=y, sample_index=None, Q=res.Q, dof=res.dof, lo=0, hi=v)
    ok = np.ones(v, dtype=bool)
    out: dict[str, Any] = {"variants": v, "samples": n, "permutations": nperm}
    with threadpool_limits(1, user_api="blas"):
        b = batches.cols[0].shape[1]
        A32 = rng.standard_normal((v, n)).astype(np.float32)
        B32 = rng.standard_normal((n, b)).astype(np.float32)
        C = np.empty((v, b), np.float32)
        out["sgemm_ms"] = 1e3 * _best(lambda: np.matmul(A32, B32, out=C), repeats)
        G32 = G.astype(np.float32)  # the task threads' float32 hard calls
        means = G.mean(axis=1)
        out["build_float32_ms"] = 1e3 * _best(lambda: ResidualizedBlock.build(
            G32, ok, res.Q, res.dof, integer=False, means=means), repeats)
        out["build_integer_ms"] = 1e3 * _best(lambda: ResidualizedBlock.build(
            G32, ok, res.Q, res.dof, integer_rows=ok, means=means), repeats)
        f32 = ResidualizedBlock.build(G, ok, res.Q, res.dof, integer=False)
        low = ResidualizedBlock.build(G, ok, res.Q, res.dof, integer_rows=ok)
        runs = {"float32": f32}
        if low.low is not None:
            yc = (y - y.mean()) / np.linalg.norm(y - y.mean())
            hi, lo = bf16.split(yc)
            yhl = hi.astype(np.uint32) | (lo.astype(np.uint32) << 16)
            qb = QBasis.of(res.Q, yc)
            rows = batches.rows[0]
            out["bf16_pair_ms"] = 1e3 * _best(
                lambda: low.low.products(rows, yhl, yc.astype(np.float32), qb, C), repeats)  # type: ignore[union-attr]
            runs["bf16"] = low
        else:
            out["bf16"] = bf16.why_not()
        results = {}
        for name, prep in runs.items():
            out[f"kernel_{name}_ms"] = 1e3 * _best(
                lambda p=prep: permutation_gene_kernel(G, ok, gene, batches, spec, np.float64, prepared=p),
                repeats)
            results[name] = permutation_gene_kernel(G, ok, gene, batches, spec, np.float64, prepared=prep)
    if "bf16" in results:
        a, c = results["float32"], results["bf16"]
        r2 = a["r"] ** 2
        out["same"] = bool(a["top"] == c["top"] and a["r"] == c["r"]
                           and np.sum(a["r2_perm"] >= r2) == np.sum(c["r2_perm"] >= r2)
                           and np.allclose(a["r2_perm"], c["r2_perm"], rtol=5e-5))
    return out


def scaling(v: int, n: int, nperm: int, threads: int, repeats: int) -> dict[str, Any]:
    """Milliseconds per product of ``sgemm`` and ``bf16 pair`` (as :func:`run`'s) alone and with
    one product per thread on ``threads`` threads at once (best of ``repeats`` rounds of 5 each),
    and the scaling: products per second on all threads over one thread's."""
    import threading

    from threadpoolctl import threadpool_limits

    from dqtl.kernels import bf16

    rng = np.random.default_rng(0)
    k = 2 * n + 27
    A32, B32 = rng.standard_normal((v, n)).astype(np.float32), rng.standard_normal((n, nperm + 1)).astype(np.float32)
    jobs: dict[str, Any] = {"sgemm": lambda C: np.matmul(A32, B32, out=C)}
    if bf16.backend() is not None:
        A = bf16.to_bf16(rng.integers(-2, 3, (v, k)).astype(np.float32))
        Bt = bf16.to_bf16(rng.standard_normal((nperm + 1, k)))
        jobs["bf16 pair"] = lambda C: bf16.gemm_nt(A, Bt, C)
    out: dict[str, Any] = {"variants": v, "threads": threads}
    with threadpool_limits(1, user_api="blas"):
        for name, job in jobs.items():
            bufs = [np.empty((v, nperm + 1), np.float32) for _ in range(threads)]

            def rounds(i: int, job: Any = job, bufs: list[np.ndarray] = bufs) -> None:
                for _ in range(5):
                    job(bufs[i])

            one = _best(lambda: rounds(0), repeats) / 5

            def together(rounds: Any = rounds) -> None:
                ts = [threading.Thread(target=rounds, args=(i,)) for i in range(threads)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()

            many = _best(together, repeats) / 5
            out[name] = {"alone_ms": 1e3 * one, "together_ms": 1e3 * many, "scaling": threads * one / many}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", default="410,4100,10000")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--permutations", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0,
                   help="threads of the scaling check (default: the cores this process may use; 1: none)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    import os

    from dqtl.kernels import bf16

    threads = args.threads or len(os.sched_getaffinity(0))

    print(f"# bfloat16 products: {bf16.why_not()}")
    rows = [run(int(v), args.samples, args.permutations, args.repeats) for v in args.windows.split(",")]
    print("| variants | sgemm ms | bf16 pair ms | / sgemm | kernel float32 ms | / sgemm | kernel bf16 ms "
          "| / sgemm | bf16 / float32 kernel | same results |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        g = r["sgemm_ms"]
        pair, kb, kf = r.get("bf16_pair_ms", float("nan")), r.get("kernel_bf16_ms", float("nan")), r["kernel_float32_ms"]
        print(f"| {r['variants']:,} | {g:.1f} | {pair:.1f} | {pair / g:.2f} | {kf:.1f} | {kf / g:.2f} | {kb:.1f} "
              f"| {kb / g:.2f} | {kb / kf:.2f} | {r.get('same', '')} |")
    print("\n| variants | build float32 rows ms | build integer rows ms | integer / float32 |")
    print("| ---: | ---: | ---: | ---: |")
    for r in rows:
        bf, bi = r["build_float32_ms"], r["build_integer_ms"]
        print(f"| {r['variants']:,} | {bf:.1f} | {bi:.1f} | {bi / bf:.2f} |")
    scale = None
    if threads > 1:
        v = max(int(w) for w in args.windows.split(","))
        scale = scaling(v, args.samples, args.permutations, threads, args.repeats)
        print(f"\n| product ({v:,} variants) | alone ms | {threads} at once, ms each | scaling over {threads} threads |")
        print("| --- | ---: | ---: | ---: |")
        for name in ("sgemm", "bf16 pair"):
            if name in scale:
                x = scale[name]
                print(f"| {name} | {x['alone_ms']:.1f} | {x['together_ms']:.1f} | {x['scaling']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"bf16": bf16.why_not(), "rows": rows, "scaling": scale},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
