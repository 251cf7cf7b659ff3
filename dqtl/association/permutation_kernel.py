"""The per-gene permutation kernel: a task's residualized genotype block, its permutation
batches, and one phenotype's observed statistic and permutation maxima
(:func:`permutation_gene_kernel`; the tasks around it: :mod:`dqtl.association.permutation`)."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dqtl.kernels import bf16

if TYPE_CHECKING:
    from dqtl.association.permutation import GeneInput, PermutationSpec

__all__ = ["ResidualizedBlock", "IntegerRows", "QBasis", "PermutationBatches", "permutation_gene_kernel"]

#: Rows residualized at a time when a task builds its :class:`ResidualizedBlock`.
_BUILD_ROWS = 256

#: Largest permutation table (elements) a run holds as intp indices (256 MiB).
_INTP_PERMS_MAX = 32 * 2**20

#: Rows per block of the per-block maxima of a batch's products (permutation_gene_kernel).
_MAX_ROWS = 64

#: bfloat16 products only for rows whose error bound is at most this many times a unit row's
#: (``||g - k|| / ||P g||``; larger for variants the covariates nearly explain, e.g. partners in
#: LD of a conditioning variant in independent mapping): the others take float32 products of
#: their residualized rows (:attr:`IntegerRows.f32_rows`); a block with more than
#: :data:`_FRACTIONAL_ROWS_MAX` of them takes float32 throughout.
_RATIO_MAX = 4.0

#: ... and only for blocks with at most this fraction of rows holding non-integer dosages
#: (imputed calls: their fractional parts take a float32 product of their own).
_FRACTIONAL_ROWS_MAX = 0.25


@dataclass
class IntegerRows:
    """A block's genotype rows as integers for the bfloat16 permutation products
    (:mod:`dqtl.kernels.bf16`).

    With ``g`` a row on the gene's samples, ``k`` the integer nearest its mean, ``f`` the
    fractional part of its dosages (0 for hard calls; imputed calls), ``Q`` the (n, r) basis and
    ``P = I - Q Q^T`` (``1`` in the span of ``Q``): ``<g, P z> = <round(g) - k, z> + <f, z> -
    <Q^T (g - k), Q^T z>`` for any phenotype vector ``z``. One bfloat16 product per batch computes
    the first and last terms: ``A = [d_1 d_1 d_2 d_2 ... | a_hi a_hi a_lo]`` (``d = round(g) - k``
    exact, each twice; ``a = Q^T (g - k)`` split in two bfloat16) against ``[h_1 l_1 h_2 l_2 ... |
    -q_hi -q_lo -q_hi]`` (``z = h + l`` and ``q = Q^T z`` split likewise): :meth:`products`.
    """

    A: np.ndarray  # (v, 2n + 3r) bfloat16 bits
    inv_norm: np.ndarray  # (v,) float32 1 / ||P g|| (0 where not testable)
    n1: np.ndarray  # (v,) (||g - k|| + 2 ||f||) / ||P g|| (0 where not testable)
    gqa: np.ndarray  # (v, r) |Q^T (g - k)| / ||P g|| (0 where not testable)
    frac_rows: np.ndarray  # (k,) rows with fractional dosages
    frac: np.ndarray  # (k, n) float32 their fractional parts
    f32_rows: np.ndarray  # (h,) rows whose error scale exceeds _RATIO_MAX (n1, gqa 0 there)
    f32: np.ndarray  # (h, n) float32 their residualized unit rows (as ResidualizedBlock.G32)

    def take(self, rows: np.ndarray | slice) -> IntegerRows:
        """The rows ``rows`` (a slice or increasing indices) of the block."""
        frac_rows, frac = _sub_rows(self.frac_rows, self.frac, rows)
        f32_rows, f32 = _sub_rows(self.f32_rows, self.f32, rows)
        A = self.A[rows] if isinstance(rows, slice) else np.ascontiguousarray(self.A[rows])
        return IntegerRows(A, self.inv_norm[rows], self.n1[rows], self.gqa[rows], frac_rows, frac,
                           f32_rows, f32)

    def bound(self, qabs: np.ndarray, qerr: np.ndarray) -> float:
        """The largest error of a scaled product ``<g, P z> / ||P g||`` of these rows with the unit
        columns ``z`` of a batch whose computed ``Q^T z`` are at most ``qabs`` (r,) in absolute
        value and within ``qerr`` (r,) of the exact ones: the representation of ``z`` by two
        bfloat16 (2^-16 + 2^-24) and of ``a`` and ``q`` (three products of the four: 3 x 2^-16),
        the error of ``q``, float32 accumulation over the K = 2n + 3r terms (gamma_K = K u,
        u = 2^-24) and the final roundings."""
        u = 2.0**-24
        K, r = self.A.shape[1], self.gqa.shape[1]
        t = self.gqa @ qabs  # sum_k |a_k| max |q_k| / ||P g||
        c_rep, c_acc = 2.0**-16 + 2.0**-23, (K + 2) * u * (1.0 + 2.0**-7)
        e = (c_rep + c_acc + 2 * u) * self.n1 + (3.1 * 2.0**-16 + c_acc * (1.0 + 2.0**-7) + 2 * u) * t
        e += (1.0 + 2.0**-7) * (self.gqa @ qerr)
        if self.f32_rows.size:  # float32 products of unit rows: the float32 path's (n + 2) u
            e = np.append(e, ((K - 3 * r) // 2 + 2) * u)
        return float(e.max(initial=0.0))

    def products(self, rows: np.ndarray, yhl: np.ndarray, y32: np.ndarray, qb: QBasis,
                 out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(out, q)``: ``out[v, j] = |<g_v, P z_j>| / ||P g_v||`` for the columns ``z_j = y[rows[j]]``
        of a batch (``rows`` (b, n) permutations; ``yhl`` the uint32 ``h | l << 16`` bfloat16 pairs
        of ``y``, ``y32`` its float32 values) and ``q`` (b, r) ``Q^T z_j`` (:class:`QBasis`).

        Absolute values (what the maxima need; the float32 numbers are those of the signed
        products' absolute values): the product's own ``abs`` epilogue (:func:`bf16.gemm_nt`)
        when no row has fractional dosages, whose products are added to the signed ones first."""
        b, n = rows.shape
        r = qb.r
        # (b, n); rows are valid indices ('wrap': unchecked)
        Y32 = np.take(y32, rows, out=_scratch("phenotypes32", b * n, np.float32).reshape(b, n), mode="wrap")
        q = qb.products(Y32)
        zb = _scratch("phenotypes", b * self.A.shape[1], np.uint16).reshape(b, -1)
        hl = np.take(yhl, rows, out=_scratch("pairs", b * n, np.uint32).reshape(b, n), mode="wrap")
        zb[:, : 2 * n].view(np.uint32)[...] = hl  # [h_1 l_1 h_2 l_2 ...] (a gather into rows of
        # zb, a strided target, is buffered: 1.4x the contiguous gather and this copy)
        qh, ql = bf16.split(-q)
        zb[:, 2 * n: 2 * n + r] = qh
        zb[:, 2 * n + r: 2 * n + 2 * r] = ql
        zb[:, 2 * n + 2 * r:] = qh
        signed = bool(self.frac_rows.size)
        bf16.gemm_nt(self.A, zb, out, absolute=not signed)
        if signed:
            out[self.frac_rows] += self.frac @ Y32.T
            np.abs(out, out=out)
        out *= self.inv_norm[:, None]
        if self.f32_rows.size:
            out[self.f32_rows] = np.abs(self.f32 @ Y32.T)
        return out, q


