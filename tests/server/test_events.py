"""RecordEvents and Decide over a profile store, against real `maple serve`
processes, a real SQLite file and a real redis-server: per-event answers,
the prefill that a till purchase makes on the web, kill -9 durability for
both stores, Redis stopped mid-run, and two servers sharing one Redis."""
from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from engine.profiles.cache import ENTRY_BYTES
from engine.server.events import event_from_pb, wire_field
from engine.server.pb.maple.v1 import decision_pb2 as pb
from engine.server.pb.maple.v1 import decision_pb2_grpc
from engine.server.pb.maple.v1 import events_pb2 as epb
from engine.service.events import EventRecorder, Rejected
from engine.service.errors import FailedPrecondition, ResourceExhausted
from engine.service.sources import StaticProfiles

from .conftest import until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "profiles"))
from profiles_support import RedisClusterServers, RedisServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"


def now_ts(offset: float = 0.0) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int((time.time() + offset) * 1e9))
    return t


_n = iter(range(1, 1_000_000))


def till_purchase(customer: str, size: str = "44", sku: str = "TRL-002", event_id: str | None = None) -> epb.Event:
    return epb.Event(event_id=event_id or f"{customer}-{next(_n)}", type=epb.EVENT_TYPE_PURCHASE,
                     channel=epb.EVENT_CHANNEL_POS, timestamp=now_ts(-3600), customer_id=customer,
                     store_id="s001",
                     items=[epb.EventItem(sku=sku, category="trail-shoes", size=size, price=149.0)])


def record(server, events) -> epb.RecordEventsResponse:
    call = server.channel.unary_unary("/maple.v1.DecisionService/RecordEvents",
                                      request_serializer=epb.RecordEventsRequest.SerializeToString,
                                      response_deserializer=epb.RecordEventsResponse.FromString)
    return call(epb.RecordEventsRequest(events=events), timeout=30)


def _len(n: int) -> bytes:
    out = b""
    while n > 0x7F:
        out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
    return out + bytes([n])


def deep_meta(event: epb.Event, levels: int) -> bytes:
    """The event's bytes with a ``meta`` of {"a": {"a": ... {}}} ``levels``
    deep, written by hand: past about 33 levels the protobuf runtime cannot
    build (or parse) the message."""
    struct = b""
    for _ in range(levels):
        value = b"\x2a" + _len(len(struct)) + struct                  # Value.struct_value = 5
        entry = b"\x0a\x01a\x12" + _len(len(value)) + value           # fields entry: key 1, value 2
        struct = b"\x0a" + _len(len(entry)) + entry                    # Struct.fields = 1
    return event.SerializeToString() + b"\xf2\x01" + _len(len(struct)) + struct     # Event.meta = 30


def batch_bytes(*events: bytes) -> bytes:
    return b"".join(b"\x0a" + _len(len(e)) + e for e in events)      # RecordEventsRequest.events = 1


def decide(server, customer: str) -> pb.DecideResponse:
    stub = decision_pb2_grpc.DecisionServiceStub(server.channel)
    return stub.Decide(pb.DecideRequest(customer_id=customer, context=pb.RequestContext(
        channel=pb.CHANNEL_WEB, page="product", sku="TRL-002", category="trail-shoes")), timeout=30)


# ---------------------------------------------------------------- units
def test_wire_events_become_the_models_raw_events():
    e = till_purchase("c1", event_id="e1")
    e.consent.email = True
    raw = event_from_pb(e)
    assert raw["type"] == "purchase" and raw["channel"] == "pos" and raw["store_id"] == "s001"
    assert raw["items"] == [{"sku": "TRL-002", "category": "trail-shoes", "size": "44", "price": 149.0}]
    assert raw["email"] is True and "push" not in raw            # only the consent topics set
    assert "sku" not in raw and "price" not in raw               # unset means "not given"
    assert event_from_pb(epb.Event(type=99))["type"] == 99       # unknown enum: left for the validator
    bad = epb.Event(event_id="e2", timestamp=Timestamp(seconds=1, nanos=-1))
    assert isinstance(event_from_pb(bad), Rejected)
    assert wire_field("email", "V110") == "consent.email" and wire_field("items[0].price", "V107") == "items[0].price"


