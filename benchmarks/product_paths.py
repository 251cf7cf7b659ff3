"""Other ways to run the bfloat16 permutation products, measured against the one dqtl uses.

    python benchmarks/product_paths.py                  # windows of 410 and 4,100 variants
    python benchmarks/product_paths.py --windows 4100 --rounds 100

dqtl's bfloat16 path (``dqtl.kernels.bf16.gemm_nt``: oneDNN's BLAS-like ``dnnl_gemm_bf16bf16f32``)
writes the (variants x permutations) products, then numpy scales each variant's row by
``1 / ||P g||`` and takes the block maxima of ``|.|`` (a max and a min pass). This script runs,
on one thread, on random integer rows and split phenotypes of the kernel's shape (K = 2 x 500 + 27):

- ``gemm_api``: that path (the product, the scaling pass, the block maxima);
- ``primitive``: oneDNN's matmul primitive (``brg:avx512_core_amx``), created once for the shape,
  on the same operands, then the same numpy passes;
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

_BF16, _F32 = 2, 3  # dnnl_data_type_t
_ARG_SRC, _ARG_WEIGHTS, _ARG_DST = 1, 33, 17
_ARG_POST_OP0_SRC1 = 32768 | 2  # DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1
_BINARY_MUL, _ELTWISE_ABS = 0x1FFF1, 0x24


class _Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


class _Dnnl:
    """The few oneDNN C API calls a matmul primitive needs."""

    def __init__(self) -> None:
        from dqtl.kernels import bf16

        if bf16.backend() is None:
            raise SystemExit(f"no bfloat16 products here: {bf16.why_not()}")
        self.lib = bf16._STATE["lib"]
        self.engine = ctypes.c_void_p()
        self._ok(self.lib.dnnl_engine_create(ctypes.byref(self.engine), 1, 0), "engine")  # dnnl_cpu
        self.stream = ctypes.c_void_p()
        self._ok(self.lib.dnnl_stream_create(ctypes.byref(self.stream), self.engine, 1), "stream")
        self.keep: list[Any] = []

    @staticmethod
    def _ok(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"oneDNN {what}: status {status}")

    def desc(self, dims: tuple[int, ...], dtype: int, strides: tuple[int, ...]) -> ctypes.c_void_p:
        d = ctypes.c_void_p()
        arr = ctypes.c_int64 * 12
        self._ok(self.lib.dnnl_memory_desc_create_with_strides(ctypes.byref(d), len(dims), arr(*dims), dtype,
                                                               arr(*strides)), "memory desc")
        return d

    def memory(self, desc: ctypes.c_void_p, array: np.ndarray) -> ctypes.c_void_p:
        m = ctypes.c_void_p()
        self._ok(self.lib.dnnl_memory_create(ctypes.byref(m), desc, self.engine, ctypes.c_void_p(array.ctypes.data)),
                 "memory")
        self.keep.append(array)
        return m

    def matmul(self, src: Any, wei: Any, dst: Any, scale: Any = None) -> ctypes.c_void_p:
        attr = ctypes.c_void_p(None)
        if scale is not None:
            attr = ctypes.c_void_p()
            self._ok(self.lib.dnnl_primitive_attr_create(ctypes.byref(attr)), "attr")
            po = ctypes.c_void_p()
            self._ok(self.lib.dnnl_post_ops_create(ctypes.byref(po)), "post-ops")
            self._ok(self.lib.dnnl_post_ops_append_binary(po, _BINARY_MUL, scale), "binary post-op")
            self._ok(self.lib.dnnl_post_ops_append_eltwise(po, _ELTWISE_ABS, ctypes.c_float(0.0), ctypes.c_float(0.0)),
                     "eltwise post-op")
            self._ok(self.lib.dnnl_primitive_attr_set_post_ops(attr, po), "set post-ops")
        pd = ctypes.c_void_p()
        self._ok(self.lib.dnnl_matmul_primitive_desc_create(ctypes.byref(pd), self.engine, src, wei, None, dst, attr),
                 "matmul desc")
        p = ctypes.c_void_p()
        self._ok(self.lib.dnnl_primitive_create(ctypes.byref(p), pd), "primitive")
        return p

    def run(self, prim: ctypes.c_void_p, args: Any) -> None:
        self._ok(self.lib.dnnl_primitive_execute(prim, self.stream, len(args), args), "execute")
        self._ok(self.lib.dnnl_stream_wait(self.stream), "wait")


def _operands(rng: np.random.Generator, v: int, k: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def bits(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)

    A = bits(rng.integers(-2, 3, (v, k)).astype(np.float32))  # integer rows (exact in bfloat16)
    Z = bits(rng.standard_normal((b, k)))  # split phenotypes, one permutation per row
    s = (1.0 / rng.uniform(5.0, 30.0, v)).astype(np.float32)  # 1 / ||P g||
    return A, Z, s


def paths(v: int, k: int, b: int, rounds: int) -> dict[str, Any]:
    from dqtl.kernels import bf16

    dn = _Dnnl()
    rng = np.random.default_rng(v)
    A, Z, s = _operands(rng, v, k, b)
    nb = -(-v // 64)
    C = np.zeros((nb * 64, b), np.float32)  # padded to whole blocks of 64 rows (zeros), as dqtl's
    bf16._one_thread()

    def maxima() -> np.ndarray:
        C[:v] *= s[:, None]
        blocks = C.reshape(nb, 64, b)
        return np.maximum(blocks.max(axis=1), -blocks.min(axis=1)).max(axis=0)

    def gemm_api() -> np.ndarray:
        bf16.gemm_nt(A, Z, C[:v])
        return maxima()

    src, wei, dst = dn.desc((v, k), _BF16, (k, 1)), dn.desc((k, b), _BF16, (1, k)), dn.desc((v, b), _F32, (b, 1))
    p1 = dn.matmul(src, wei, dst)
    a1 = (_Arg * 3)(_Arg(_ARG_SRC, dn.memory(src, A)), _Arg(_ARG_WEIGHTS, dn.memory(wei, Z)),
                    _Arg(_ARG_DST, dn.memory(dst, C)))

    def primitive() -> np.ndarray:
        dn.run(p1, a1)
        return maxima()

    D = np.empty((b, v), np.float32)
    srcT, weiT, dstT = dn.desc((b, k), _BF16, (k, 1)), dn.desc((k, v), _BF16, (1, k)), dn.desc((b, v), _F32, (v, 1))
    sdesc = dn.desc((1, v), _F32, (v, 1))
    p2 = dn.matmul(srcT, weiT, dstT, scale=sdesc)
    a2 = (_Arg * 4)(_Arg(_ARG_SRC, dn.memory(srcT, Z)), _Arg(_ARG_WEIGHTS, dn.memory(weiT, A)),
                    _Arg(_ARG_DST, dn.memory(dstT, D)), _Arg(_ARG_POST_OP0_SRC1, dn.memory(sdesc, s)))

    def fused() -> np.ndarray:
        dn.run(p2, a2)
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
    row: dict[str, Any] = {"variants": v, "K": k, "permutations": b, "rounds": rounds, "maxima_equal": equal}
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