@dataclass
class QBasis:
    """``Q^T z`` for the permuted phenotypes of a gene (unit, centred ``y``), and its error
    bound: float32 products, except a constant column (the intercept, column 0 of a
    :class:`~dqtl.kernels.linalg.Residualizer` basis), whose product ``c sum(z)`` no permutation
    changes: computed once in float64."""

    r: int
    Q32: np.ndarray  # (n, r') float32 columns computed per batch
    q0: float | None  # the constant column's product, or None (no constant column 0)
    err: np.ndarray  # (r,) bound of |computed - exact| per column

    @classmethod
    def of(cls, Q: np.ndarray, y: np.ndarray) -> QBasis:
        n, r = Q.shape
        u = 2.0**-24
        spread = float(np.ptp(Q[:, 0]))
        const = spread <= 1e-9 * abs(float(Q[0, 0]))
        err = np.full(r, (n + 4) * u)  # float32 products of unit vectors (their roundings included)
        if const:  # sum_i (Q_i0 - c)(z_i - y_i) <= spread ||z - y||_1 <= 2 spread sqrt(n)
            err[0] = 2.0 * spread * np.sqrt(n) + 1e-14
        return cls(r=r, Q32=np.ascontiguousarray(Q[:, 1:] if const else Q, dtype=np.float32),
                   q0=float(Q[:, 0] @ y) if const else None, err=err)

    def products(self, Y32: np.ndarray) -> np.ndarray:
        """(b, r) float64 ``Q^T z`` of the (b, n) float32 rows ``Y32``."""
        q = np.empty((Y32.shape[0], self.r))
        if self.q0 is None:
            q[:] = Y32 @ self.Q32
        else:
            q[:, 0] = self.q0
            q[:, 1:] = Y32 @ self.Q32
        return q


