"""Generate the tensorQTL 1.0.10 beta-approximation reference used by tests/multitest/test_beta.py.

Run once (needs an environment with tensorQTL 1.0.10 and its dependencies):

    /work/tqvenv/bin/python tests/reference/tensorqtl_beta/generate.py

Simulates cis-window null permutations for a few phenotypes (seeded numpy), then calls
``tensorqtl.core.calculate_beta_approx_pval(r2_perm, r2_nominal, dof)`` exactly as
``tensorqtl.cis.map_cis`` does for ungrouped phenotypes (initial dof = nominal dof).
Writes ``inputs.npz`` (r2_perm, r2_obs, dof) and ``expected.tsv`` (tensorQTL's outputs).
"""

from __future__ import annotations

import contextlib
import io
import pathlib

import numpy as np
import scipy
from tensorqtl import core

HERE = pathlib.Path(__file__).resolve().parent
SEED = 20240611
NPERM = 1000


def simulate(rng: np.random.Generator, n: int, m: int, k: int, effect: float):
    """Max r^2 over m variants for the observed phenotype and NPERM permutations."""
    # genotypes with LD: AR(1) latent normals thresholded into 0/1/2 dosages
    z = np.empty((m, 2, n))
    z[0] = rng.standard_normal((2, n))
    for j in range(1, m):
        z[j] = 0.8 * z[j - 1] + 0.6 * rng.standard_normal((2, n))
    thr = rng.uniform(0.0, 1.5, size=(m, 1, 1))
    g = (z > thr).sum(axis=1).astype(float)
    cov = rng.standard_normal((n, k))
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), cov]))
    y = effect * g[m // 2] + rng.standard_normal(n)

    def resid_norm(a):
        a = a - (a @ q) @ q.T
        nrm = np.linalg.norm(a, axis=-1, keepdims=True)
        return np.divide(a, nrm, out=np.zeros_like(a), where=nrm > 0)

    gr = resid_norm(g)
    yr = resid_norm(y[None, :])[0]
    r2_obs = float(np.max((gr @ yr) ** 2))
    perms = np.stack([rng.permutation(n) for _ in range(NPERM)])
    yp = resid_norm(y[perms])
    r2_perm = np.max((yp @ gr.T) ** 2, axis=1)
    return r2_perm, r2_obs, n - 2 - k


def main() -> None:
    rng = np.random.default_rng(SEED)
    designs = [  # (n samples, m variants, k covariates, effect)
        (50, 1, 0, 0.0),
        (50, 20, 3, 0.0),
        (80, 200, 5, 0.0),
        (100, 50, 10, 0.3),
        (100, 500, 10, 0.0),
        (150, 1000, 15, 0.0),
        (200, 5, 5, 0.5),
        (200, 300, 20, 0.2),
        (300, 100, 25, 0.0),
        (300, 800, 25, 0.8),
        (60, 60, 2, 0.0),
        (120, 2, 8, 0.0),
    ]
    r2_perm, r2_obs, dofs, rows = [], [], [], []
    for i, (n, m, k, eff) in enumerate(designs):
        rp, ro, dof = simulate(rng, n, m, k, eff)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            pval_beta, a, b, true_df, p_true = core.calculate_beta_approx_pval(rp, ro, dof)
        r2_perm.append(rp)
        r2_obs.append(ro)
        dofs.append(dof)
        rows.append(
            (
                i,
                n,
                m,
                k,
                eff,
                dof,
                true_df,
                p_true,
                a,
                b,
                pval_beta,
                "newton_failed" in buf.getvalue() or "WARNING" in buf.getvalue(),
            )
        )
    np.savez_compressed(
        HERE / "inputs.npz",
        r2_perm=np.array(r2_perm),
        r2_obs=np.array(r2_obs),
        dof=np.array(dofs, dtype=np.float64),
    )
    with open(HERE / "expected.tsv", "w") as fh:
        fh.write(
            "gene\tn_samples\tn_variants\tn_covariates\teffect\tdof\ttrue_df\tpval_true_df\t"
            "beta_shape1\tbeta_shape2\tpval_beta\tnewton_fallback\n"
        )
        for r in rows:
            fh.write(
                "\t".join(
                    [str(r[0]), str(r[1]), str(r[2]), str(r[3]), repr(r[4]), str(r[5])]
                    + [f"{float(v):.17g}" for v in r[6:11]]
                    + [str(bool(r[11])).lower()]
                )
                + "\n"
            )
    print(
        f"wrote {HERE / 'expected.tsv'} (tensorqtl core from {core.__file__}, scipy {scipy.__version__}, numpy {np.__version__})"
    )


if __name__ == "__main__":
    main()
