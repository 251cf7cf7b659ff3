"""bfloat16 products with float32 accumulation (oneDNN's matmul primitive), for the
permutation products of hard-call genotypes.

Small integers (genotype calls minus an integer, -ploidy..ploidy) are exact in bfloat16, and a
float32 vector is a sum of two bfloat16 vectors ``hi + lo`` to within 2^-16 of each element
(:func:`split`). So ``G @ [hi; lo]`` with integer ``G`` computes ``G @ y`` with an elementwise
representation error of 2^-16 and float32 accumulation: within a bound of the float32 product
that :mod:`dqtl.association.permutation_kernel` widens its exact float64 rechecks by. On CPUs
with AMX the two bfloat16 products run ~2.7x faster than one float32 GEMM of the same shape
(4,100 x 500 by 500 x 1,001, one thread; ``benchmarks/RESULTS.md``).

The library is oneDNN's (the ``onednn-cpu-gomp`` wheel, a dependency on x86-64 Linux), loaded with
ctypes when first used. :func:`backend` says whether the products are available: the library
loads, the CPU has AMX tiles for bfloat16 (``amx_bf16``: with AVX512-BF16 alone two bfloat16
products cost what one float32 product does; without either oneDNN emulates them), and a probe
product is exact. ``DQTL_BF16=0`` turns them off; ``DQTL_BF16=1``
uses them wherever the library loads (tests, CPUs whose flags are not in ``/proc/cpuinfo``).
``DQTL_DNNL_LIBRARY`` names another ``libdnnl.so.3``.

The products run as oneDNN matmul primitives (through its C API), one per thread and operand
layout with the row count given at each call, so that a run makes a few (:func:`gemm_nt`); where
oneDNN cannot make one, or with ``DQTL_BF16_PRIMITIVE=0``, as its BLAS-like
``dnnl_gemm_bf16bf16f32``. :func:`backend`'s line names which.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ENV", "backend", "why_not", "reset", "to_bf16", "split", "gemm_nt"]

log = logging.getLogger(__name__)

#: Environment variable: ``0`` off, ``1`` on wherever the library loads, else automatic.
ENV = "DQTL_BF16"

_LOCK = threading.RLock()  # re-entered: the probe's product makes the engine
_GENERATION = [0]  # bumped by reset(): threads drop their primitives
_STATE: dict[str, Any] = {}
_THREADS = threading.local()


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _library_path() -> str | None:
    env = os.environ.get("DQTL_DNNL_LIBRARY")
    if env:
        return env
    for base in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
        p = base / "libdnnl.so.3"
        if p.exists():
            return str(p)
    try:  # installed elsewhere (a --user or --target install): the wheel's file list
        from importlib.metadata import PackageNotFoundError, files

        try:
            for f in files("onednn-cpu-gomp") or ():
                if f.name == "libdnnl.so.3":
                    return str(f.locate())
        except PackageNotFoundError:
            return None
    except ImportError:  # pragma: no cover
        return None
    return None


def _load() -> tuple[Any, str]:
    """(library or None, a line saying what was found)."""
    mode = os.environ.get(ENV, "auto").strip().lower()
    if mode in ("0", "off", "false", "no"):
        return None, f"off ({ENV}={mode})"
    path = _library_path()
    if path is None:
        return None, "oneDNN not installed (pip install onednn-cpu-gomp)"
    flags = _cpu_flags()
    hw = sorted(flags & {"amx_bf16"})
    if not hw and mode not in ("1", "on", "true", "yes"):
        # AVX512-BF16 alone (Cooper Lake, Zen 4) doubles float32's rate: two bfloat16 products
        # then cost what one float32 product does, plus the splitting
        return None, "the CPU has no AMX bfloat16 tiles (amx_bf16)"
    try:
        lib = ctypes.CDLL(path)
        i64, f32, ch, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_char, ctypes.c_void_p
        lib.dnnl_gemm_bf16bf16f32.argtypes = [ch, ch, i64, i64, i64, f32, ptr, i64, ptr, i64, f32, ptr, i64]
        gomp = ctypes.CDLL("libgomp.so.1")  # the OpenMP runtime oneDNN is linked against
        gomp.omp_set_num_threads.argtypes = [ctypes.c_int]
    except (OSError, AttributeError) as e:
        return None, f"oneDNN did not load from {path}: {e}"
    _STATE["lib"], _STATE["gomp"] = lib, gomp
    # probe: a product of integers and split floats against float64
    rng = np.random.default_rng(0)
    a = rng.integers(-2, 3, size=(37, 21)).astype(np.float32)
    b = rng.standard_normal((21, 13))
    out = np.empty((37, 13), dtype=np.float32)
    ab, bt = to_bf16(np.concatenate([a, a], axis=1)), np.ascontiguousarray(np.concatenate(split(b), axis=0).T)
    try:
        gemm_nt(ab, bt, out)
    except RuntimeError as e:
        _STATE.clear()
        return None, f"oneDNN's bfloat16 product failed its probe: {e}"
    err = float(np.max(np.abs(out - a.astype(np.float64) @ b)))
    if not err <= 1e-3:
        _STATE.clear()
        return None, f"oneDNN's bfloat16 product failed its probe (error {err:.2e})"
    how = "+".join(hw) if hw else "emulated (forced)"
    mm = _matmul(*_layout(ab, bt, out)[1:])  # the probe's primitive (None: the BLAS-like call ran)
    impl = f"matmul {mm.impl}" if mm is not None else "dnnl_gemm_bf16bf16f32"
    return lib, f"oneDNN bfloat16 products ({how}; {Path(path).name}; {impl})"


def backend() -> str | None:
    """A line naming the bfloat16 products when they are available, else None (see the module
    docstring; decided once per process)."""
    with _LOCK:
        if "line" not in _STATE:
            lib, line = _load()
            _STATE["line"] = line
            _STATE["ok"] = lib is not None
            log.debug("bfloat16 products: %s", line)
        return _STATE["line"] if _STATE["ok"] else None


def why_not() -> str:
    """What :func:`backend` found: the library and instructions used, or why not."""
    backend()
    return str(_STATE.get("line", ""))


def reset() -> None:
    """Forget the decision (after changing ``DQTL_BF16`` in this process, e.g. in tests)."""
    with _LOCK:
        _STATE.clear()
        _GENERATION[0] += 1


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 (or float64, rounded to float32 first) to bfloat16 bit patterns (uint16),
    rounding to nearest even. Finite values only.

    >>> to_bf16(np.array([1.0, -2.0, 3.0, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8])).tolist()
    [16256, 49152, 16448, 16256, 16258]
    """
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = u >> 16
    r &= 1
    r += u
    r += 0x7FFF
    r >>= 16
    return r.astype(np.uint16)


