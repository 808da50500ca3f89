"""Watch the rules directory: rule changes ask for a reload, data changes
call the data listeners.

Changes come from watchfiles (the Rust ``notify`` crate: inotify on Linux,
FSEvents, ReadDirectoryChangesW).  ``--watch poll`` makes it poll instead,
for network and container mounts where events do not arrive.  Bursts are
debounced by watchfiles: a batch is delivered once no change arrived for
``step`` ms, at most ``debounce`` ms after the first one, so an editor's
save (temporary file, rename, chmod) or a ``git checkout`` is one batch.

A batch under the data directory (``RULES/data/`` by default: stores,
inventory, sample profiles; ``maple serve --data DIR`` elsewhere, which is
then watched too) goes to every listener added with
:meth:`PackWatcher.on_data_change` as a sorted list of paths; anything else
asks the rules manager for a reload (:meth:`RulesManager.request_reload`,
which compiles in the background, coalesces bursts, and does nothing when
the pack and its tests did not change).

Robustness: when the watch starts (and after any restart of it) the watcher
asks for one reload, so an edit made before the watch was in place is not
lost; if the rules directory disappears or is replaced (a new inode: a
deploy that swaps directories), the watch is started again on the new one.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger("maple.watch")
logging.getLogger("watchfiles").setLevel(logging.WARNING)     # it logs every batch at INFO; we log our own

MODES = ("on", "poll", "off")
#: what a rule pack is made of (``*.rules``, the rule tests' ``*.yaml``): a changed file of
#: another kind that is gone again was an editor's temporary copy (``sed -i``'s ``sedXXXXXX``)
PACK_SUFFIXES = (".rules", ".yaml", ".yml")


def pack_filter(ignore_paths=()):
    """watchfiles' default filter (editor swap files, .git, __pycache__, ...)
    plus Maple's own state directory and decision log, wherever they are."""
    from watchfiles import DefaultFilter
    return DefaultFilter(ignore_dirs=(*DefaultFilter.ignore_dirs, ".maple"),
                         ignore_paths=[str(Path(p).resolve()) for p in ignore_paths])


class PackWatcher:
    def __init__(self, rules_dir: str, on_rules_change: Callable[[], None], *, data_dir: str | None = None,
                 mode: str = "on", debounce_ms: int = 300, step_ms: int = 50, ignore_paths=()):
        if mode not in MODES:
            raise ValueError(f"--watch must be one of {', '.join(MODES)}, not {mode!r}")
        self.path = Path(rules_dir)                 # resolved again at each (re)start: it may be a symlink
        self.root = self.path.resolve()
        self._data_dir = data_dir
        self.data_dir = Path(data_dir).resolve() if data_dir else self.root / "data"
        self.on_rules_change = on_rules_change
        self.mode = mode
        self.debounce_ms = max(step_ms, debounce_ms)
        self.step_ms = step_ms
        self.ignore_paths = tuple(ignore_paths)
        self.ready = threading.Event()          # set once the first watch is in place
        self._data_listeners: list[Callable[[list[str]], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_data_change(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(paths)`` when files under the data directory change
        (the inventory loader connects here)."""
        self._data_listeners.append(listener)

    def start(self) -> None:
        if self.mode == "off":
            return
        self._thread = threading.Thread(target=self._run, name="maple-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------ the loop
    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self._watch_once()
                failing = False
            except Exception as err:             # the directory vanished, too many watches, ...
                (log.debug if failing else log.warning)(
                    "cannot watch %s (%s); trying again every second", self.path, err)
                failing = True
            self._stop.wait(1.0)

    def _watch_once(self) -> None:
        from watchfiles import watch
        self.root = self.path.resolve()
        self.data_dir = Path(self._data_dir).resolve() if self._data_dir else self.root / "data"
        inode = os.stat(self.path).st_ino
        paths = [self.root]
        if self._data_dir and not _under(self.data_dir, self.root):
            if self.data_dir.is_dir():
                paths.append(self.data_dir)
            else:                               # the rules are watched all the same
                log.warning("the data directory %s does not exist: not watched", self.data_dir)
        first = True
        for changes in watch(*paths, watch_filter=pack_filter(self.ignore_paths), debounce=self.debounce_ms,
                             step=self.step_ms, stop_event=self._stop, rust_timeout=1000, yield_on_timeout=True,
                             force_polling=self.mode == "poll", poll_delay_ms=max(50, self.step_ms),
                             raise_interrupt=False):
            if first:                             # the watch is in place: catch up on anything missed
                first = False
                if self.ready.is_set():
                    log.info("watching %s again", self.root)
                self.ready.set()
                self.on_rules_change()
                self._catch_up_data()
            if changes:
                self._dispatch(changes)
            elif _inode(self.path) != inode:     # replaced, re-pointed or gone: watch what is there now
                log.info("%s was replaced; watching it again", self.path)
                self.on_rules_change()
                return

    def _catch_up_data(self) -> None:
        """The watch is in place: a data file changed since it was read (and
        before the watch began) would otherwise go unnoticed.  Listeners are
        given every data file and decide themselves whether anything changed."""
        if not self._data_listeners or not self.data_dir.is_dir():
            return
        self._dispatch([(None, str(p)) for p in sorted(self.data_dir.iterdir()) if p.is_file()])

    def _dispatch(self, changes) -> None:
        data, rules = set(), set()
        for _change, path in changes:
            (data if _under(Path(path), self.data_dir) else rules).add(path)
        if data:
            paths = sorted(data)
            if not self._data_listeners:
                log.debug("data files changed, no listener: %s", ", ".join(paths))
            for listener in self._data_listeners:
                try:
                    listener(paths)
                except Exception:
                    log.exception("a data-change listener failed")
        if rules:
            log.info("rules changed: %s", _changed_text(rules, self.root))
            self.on_rules_change()


def _changed_text(paths, root: Path, most: int = 10) -> str:
    """The changed paths for the log, relative to ``root``: those of the
    pack and those still there; temporary files that came and went are
    counted, not named."""
    named = sorted(os.path.relpath(p, root) for p in paths if p.endswith(PACK_SUFFIXES) or os.path.exists(p))
    text = ", ".join(named[:most]) + (f" and {len(named) - most} more" if len(named) > most else "")
    gone = len(paths) - len(named)
    if gone:
        text += ("; " if named else "") + f"{gone} temporary file{'s' if gone > 1 else ''} that came and went"
    return text


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
