"""A sampled decision log, personal fields masked, that ``maple replay`` reads.

``maple serve --decision-log PATH --decision-log-rate 0.01`` appends one JSON
line for about one decision in a hundred (each Decide, and each DecideBatch
item, is sampled on its own)::

    {"at": 1763900000.12, "version": "3f1c0a9d2b7e4c11", "customer_id": "h-5d0c...",
     "profile": {...masked...}, "request": {...masked...}, "now": 1763900000.1,
     "profile_status": "stored",
     "decisions": {"homepage_category": {"value": "running-shoes", "source": "rule",
                                         "rule": "continue_where_left_off"},
                   "next_best_offer": {"value": ["free_latte_with_beans"], "source": "rule",
                                       "rule": "free_latte_with_beans", "experiments": {"offer_copy": "a"}}}}

``profile`` is the profile the rules saw (stored, snapshot or both), so
``maple replay --rules NEW --against-server HOST:PORT --profiles PATH``
reruns real traffic.  Masking, applied to ``profile`` and ``request`` at any
depth (:func:`mask`):

* ``customer_id`` becomes a pseudonym, ``h-`` + 20 hex digits of
  HMAC-SHA256(key, id).  The key is ``STATE/decision-log.key`` (32 random
  bytes made once, mode 0600): one customer keeps one pseudonym across
  restarts and across workers, and without the key nobody can test a guess.
* Removed: the keys in :data:`DROP_KEYS` (identifiers and contact data:
  e-mail addresses and hashes, phone, device ids, loyalty card numbers,
  names, postal addresses, IP addresses, birth dates, aliases); ``email``
  when it is text (the reference schema's ``email`` record of open and click
  times and the ``consent.email`` flag stay); keys starting with ``_`` (store
  bookkeeping such as ``_fold``); any text that looks like an e-mail address.
* Coarsened: geo points (any object with ``lat`` and ``lon``, and the values
  of ``home`` and ``location`` in either geo form) are rounded to 2 decimals
  (about 1.1 km).
* Offer messages are not logged (they may quote the profile); offers are
  logged by id.

Everything else stays, since the rules may read it.  Replay consequence:
experiments assign by the pseudonym, so a replayed customer may land in
another variant than the one logged; both rulesets see the same pseudonym,
so the comparison stays fair.

Writing happens on a background thread: a sampled request pays a queue put;
when the queue is full (the disk is slow) records are dropped and counted,
never waited for.  Lines are written with one ``write`` each on an
``O_APPEND`` file, so several workers can share one log.  Profiles handed to
the log are not copied: profiles are never mutated once read (the store and
cache hand out fresh dicts; the decider only reads them).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import random
import re
import secrets
import threading
import time
from pathlib import Path

log = logging.getLogger("maple.decision_log")

DROP_KEYS = frozenset({
    "email_address", "email_hash", "emails", "phone", "phone_number", "mobile_number", "device_id", "device_ids",
    "idfa", "gaid", "advertising_id", "loyalty_card", "loyalty_cards", "loyalty_id", "loyalty_number",
    "card_number", "name", "first_name", "last_name", "full_name", "address", "street", "postcode",
    "postal_code", "zip", "zip_code", "ip", "ip_address", "birth_date", "date_of_birth", "birthday",
    "aliases", "identifiers",
})
GEO_KEYS = frozenset({"home", "location"})
GEO_DECIMALS = 2
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DROP = object()
KEY_FILE = "decision-log.key"


# ---------------------------------------------------------------- masking
class Pseudonyms:
    def __init__(self, key: bytes):
        self._key = key

    def __call__(self, customer_id) -> str | None:
        if not isinstance(customer_id, str) or not customer_id:
            return None
        return "h-" + hmac.new(self._key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def mask(value, pseudonym, key: str | None = None):
    """``value`` with personal fields removed or coarsened (see the module
    docstring); ``key`` is the name ``value`` was found under."""
    if isinstance(value, dict):
        if "lat" in value and "lon" in value:
            return _coarse(value.get("lat"), value.get("lon"))
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("_") or k.lower() in DROP_KEYS:
                continue
            if k == "email" and isinstance(v, str):      # an address (consent.email, a bool, stays)
                continue
            m = pseudonym(v) if k == "customer_id" else mask(v, pseudonym, k)
            if m is not _DROP:
                out[k] = m
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        if key in GEO_KEYS and len(value) == 2 and all(_is_number(x) for x in value):
            a, b = value
            return [round(a, GEO_DECIMALS), round(b, GEO_DECIMALS)]
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [m for m in (mask(x, pseudonym) for x in items) if m is not _DROP]
    if isinstance(value, str) and _EMAIL.search(value):
        return _DROP
    return value


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _coarse(lat, lon):
    if _is_number(lat) and _is_number(lon):
        return {"lat": round(lat, GEO_DECIMALS), "lon": round(lon, GEO_DECIMALS)}
    return _DROP                                     # not a point we can coarsen: leave it out


def decisions_of(ds) -> dict:
    out = {}
    for name, o in ds.outcomes.items():
        value = [c.id for c in o.value] if o.kind == "offer" else o.value
        entry = {"value": _plain(value), "source": o.source, "rule": o.reason.name if o.reason else None}
        if o.experiments:
            entry["experiments"] = dict(o.experiments)
        out[name] = entry
    return out


def _plain(v):
    if isinstance(v, tuple) and len(v) == 2 and all(_is_number(x) for x in v):
        return {"lat": v[0], "lon": v[1]}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------- the key
def load_key(state_dir: str | os.PathLike) -> bytes:
    """The pseudonym key of a state directory, made on first use (atomically:
    every worker of a server ends up with the same key)."""
    root = Path(state_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / KEY_FILE
    if not path.exists():
        tmp = root / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)                       # fails if another process made it first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return bytes.fromhex(path.read_text().strip())


# ---------------------------------------------------------------- the log
class DecisionLog:
    def __init__(self, path: str | os.PathLike, rate: float, key: bytes, queue_size: int = 10_000,
                 sample=random.random, clock=time.time):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the decision log rate must be from 0 to 1, got {rate}")
        self.path = str(path)
        self.rate = rate
        self.dropped = 0
        self.written = 0
        self._pseudonym = Pseudonyms(key)
        self._sample = sample
        self._clock = clock
        self._queue: queue.Queue = queue.Queue(queue_size)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._thread = threading.Thread(target=self._run, name="maple-decision-log", daemon=True)
        self._thread.start()

    def offer(self, version: str, customer_id: str | None, profile: dict, request: dict, ds, status) -> None:
        """Called for every decision; keeps about ``rate`` of them."""
        if self._sample() >= self.rate:
            return
        try:
            self._queue.put_nowait((self._clock(), version, customer_id, profile, request, ds, status))
        except queue.Full:
            self.dropped += 1

    def record(self, at, version, customer_id, profile, request, ds, status) -> dict:
        """One log line, masked.  ``ds``: the DecisionSet, or a function
        making it (the decision path hands the kernel's answers over as
        they are; the outcomes are made here, off that path, if sampled)."""
        if callable(ds):
            ds = ds()
        cid = customer_id or (profile.get("customer_id") if isinstance(profile, dict) else None)
        return {"at": round(at, 3), "version": version, "customer_id": self._pseudonym(cid),
                "profile": mask(profile or {}, self._pseudonym), "request": mask(request or {}, self._pseudonym),
                "now": ds.now, "profile_status": getattr(status, "value", status),
                "decisions": decisions_of(ds)}

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while item is not None and len(batch) < 256:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            lines = []
            for it in batch:
                if it is None:
                    continue
                try:
                    lines.append(json.dumps(self.record(*it), ensure_ascii=False, default=str) + "\n")
                except Exception:                     # a value JSON cannot hold: skip the record, keep logging
                    log.exception("could not log a decision")
            for line in lines:
                try:
                    os.write(self._fd, line.encode("utf-8"))
                    self.written += 1
                except OSError as err:
                    self.dropped += 1
                    log.error("cannot write the decision log %s: %s", self.path, err)
            if batch[-1] is None:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then close the file."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        try:
            os.close(self._fd)
        except OSError:
            pass


def open_decision_log(path: str, rate: float, state_dir: str | None) -> DecisionLog:
    """``--decision-log``: the pseudonym key comes from the state directory;
    without one (``--state off``) a key for this process only (pseudonyms
    then change at every restart)."""
    if state_dir is None:
        log.warning("no state directory: decision log pseudonyms change at every restart")
        key = secrets.token_bytes(32)
    else:
        key = load_key(state_dir)
    return DecisionLog(path, rate, key)
