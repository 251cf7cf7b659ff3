"""The per-gene permutation kernel: a task's residualized genotype block, its permutation
batches, and one phenotype's observed statistic and permutation maxima
(:func:`permutation_gene_kernel`; the tasks around it: :mod:`dqtl.association.permutation`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dqtl.association.permutation import GeneInput, PermutationSpec

__all__ = ["ResidualizedBlock", "PermutationBatches", "permutation_gene_kernel"]

#: Rows residualized at a time when a task builds its :class:`ResidualizedBlock`.
_BUILD_ROWS = 256

#: Largest permutation table (elements) a run holds as intp indices (256 MiB).
_INTP_PERMS_MAX = 32 * 2**20


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
    G32: np.ndarray  # (v, n) float32 residualized rows / g_norm (0 where not ok)
    G: np.ndarray  # (v, samples) the dosages the rows come from
    sample_index: np.ndarray | None  # the samples of G the rows use (None: all)

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
    ) -> ResidualizedBlock:
        """From (v, samples) imputed dosages, their (v,) testable mask and the basis ``Q``.

        Residualized in blocks of :data:`_BUILD_ROWS` rows in one reused float64 buffer (in
        cache; no float64 copy of the block is kept: 48 MiB per task at 500 samples), each
        block divided by its norms straight into the float32 rows. ``means``: ``G.mean(axis=1)``
        bit for bit when the decoder knows it (:meth:`DecodedBlock.row_means`; all samples only).
        """
        v = G.shape[0]
        n = G.shape[1] if sample_index is None else len(sample_index)
        g_norm = np.empty(v)
        ok = np.empty(v, dtype=bool)
        G32 = np.empty((v, n), dtype=np.float32)
        valid = np.asarray(valid, dtype=bool)
        buf = np.empty((min(_BUILD_ROWS, v), n))
        for s in range(0, v, _BUILD_ROWS):
            e = min(s + _BUILD_ROWS, v)
            m = means[s:e, None] if means is not None and sample_index is None else None
            Gc = _centred(G[s:e], sample_index, buf[: e - s], m)
            GQ = Gc @ Q
            # ||P g||^2 = ||g||^2 - ||Q^T g||^2 (as residual_norm2), with the product the
            # residual needs anyway
            gn = np.sqrt(np.maximum(np.einsum("ij,ij->i", Gc, Gc) - np.einsum("ij,ij->i", GQ, GQ), 0.0))
            keep = valid[s:e] & (gn > 1e-10 * np.sqrt(n))
            Gc -= GQ @ Q.T
            # the float64 quotients rounded to float32 (what dividing Gc, then casting, gives)
            np.divide(Gc, np.where(keep, gn, 1.0)[:, None], out=G32[s:e], casting="same_kind")
            if not keep.all():
                G32[s:e][~keep] = 0.0
            g_norm[s:e], ok[s:e] = gn, keep
        return cls(Q=Q, dof=int(dof), g_norm=g_norm, ok=ok, G32=G32, G=G, sample_index=sample_index)

    def rows(self, a: int, b: int) -> ResidualizedBlock:
        """Rows ``a:b`` (views, no copy)."""
        return ResidualizedBlock(Q=self.Q, dof=self.dof, g_norm=self.g_norm[a:b], ok=self.ok[a:b],
                                 G32=self.G32[a:b], G=self.G[a:b], sample_index=self.sample_index)

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


def _centred(G: np.ndarray, sample_index: np.ndarray | None, out: np.ndarray | None,
             means: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``G`` on ``sample_index`` minus their means (into ``out`` when given; ``means``:
    the (rows, 1) means, ``Gs.mean(axis=1)`` bit for bit, when known)."""
    Gs = G if sample_index is None else G[:, sample_index]
    return np.subtract(Gs, Gs.mean(axis=1, keepdims=True) if means is None else means, out=out)


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

    Returns
    -------
    dict or None (no testable variant)
    """
    if prepared is None:
        prepared = ResidualizedBlock.build(G, valid, gene.Q, gene.dof, sample_index=gene.sample_index,
                                           means=means)
    idx = np.nonzero(prepared.ok)[0]
    if idx.size == 0:
        return None
    if idx.size == prepared.ok.size:  # views when every variant is testable
        g_norm, G32 = prepared.g_norm, prepared.G32
    else:
        g_norm, G32 = prepared.g_norm[idx], prepared.G32[idx]
    Q = prepared.Q
    n_g = G32.shape[1]
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
    gamma = (n_g + 2) * float(np.finfo(np.float32).eps) / 2.0
    band = 4.0 * gamma  # permutations this close to the observed statistic are rechecked
    margin = 8.0 * gamma  # candidate maximisers: within this of the float32 maximum
    buf = np.empty((G32.shape[0], max(c.shape[1] for c in batches.cols)), dtype=np.float32)
    chunks: list[np.ndarray] = []
    hits = 0
    top = -1
    r_top = r2_obs = r_obs_abs = 0.0
    c0 = np.zeros(0, dtype=np.float32)
    for cols, off in zip(batches.cols, batches.offsets, strict=True):
        YT = y32[cols]  # (n, b) permuted phenotypes (fancy indexing with intp: the fastest gather)
        RT = np.matmul(G32, YT, out=buf[:, : YT.shape[1]])  # (v, b) float32 numerators
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
        RP = RT[:, off:]
        amax = np.maximum(RP.max(axis=0), -RP.min(axis=0)).astype(np.float64)  # max_v |<G_v, y[pi]>|
        qy = (QT32 @ YT[:, off:]).astype(np.float64)  # Q^T y[pi] (BLAS runs one thread per task)
        pn2 = np.maximum(1.0 - np.einsum("ij,ij->j", qy, qy), tiny)  # ||P y[pi]||^2
        m = amax * amax / pn2
        if exact:
            near = np.nonzero(np.abs(amax - r_obs_abs * np.sqrt(pn2)) <= band)[0]
            if near.size:  # float64 statistics of the permutations near the observed one
                Y64 = yc[cols[:, near + off].T]  # (k, n)
                vv, jj = np.nonzero(np.abs(RP[:, near]) >= (amax[near] - margin)[None, :])
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
                  "w_pnc": p_norm / float(np.linalg.norm(y - y.mean())), "w_gamma": gamma}
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
