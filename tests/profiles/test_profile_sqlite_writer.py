"""The SQLite writer's shortcuts never change what is stored.

* the profile codec (msgspec) writes the bytes msgpack-python wrote;
* the writer's state (aliases and profile bytes kept between batches) is
  forgotten whenever another connection commits, and matches a store
  without it;
* group commit: concurrent callers share transactions, each gets its own
  acknowledgement, a batch whose plan fails is left out alone, a failed
  commit acknowledges nothing;
* a version 1 file is upgraded in place.
"""
from __future__ import annotations

import sqlite3
import threading

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.profiles import StoreError, open_store
from engine.profiles.events import validate_batch
from engine.profiles.fold import fold_all, new_profile
from engine.profiles.ingest import Ticket
from engine.profiles.sqlite_store import SCHEMA_VERSION
from engine.profiles.store import decode, encode
from profiles_histories import PROPERTY, ROOMY, histories
from profiles_support import NOW, T0, ev, item


# ---------------------------------------------------------------- encoding
@PROPERTY
@given(histories)
def test_profiles_are_stored_as_msgpack_python_wrote_them(history):
    """msgspec writes the profile codec; a store written with msgpack-python
    (before) must read the same, and the bytes are the same both ways."""
    p = fold_all(new_profile("C1"), history, ROOMY)
    old = msgpack.packb(p)
    assert encode(p) == old
    assert decode(old) == p == msgpack.unpackb(encode(p))


def test_the_codec_round_trips_edge_values():
    p = {"t": -0.0, "big": 2**63 - 1, "neg": -2**63, "nan": float("inf"), "s": "é" * 40,
         "nested": [{"a": None, "b": [True, False, 1.5]}], "empty": {}, "long": list(range(70000))}
    assert decode(encode(p)) == p and encode(p) == msgpack.packb(p)


def test_the_codec_refuses_what_is_no_profile():
    with pytest.raises(OverflowError):
        encode({"a": 2**70})
    with pytest.raises(TypeError):
        encode({"a": object()})


# ---------------------------------------------------------------- the SQLite writer
def test_a_store_sees_what_another_writer_wrote(sqlite_url):
    """Each writer keeps the aliases and profiles it last saw; a commit by
    another connection must make it read them again."""
    a, b = (open_store(sqlite_url, clock=lambda: NOW) for _ in range(2))
    try:
        for k in range(6):
            writer = (a, b)[k % 2]
            writer.apply([ev("purchase", T0 + k, items=[item(f"S{k}", price=1)]),
                          ev("page_view", T0 + k, cid=None, device_id=f"d{k}", loyalty_card="L1")])
        for s in (a, b):
            p = s.get("C1")
            assert p["orders_count"] == 6 and p["purchased_skus"] == [f"S{k}" for k in range(6)]
            anon = s.resolve("loyalty_card", "L1")
            assert all(s.resolve("device_id", f"d{k}") == anon for k in range(6))
        # a merge made by one writer is seen by the other's next batch
        a.apply([ev("page_view", T0 + 10, device_id="d0")])             # links C1 and the anonymous one
        merged = b.apply([ev("purchase", T0 + 11, cid=None, device_id="d3", items=[item("S9", price=1)])])
        assert merged.customers == (a.resolve("customer_id", "C1"),)
        assert b.get("C1")["orders_count"] == 7
    finally:
        a.close()
        b.close()


def test_writer_state_matches_a_store_without_it(tmp_path):
    """The same batches give the same profiles with the writer's state kept
    between batches (profiles as bytes, or decoded) and without."""
    batches = [[ev("purchase", T0 + k, cid=f"C{k % 3}", items=[item(f"S{k}", price=k)]),
                ev("page_view", T0 + k, cid=None, device_id=f"d{k % 4}", loyalty_card=f"L{k % 2}"),
                ev("page_view", T0 + k, cid=f"C{k % 3}", device_id=f"d{(k + 1) % 4}")] for k in range(12)]
    results = []
    configs = ({"writer_cache": 0}, {"writer_decoded": 0},          # none; profiles kept as bytes only
               {"decoded_min_bytes": 0})                            # every profile written kept decoded
    for k, options in enumerate(configs):
        with open_store(f"sqlite://{tmp_path / f'w{k}.db'}", clock=lambda: NOW, **options) as s:
            acks = [s.apply(b) for b in batches]
            aliases = {f"{kind}:{v}": s.resolve(kind, v)
                       for kind, values in (("device_id", "d0 d1 d2 d3"), ("loyalty_card", "L0 L1"))
                       for v in values.split()}
            results.append(([(r.customers, r.merged) for r in acks],
                            {c: s.get(c) for c in ("C0", "C1", "C2")}, aliases))
    assert results[0] == results[1] == results[2]


