"""Other ways to run the bfloat16 permutation products, measured against the one dqtl uses.

    python benchmarks/product_paths.py                  # windows of 410 and 4,100 variants
    python benchmarks/product_paths.py --windows 4100 --rounds 100

dqtl's bfloat16 path (``dqtl.kernels.bf16.gemm_nt``: oneDNN's BLAS-like ``dnnl_gemm_bf16bf16f32``)
writes the (variants x permutations) products, then numpy scales each variant's row by
``1 / ||P g||`` and takes the block maxima of ``|.|`` (a max and a min pass). This script runs,
on one thread, on random integer rows and split phenotypes of the kernel's shape (K = 2 x 500 + 27):

- ``gemm_api``: that path (the product, the scaling pass, the block maxima);
- ``primitive``: what dqtl runs, ``dqtl.kernels.bf16.gemm_nt`` (oneDNN's matmul primitive,
  ``brg:avx512_core_amx`` here, its row count given per call), then the same numpy passes;
- ``fused``: the matmul primitive in the transposed layout (permutations x variants), the
  per-variant scale and ``|.|`` fused as post-ops (a binary multiply broadcast over columns, an
  eltwise abs: brgemm does not fuse a per-row broadcast), then one row maximum per permutation.

The three are timed interleaved (``--rounds`` rounds of one call each, medians and 10th
percentiles: the AMX products' speed drifts with the host within a minute, so back-to-back blocks
of calls mislead) and their permutation maxima checked equal. Then the products two threads run
at once, as dqtl's two task threads do: bfloat16 + bfloat16, float32 + float32 (numpy's sgemm)
and bfloat16 + float32, each against its time alone.

oneDNN's matmul primitive is reached through its C API with ctypes (the library of the
``onednn-cpu-gomp`` wheel that dqtl loads); the enum values are oneDNN 3.x's.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import threading
import time
from typing import Any

import numpy as np

_ARG_POST_OP0_SRC1 = 32768 | 2  # DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1
_BINARY_MUL, _ELTWISE_ABS = 0x1FFF1, 0x24


class _Fused:
    """The transposed product (permutations x variants) with the per-variant scale and ``|.|`` as
    post-ops: a oneDNN matmul primitive for fixed operands, made with dqtl's own descriptors
    (``dqtl.kernels.bf16``: ``_desc``, ``_check``, its engine)."""

    def __init__(self, A: np.ndarray, Z: np.ndarray, s: np.ndarray, D: np.ndarray) -> None:
        from dqtl.kernels import bf16

        engine = bf16._engine()
        if engine is None:
            raise SystemExit("no oneDNN matmul primitive here (DQTL_BF16_PRIMITIVE=0?)")
        lib, v, k, b = bf16._STATE["lib"], A.shape[0], A.shape[1], Z.shape[0]
        src, wei = bf16._desc(lib, b, k, bf16._DT_BF16, k, 1), bf16._desc(lib, k, v, bf16._DT_BF16, 1, k)
        dst, scale = bf16._desc(lib, b, v, bf16._DT_F32, v, 1), bf16._desc(lib, 1, v, bf16._DT_F32, v, 1)
        attr, po, pd = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        bf16._check(lib.dnnl_primitive_attr_create(ctypes.byref(attr)), "attr")
        bf16._check(lib.dnnl_post_ops_create(ctypes.byref(po)), "post-ops")
        bf16._check(lib.dnnl_post_ops_append_binary(po, _BINARY_MUL, scale), "binary post-op")
        bf16._check(lib.dnnl_post_ops_append_eltwise(po, _ELTWISE_ABS, ctypes.c_float(0.0), ctypes.c_float(0.0)),
                    "eltwise post-op")
        bf16._check(lib.dnnl_primitive_attr_set_post_ops(attr, po), "set post-ops")
        bf16._check(lib.dnnl_matmul_primitive_desc_create(ctypes.byref(pd), engine, src, wei, None, dst, attr),
                    "matmul desc")
        self.prim, self.stream = ctypes.c_void_p(), ctypes.c_void_p()
        bf16._check(lib.dnnl_primitive_create(ctypes.byref(self.prim), pd), "primitive")
        bf16._check(lib.dnnl_stream_create(ctypes.byref(self.stream), engine, 1), "stream")
        mems = []
        for d, x in ((src, Z), (wei, A), (dst, D), (scale, s)):
            m = ctypes.c_void_p()
            bf16._check(lib.dnnl_memory_create(ctypes.byref(m), d, engine, ctypes.c_void_p(x.ctypes.data)), "memory")
            mems.append(m)
        Arg = bf16._ExecArg
        self.args = (Arg * 4)(Arg(bf16._ARG_SRC, mems[0]), Arg(bf16._ARG_WEIGHTS, mems[1]),
                              Arg(bf16._ARG_DST, mems[2]), Arg(_ARG_POST_OP0_SRC1, mems[3]))
        self.lib, self.keep = lib, (A, Z, s, D)

    def run(self) -> None:
        from dqtl.kernels import bf16

        bf16._check(self.lib.dnnl_primitive_execute(self.prim, self.stream, 4, self.args), "execute")
        bf16._check(self.lib.dnnl_stream_wait(self.stream), "wait")


def _operands(rng: np.random.Generator, v: int, k: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def bits(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)

    A = bits(rng.integers(-2, 3, (v, k)).astype(np.float32))  # integer rows (exact in bfloat16)
    Z = bits(rng.standard_normal((b, k)))  # split phenotypes, one permutation per row
    s = (1.0 / rng.uniform(5.0, 30.0, v)).astype(np.float32)  # 1 / ||P g||
    return A, Z, s


def paths(v: int, k: int, b: int, rounds: int) -> dict[str, Any]:
    from dqtl.kernels import bf16

    if bf16.backend() is None:
        raise SystemExit(f"no bfloat16 products here: {bf16.why_not()}")
    rng = np.random.default_rng(v)
    A, Z, s = _operands(rng, v, k, b)
    nb = -(-v // 64)
    C = np.zeros((nb * 64, b), np.float32)  # padded to whole blocks of 64 rows (zeros), as dqtl's
    bf16._one_thread()

    def maxima() -> np.ndarray:
        C[:v] *= s[:, None]
        blocks = C.reshape(nb, 64, b)
        return np.maximum(blocks.max(axis=1), -blocks.min(axis=1)).max(axis=0)

    layout = bf16._layout(A, Z, C[:v])

    def gemm_api() -> np.ndarray:  # gemm_nt's fallback, the BLAS-like call
        bf16._gemm_blas_like(A, Z, C[:v], *layout)
        return maxima()

    def primitive() -> np.ndarray:  # what dqtl runs
        bf16.gemm_nt(A, Z, C[:v])
        return maxima()

    D = np.empty((b, v), np.float32)
    fused_product = _Fused(A, Z, s, D)

    def fused() -> np.ndarray:
        fused_product.run()
        return D.max(axis=1)

    fns = {"gemm_api": gemm_api, "primitive": primitive, "fused": fused}
    ref = gemm_api()
    equal = {k_: bool(np.array_equal(f(), ref)) for k_, f in fns.items()}
    times: dict[str, list[float]] = {k_: [] for k_ in fns}
    for _ in range(rounds):
        for k_, f in fns.items():
            t = time.perf_counter()
            f()
            times[k_].append(time.perf_counter() - t)
    row: dict[str, Any] = {"variants": v, "K": k, "permutations": b, "rounds": rounds, "maxima_equal": equal,
                           "products": bf16.why_not()}
    for k_, ts in times.items():
        row[f"{k_}_ms_median"] = round(1e3 * float(np.median(ts)), 3)
        row[f"{k_}_ms_p10"] = round(1e3 * float(np.percentile(ts, 10)), 3)
    return row


def concurrent(v: int, k: int, b: int, seconds: float) -> dict[str, Any]:
    """ms per product of each thread, alone and two at once (bfloat16 and/or float32)."""
    from threadpoolctl import threadpool_limits

    from dqtl.kernels import bf16

    threadpool_limits(1, user_api="blas")
    rng = np.random.default_rng(1)
    ops = [_operands(rng, v, k, b) for _ in range(2)]
    out = [np.empty((v, b), np.float32) for _ in range(2)]
    G = [rng.standard_normal((v, (k - 27) // 2)).astype(np.float32) for _ in range(2)]
    Y = [rng.standard_normal(((k - 27) // 2, b)).astype(np.float32) for _ in range(2)]

    def loop(kind: str, i: int, res: list[float]) -> None:
        if kind == "bf16":
            bf16._one_thread()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            if kind == "bf16":
                bf16.gemm_nt(ops[i][0], ops[i][1], out[i])
            else:
                np.matmul(G[i], Y[i], out=out[i])
            n += 1
        res[i] = (time.perf_counter() - t0) / n * 1e3

    def run(kinds: list[str]) -> list[float]:
        res = [0.0, 0.0]
        ts = [threading.Thread(target=loop, args=(kd, i, res)) for i, kd in enumerate(kinds)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return [round(x, 3) for x in res[: len(kinds)]]

    return {"variants": v, "bf16 alone": run(["bf16"])[0], "float32 alone": run(["f32"])[0],
            "bf16 + bf16": run(["bf16", "bf16"]), "float32 + float32": run(["f32", "f32"]),
            "bf16 + float32": run(["bf16", "f32"])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", default="410,4100")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--covariate-columns", type=int, default=9, help="basis columns r (K = 2 n + 3 r)")
    p.add_argument("--permutations", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--seconds", type=float, default=1.5, help="per concurrency measurement")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--system-malloc", action="store_true",
                   help="keep glibc's allocator defaults (the dqtl command tunes them: dqtl.cli.main.tune_malloc)")
    args = p.parse_args()
    if not args.system_malloc:
        from dqtl.cli.main import tune_malloc

        tune_malloc()
    k, b = 2 * args.samples + 3 * args.covariate_columns, args.permutations + 1
    rows: list[dict[str, Any]] = []
    for v in (int(x) for x in args.windows.split(",")):
        r = paths(v, k, b, args.rounds)
        print(json.dumps(r))
        c = concurrent(v, k, b, args.seconds)
        print(json.dumps(c))
        rows += [r, c]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
