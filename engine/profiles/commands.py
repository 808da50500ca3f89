"""``maple profile ...``: look into a profile store from the command line.

    maple profile show ID --store URL [--by KIND] [--internal] [--now T] [--times iso|epoch]
    maple profile import FILE.jsonl --store URL [--rebase] [--batch N] [--data DIR]
    maple profile prune --store URL [--now T]

Registered by :func:`add_commands` from engine/cli.py's ``build_parser``;
each command is a function ``cmd_<name>(args) -> exit code``, as there.
Exit codes: 0 done, 1 no such customer (show) or some events rejected
(import), 2 the store cannot be opened or reached (prune: or pruning failed
part of the way; what was deleted stays deleted).
"""
from __future__ import annotations

import argparse
import json
import sys

from .events import IDENTIFIERS, ValidationConfig, parse_timestamp


def _time(text: str) -> float:
    ts = parse_timestamp(float(text) if text.replace(".", "", 1).isdigit() else text)
    if ts is None:
        raise argparse.ArgumentTypeError(f"{text!r} is neither seconds since the epoch nor an ISO-8601 time")
    return ts


def readable_times(value, key: str | None = None):
    """A public profile with the times the fold writes (``fold.TIME_MAPS``,
    ``TIMELINE_MAPS``, keys ``at`` and ``*_at``) as ISO-8601 text, which
    rules, ``maple decide --profile`` and the service read as they read
    seconds; the fold's bookkeeping (``_fold``) is left as it is."""
    from ..eval.values import iso_time
    from .fold import TIME_MAPS, TIMELINE_MAPS, is_time_key
    if isinstance(value, dict):
        if key in TIMELINE_MAPS:
            return {k: [iso_time(x, True) for x in v] if isinstance(v, list) else v for k, v in value.items()}
        if key in TIME_MAPS or (key is not None and is_time_key(key)):
            return {k: iso_time(v, True) for k, v in value.items()}
        return {k: v if k.startswith("_") else readable_times(v, k) for k, v in value.items()}
    if key is not None and is_time_key(key):
        return iso_time(value, True)
    return value


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
    if args.times == "iso":
        shown = readable_times(shown)
    print(json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def read_events(path: str) -> tuple[list[tuple[int, object]], list[tuple[int, str]]]:
    """(line number, event) per non-blank, non-comment line of a JSON Lines
    file, and (line number, ``FILE:LINE: ...``) for each line that is not JSON."""
    events, problems = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                events.append((n, json.loads(text)))
            except ValueError as err:
                problems.append((n, f"{path}:{n}: not valid JSON: {err}"))
    return events, problems


def rebase(events: list[tuple[int, object]], now: float) -> None:
    """Shift every timestamp by one amount so the newest event is a minute
    before ``now``: sample data keeps its shape (a purchase 200 days before
    the last visit stays 200 days before it) and never ages out."""
    times = [parse_timestamp(e.get("timestamp")) for _, e in events if isinstance(e, dict)]
    times = [t for t in times if t is not None]
    if not times:
        return
    shift = now - 60.0 - max(times)
    for _, e in events:
        t = parse_timestamp(e.get("timestamp")) if isinstance(e, dict) else None
        if t is not None:
            e["timestamp"] = t + shift


def known_store_ids(data_dir: str) -> frozenset[str] | None:
    """The store ids of the store data in ``data_dir`` (stores.csv and the
    rest, as ``maple serve --data`` reads them), so an import refuses the
    events naming an unknown store exactly as the server does; None (after
    saying why) when the data cannot be read."""
    from ..inventory.loader import InventoryLoadError, load_dir
    try:
        loaded = load_dir(data_dir)
    except (InventoryLoadError, OSError) as err:
        print(f"maple: cannot read the store data in {data_dir}: {err}", file=sys.stderr)
        return None
    return frozenset(loaded.data.stores)


def cmd_profile_import(args) -> int:
    """Apply a JSON Lines file of events (the format of docs/profiles.md) to
    a store, in batches; rejected events are reported as FILE:LINE: field:
    message.  Event ids make a second import of the same file a no-op."""
    import os
    import time
    from .store import StoreError, open_store
    try:
        events, problems = read_events(args.file)
    except OSError as err:
        print(f"maple: cannot read {args.file}: {err.strerror}", file=sys.stderr)
        return 2
    if args.rebase:
        rebase(events, time.time())
    options = {}
    if args.data:
        known = known_store_ids(args.data)
        if known is None:
            return 2
        options["validation"] = ValidationConfig(known_stores=known)
    if args.store.startswith("sqlite://"):
        parent = os.path.dirname(args.store[len("sqlite://"):])
        if parent:
            os.makedirs(parent, exist_ok=True)
    stored = duplicates = 0
    try:
        with open_store(args.store, **options) as store:
            for start in range(0, len(events), args.batch):
                chunk = events[start:start + args.batch]
                result = store.apply([e for _, e in chunk])
                stored += len(result.accepted)
                duplicates += len(result.duplicates)
                for err in result.errors:
                    where = f"{err.field}: " if err.field else ""
                    line = chunk[err.index][0]
                    problems.append((line, f"{args.file}:{line}: {where}{err.message} [{err.code}]"))
    except StoreError as err:
        print(f"maple: {err}", file=sys.stderr)
        return 2
    problems.sort(key=lambda p: p[0])                   # in file order (stable: an event's problems as found)
    for _line, text in problems:
        print(text, file=sys.stderr)
    rejected = len({line for line, _text in problems})  # events, not problems: one event may have several
    print(f"{args.file}: {stored} stored, {duplicates} already there, {rejected} rejected ({args.store})")
    return 1 if rejected else 0


def cmd_profile_prune(args) -> int:
    """Delete the dedupe records of events applied longer ago than any copy
    of them could still be accepted (``maple serve`` does it once a day)."""
    import datetime
    import time
    from .store import StoreError, open_store
    now = time.time() if args.now is None else args.now
    try:
        with open_store(args.store, create=False) as store:
            horizon = store.validation.dedupe_horizon
            cutoff = datetime.datetime.fromtimestamp(now - horizon, datetime.timezone.utc)
            if not store.keeps_dedupe_rows:
                print(f"{store.url}: nothing to prune (its dedupe records expire by themselves after "
                      f"{horizon / 86400:.0f} days)")
                return 0
            bar = None
            if sys.stderr.isatty():
                try:
                    from tqdm import tqdm
                    bar = tqdm(total=store.prunable(now), desc="prune", unit="event id", file=sys.stderr)
                except ImportError:  # pragma: no cover
                    pass
            done = [0]

            def progress(n: int) -> None:
                bar.update(n - done[0])
                done[0] = n
            try:
                deleted = store.prune_applied(now, progress=progress if bar is not None else None)
            finally:
                if bar is not None:
                    bar.close()
    except StoreError as err:
        print(f"maple: {err}", file=sys.stderr)
        return 2
    print(f"{store.url}: forgot {deleted:,} event ids applied before {cutoff:%Y-%m-%d %H:%M} UTC "
          f"({horizon / 86400:.0f} days before now; no copy of them can be accepted any more)")
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
    c.add_argument("--times", choices=("iso", "epoch"), default="iso",
                   help="times as ISO-8601 UTC (default) or as the seconds since the epoch stored")
    c.add_argument("--now", type=_time, metavar="TIME",
                   help="recompute the lifecycle as of TIME (default: as of the latest event)")
    c.set_defaults(func=cmd_profile_show)

    c = sub.add_parser("import", help="apply a JSON Lines file of events to a store",
                       description="Validate and apply the events of a JSON Lines file (one event per line, "
                                   "as docs/profiles.md describes them) to a profile store, durably, in "
                                   "batches. Each rejected event is reported as FILE:LINE: field: message; "
                                   "the others are stored. Event ids are applied once, so importing a file "
                                   "again changes nothing. Exit 1 when any event was rejected, 2 when the "
                                   "file or the store cannot be opened.")
    c.add_argument("file", metavar="FILE.jsonl")
    c.add_argument("--store", required=True, metavar="URL", help="the profile store's URL (created if missing)")
    c.add_argument("--rebase", action="store_true",
                   help="shift all timestamps so the newest event is a minute ago (sample data)")
    c.add_argument("--batch", type=int, default=500, help="events per durable batch (default 500)")
    c.add_argument("--data", metavar="DIR",
                   help="store data (stores.csv, ...) to check store ids against, as `maple serve` does "
                        "(e.g. rules/data); without it any store id is accepted")
    c.set_defaults(func=cmd_profile_import)

    c = sub.add_parser("prune", help="forget the ids of events too old to be sent again",
                       description="Delete the dedupe records (applied event ids) of events applied more "
                                   "than max_past + max_future (+ 1 h) ago: no copy of them can be accepted "
                                   "any more, so remembering them only takes space. `maple serve` does this "
                                   "once a day; this runs it now. A Redis store's records expire by "
                                   "themselves. Exit 2 when the store cannot be opened or reached.")
    c.add_argument("--store", required=True, metavar="URL", help="the profile store's URL")
    c.add_argument("--now", type=_time, metavar="TIME", help="prune as of TIME (default: now)")
    c.set_defaults(func=cmd_profile_prune)