def _from_bf16(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` bfloat16 bit patterns with ``|y - hi - lo| <= (2^-16 + 2^-24) |y|``
    elementwise (y rounded to float32, then ``hi`` its bfloat16 rounding and ``lo`` the
    rounding of the exact float32 remainder).

    >>> hi, lo = split(np.array([np.pi, -1e-3]))
    >>> bool(np.all(np.abs(_from_bf16(hi).astype(float) + _from_bf16(lo) - [np.pi, -1e-3])
    ...             <= (2.0**-16 + 2.0**-24) * np.abs([np.pi, -1e-3])))
    True
    """
    y32 = np.ascontiguousarray(y, dtype=np.float32)
    hi = to_bf16(y32)
    return hi, to_bf16(y32 - _from_bf16(hi))


def _one_thread() -> None:
    """oneDNN's OpenMP team: one thread per calling thread (dqtl runs one task per core)."""
    if not getattr(_THREADS, "pinned", False):
        _STATE["gomp"].omp_set_num_threads(1)
        _THREADS.pinned = True


def _ld(x: np.ndarray, dtype: Any, rows: int, cols: int, name: str) -> int:
    """The leading dimension of a row-major matrix (rows, cols) of ``dtype`` whose rows may be
    a view's (unit column stride)."""
    if x.dtype == dtype and x.shape == (rows, cols) and x.size == 0:
        return max(cols, 1)  # an empty operand: nothing is read or written
    if not (x.dtype == dtype and x.shape == (rows, cols) and x.ndim == 2
            and (x.strides[1] == x.itemsize or cols <= 1)
            and (x.strides[0] % x.itemsize == 0) and x.strides[0] // x.itemsize >= cols):
        raise ValueError(f"{name}: expected a row-major {np.dtype(dtype).name} ({rows}, {cols}) matrix, "
                         f"got {x.dtype} {x.shape} strides {x.strides}")
    return max(x.strides[0] // x.itemsize, cols, 1)


def _layout(a: np.ndarray, bt: np.ndarray, out: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """``(m, n, k, lda, ldb, ldc)`` of :func:`gemm_nt`'s operands (checked)."""
    m, k = a.shape
    n = bt.shape[0]
    lda, ldb = _ld(a, np.uint16, m, k, "a"), _ld(bt, np.uint16, n, k, "bt")
    return m, n, k, lda, ldb, _ld(out, np.float32, m, n, "out")


def gemm_nt(a: np.ndarray, bt: np.ndarray, out: np.ndarray, *, absolute: bool = False) -> np.ndarray:
    """``out = a @ bt.T`` for row-major bfloat16 bit patterns ``a`` (m, k) and ``bt`` (n, k)
    into row-major float32 ``out`` (m, n) (rows of views allowed), accumulated in float32;
    ``absolute``: ``out = |a @ bt.T|`` (the same products' absolute values: oneDNN's ``abs``
    post-op, in the product's own epilogue while its tiles are in cache, where the primitive
    keeps its AMX kernel with it; else a pass over ``out``).

    Runs oneDNN's matmul primitive (on AMX: ``brg:avx512_core_amx``), one per calling thread and
    operand layout, its row count ``m`` given at each call (:class:`_Matmul`); where the primitive
    cannot be made, oneDNN's BLAS-like ``dnnl_gemm_bf16bf16f32``. A 4,100 x 1,027 x 1,001 product
    took 13.8-14.2 ms as the primitive against 14.3-17.5 ms as the BLAS-like call (which packs
    both operands into fresh buffers at each call) alternating back to back, and 20.4 against
    26.2 ms with the kernel's scaling and maxima passes between calls, with the same bits
    (``benchmarks/product_paths.py``, ``benchmarks/RESULTS.md``)."""
    m, n, k, lda, ldb, ldc = _layout(a, bt, out)
    _one_thread()
    if m == 0 or n == 0:
        return out
    if k == 0:
        out[...] = 0.0
        return out
    mm = _matmul(n, k, lda, ldb, ldc, absolute)
    if mm is not None:
        mm.run(a, bt, out, m)
        if absolute and not mm.absolute:
            np.abs(out, out=out)
        return out
    _gemm_blas_like(a, bt, out, m, n, k, lda, ldb, ldc)
    return np.abs(out, out=out) if absolute else out


def _gemm_blas_like(a: np.ndarray, bt: np.ndarray, out: np.ndarray, m: int, n: int, k: int, lda: int,
                    ldb: int, ldc: int) -> np.ndarray:
    """:func:`gemm_nt`'s fallback: oneDNN's BLAS-like ``dnnl_gemm_bf16bf16f32`` on the checked
    layout (:func:`_layout`)."""
    st = _STATE["lib"].dnnl_gemm_bf16bf16f32(b"N", b"T", m, n, k, 1.0, a.ctypes.data, lda, bt.ctypes.data,
                                             ldb, 0.0, out.ctypes.data, ldc)
    if st != 0:
        raise RuntimeError(f"dnnl_gemm_bf16bf16f32 returned status {st}")
    return out


#: oneDNN 3.x C API values
_DT_BF16, _DT_F32 = 2, 3
_ARG_SRC, _ARG_WEIGHTS, _ARG_DST = 1, 33, 17
_ELTWISE_ABS = 0x24  # dnnl_eltwise_abs
_RUNTIME_DIM = -(2**63)  # DNNL_RUNTIME_DIM_VAL
_QUERY_IMPL_INFO_STR = 8


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


def _declare(lib: Any) -> None:
    """The C signatures of the oneDNN 3.x calls :class:`_Matmul` makes (handles as pointers,
    dimensions int64, enums int, the engine index size_t)."""
    ptr, pp, i32, i64p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.POINTER(ctypes.c_int64)
    for name, args in (
        ("dnnl_engine_create", [pp, i32, ctypes.c_size_t]),
        ("dnnl_stream_create", [pp, ptr, ctypes.c_uint]),
        ("dnnl_memory_desc_create_with_strides", [pp, i32, i64p, i32, i64p]),
        ("dnnl_memory_desc_destroy", [ptr]),
        ("dnnl_memory_create", [pp, ptr, ptr, ptr]),
        ("dnnl_memory_destroy", [ptr]),
        ("dnnl_matmul_primitive_desc_create", [pp, ptr, ptr, ptr, ptr, ptr, ptr]),
        ("dnnl_primitive_desc_query", [ptr, i32, i32, ptr]),
        ("dnnl_primitive_desc_destroy", [ptr]),
        ("dnnl_primitive_create", [pp, ptr]),
        ("dnnl_primitive_execute", [ptr, ptr, i32, ptr]),
        ("dnnl_stream_wait", [ptr]),
        ("dnnl_primitive_attr_create", [pp]),
        ("dnnl_primitive_attr_destroy", [ptr]),
        ("dnnl_primitive_attr_set_post_ops", [ptr, ptr]),
        ("dnnl_post_ops_create", [pp]),
        ("dnnl_post_ops_destroy", [ptr]),
        ("dnnl_post_ops_append_eltwise", [ptr, i32, ctypes.c_float, ctypes.c_float]),
    ):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, ctypes.c_int


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"oneDNN {what} returned status {status}")


def _desc(lib: Any, rows: int, cols: int, dtype: int, row_stride: int, col_stride: int) -> ctypes.c_void_p:
    d = ctypes.c_void_p()
    dims = (ctypes.c_int64 * 12)(rows, cols)
    strides = (ctypes.c_int64 * 12)(row_stride, col_stride)
    _check(lib.dnnl_memory_desc_create_with_strides(ctypes.byref(d), 2, dims, dtype, strides), "memory desc")
    return d


class _Matmul:
    """One oneDNN matmul primitive ``(m, k) x (k, n) -> (m, n)`` for bfloat16 rows of stride
    ``lda``, columns given as bfloat16 rows of stride ``ldb`` and float32 output rows of stride
    ``ldc``, with ``m`` a runtime dimension (one primitive serves every window of a run), and the
    calling thread's stream. Made and run by one thread only (its scratchpad is the thread's).

    ``absolute``: asked for ``|a @ b|``; :attr:`absolute` says whether the primitive computes it
    (an ``abs`` post-op that oneDNN runs in the same kernel as the product; where adding it
    would take another implementation than the plain product's, the primitive is the plain
    product and the caller takes the absolute values)."""

    def __init__(self, lib: Any, engine: ctypes.c_void_p, n: int, k: int, lda: int, ldb: int, ldc: int,
                 absolute: bool = False) -> None:
        self.lib, self.engine = lib, engine
        self.n, self.k, self.lda, self.ldb, self.ldc = n, k, lda, ldb, ldc
        self.absolute = False
        pd = self._pd(False)
        self.prim = ctypes.c_void_p()
        try:
            self.impl = self._impl(pd)
            if absolute:
                pd_abs = self._pd(True)
                if pd_abs is not None and self._impl(pd_abs) == self.impl:
                    lib.dnnl_primitive_desc_destroy(pd)
                    pd, self.absolute = pd_abs, True
                elif pd_abs is not None:
                    lib.dnnl_primitive_desc_destroy(pd_abs)
            _check(lib.dnnl_primitive_create(ctypes.byref(self.prim), pd), "matmul primitive")
        finally:
            lib.dnnl_primitive_desc_destroy(pd)
        self.stream = ctypes.c_void_p()
        _check(lib.dnnl_stream_create(ctypes.byref(self.stream), engine, 1), "stream")  # in order

    def _pd(self, absolute: bool) -> Any:
        """The primitive descriptor (with the abs post-op: None where oneDNN refuses it)."""
        lib, k, n = self.lib, self.k, self.n
        descs = [_desc(lib, _RUNTIME_DIM, k, _DT_BF16, self.lda, 1), _desc(lib, k, n, _DT_BF16, 1, self.ldb),
                 _desc(lib, _RUNTIME_DIM, n, _DT_F32, self.ldc, 1)]
        pd, attr, po = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        try:
            if absolute and (lib.dnnl_primitive_attr_create(ctypes.byref(attr)) != 0
                             or lib.dnnl_post_ops_create(ctypes.byref(po)) != 0
                             or lib.dnnl_post_ops_append_eltwise(po, _ELTWISE_ABS, 0.0, 0.0) != 0
                             or lib.dnnl_primitive_attr_set_post_ops(attr, po) != 0):
                return None
            status = lib.dnnl_matmul_primitive_desc_create(ctypes.byref(pd), self.engine, descs[0], descs[1], None,
                                                           descs[2], attr if absolute else None)
            if status != 0 and absolute:
                return None
            _check(status, "matmul primitive desc")
            return pd
        finally:
            if po:
                lib.dnnl_post_ops_destroy(po)
            if attr:
                lib.dnnl_primitive_attr_destroy(attr)
            for d in descs:
                lib.dnnl_memory_desc_destroy(d)

    def _impl(self, pd: Any) -> str:
        info = ctypes.c_char_p()
        if self.lib.dnnl_primitive_desc_query(pd, _QUERY_IMPL_INFO_STR, 0, ctypes.byref(info)) == 0 and info.value:
            return info.value.decode(errors="replace")
        return "matmul"

    def run(self, a: np.ndarray, bt: np.ndarray, out: np.ndarray, m: int) -> None:
        lib, k, n = self.lib, self.k, self.n
        descs = [_desc(lib, m, k, _DT_BF16, self.lda, 1), _desc(lib, k, n, _DT_BF16, 1, self.ldb),
                 _desc(lib, m, n, _DT_F32, self.ldc, 1)]
        mems = [ctypes.c_void_p() for _ in range(3)]
        try:
            for mem, d, x in zip(mems, descs, (a, bt, out), strict=True):
                _check(lib.dnnl_memory_create(ctypes.byref(mem), d, self.engine, ctypes.c_void_p(x.ctypes.data)),
                       "memory")
            args = (_ExecArg * 3)(_ExecArg(_ARG_SRC, mems[0]), _ExecArg(_ARG_WEIGHTS, mems[1]),
                                  _ExecArg(_ARG_DST, mems[2]))
            _check(lib.dnnl_primitive_execute(self.prim, self.stream, 3, args), "matmul")
            _check(lib.dnnl_stream_wait(self.stream), "stream wait")
        finally:
            for mem in mems:
                if mem:
                    lib.dnnl_memory_destroy(mem)
            for d in descs:
                lib.dnnl_memory_desc_destroy(d)


def _matmul(n: int, k: int, lda: int, ldb: int, ldc: int, absolute: bool = False) -> _Matmul | None:
    """The calling thread's primitive for this layout and output (``absolute``: ``|a @ b|``, see
    :class:`_Matmul`; made on first use), or None where oneDNN cannot make one (then the
    BLAS-like call runs; ``DQTL_BF16_PRIMITIVE=0`` forces that)."""
    if getattr(_THREADS, "generation", None) != _GENERATION[0]:
        _THREADS.matmuls, _THREADS.generation = {}, _GENERATION[0]
    cache = _THREADS.matmuls
    key = (n, k, lda, ldb, ldc, absolute)
    if key in cache:
        return cache[key]
    mm = None
    engine = _engine()
    if engine is not None:
        try:
            mm = _Matmul(_STATE["lib"], engine, n, k, lda, ldb, ldc, absolute)
        except (RuntimeError, AttributeError) as e:
            log.debug("oneDNN matmul primitive unavailable (%s); BLAS-like products", e)
            with _LOCK:
                _STATE["engine"] = None  # not again in this process
    cache[key] = mm
    return mm


def _engine() -> ctypes.c_void_p | None:
    """The process's oneDNN CPU engine, or None (no primitives: off by ``DQTL_BF16_PRIMITIVE=0``,
    or oneDNN could not make one)."""
    with _LOCK:
        if "engine" not in _STATE:
            engine: ctypes.c_void_p | None = None
            if os.environ.get("DQTL_BF16_PRIMITIVE", "").strip().lower() not in ("0", "off", "false", "no"):
                e = ctypes.c_void_p()
                try:
                    _declare(_STATE["lib"])
                    _check(_STATE["lib"].dnnl_engine_create(ctypes.byref(e), 1, 0), "engine")  # dnnl_cpu
                    engine = e
                except (RuntimeError, AttributeError) as exc:
                    log.debug("oneDNN engine unavailable (%s)", exc)
            _STATE["engine"] = engine
        return _STATE["engine"]