def _sub_rows(at: np.ndarray, vals: np.ndarray, rows: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``at`` (increasing) of a block with their values ``vals``, renumbered within the
    block's rows ``rows`` (a slice or increasing indices), those outside dropped."""
    if isinstance(rows, slice):
        a, b = rows.start or 0, rows.stop
        keep = (at >= a) & (at < b)
        return at[keep] - a, vals[keep]
    pos = np.searchsorted(rows, at)
    keep = pos < len(rows)
    keep[keep] = rows[pos[keep]] == at[keep]
    return pos[keep], vals[keep]


def _integer_rows(Gs: np.ndarray, mu: np.ndarray, cc: np.ndarray, GQ: np.ndarray, Q: np.ndarray,
                  inv: np.ndarray, known: np.ndarray | None,
                  A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Rows of :class:`IntegerRows` for the (v, n) dosages ``Gs`` (row means ``mu``, ``cc`` the
    squared norms of the centred rows, ``GQ`` their products with ``Q``, ``inv`` 1 / ||P g``, 0
    where not testable), written into ``A`` (v, 2n + 3r); returns ``(frac_rows, frac, n1, gqa)``, or None when the dosages are not
    (mostly) small integers. ``known``: (v,) rows the decoder knows hold integers only (hard
    calls without a missing call); the other rows are checked."""
    v, n = Gs.shape
    r = Q.shape[1]
    k = np.rint(mu)
    check = np.arange(v) if known is None else np.nonzero(~known)[0]
    if known is not None and check.size > _FRACTIONAL_ROWS_MAX * v:
        return None  # too many rows with imputed calls
    if known is None and v and float(np.ptp(Gs)) > 256:
        return None  # integers beyond 256 are not exact in bfloat16
    # round(g) - k in float32, exact for the integer rows (small integers); in a reused buffer
    G32 = np.subtract(Gs, k[:, None].astype(np.float32), dtype=np.float32,
                      out=_scratch("integer_rows", v * n, np.float32).reshape(v, n))
    frac_rows = np.zeros(0, dtype=np.intp)
    frac = np.zeros((0, n), dtype=np.float32)
    if check.size:
        Gc = Gs[check]
        Gi = np.rint(Gc)
        is_frac = (Gi != Gc).any(axis=1)
        if is_frac.sum() > _FRACTIONAL_ROWS_MAX * v:
            return None
        frac_rows = check[is_frac]
        frac = (Gc[is_frac] - Gi[is_frac]).astype(np.float32)
        G32[check] = Gi - k[check, None]
    # each small integer's float32 bits are its bfloat16 bits followed by 16 zero bits, so the
    # pair [d d] of uint16 (little-endian) is the uint32 u | u >> 16: two contiguous passes
    # (strided uint16 writes of each copy took 2.5x as long)
    bits = G32.view(np.uint32)
    pairs = A[:, : 2 * n].view(np.uint32)
    np.right_shift(bits, 16, out=pairs)
    np.bitwise_or(pairs, bits, out=pairs)
    GQk = GQ + (mu - k)[:, None] * Q.sum(axis=0)[None, :]  # Q^T (g - k) = Q^T (g - mu) + (mu - k) Q^T 1
    ah, al = bf16.split(GQk)
    A[:, 2 * n: 2 * n + r] = ah
    A[:, 2 * n + r: 2 * n + 2 * r] = ah
    A[:, 2 * n + 2 * r:] = al
    # ||round(g) - k|| <= ||g - k|| + ||f||, ||g - k||^2 = ||g - mu||^2 + n (mu - k)^2
    norm_f = np.zeros(v)
    if frac_rows.size:  # (an einsum over no rows still costs ~20 us per block of rows)
        norm_f[frac_rows] = np.sqrt(np.einsum("ij,ij->i", frac, frac, dtype=np.float64))
    norm_gk = np.sqrt(cc + n * (mu - k) ** 2) * (1.0 + 1e-12)
    return frac_rows, frac, (norm_gk + 2.0 * norm_f) * inv, np.abs(GQk) * inv[:, None]


@dataclass
class ResidualizedBlock:
    """Genotype rows residualized on the covariates and scaled to unit norm, for permutations.

    Built once per task for all genes that share samples and covariates (their windows are row
    ranges of the task's block), or per gene for a gene with its own samples or covariates.
    Only the float32 rows (the permutation products' operand) are stored; the few float64 rows
    a gene needs (its observed maximisers, rechecked permutations, significant-pair candidates)
    are residualized again from the dosages by :meth:`res64`, with the same operations.
    """

    Q: np.ndarray  # (n, rank) orthonormal basis of [1, C]
    dof: int
    g_norm: np.ndarray  # (v,) residual norms, as residual_norm2 computes them
    ok: np.ndarray  # (v,) testable: valid and not constant after residualization
    G32: np.ndarray | None  # (v, n) float32 residualized rows / g_norm (0 where not ok)
    G: np.ndarray  # (v, samples) the dosages the rows come from
    sample_index: np.ndarray | None  # the samples of G the rows use (None: all)
    low: IntegerRows | None = None  # the rows as integers for bfloat16 products (G32 then None)

    @classmethod
    def build(
        cls,
        G: np.ndarray,
        valid: np.ndarray,
        Q: np.ndarray,
        dof: int,
        *,
        sample_index: np.ndarray | None = None,
        means: np.ndarray | None = None,
        integer: bool = True,
        integer_rows: np.ndarray | None = None,
    ) -> ResidualizedBlock:
        """From (v, samples) imputed dosages, their (v,) testable mask and the basis ``Q``.

        Residualized in blocks of :data:`_BUILD_ROWS` rows in one reused float64 buffer (in
        cache; no float64 copy of the block is kept: 48 MiB per task at 500 samples), each
        block divided by its norms straight into the float32 rows. ``means``: ``G.mean(axis=1)``
        bit for bit when the decoder knows it (:meth:`DecodedBlock.row_means`; all samples only).

        ``integer``: when the bfloat16 products are available (:func:`dqtl.kernels.bf16.backend`)
        and the dosages are (mostly) integers, the rows are kept as :class:`IntegerRows`
        instead of float32 residuals (``G32`` is then None). ``integer_rows``: (v,) rows the
        decoder knows hold integers only (:meth:`DecodedBlock.integer_rows`); the others are checked.
        """
        v = G.shape[0]
        n = G.shape[1] if sample_index is None else len(sample_index)
        g_norm = np.empty(v)
        ok = np.empty(v, dtype=bool)
        valid = np.asarray(valid, dtype=bool)
        lowp = integer and v > 0 and bf16.backend() is not None
        G32 = None if lowp else np.empty((v, n), dtype=np.float32)
        r = Q.shape[1]
        if lowp:
            A = np.empty((v, 2 * n + 3 * r), dtype=np.uint16)
            n1, gqa, inv_norm = np.empty(v), np.empty((v, r)), np.empty(v)
            fr_rows: list[np.ndarray] = []
            fracs: list[np.ndarray] = []
        buf = np.empty((min(_BUILD_ROWS, v), n))
        for s in range(0, v, _BUILD_ROWS):
            e = min(s + _BUILD_ROWS, v)
            m = means[s:e, None] if means is not None and sample_index is None else None
            Gs = G[s:e] if sample_index is None else G[s:e][:, sample_index]
            if lowp and m is None:  # the integer rows need the means themselves
                m = Gs.mean(axis=1, keepdims=True, dtype=np.float64)
            Gc = _centred(Gs, None, buf[: e - s], m)
            GQ = Gc @ Q
            # ||P g||^2 = ||g||^2 - ||Q^T g||^2 (as residual_norm2), with the product the
            # residual needs anyway
            cc = np.einsum("ij,ij->i", Gc, Gc)
            gn = np.sqrt(np.maximum(cc - np.einsum("ij,ij->i", GQ, GQ), 0.0))
            keep = valid[s:e] & (gn > 1e-10 * np.sqrt(n))
            g_norm[s:e], ok[s:e] = gn, keep
            if lowp:
                assert m is not None
                inv_norm[s:e] = np.where(keep, 1.0 / np.where(keep, gn, 1.0), 0.0)
                part = _integer_rows(Gs, m[:, 0], cc, GQ, Q, inv_norm[s:e],
                                     None if integer_rows is None else integer_rows[s:e], A[s:e])
                if part is None or sum(map(len, fr_rows)) + len(part[0]) > _FRACTIONAL_ROWS_MAX * v:
                    # not integers: the float32 rows after all
                    return cls.build(G, valid, Q, dof, sample_index=sample_index, means=means, integer=False)
                fr_rows.append(part[0] + s)
                fracs.append(part[1])
                n1[s:e], gqa[s:e] = part[2], part[3]
                continue
            assert G32 is not None
            Gc -= GQ @ Q.T
            # the float64 quotients rounded to float32 (what dividing Gc, then casting, gives)
            np.divide(Gc, np.where(keep, gn, 1.0)[:, None], out=G32[s:e], casting="same_kind")
            if not keep.all():
                G32[s:e][~keep] = 0.0
        low = None
        if lowp:
            hi = np.nonzero(n1 > _RATIO_MAX)[0]
            if hi.size > _FRACTIONAL_ROWS_MAX * v:
                return cls.build(G, valid, Q, dof, sample_index=sample_index, means=means, integer=False)
            n1[hi], gqa[hi] = 0.0, 0.0
            low = IntegerRows(A=A, inv_norm=inv_norm.astype(np.float32),
                              n1=n1, gqa=gqa, frac_rows=np.concatenate(fr_rows),
                              frac=np.concatenate(fracs) if fracs else np.zeros((0, n), dtype=np.float32),
                              f32_rows=hi, f32=np.zeros((0, n), dtype=np.float32))
        block = cls(Q=Q, dof=int(dof), g_norm=g_norm, ok=ok, G32=G32, G=G, sample_index=sample_index, low=low)
        if low is not None and low.f32_rows.size:
            # the float64 residualized unit rows rounded to float32 (the float32 path's G32 rows)
            low.f32 = block.res64(low.f32_rows).astype(np.float32)
        return block

    def rows(self, a: int, b: int) -> ResidualizedBlock:
        """Rows ``a:b`` (views, no copy)."""
        return ResidualizedBlock(Q=self.Q, dof=self.dof, g_norm=self.g_norm[a:b], ok=self.ok[a:b],
                                 G32=None if self.G32 is None else self.G32[a:b], G=self.G[a:b],
                                 sample_index=self.sample_index,
                                 low=None if self.low is None else self.low.take(slice(a, b)))

    def res64(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n) float64 residualized unit-norm rows (0 where not testable): the rows
        :meth:`build` cast to float32, by the same operations on these rows alone."""
        rows = np.asarray(rows, dtype=np.intp)
        Gc = _centred(self.G[rows], self.sample_index, None)
        Gc -= (Gc @ self.Q) @ self.Q.T
        keep = self.ok[rows]
        Gc /= np.where(keep, self.g_norm[rows], 1.0)[:, None]
        Gc[~keep] = 0.0
        return Gc


_SCRATCH = threading.local()


def _scratch(name: str, size: int, dtype: Any) -> np.ndarray:
    """A reused (size,) buffer of this thread: the products of every gene a thread runs write
    into the same pages (a fresh 16 MiB array per gene costs its page faults inside the GEMM,
    ~25% of a sequencing-density window's bfloat16 product). Valid until the next call."""
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    b = bufs.get(name)
    if b is None or b.size < size or b.dtype != np.dtype(dtype):
        b = bufs[name] = np.empty(max(size, 1), dtype=dtype)
    return b[:size]


def _centred(G: np.ndarray, sample_index: np.ndarray | None, out: np.ndarray | None,
             means: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``G`` on ``sample_index`` minus their means (into ``out`` when given; ``means``:
    the (rows, 1) means, ``Gs.mean(axis=1)`` bit for bit, when known)."""
    Gs = G if sample_index is None else G[:, sample_index]
    # float64 means (G may hold float32 integers: decode_block's float32_calls)
    m = Gs.mean(axis=1, keepdims=True, dtype=np.float64) if means is None else means
    if out is None:
        return np.subtract(Gs, m, dtype=np.float64)
    # the same numbers as one mixed-type subtract, whose buffered casts are ~1.3x slower
    np.copyto(out, Gs)
    return np.subtract(out, m, out=out)


@dataclass(frozen=True)
class PermutationBatches:
    """A run's permutations for one sample count, as the batches the gene kernel runs.

    ``cols[i]``: (n, b_i) contiguous sample indices (the transposed permutations of batch ``i``,
    so that the permuted phenotypes of a batch are one gather ``y[cols[i]]`` of shape (n, b_i),
    the right operand of one product ``G @ Y``); ``cols[0]`` starts with the identity column (the
    unpermuted phenotype: the observed statistic's float32 screen comes from the same product).
    ``offsets[i]``: the columns of batch ``i`` before its first permutation (1 for the first
    batch, else 0). Built once per run and shared by the tasks.
    """

    cols: tuple[np.ndarray, ...]
    offsets: tuple[int, ...]

    @functools.cached_property
    def rows(self) -> tuple[np.ndarray, ...]:
        """``rows[i]``: ``cols[i].T`` C-ordered, (b_i, n), a permuted phenotype per row (the
        bfloat16 products' layout, :class:`IntegerRows`); made where first used (a run on
        float32 products never holds it: 40 MB at 10,000 permutations of 500 samples)."""
        return tuple(np.ascontiguousarray(c.T) for c in self.cols)

    @classmethod
    def build(cls, perms: np.ndarray, spec: PermutationSpec) -> PermutationBatches:
        """From (nperm_max, n) permutations: intp indices (numpy converts narrower indices at
        every gather otherwise) unless that copy would be large (many samples x permutations)."""
        nperm, n = perms.shape
        dt = np.intp if perms.size <= _INTP_PERMS_MAX else perms.dtype
        step = max(1, spec.nperm_min if spec.adaptive else min(spec.batch, spec.nperm_max))
        cols, offsets = [], []
        for a in range(0, nperm, step):
            b = min(a + step, nperm)
            head = [np.arange(n, dtype=dt)[:, None]] if a == 0 else []
            cols.append(np.ascontiguousarray(np.concatenate([*head, perms[a:b].T.astype(dt)], axis=1)))
            offsets.append(1 if a == 0 else 0)
        return cls(cols=tuple(cols), offsets=tuple(offsets))


def permutation_gene_kernel(
    G: np.ndarray,
    valid: np.ndarray,
    gene: GeneInput,
    batches: PermutationBatches,
    spec: PermutationSpec,
    dtype: Any,
    *,
    prepared: ResidualizedBlock | None = None,
    keep_window: bool = False,
    means: np.ndarray | None = None,
    integer_rows: np.ndarray | None = None,
    integer: bool = True,
) -> dict[str, Any] | None:
    """Observed best variant and permutation max-r^2 for one phenotype.

    Parameters
    ----------
    G
        (variants in window, samples) imputed dosages of the gene's window.
    valid
        (variants in window,) testable variants.
    batches
        The permutations for the gene's sample count (:class:`PermutationBatches`).
    dtype
        ``np.float32`` or ``np.float64``. The observed statistic is always float64 and the
        permutation products always float32; with float64, permutations within the float32
        error bound of the observed statistic are recomputed in float64, so the empirical
        p-value (and adaptive stopping) equals the float64 result.
    prepared
        The window's rows of a :class:`ResidualizedBlock` built for this gene's samples and
        covariates (shared by the genes of a task); default: built here from ``G`` and ``valid``.
    keep_window
        Also return what the significant pairs' candidates need (:mod:`dqtl.association.signif_pairs`):
        the float32 screen ``w_c`` (|<G_v, y>| of every testable variant, window positions
        ``r_idx``, residual norms ``r_gnorm``), the window's :class:`ResidualizedBlock`
        ``w_block`` and the scaled residual phenotype ``w_y`` (float64 correlations
        ``w_block.res64(rows) @ w_y`` of the rows the screen keeps), and ``w_pnc`` (the
        screen's ``||P y||``).
    means
        ``G.mean(axis=1)`` when the decoder knows it (see :meth:`ResidualizedBlock.build`).
    integer_rows, integer
        The rows the decoder knows hold integers only, and whether the rows built here may be
        integer rows for bfloat16 products (see :meth:`ResidualizedBlock.build`).

    Returns
    -------
    dict or None (no testable variant)
    """
    if prepared is None:
        prepared = ResidualizedBlock.build(G, valid, gene.Q, gene.dof, sample_index=gene.sample_index,
                                           means=means, integer_rows=integer_rows, integer=integer)
    idx = np.nonzero(prepared.ok)[0]
    if idx.size == 0:
        return None
    low = prepared.low
    if low is not None and idx.size != prepared.ok.size:
        low = low.take(idx)
    g_norm = prepared.g_norm if idx.size == prepared.ok.size else prepared.g_norm[idx]
    G32 = None
    if low is None:
        assert prepared.G32 is not None
        G32 = prepared.G32 if idx.size == prepared.ok.size else prepared.G32[idx]
    Q = prepared.Q
    n_g = len(gene.y)
    y = gene.y
    yr = y - Q @ (Q.T @ y)
    p_norm = float(np.linalg.norm(yr))
    if p_norm <= 1e-12 * max(float(np.linalg.norm(y)), 1e-300):
        return None
    # Statistics. With P = I - Q Q^T (Q spans [1, C]), the partial correlation of variant v
    # with a phenotype vector z is r_v = <g_v, P z> / (||P g_v|| ||P z||) = <G_v, z> / ||P z||,
    # G_v = P g_v / ||P g_v|| (P symmetric and idempotent): the genotypes are residualized and
    # scaled to unit norm once (ResidualizedBlock: per task for genes sharing samples and
    # covariates, else per gene) and the observed and permuted phenotypes enter raw. Centring
    # and scaling y commute with permuting it, so y is centred and scaled to unit norm once, and
    # ||P y[pi]||^2 = 1 - ||Q^T y[pi]||^2. The maximum over the window of r_v^2 for every
    # permutation comes from one float32 product per batch, (v, n) @ (n, b), whose first column
    # in the first batch is the unpermuted y (the variants in rows: the maxima over the window
    # are elementwise maxima of contiguous rows, ~3x faster than row reductions of (b, v)).
    # Every maximum is then located exactly: a float32 dot product of two unit vectors is
    # within gamma = (n + 2) u (u = 2^-24) of the exact one, so the exact maximiser is among the
    # variants within 2 gamma of the float32 maximum; those are recomputed in float64 (the
    # observed statistic always; a permutation's when float64 is requested and its float32
    # maximum lies within 4 gamma of the observed one). Hence the top variant, r_obs and the hit
    # counts (pval_perm, adaptive stopping) are float64 results; the other r2_perm values (the
    # beta fit's input) carry float32 rounding (~1e-6 relative).
    yc = y - y.mean()
    yc /= np.linalg.norm(yc)
    y32 = yc.astype(np.float32)
    QT32 = np.ascontiguousarray(Q.T, dtype=np.float32)
    tiny = np.finfo(np.float64).tiny
    exact = np.dtype(dtype) != np.dtype(np.float32)
    # With integer rows (IntegerRows: one bfloat16 product of round(g) - k against y split in
    # two, with the covariate term, float32 accumulation) the bound is IntegerRows.bound, per batch.
    gamma = gamma0 = (n_g + 2) * float(np.finfo(np.float32).eps) / 2.0
    # products in a reused buffer whose rows are padded to whole blocks of _MAX_ROWS (zeros):
    # per-block maxima give the window maxima and locate a permutation's candidate maximisers
    # without scanning its column
    v_w = idx.size
    n_blk = -(-v_w // _MAX_ROWS)
    buf = _scratch("products", n_blk * _MAX_ROWS * max(c.shape[1] for c in batches.cols), np.float32).reshape(
        n_blk * _MAX_ROWS, -1)
    if low is not None:
        yh, yl = bf16.split(yc)
        yhl = yh.astype(np.uint32) | (yl.astype(np.uint32) << 16)  # [h_i l_i] as uint16 pairs
        qb = QBasis.of(Q, yc)
    chunks: list[np.ndarray] = []
    hits = 0
    top = -1
    r_top = r2_obs = r_obs_abs = 0.0
    c0 = np.zeros(0, dtype=np.float32)
    for i_b, (cols, off) in enumerate(zip(batches.cols, batches.offsets, strict=True)):
        if low is None:
            assert G32 is not None
            # (n, b) permuted phenotypes: one unchecked gather ('wrap': the indices are valid) into
            # a reused buffer (a fresh array per gene faulted its pages: 0.73 against 0.32 ms)
            YT: np.ndarray = np.take(y32, cols, mode="wrap",
                                     out=_scratch("phenotypes32T", cols.size, np.float32).reshape(cols.shape))
            RT = np.matmul(G32, YT, out=buf[:v_w, : YT.shape[1]])  # (v, b) float32 numerators
            qy = (QT32 @ YT[:, off:]).astype(np.float64)  # Q^T y[pi] (BLAS runs one thread per task)
        else:
            RT, qz = low.products(batches.rows[i_b], yhl, y32, qb, buf[:v_w, : cols.shape[1]])
            gamma = low.bound(np.abs(qz).max(axis=0), qb.err)
            qy = qz[off:].T
        band = 4.0 * gamma  # permutations this close to the observed statistic are rechecked
        margin = 8.0 * gamma  # candidate maximisers: within this of the float32 maximum
        if off:  # observed statistic: float64 on the candidate maximisers of its float32 screen
            c0 = np.abs(RT[:, 0])
            cand = np.nonzero(c0 >= c0.max() - margin)[0]
            r_cand = prepared.res64(idx[cand]) @ (yr / p_norm)
            r2c = r_cand * r_cand
            # the first maximum in window order; variants in perfect LD tie up to rounding
            j = int(np.nonzero(r2c >= r2c.max() * (1.0 - 1e-12))[0][0])
            top, r_top = int(cand[j]), float(r_cand[j])
            r2_obs = r_top * r_top
            r_obs_abs = abs(r_top)
            gamma0 = gamma
        b_cols = RT.shape[1]
        full = buf[:, :b_cols]
        full[v_w:] = 0.0
        blocks = full.reshape(n_blk, _MAX_ROWS, b_cols)
        if low is None:
            bmax = np.maximum(blocks.max(axis=1), -blocks.min(axis=1))  # (blocks, b) max |.| per block
        else:  # the products' absolute values (IntegerRows.products)
            bmax = blocks.max(axis=1)
        amax = bmax[:, off:].max(axis=0).astype(np.float64)  # max_v |<G_v, y[pi]>|
        pn2 = np.maximum(1.0 - np.einsum("ij,ij->j", qy, qy), tiny)  # ||P y[pi]||^2
        m = amax * amax / pn2
        if exact:
            near = np.nonzero(np.abs(amax - r_obs_abs * np.sqrt(pn2)) <= band)[0]
            if near.size:  # float64 statistics of the permutations near the observed one
                Y64 = yc[cols[:, near + off].T]  # (k, n)
                # the rows with |<G_v, y[pi]>| >= max - margin, from the blocks that hold one
                thr = amax[near] - margin
                bk, jb = np.nonzero(bmax[:, near + off] >= thr[None, :])
                rows = bk[:, None] * _MAX_ROWS + np.arange(_MAX_ROWS)[None, :]
                hit = (np.abs(full[rows, (near[jb] + off)[:, None]]) >= thr[jb][:, None]) & (rows < v_w)
                vv, jj = rows[hit], np.broadcast_to(jb[:, None], rows.shape)[hit]
                uv, inv = np.unique(vv, return_inverse=True)
                vals = np.abs(np.einsum("ij,ij->i", prepared.res64(idx[uv])[inv], Y64[jj]))
                a64 = np.zeros(near.size)
                np.maximum.at(a64, jj, vals)
                q64 = np.einsum("ij,jk->ik", Y64, Q)
                m[near] = a64 * a64 / np.maximum(1.0 - np.einsum("ij,ij->i", q64, q64), tiny)
        chunks.append(m)
        hits += int(np.sum(m >= r2_obs))
        if spec.adaptive and hits >= spec.stop_hits:
            break
    r2_perm = np.concatenate(chunks)
    window = {}
    if keep_window:
        window = {"w_c": c0, "r_idx": idx, "r_gnorm": g_norm, "w_block": prepared, "w_y": yr / p_norm,
                  "w_pnc": p_norm / float(np.linalg.norm(y - y.mean())), "w_gamma": gamma0}
    return {
        **window,
        "index": gene.index,
        "tag": gene.tag,
        "group": gene.group,
        "num_var": int(idx.size),
        "top": int(idx[top]),  # index within the window
        "r": r_top,
        "g_norm": float(g_norm[top]),
        "p_norm": p_norm,
        "dof": int(prepared.dof),
        "r2_perm": r2_perm,
    }
