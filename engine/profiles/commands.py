"""``maple profile ...``: look into a profile store from the command line.

    maple profile show ID --store URL [--by KIND] [--internal] [--now T]

Registered by :func:`add_commands` from engine/cli.py's ``build_parser``;
each command is a function ``cmd_<name>(args) -> exit code``, as there.
Exit codes: 0 shown, 1 no such customer, 2 the store cannot be opened or
reached.
"""
from __future__ import annotations

import argparse
import json
import sys

from .events import IDENTIFIERS, parse_timestamp


def _time(text: str) -> float:
    ts = parse_timestamp(float(text) if text.replace(".", "", 1).isdigit() else text)
    if ts is None:
        raise argparse.ArgumentTypeError(f"{text!r} is neither seconds since the epoch nor an ISO-8601 time")
    return ts


def cmd_profile_show(args) -> int:
    from .fold import public, refresh
    from .store import StoreError, open_store
    try:
        with open_store(args.store, create=False) as store:
            cid = args.id if args.by == "customer_id" else store.resolve(args.by, args.id)
            profile = store.get(cid) if cid is not None else None
    except StoreError as err:
        print(f"maple: {err}", file=sys.stderr)
        return 2
    if profile is None:
        print(f"maple: no customer with {args.by} {args.id!r} in {store.url}", file=sys.stderr)
        return 1
    if args.now is not None:
        profile = refresh(profile, args.now, store.fold_config)
    shown = profile if args.internal else public(profile)
    print(json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def add_commands(subparsers) -> None:
    """Add ``profile`` and its subcommands to maple's argparse subparsers."""
    p = subparsers.add_parser("profile", help="look into a profile store",
                              description="Commands on the customer profiles in a profile store "
                                          "(sqlite:///path/to/file.db or redis://host:port/db).")
    sub = p.add_subparsers(dest="profile_command", metavar="SUBCOMMAND")
    sub.required = True

    c = sub.add_parser("show", help="print one customer's profile as JSON",
                       description="Print the profile of the customer with this id (or, with --by, "
                                   "this identifier) as JSON. A merged-away customer id shows the "
                                   "profile it was merged into. Exit 1 when there is no such "
                                   "customer, 2 when the store cannot be opened or reached.")
    c.add_argument("id", metavar="ID", help="the customer id (or identifier, with --by)")
    c.add_argument("--store", required=True, metavar="URL", help="the profile store's URL")
    c.add_argument("--by", choices=IDENTIFIERS, default="customer_id",
                   help="what kind of identifier ID is (default: customer_id)")
    c.add_argument("--internal", action="store_true", help="include the fold's bookkeeping (_fold)")
    c.add_argument("--now", type=_time, metavar="TIME",
                   help="recompute the lifecycle as of TIME (default: as of the latest event)")
    c.set_defaults(func=cmd_profile_show)