def test_group_commit_gives_every_caller_its_own_result(sqlite_url):
    """Threads applying at once share transactions; each gets its own
    acknowledgement and everything is applied exactly once."""
    with open_store(sqlite_url, clock=lambda: NOW) as store:
        results: dict[int, list] = {}

        def writer(w):
            results[w] = [store.apply([ev("purchase", T0 + b, cid=f"P{k}", event_id=f"w{w}-b{b}-k{k}",
                                          items=[item(f"S{w}-{b}", price=1)]) for k in range(5)]
                                      + [ev("page_view", T0, cid=None, device_id=f"shared{b}")])
                          for b in range(20)]

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w, acks in results.items():
            for b, r in enumerate(acks):
                assert set(r.accepted) >= {f"w{w}-b{b}-k{k}" for k in range(5)} and r.errors == ()
        for k in range(5):
            p = store.get(f"P{k}")
            assert p["orders_count"] == 80 and len(p["purchased_skus"]) == 80
        assert store.count("events") == 4 * 20 * 6


def test_a_failing_batch_does_not_take_its_group_down(sqlite_url, monkeypatch):
    from engine.profiles import sqlite_store
    real_plan = sqlite_store.plan

    def plan(events, reader, cfg):
        if any(e.event_id == "boom" for e in events):
            raise RuntimeError("a bug in planning")
        return real_plan(events, reader, cfg)

    monkeypatch.setattr(sqlite_store, "plan", plan)
    with open_store(sqlite_url, clock=lambda: NOW, decoded_min_bytes=0) as store:
        good, bad = Ticket([], 1), Ticket([], 1)
        good.work = validate_batch([ev("purchase", T0, items=[item("S1", price=2)])], NOW).events
        bad.work = validate_batch([ev("page_view", T0, event_id="boom")], NOW).events
        store._commit_group([bad, good])
        assert isinstance(bad.error, RuntimeError) and good.result().applied
        assert store.get("C1")["orders_count"] == 1 and store.applied("boom") is None
        # the writer's state is still right afterwards
        store.apply([ev("purchase", T0 + 1, items=[item("S2", price=3)])])
        assert store.get("C1")["lifetime_value"] == 5.0


def test_a_profile_the_codec_cannot_write_fails_its_own_batch_only(sqlite_url, monkeypatch):
    """An encoding failure (a bug; an audit found one with an int64 overflow)
    used to happen mid-write and roll back every caller's batch of the
    group; now each batch's profiles are encoded before it writes."""
    from engine.profiles import sqlite_store
    real_encode = sqlite_store.encode

    def encode(profile):
        if profile.get("customer_id") == "C9":
            raise OverflowError("can't serialize ints < -2**63")
        return real_encode(profile)

    monkeypatch.setattr(sqlite_store, "encode", encode)
    with open_store(sqlite_url, clock=lambda: NOW, decoded_min_bytes=0) as store:
        first, bad, last = Ticket([], 1), Ticket([], 1), Ticket([], 1)
        first.work = validate_batch([ev("purchase", T0, items=[item("S1", price=2)])], NOW).events
        bad.work = validate_batch([ev("purchase", T0, cid="C9", items=[item("S1", price=2)])], NOW).events
        last.work = validate_batch([ev("purchase", T0 + 1, items=[item("S2", price=3)])], NOW).events
        store._commit_group([first, bad, last])
        assert isinstance(bad.error, OverflowError)
        assert first.result().applied and last.result().applied
        assert store.get("C1")["orders_count"] == 2 and store.get("C9") is None
        store.apply([ev("purchase", T0 + 2, items=[item("S3", price=5)])])   # the writer's state is still right
        assert store.get("C1")["lifetime_value"] == 10.0


def test_a_plan_that_fails_after_folding_leaves_no_trace(sqlite_url, monkeypatch):
    """Plans fold into the profiles the writer keeps decoded; a plan that
    fails after folding must not leave its half-work there."""
    from engine.profiles import sqlite_store
    real_plan = sqlite_store.plan

    def plan(events, reader, cfg):
        changes = real_plan(events, reader, cfg)          # folded into the kept profile...
        if any(e.event_id == "boom" for e in events):
            raise RuntimeError("a bug after folding")     # ...and then failed
        return changes

    monkeypatch.setattr(sqlite_store, "plan", plan)
    with open_store(sqlite_url, clock=lambda: NOW, decoded_min_bytes=0) as store:
        store.apply([ev("purchase", T0, items=[item("S1", price=2)])])
        with pytest.raises(RuntimeError):
            store.apply([ev("purchase", T0 + 1, event_id="boom", items=[item("S2", price=3)])])
        store.apply([ev("purchase", T0 + 2, items=[item("S3", price=4)])])
        p = store.get("C1")
        assert p["orders_count"] == 2 and p["purchased_skus"] == ["S1", "S3"] and p["lifetime_value"] == 6.0


