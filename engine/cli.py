"""``maple``: the command line.

    maple check RULES [--format json] [--data DIR]   diagnostics, rules and store data; exit 1 on errors
    maple compile RULES [--dis]                compile; print the IR with --dis
    maple decide --rules RULES --profile P.json [--request R.json] [--explain]
    maple test RULES                           rule tests (RULES/tests/*.yaml); exit 1 on failure
    maple replay --rules NEW (--against OLD | --against-server HOST:PORT) --profiles FILE.jsonl
    maple serve --rules RULES [--listen HOST:PORT] [--admin-listen HOST:PORT]
                [--workers N] [--store URL] [--metrics-port P]   (docs/service.md)
    maple fmt [--check] [--diff] PATH...       format rule files canonically (engine/syntax/commands.py)
    maple rollback [--admin HOST:PORT] [--to VERSION]   a running server back one version

Each command is a function ``cmd_<name>(args) -> exit code``; ``main`` builds
the parser from :data:`COMMANDS`.  Commands from other packages register
themselves the same way in :func:`build_parser`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime, timezone

from . import __version__
from .diagnostics import Diagnostics, PackError, render_all, to_json


def _color(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("NO_COLOR") is None


def _load_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as err:
        raise SystemExit(f"maple: cannot read the {what} {path}: {err.strerror}")
    except json.JSONDecodeError as err:
        raise SystemExit(f"maple: the {what} {path} is not valid JSON: line {err.lineno} column {err.colno}: {err.msg}")
    if not isinstance(data, dict):
        raise SystemExit(f"maple: the {what} {path} must be a JSON object, not {type(data).__name__}")
    return data


def parse_time(text: str) -> float:
    """--now: seconds since the epoch or ISO-8601 (UTC when no zone is given)."""
    from .eval.values import time_problem
    try:
        t = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither seconds since the epoch nor an ISO-8601 time "
                                             f"(such as 2026-11-23T10:00:00Z)")
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        try:
            t = dt.timestamp()
        except (OverflowError, ValueError):
            t = math.inf
    problem = time_problem(t)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return t


def _print_diagnostics(diags, fmt: str, stream=sys.stderr) -> None:
    diags = list(diags)
    if fmt == "json":
        print(to_json(diags), file=stream)
    elif diags:
        print(render_all(diags, color=_color(stream)), file=stream)


# ---------------------------------------------------------------- check
def cmd_check(args) -> int:
    from .compile import compile_sources
    from .ruleset import read_sources
    diags = Diagnostics()
    sources = read_sources(args.rules, diags)
    if not diags.has_errors:
        compile_sources(sources, diags)
    data_dir = check_data_dir(args.rules, args.data)
    data = check_data(data_dir) if data_dir else None
    shown = [d for d in diags if d.is_error or not args.no_warnings] + (data.errors if data else [])
    _print_diagnostics(shown, args.format)
    failed = diags.has_errors or (data is not None and not data.ok)
    if args.format == "text":
        if data is not None and data.notes:
            print("\n".join(data.notes), file=sys.stderr)
        if not failed:
            what = f"{len(sources)} file{'s' * (len(sources) != 1)}" + (f"; {data.loaded}" if data else "")
            print(f"{args.rules}: ok ({what})", file=sys.stderr)
    return 1 if failed else 0


class DataCheck:
    """What ``maple check`` found in the store data: the loader's errors
    (they print as rule diagnostics do), notes on what the server would
    leave out, and what it would load."""

    def __init__(self, errors, notes=(), loaded: str = ""):
        self.errors, self.notes, self.loaded = list(errors), list(notes), loaded

    @property
    def ok(self) -> bool:
        return not self.errors


def check_data_dir(rules: str, data: str | None) -> str:
    """The store data ``maple serve --rules RULES [--data DATA]`` would load:
    --data, else RULES/data when it holds a stores.csv ("" for none)."""
    from .server.config import ServeConfig
    return ServeConfig(rules=rules, data=data or "").data_dir


def check_data(directory: str) -> DataCheck:
    """Load the store data as the server does.  A bad row is an error here,
    though the server skips it and serves the rest: a row that would be left
    out (and the stock of a store or sku left out with it) is what a check
    before a deploy is for."""
    from .inventory.loader import InventoryLoadError, load_dir
    try:
        result = load_dir(directory)
    except InventoryLoadError as err:
        return DataCheck(err.errors, [f"{directory}: the store data cannot be used; the server would not load it"])
    report, data = result.report, result.data
    stock = sum(len(by_store) for by_store in data.stock.values())
    counts = f"{len(data.stores)} stores, {len(data.catalog)} skus, {stock} stock rows"
    notes = []
    if report.dropped:
        notes.append(f"({report.dropped} more data error{'s' * (report.dropped != 1)} not shown)")
    if report.summary():
        notes.append(f"{directory}: {report.summary()}; the server skips them and loads the rest ({counts})")
    return DataCheck(report.errors, notes, f"store data in {directory}: {counts}")


# ---------------------------------------------------------------- compile
def cmd_compile(args) -> int:
    from .ruleset import load
    from .ir.dis import disassemble
    try:
        rs = load(args.rules)
    except PackError as err:
        _print_diagnostics(err.diagnostics, "text")
        return 1
    if args.dis:
        sys.stdout.write(disassemble(rs.program))
        return 0
    counts = ", ".join(f"{v} {k}" for k, v in rs.counts.items())
    print(f"version {rs.version}: {counts}; {rs.program.stats['nodes']} IR nodes; "
          f"compiled in {rs.compile_seconds * 1000:.0f} ms")
    return 0


# ---------------------------------------------------------------- decide
def cmd_decide(args) -> int:
    from .ruleset import load
    try:
        rs = load(args.rules)
    except PackError as err:
        _print_diagnostics(err.diagnostics, "text")
        return 1
    profile = _load_json(args.profile, "profile") if args.profile else {}
    request = _load_json(args.request, "request") if args.request else {}
    now = args.now if args.now is not None else time.time()
    try:
        result = rs.decide(profile, request, now, customer_id=args.customer_id,
                           decisions=args.decision or None, explain=args.explain)
    except KeyError as err:
        print(f"maple: unknown decision {err.args[0]!r}; the pack decides: {', '.join(rs.decision_names)}",
              file=sys.stderr)
        return 2
    fmt = args.format or ("text" if args.explain else "json")
    if fmt == "json":
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        from .eval.explain import render_text
        print(render_text(result))
    return 0


# ---------------------------------------------------------------- test
def cmd_test(args) -> int:
    from . import ruletest
    from .ruleset import load
    try:
        rs = load(args.rules)
    except PackError as err:
        _print_diagnostics(err.diagnostics, "text")
        return 1
    report = ruletest.run(rs, args.rules, only=args.k)
    if not report.results and not report.errors:
        where = os.path.join(args.rules, "tests", "*.yaml")
        if report.deselected:
            print(f"maple: no rule test name contains {args.k!r} ({report.deselected} case"
                  f"{'s' * (report.deselected != 1)} in {where}; -k matches part of a name, any case)",
                  file=sys.stderr)
        else:
            print(f"maple: no rule tests found in {where}", file=sys.stderr)
        return 1
    print(ruletest.render(report, verbose=args.verbose))
    return 0 if report.ok else 1


# ---------------------------------------------------------------- replay
def cmd_replay(args) -> int:
    from . import replay as rp
    from .ruleset import load
    packs = {}
    for label, path in (("new", args.rules), ("old", args.against)):
        if path is None:
            continue
        try:
            packs[label] = load(path)
        except PackError as err:
            print(f"maple: the {label} rules ({path}) do not compile:", file=sys.stderr)
            _print_diagnostics(err.diagnostics, "text")
            return 1
    if args.against_server:
        from .server.commands import AdminError, load_server_version
        try:
            packs["old"] = load_server_version(args.against_server, args.admin_token)
        except AdminError as err:
            print(f"maple: cannot get the running version from {args.against_server}: {err}", file=sys.stderr)
            return 2
        except PackError as err:
            print(f"maple: the running version of {args.against_server} does not compile here:", file=sys.stderr)
            _print_diagnostics(err.diagnostics, "text")
            return 1
    progress = None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
            progress = tqdm(desc="replay", unit="customer", file=sys.stderr)
        except ImportError:  # pragma: no cover
            pass
    try:
        samples = rp.read_samples(args.profiles, limit=args.limit, default_now=args.now)
        report = rp.replay(packs["old"], packs["new"], samples, examples=args.examples, progress=progress)
    except (rp.ReplayInputError, OSError) as err:
        print(f"maple: {err}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(rp.render(report), end="")
    return 0
# ---------------------------------------------------------------- serve
def cmd_serve(args) -> int:
    from .server.config import ConfigError, from_args
    from .server.app import serve
    try:
        cfg = from_args(args)
    except ConfigError as err:                # a bad flag or variable: as argparse does
        print(err, file=sys.stderr)
        return err.exit_code
    return serve(cfg)


def serve_defaults() -> dict[str, str]:
    """Each ``maple serve`` setting's default as ``--help`` shows it
    (ServeConfig's, in words where the value is a sentinel); ``rules`` has
    none and ``data``'s is in its help text."""
    import dataclasses
    from .server.config import ServeConfig
    words = {"store": {"": "none"}, "metrics_port": {None: "off"}, "admin_token": {"": "none"},
             "decision_log": {"": "none"}, "cpu_latency_us": {None: "off"}}
    out = {}
    for f in dataclasses.fields(ServeConfig):
        if f.name in ("rules", "data"):
            continue
        d = f.default
        out[f.name] = words.get(f.name, {}).get(d, f"{d:,}" if type(d) is int else f"{d:g}" if type(d) is float
                                               else str(d))
    return out


def _add_serve(sub) -> None:
    from .server.config import CHOICES, OPTIONS, env_name
    c = sub.add_parser("serve", help="serve decisions over gRPC",
                       description="Serve the DecisionService (and the AdminService on its own port) for "
                                   "the rules in RULES. Every flag can also be set with an environment "
                                   "variable, named after it (MAPLE_LISTEN, MAPLE_WORKERS, ...); a flag wins. "
                                   "SIGTERM drains: health NOT_SERVING at once, in-flight calls finish, "
                                   "exit 0. See docs/service.md.")
    metavars = {"rules": "DIR", "listen": "HOST:PORT", "admin_listen": "HOST:PORT", "workers": "N",
                "store": "URL", "metrics_port": "P", "metrics_host": "HOST"}
    defaults = serve_defaults()
    for field, flag, type_, text in OPTIONS:
        default = f" (default: {defaults[field]})" if field in defaults else ""
        c.add_argument(flag, dest=field, type=type_, default=None, choices=CHOICES.get(field),
                       metavar=metavars.get(field, field.upper()), help=f"{text}{default} [{env_name(field)}]")
    c.set_defaults(func=cmd_serve)


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maple", description="Maple: real-time personalization decisions.")
    p.add_argument("--version", action="version", version=f"maple {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("check", help="check a rules directory and its store data; exit 1 on errors",
                       description="Check every *.rules file under RULES, and the store data maple serve "
                                   "would load (stores.csv, catalog.csv, inventory.csv in --data, default "
                                   "RULES/data when it holds a stores.csv). Diagnostics go to stderr "
                                   "as path:line:col: error[CODE]: message. Exit 0 when there are "
                                   "no errors (warnings allowed), 1 otherwise: a data row the server "
                                   "would skip is an error.")
    c.add_argument("rules", metavar="RULES", help="rules directory (or one .rules file)")
    c.add_argument("--format", choices=["text", "json"], default="text")
    c.add_argument("--no-warnings", action="store_true", help="show errors only")
    c.add_argument("--data", metavar="DIR",
                   help="the store data to check, as maple serve --data (default RULES/data when it holds "
                        "a stores.csv; none: the rules only)")
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("test", help="run the rule tests beside the rules (RULES/tests/*.yaml)",
                       description="Run every case in RULES/tests/*.yaml against the pack; print a diff "
                                   "and the explanation of each failure; exit 1 when any fails.")
    c.add_argument("rules", metavar="RULES")
    c.add_argument("-k", metavar="TEXT", help="only cases whose name contains TEXT")
    c.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    c.set_defaults(func=cmd_test)

    c = sub.add_parser("replay", help="preview how new rules change decisions on sample customers",
                       description="Run the new and the old rules over the same customers (a JSONL "
                                   "file: one profile, or {profile, request, now}, per line, such as a "
                                   "server's --decision-log) and report what changes, for whom, with "
                                   "examples and the latency of each.")
    c.add_argument("--rules", required=True, metavar="NEW_RULES", help="the rules to release")
    old = c.add_mutually_exclusive_group(required=True)
    old.add_argument("--against", metavar="OLD_RULES", help="the rules live now (a directory)")
    old.add_argument("--against-server", metavar="HOST:PORT",
                     help="the version a running server serves (its admin address; GetRulesetSources)")
    c.add_argument("--admin-token", help="admin bearer token for --against-server (default: $MAPLE_ADMIN_TOKEN)")
    c.add_argument("--profiles", required=True, metavar="FILE.jsonl")
    c.add_argument("--now", type=parse_time, help="the time for lines that do not give one (default: now)")
    c.add_argument("--limit", type=int, help="only the first N lines")
    c.add_argument("--examples", type=int, default=3, help="examples per decision (default 3)")
    c.add_argument("--format", choices=["text", "json"], default="text")
    c.set_defaults(func=cmd_replay)

    c = sub.add_parser("compile", help="compile a pack; --dis prints the IR")
    c.add_argument("rules", metavar="RULES")
    c.add_argument("--dis", action="store_true", help="print the disassembled IR")
    c.set_defaults(func=cmd_compile)

    c = sub.add_parser("decide", help="decide for one profile and print the result",
                       description="Evaluate the pack for one profile (and request) and print the "
                                   "decisions as JSON; --explain adds, for each decision, the rule "
                                   "that won and why the others did not.")
    c.add_argument("--rules", required=True, metavar="RULES")
    c.add_argument("--profile", metavar="PROFILE.json", help="the customer's profile (JSON object)")
    c.add_argument("--request", metavar="REQUEST.json", help="the request context (JSON object)")
    c.add_argument("--now", type=parse_time, help="the time to decide at (default: now)")
    c.add_argument("--customer-id", help="for experiment assignment (default: profile.customer_id)")
    c.add_argument("--decision", action="append", metavar="NAME", help="only this decision (repeatable)")
    c.add_argument("--explain", action="store_true", help="explain every decision")
    c.add_argument("--format", choices=["text", "json"], help="default: json, or text with --explain")
    c.set_defaults(func=cmd_decide)

    from .profiles.commands import add_commands as add_profile_commands; add_profile_commands(sub)
    _add_serve(sub)
    from .syntax.commands import add_commands as add_syntax_commands; add_syntax_commands(sub)
    from .server.commands import add_commands as add_admin_commands; add_admin_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