def test_an_event_whose_meta_is_nested_too_deeply_is_rejected_alone():
    from engine.server.nesting import events_parse_error
    ok = till_purchase("c1", event_id="ok")
    fine, deep = epb.Event(), epb.Event()
    fine.ParseFromString(deep_meta(till_purchase("c1", event_id="fine"), 31))        # 32 objects: the limit
    deep.ParseFromString(deep_meta(till_purchase("c1", event_id="deep"), 32))
    assert isinstance(event_from_pb(fine), dict) and "meta" in event_from_pb(fine)
    assert event_from_pb(deep) == Rejected((("meta", "V103", "nested more than 32 levels deep"),), "deep")
    raw = batch_bytes(ok.SerializeToString(), deep_meta(till_purchase("c1", event_id="far"), 200),
                      deep_meta(till_purchase("c1", event_id="near"), 33))
    with pytest.raises(Exception) as err:
        epb.RecordEventsRequest.FromString(raw)                  # the runtime refuses the whole batch
    events = events_parse_error(raw, err.value)
    assert events[0] == event_from_pb(ok)
    assert events[1:] == [Rejected((("meta", "V103", "nested more than 32 levels deep"),), eid)
                          for eid in ("far", "near")]
    assert events_parse_error(b"\xff\xff", err.value) is None   # not a batch at all: the generic answer


def test_recording_needs_a_store_and_a_bounded_batch():
    with pytest.raises(FailedPrecondition, match="--store sqlite"):
        EventRecorder.for_source(StaticProfiles({})).record([{"event_id": "x"}])
    with pytest.raises(ResourceExhausted, match="at most 1000"):
        EventRecorder(sink=None).record([{}] * 1001)