@pytest.mark.parametrize("decoded_min_bytes", [0, 1024])
def test_a_failed_commit_leaves_nothing_acknowledged_and_the_state_forgotten(sqlite_url, decoded_min_bytes):
    with open_store(sqlite_url, clock=lambda: NOW, decoded_min_bytes=decoded_min_bytes) as store:
        store.apply([ev("purchase", T0, items=[item("S1", price=2)])])
        blocker = sqlite3.connect(sqlite_url[len("sqlite://"):], timeout=0)
        blocker.execute("BEGIN IMMEDIATE")              # another process holds the write lock
        store._db.execute("PRAGMA busy_timeout = 50")
        try:
            with pytest.raises(Exception, match="nothing was acknowledged"):
                store.apply([ev("purchase", T0 + 1, items=[item("S2", price=3)])])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert store.apply([ev("purchase", T0 + 2, items=[item("S3", price=4)])]).accepted
        assert store.get("C1")["orders_count"] == 2 and store.get("C1")["lifetime_value"] == 6.0


# ---------------------------------------------------------------- the SQLite schema
V1 = """
CREATE TABLE customers (customer_id TEXT PRIMARY KEY, profile BLOB NOT NULL, updated_at REAL NOT NULL)
    WITHOUT ROWID;
CREATE TABLE aliases (alias TEXT PRIMARY KEY, customer_id TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX aliases_by_customer ON aliases (customer_id);
CREATE TABLE events (event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, applied_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema_version', 1), ('seq', 2);
"""


def test_a_version_1_file_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(V1)
    bought = validate_batch([ev("purchase", T0, cid="OLD", items=[item("S1")])], NOW).events
    p = fold_all(new_profile("OLD", 2), bought)
    old.execute("INSERT INTO customers VALUES ('OLD', ?, 1.0)", (encode(p),))
    old.execute("INSERT INTO aliases VALUES ('customer_id:OLD', 'OLD'), ('device_id:d', 'OLD')")
    old.execute("INSERT INTO events VALUES ('e-old', 'OLD', 1.0)")
    old.commit()
    old.close()
    with open_store(f"sqlite://{path}", clock=lambda: NOW) as s:
        assert s.get("OLD") == p and s.resolve("device_id", "d") == "OLD" and s.applied("e-old") == "OLD"
        r = s.apply([ev("page_view", T0, cid=None, device_id="d"), ev("page_view", T0, cid="NEW")])
        assert r.customers == ("OLD", "NEW") and s.get("NEW")["_fold"]["seq"] == 3
        assert s.apply([ev("page_view", T0, cid="OLD", event_id="e-old")]).duplicates == ("e-old",)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (SCHEMA_VERSION,)
    db.close()


def test_a_file_of_an_unknown_version_is_refused(tmp_path):
    path = tmp_path / "future.db"
    db = sqlite3.connect(path)
    db.executescript(V1.replace("('schema_version', 1)", "('schema_version', 99)"))
    db.close()
    with pytest.raises(StoreError, match="schema version 99, this Maple reads version 2"):
        open_store(f"sqlite://{path}")


def test_a_sqlite_error_while_planning_fails_the_whole_group(sqlite_url, monkeypatch):
    """SQLite may roll the transaction back on its own errors: the other
    batches of the group must not then be written outside a transaction."""
    from engine.profiles import sqlite_writer
    real_seen = sqlite_writer.Reader.seen

    def seen(self, event_ids):
        if "io-error" in event_ids:
            raise sqlite3.OperationalError("disk I/O error")
        return real_seen(self, event_ids)

    monkeypatch.setattr(sqlite_writer.Reader, "seen", seen)
    with open_store(sqlite_url, clock=lambda: NOW) as store:
        good, bad = Ticket([], 1), Ticket([], 1)
        good.work = validate_batch([ev("purchase", T0, items=[item("S1", price=2)])], NOW).events
        bad.work = validate_batch([ev("page_view", T0, event_id="io-error")], NOW).events
        store._commit_group([good, bad])
        for t in (good, bad):
            with pytest.raises(StoreError, match="nothing was acknowledged"):
                t.result()
        assert store.get("C1") is None and store.count("events") == 0
        assert store.apply([ev("purchase", T0, items=[item("S1", price=2)])]).accepted
        assert store.get("C1")["orders_count"] == 1


