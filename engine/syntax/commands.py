"""``maple fmt``: rule files in canonical layout, from the command line.

    maple fmt [--check] [--diff] PATH...

PATH is a ``.rules`` file, a directory (every ``*.rules`` below it) or ``-``
(stdin to stdout).  Without options the files are rewritten in place; with
``--check`` nothing is written and the exit code says whether anything would
change (for CI); with ``--diff`` nothing is written and a unified diff is
printed.  Registered by :func:`add_commands` from engine/cli.py's
``build_parser``.

Exit codes: 0 done (or, with ``--check``, already formatted); 1 a file has
syntax errors (reported as ``maple check`` reports them; that file is left
alone) or, with ``--check``, a file would change; 2 the formatter found it
would change a file's meaning (a bug: the file is left alone).
"""
from __future__ import annotations

import difflib
import os
import sys
import tempfile
from pathlib import Path

from ..diagnostics import Diagnostics, render_all
from .fmt import FormatError, FormatterBug, format_text


def _color(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("NO_COLOR") is None


def _write(path: str, text: str) -> None:
    """Replace the file in one step, so an interrupted run leaves it whole."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _diff(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=f"{path} (before)", tofile=f"{path} (formatted)"))


class _Run:
    """One ``maple fmt`` invocation: what it did, for the summary and exit code."""

    def __init__(self, args):
        self.args = args
        self.changed = self.unchanged = self.broken = self.bugs = 0

    def sources(self):
        from ..ruleset import read_sources
        seen = set()
        for path in self.args.paths:
            if path == "-":
                yield "-", sys.stdin.read()
                continue
            diags = Diagnostics()
            found = read_sources(path, diags)
            if diags.has_errors:
                self.broken += 1
                print(render_all(diags.errors, color=_color(sys.stderr)), file=sys.stderr)
            for src in found:
                key = os.path.realpath(src.path)
                if key not in seen:
                    seen.add(key)
                    yield src.path, src.text

    def one(self, path: str, text: str) -> None:
        shown = "<stdin>" if path == "-" else path
        try:
            out = format_text(text, shown)
        except FormatError as err:
            self.broken += 1
            print(render_all(err.diagnostics.errors, color=_color(sys.stderr)), file=sys.stderr)
            print(f"maple fmt: {shown} has syntax errors; not formatted", file=sys.stderr)
            return
        except FormatterBug as err:
            self.bugs += 1
            print(f"maple fmt: internal error: {err} (please report it with the file)", file=sys.stderr)
            return
        args = self.args
        if path == "-" and not (args.check or args.diff):
            sys.stdout.write(out)
        if out == text:
            self.unchanged += 1
            return
        self.changed += 1
        if args.diff:
            sys.stdout.write(_diff(shown, text, out))
        if args.check:
            print(f"would reformat {shown}", file=sys.stderr)
        elif not args.diff and path != "-":
            _write(path, out)
            print(f"reformatted {shown}", file=sys.stderr)

    def summary(self) -> str:
        would = self.args.check or self.args.diff
        done = f"{self.changed} file{'s' * (self.changed != 1)} {'would be ' if would else ''}reformatted"
        text = f"{done}, {self.unchanged} already formatted"
        if self.broken:
            text += f", {self.broken} with errors"
        return text

    def exit_code(self) -> int:
        if self.bugs:
            return 2
        return 1 if self.broken or (self.args.check and self.changed) else 0


def cmd_fmt(args) -> int:
    run = _Run(args)
    for path, text in run.sources():
        run.one(path, text)
    if args.paths != ["-"]:
        print(run.summary(), file=sys.stderr)
    return run.exit_code()


def add_commands(subparsers) -> None:
    """Add ``fmt`` to maple's argparse subparsers."""
    c = subparsers.add_parser(
        "fmt", help="format rule files canonically (in place; --check for CI)",
        description="Format .rules files in one canonical layout, keeping every comment: clauses on "
                    "their own lines, long conditions broken before and/or, one space around "
                    "operators. Formatting never changes what the rules mean, and formatting a "
                    "formatted file changes nothing. A file with syntax errors is reported as by "
                    "`maple check` and left alone (exit 1).")
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="a .rules file, a directory (every *.rules below it) or - for stdin to stdout")
    c.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a file would change (for CI)")
    c.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of the changes")
    c.set_defaults(func=cmd_fmt)
