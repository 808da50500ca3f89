"""Forgetting what no longer matters: the dedupe records of old events.

Every applied event id is kept so a copy of it (a retry, a replayed file)
is recognised and not applied twice.  A copy can only be accepted while
its timestamp is within the validator's ``max_past``, so an id can be
forgotten once its event was applied more than
``ValidationConfig.dedupe_horizon`` ago (docs/profiles.md, "Retention of event ids").
A Redis store's records expire by themselves; a SQLite store's rows are
deleted by :meth:`~engine.profiles.sqlite_store.SQLiteStore.prune_applied`,
which :class:`DedupePruner` runs in ``maple serve`` once a day.

Each worker process runs its own pruner, its first pass a random few
minutes after start (so the workers of one server do not all start at
once); after the first has deleted a day's rows, the others find none,
an index lookup.
"""
from __future__ import annotations

import logging
import random
import threading
import time

log = logging.getLogger("maple.service")

DAY = 86_400.0
FIRST_AFTER = (60.0, 660.0)      # seconds after start: the first pass, at random in this range


class DedupePruner:
    """Runs ``store.prune_applied()`` ``first_after`` seconds after
    :meth:`start`, then every ``every`` seconds, on a daemon thread, until
    :meth:`stop`.  A failing pass (the store unreachable) is logged and
    tried again at the next one; nothing else depends on it."""

    def __init__(self, store, every: float = DAY, first_after: float | None = None):
        if every <= 0:
            raise ValueError("every must be positive")
        self.store = store
        self.every = every
        self.first_after = random.uniform(*FIRST_AFTER) if first_after is None else first_after
        self.passes = 0                 # passes finished (successful or not)
        self.deleted = 0                # rows deleted over all passes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One pass now: the rows deleted (0 after a failure, logged)."""
        t0 = time.monotonic()
        try:
            n = self.store.prune_applied(stop=self._stop)
        except Exception:
            log.exception("pruning the dedupe records of %s failed; next try in %.0f s", self.store.url, self.every)
            n = 0
        else:
            if n:
                log.info("forgot %d event ids older than %.0f days in %s (%.1f s)", n,
                         self.store.validation.dedupe_horizon / DAY, self.store.url, time.monotonic() - t0)
        self.deleted += n
        self.passes += 1
        return n

    def start(self) -> "DedupePruner":
        self._thread = threading.Thread(target=self._run, daemon=True, name="maple-dedupe-pruner")
        self._thread.start()
        return self

    def _run(self) -> None:
        wait = self.first_after
        while not self._stop.wait(wait):
            self.run_once()
            wait = self.every

    def stop(self, timeout: float | None = 30.0) -> None:
        """No more passes; a pass in progress ends after its current
        transaction (a few thousand rows), and this waits for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def pruner_for(profiles) -> DedupePruner | None:
    """A pruner for a profile source backed by a store that keeps dedupe
    rows (``StoredProfiles`` over SQLite); None for the others."""
    store = getattr(profiles, "store", None)
    if store is None or not getattr(store, "keeps_dedupe_rows", False):
        return None
    return DedupePruner(store)
