"""``dqtl meta``: fixed- and random-effects meta-analysis of nominal pairs across studies."""

from __future__ import annotations

import argparse
import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)


def memory_size(text: str) -> int:
    """``512MB``, ``2GiB``, ``1e9`` -> bytes."""
    m = _SIZE.match(text)
    if not m:
        try:
            return int(float(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 512MB, 2GiB)") from None
    unit = (m.group(2) or "").lower().rstrip("b").rstrip("i")
    return int(float(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[unit])


def study(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--study takes NAME=PATH (a file or a glob), got {text!r}")
    name, path = text.split("=", 1)
    if not name or not path:
        raise argparse.ArgumentTypeError(f"--study takes NAME=PATH, got {text!r}")
    return name, path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "meta",
        help="meta-analysis of nominal pairs across studies",
        description=(
            "Per (phenotype, variant) pair reported by any study: inverse-variance fixed-effect and "
            "DerSimonian-Laird random-effects estimates, Cochran's Q and its p, I^2 (percent) and "
            "tau^2 (metafor 3.8 rma.uni FE / DL). Each --study is dqtl or tensorQTL nominal pair "
            "files (a path, or a glob for per-contig files; slope and slope_se). Streams inputs "
            "larger than memory through hash buckets sized to --memory-budget. Writes "
            "PREFIX.meta_pairs.parquet (phenotype_id, variant_id, n_studies, beta_fe, se_fe, "
            "pval_fe, beta_re, se_re, pval_re, tau2, q_het, pval_het, i2) and "
            "PREFIX.meta_summary.json."
        ),
    )
    p.add_argument("output_prefix", metavar="PREFIX")
    p.add_argument("--study", action="append", type=study, required=True, metavar="NAME=PATH",
                   help="a study's pair files (repeat for each study; at least two)")
    p.add_argument("--memory-budget", type=memory_size, default=1 << 30, metavar="SIZE",
                   help="memory one task may hold (default 1GiB)")
    p.add_argument("--scheduler-address", metavar="ADDR", default=None,
                   help="run on this dask.distributed scheduler; default: local threads")
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dqtl.cli.common import scheduler
    from dqtl.errors import InputError
    from dqtl.meta import run_meta

    names = [n for n, _ in args.study]
    if len(set(names)) != len(names):
        raise InputError("--study: each study needs its own NAME")
    with scheduler(args.scheduler_address, progress=not args.no_progress):
        run_meta(dict(args.study), args.output_prefix, memory_budget=args.memory_budget)
    return 0