def test_the_writer_keeps_only_the_last_big_profiles_decoded():
    from engine.profiles.ingest import Changes
    from engine.profiles.sqlite_writer import WriterState
    state = WriterState(max_profiles=100, max_decoded=2, decoded_min_bytes=10)
    profiles = {c: {"customer_id": c} for c in ("A", "B", "C", "D")}
    stored = {"A": b"x" * 10, "B": b"x" * 9, "C": b"x" * 50, "D": b"x" * 10}
    state.wrote(Changes(profiles=profiles), stored, None)
    assert list(state.decoded) == ["C", "D"]                   # B is small, A the oldest of three
    decoded, have, ask = state.split_profiles(["A", "B", "D", "E"])
    assert decoded == {"D": profiles["D"]} and decoded["D"] is profiles["D"]    # handed out, not copied
    assert have == {"A": stored["A"], "B": stored["B"]} and ask == ["E"]
    state.wrote(Changes(profiles={"C": {"customer_id": "C"}}, deleted={"D"}), {"C": b"x" * 3}, None)
    assert list(state.decoded) == [] and "D" not in state.profiles   # C shrank below, D merged away
    state.wrote(Changes(profiles=profiles), stored, None)
    state.forget()
    assert not state.decoded and not state.profiles


def test_the_writer_maps_are_invisible_to_the_garbage_collector_and_bounded():
    """Its alias and profile-bytes maps hold only text and bytes: plain dicts
    the collector does not track (a full pass would visit every entry), kept
    newest-last and cut to three quarters of their bound when they pass it."""
    import gc
    from engine.profiles.ingest import Changes
    from engine.profiles.sqlite_writer import WriterState
    state = WriterState(max_profiles=8, max_aliases=8)
    state.read_aliases(["device_id:x"], {})                     # a known miss is kept too (None)
    for k in range(20):
        state.wrote(Changes(profiles={f"C{k}": {}}, aliases={f"device_id:d{k}": f"C{k}"}), {f"C{k}": b"p"}, k)
        state.wrote(Changes(profiles={"C0": {}}), {"C0": b"again"}, k)      # rewritten: the newest again
        assert len(state.profiles) <= 8 and len(state.aliases) <= 8
    assert not gc.is_tracked(state.profiles) and not gc.is_tracked(state.aliases)
    assert list(state.profiles)[-2:] == ["C19", "C0"] and state.profiles["C0"] == b"again"
    assert "C1" not in state.profiles and "device_id:x" not in state.aliases
    assert list(state.aliases)[-1] == "device_id:d19"
    assert state.split_aliases(["device_id:d19", "device_id:d0"]) == ({"device_id:d19": "C19"}, ["device_id:d0"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCDEFGHIJ"), st.integers(0, 70), st.booleans()), max_size=60))
def test_the_writer_s_profile_bytes_are_bounded_in_bytes_too(writes):
    """Past ``max_bytes`` of stored profiles the writer keeps the newest it
    can within three quarters of it: its count of what it holds is exact,
    never past the bound, and what it keeps is each profile's last bytes."""
    from engine.profiles.ingest import Changes
    from engine.profiles.sqlite_writer import WriterState
    state = WriterState(max_profiles=6, max_bytes=100, decoded_min_bytes=10**6)
    last, order = {}, []
    for cid, size, delete in writes:
        blob = cid.encode() * size
        if delete:
            state.wrote(Changes(deleted={cid}), {}, None)
            last.pop(cid, None)
        else:
            state.wrote(Changes(profiles={cid: {}}), {cid: blob}, None)
            last[cid] = blob
        order = [c for c in order if c != cid] + ([] if delete else [cid])
        held = state.profiles
        assert state.profile_bytes == sum(map(len, held.values())) <= 100 and len(held) <= 6
        assert all(last[c] == b for c, b in held.items())            # the last bytes written, only
        assert list(held) == order[len(order) - len(held):]          # the newest, newest last
        if not delete and size <= 75:
            assert cid in held                                       # what was just written is kept
    state.forget()
    assert state.profile_bytes == 0 and not state.profiles


def test_the_page_cache_is_bounded_per_connection_and_sqlite_s_memory_is_read(tmp_path):
    """Each of a store's connections asks for CACHE_KIB of page cache, and
    memory_used (maple_sqlite_memory_bytes) reads SQLite's own count: it
    grows as a connection caches pages and falls when it closes."""
    from engine.profiles.sqlite_store import CACHE_KIB, memory_used
    with open_store(f"sqlite://{tmp_path / 'p.db'}", clock=lambda: NOW) as store:
        assert store._db.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
        assert store._reader_db.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    before = memory_used()
    assert before is not None and before >= 0
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x BLOB)")
    db.executemany("INSERT INTO t VALUES (?)", [(b"x" * 1000,) for _ in range(2000)])     # ~2 MB of pages
    held = memory_used()
    assert held > before + 1_000_000
    db.close()
    assert memory_used() < held - 1_000_000