# ---------------------------------------------------------------- one server
def test_a_batch_stores_the_good_events_and_names_each_bad_one(start_server, tmp_path):
    s = start_server(RULES, "--store", f"sqlite://{tmp_path / 'p.db'}")
    s.wait_health()
    good = till_purchase("c-good", event_id="ok-1")
    negative = till_purchase("c-bad", event_id="neg-1")
    negative.items[0].price = -5
    anonymous = epb.Event(event_id="anon-1", type=epb.EVENT_TYPE_PAGE_VIEW, channel=epb.EVENT_CHANNEL_WEB,
                          timestamp=now_ts(), page="home")
    future = epb.Event(event_id="fut-1", type=epb.EVENT_TYPE_PAGE_VIEW, channel=epb.EVENT_CHANNEL_WEB,
                       timestamp=now_ts(30 * 86400), customer_id="c-good", page="home")
    unknown_type = epb.Event(event_id="typ-1", type=77, channel=epb.EVENT_CHANNEL_WEB, timestamp=now_ts(),
                             customer_id="c-good")
    mars = epb.Event(event_id="mars-1", type=epb.EVENT_TYPE_STORE_VISIT, channel=epb.EVENT_CHANNEL_POS,
                     timestamp=now_ts(), customer_id="c-good", store_id="mars")
    r = record(s, [good, negative, anonymous, future, unknown_type, mars, good])
    statuses = [x.status for x in r.results]
    assert statuses == [epb.EVENT_STATUS_STORED] + [epb.EVENT_STATUS_REJECTED] * 5 + [epb.EVENT_STATUS_DUPLICATE]
    assert (r.stored, r.rejected, r.duplicates) == (1, 5, 1)
    fields = [[v.field for v in x.violations] for x in r.results[1:6]]
    assert fields[0] == ["events[1].items[0].price"]
    assert fields[4] == ["events[5].store_id"]                   # not a store of the server's store data
    assert "unknown store 'mars'" in r.results[5].violations[0].description
    assert all(f and f[0].startswith(f"events[{i + 1}]") for i, f in enumerate(fields))
    assert all(v.description and v.code for x in r.results[1:6] for v in x.violations)
    # an event's meta nested past the protobuf runtime's limit fails alone; the batch was refused whole
    call = s.channel.unary_unary("/maple.v1.DecisionService/RecordEvents",
                                 response_deserializer=epb.RecordEventsResponse.FromString)
    deep = call(batch_bytes(till_purchase("c-deep", event_id="deep-0").SerializeToString(),
                            deep_meta(till_purchase("c-deep", event_id="deep-1"), 200),
                            deep_meta(till_purchase("c-deep", event_id="deep-2"), 20)), timeout=30)
    assert [x.status for x in deep.results] == [epb.EVENT_STATUS_STORED, epb.EVENT_STATUS_REJECTED,
                                                epb.EVENT_STATUS_STORED]
    assert [(v.field, v.code, v.description) for v in deep.results[1].violations] == [
        ("events[1].meta", "V103", "nested more than 32 levels deep")]
    assert deep.results[1].event_id == "deep-1"
    again = record(s, [good])                                   # a retry is acknowledged, applied once
    assert again.results[0].status == epb.EVENT_STATUS_DUPLICATE
    d = decide(s, "c-good")
    assert d.profile_status == pb.PROFILE_STATUS_STORED and not d.degraded
    # a till that only scans the card: once an event links it, Decide finds the customer by it
    stub = decision_pb2_grpc.DecisionServiceStub(s.channel)
    ctx = pb.RequestContext(channel=pb.CHANNEL_POS, store="s001", sku="TRL-002", category="trail-shoes")
    by_card = lambda: stub.Decide(pb.DecideRequest(loyalty_card="LC-77", context=ctx), timeout=30)
    assert by_card().profile_status == pb.PROFILE_STATUS_UNKNOWN_CUSTOMER
    linked = till_purchase("c-good", size="45", event_id="ok-2")
    linked.loyalty_card = "LC-77"
    assert record(s, [linked]).results[0].status == epb.EVENT_STATUS_STORED
    d = by_card()
    assert d.profile_status == pb.PROFILE_STATUS_STORED and d.prefill_size.size == "45"
    with pytest.raises(grpc.RpcError) as err:
        stub.Decide(pb.DecideRequest(loyalty_card="L" * 300, context=ctx), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "loyalty_card" in err.value.details()


def test_the_profile_cache_s_hits_and_misses_are_in_the_metrics(start_server, tmp_path):
    s = start_server(RULES, "--store", f"sqlite://{tmp_path / 'p.db'}", "--profile-cache-ttl", "3600")
    s.wait_health()
    reads = lambda: {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^maple_profile_cache_reads_total\{result="(\w+)"\} (\S+)$', s.metrics(), re.M)}
    assert reads() == {"hit": 0, "miss": 0, "stale": 0, "prefetched": 0}
    assert record(s, [till_purchase("c-cached", event_id="c-1")]).stored == 1
    for _ in range(3):                                       # read from the store once, then held
        assert decide(s, "c-cached").profile_status == pb.PROFILE_STATUS_STORED
    assert reads() == {"hit": 2, "miss": 1, "stale": 0, "prefetched": 0}
    stub = decision_pb2_grpc.DecisionServiceStub(s.channel)
    batch = stub.DecideBatch(pb.DecideBatchRequest(requests=[pb.DecideRequest(customer_id=c)
                                                             for c in ("c-cached", "c-new-1", "c-new-2")]), timeout=30)
    assert [r.response.profile_status for r in batch.results] == [pb.PROFILE_STATUS_STORED] + [
        pb.PROFILE_STATUS_UNKNOWN_CUSTOMER] * 2
    assert reads() == {"hit": 5, "miss": 1, "stale": 0, "prefetched": 2}     # two fetched ahead, three held
    # what the worker holds: three entries (two known misses), their counted memory, SQLite's own
    held = {m.group(1): float(m.group(2)) for m in re.finditer(
        r"^maple_(profile_cache_entries|profile_cache_bytes|sqlite_memory_bytes) (\S+)$", s.metrics(), re.M)}
    assert held["profile_cache_entries"] == 3
    assert 3 * ENTRY_BYTES < held["profile_cache_bytes"] < 3 * ENTRY_BYTES + 100_000
    assert 0 < held["sqlite_memory_bytes"] < 3 * 16 * 2**20 + 8 * 2**20


def test_no_store_means_failed_precondition(server):
    with pytest.raises(grpc.RpcError) as err:
        record(server, [till_purchase("c1")])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--store" in err.value.details()


# ---------------------------------------------------------------- durability
def test_sqlite_an_acknowledged_event_survives_kill_9(start_server, tmp_path):
    db = f"sqlite://{tmp_path / 'profiles.db'}"
    s = start_server(RULES, "--store", db)
    s.wait_health()
    assert decide(s, "c-till").prefill_size.size == ""            # unknown: no prefill
    r = record(s, [till_purchase("c-till", size="44")])
    assert r.results[0].status == epb.EVENT_STATUS_STORED
    s.proc.send_signal(signal.SIGKILL)                            # right after the acknowledgement
    s.proc.wait()
    again = start_server(RULES, "--store", db)
    again.wait_health()
    d = decide(again, "c-till")
    assert d.profile_status == pb.PROFILE_STATUS_STORED
    assert d.prefill_size.size == "44"                            # a till purchase prefills the web page


def test_redis_an_acknowledged_event_survives_kill_9_of_maple_and_redis(start_server, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()                # appendonly yes, appendfsync always
    try:
        s = start_server(RULES, "--store", redis.url)
        s.wait_health()
        assert record(s, [till_purchase("c-r", size="45")]).results[0].status == epb.EVENT_STATUS_STORED
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        redis.kill()                                              # the store crashes too
        redis.start()
        again = start_server(RULES, "--store", redis.url)
        again.wait_health()
        assert decide(again, "c-r").prefill_size.size == "45"
    finally:
        redis.stop()


def test_a_redis_cluster_store_serves_two_workers(start_server, tmp_path):
    """`--store redis-cluster://HOST:PORT`: an event stored through one
    worker decides in whichever worker answers (each has its own cluster
    client; six new connections spread over the two)."""
    cluster = RedisClusterServers(tmp_path / "cluster").start()
    try:
        s = start_server(RULES, "--store", cluster.url, "--workers", "2")
        s.wait_health()
        assert record(s, [till_purchase("c-rc", size="46")]).results[0].status == epb.EVENT_STATUS_STORED
        for _ in range(6):                      # new connections: SO_REUSEPORT spreads them over both workers
            with grpc.insecure_channel(s.address) as ch:
                d = decide(SimpleNamespace(channel=ch), "c-rc")
            assert d.profile_status == pb.PROFILE_STATUS_STORED and d.prefill_size.size == "46"
        assert s.terminate() == 0
    finally:
        cluster.stop()


def test_redis_down_degrades_decisions_refuses_events_and_recovers(start_server, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        s = start_server(RULES, "--store", redis.url, "--profile-cache-ttl", "60")
        s.wait_health()
        record(s, [till_purchase("c-cached", size="43")])
        assert decide(s, "c-cached").prefill_size.size == "43"     # now in this server's cache
        redis.stop()
        with pytest.raises(grpc.RpcError) as err:
            record(s, [till_purchase("c-cached")])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE     # never acknowledged and dropped
        cached = decide(s, "c-cached")
        assert cached.prefill_size.size == "43"                    # the cached profile still decides
        unknown = decide(s, "c-never-seen")
        assert unknown.degraded and "profile store" in unknown.degraded_reason
        assert unknown.profile_status == pb.PROFILE_STATUS_UNAVAILABLE
        assert unknown.homepage_category.category                   # defaults still answer
        redis.start()                                              # same port, same data
        r = until(lambda: _try_record(s, till_purchase("c-back", size="41")), "RecordEvents to recover")
        assert r.results[0].status == epb.EVENT_STATUS_STORED
        assert until(lambda: not decide(s, "c-never-seen").degraded, "Decide to recover")
        assert s.terminate() == 0
        log = s.stderr()
        # the outage and its end, once each (not once per request)
        assert log.count(f"profile store {redis.url} is unavailable: ") == 1, log
        assert log.count(f"profile store {redis.url} answers again after ") == 1, log
    finally:
        redis.stop()


def test_a_redis_down_at_start_that_comes_up_without_fsync_is_warned_about(start_server, tmp_path):
    """Started while Redis is down; Redis then starts with appendonly no:
    the first contact (here the RecordEvents that stores into it) logs one
    durability warning."""
    redis = RedisServer(tmp_path / "redis", durable=False)          # not started yet
    try:
        s = start_server(RULES, "--store", redis.url)
        s.wait_health()
        redis.start()
        r = until(lambda: _try_record(s, till_purchase("c-late", size="40")), "RecordEvents to reach Redis")
        assert r.results[0].status == epb.EVENT_STATUS_STORED
        assert s.terminate() == 0
        log = s.stderr()
        assert f"profile store {redis.url} is not reachable yet" in log
        assert log.count("is not durable") == 1, log
        assert f"profile store {redis.url} is not durable: appendonly no, appendfsync always" in log
    finally:
        redis.stop()


def _try_record(server, event):
    try:
        return record(server, [event])
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        return None


def test_two_servers_share_one_redis(start_server, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        a = start_server(RULES, "--store", redis.url, "--profile-cache-ttl", "0.5")
        b = start_server(RULES, "--store", redis.url, "--profile-cache-ttl", "0.5")
        a.wait_health()
        b.wait_health()
        assert decide(b, "c-both").prefill_size.size == ""
        assert record(a, [till_purchase("c-both", size="46")]).results[0].status == epb.EVENT_STATUS_STORED
        # b may serve its cached copy for at most --profile-cache-ttl
        assert until(lambda: decide(b, "c-both").prefill_size.size == "46", "the other server to see it")
    finally:
        redis.stop()


def test_a_failing_store_acknowledges_nothing_and_says_unavailable():
    from engine.profiles.store import StoreError
    from engine.service.errors import Unavailable

    class Broken:
        def apply(self, raw_events):
            raise StoreError("disk I/O error; nothing was acknowledged")

    with pytest.raises(Unavailable, match="the batch is not acknowledged"):
        EventRecorder(Broken()).record([{"event_id": "e1"}])


@pytest.mark.parametrize("options, message", [
    ({"store": "mysql://x"}, "use sqlite://PATH, redis://HOST:PORT/DB"),
    ({"store": "sqlite://p.db", "profile_cache_ttl": -1.0}, "--profile-cache-ttl -1.0: must be a number of seconds >= 0"),
])
def test_a_bad_store_option_stops_serve_before_anything_starts(options, message):
    import argparse
    from engine.server.config import from_args
    with pytest.raises(SystemExit, match=message):
        from_args(argparse.Namespace(rules="rules", **options), environ={})
