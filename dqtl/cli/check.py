"""``dqtl check``: verify a genotype store (every chunk present and decodable)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="verify a genotype store: every chunk present and decodable",
        description=(
            "Reads every chunk of the data arrays of a VCF Zarr store (call_genotype or "
            "call_dosage, the variant and sample tables) and checks the chunk counts dqtl recorded "
            "when it wrote the store. Exit 0 when the store is whole; otherwise one line naming the "
            "array and the chunk, exit 2."
        ),
    )
    p.add_argument("store", metavar="STORE", help="a VCF Zarr store (local path or URL)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    import zarr

    from dqtl.errors import InputError
    from dqtl.io.fs import exists, storage_options
    from dqtl.io.integrity import damaged_metadata, verify_store

    if not exists(args.store):
        raise FileNotFoundError(f"store {args.store} does not exist")
    try:
        group = zarr.open_group(args.store, mode="r", storage_options=storage_options(args.store) or None)
    except Exception as exc:  # noqa: BLE001
        bad = damaged_metadata(args.store)
        if bad:
            raise InputError(f"{args.store}: metadata file {bad} is not valid JSON; the store is "
                             "damaged: resync it or convert the input again") from None
        raise InputError(f"{args.store} is not a Zarr store (no zarr.json or .zgroup it can read: "
                         f"{exc}); give the folder written by 'dqtl convert' or bio2zarr") from None
    try:
        report = verify_store(group, f"store {args.store!r}", deep=True)
    except (ValueError, KeyError, TypeError) as exc:
        bad = None if isinstance(exc, InputError) else damaged_metadata(args.store)
        if not bad:
            raise
        raise InputError(f"{args.store}: metadata file {bad} is not valid JSON; the store is "
                         "damaged: resync it or convert the input again") from None
    if not report:
        raise InputError(f"{args.store}: no genotype arrays (call_genotype, variant_position, ...) to check")
    logging.getLogger("dqtl").info("%s: %s", args.store, ", ".join(
        f"{k} {v['stored']}/{v['chunks']} chunks" for k, v in report.items()))
    print(f"{args.store}: OK ({sum(v['stored'] for v in report.values())} chunks read)")
    return 0
