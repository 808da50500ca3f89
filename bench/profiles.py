"""Synthetic customers and requests for load tests (deterministic by seed),
or profiles read from a JSON Lines file (one profile object per line)."""
from __future__ import annotations

import json
from pathlib import Path

NOW = 1_795_435_200                      # 2026-11-23T08:00:00Z, the reference pack's sample "today"


def synthetic(n: int, seed: int = 7) -> list[dict]:
    """Customers shaped like the event fold's profiles (bench/synth.py), so
    every decision of the reference pack, nearby stores included, works."""
    from bench import synth
    return synth.customers(n, float(NOW), seed)


def from_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(profiles: list[dict], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for p in profiles:
            f.write(json.dumps(p) + "\n")


def decide_requests(profiles: list[dict], by_id: bool, seed: int = 11) -> list[bytes]:
    """Serialized DecideRequests, one per profile: the inline snapshot, or
    only the customer id (for a server with --store holding the profiles)."""
    from bench import synth
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    channels = {"web": pb.CHANNEL_WEB, "app": pb.CHANNEL_APP, "email": pb.CHANNEL_EMAIL, "pos": pb.CHANNEL_POS,
                "kiosk": pb.CHANNEL_KIOSK}
    devices = {"desktop": pb.DEVICE_DESKTOP, "mobile": pb.DEVICE_MOBILE, "tablet": pb.DEVICE_TABLET,
               "till": pb.DEVICE_TILL, "kiosk": pb.DEVICE_KIOSK}
    out = []
    for p, r in zip(profiles, synth.requests(len(profiles), seed)):
        req = pb.DecideRequest(customer_id=str(p.get("customer_id", "")))
        c = req.context
        c.channel = channels[r["channel"]]
        c.device = devices[r["device"]]
        c.page, c.category, c.sku, c.locale = r["page"], r["category"], r["sku"], r["locale"]
        if "location" in r:
            c.location.lat, c.location.lon = r["location"]["lat"], r["location"]["lon"]
        if "store" in r:
            c.store = r["store"]
        c.timestamp.seconds = NOW
        if not by_id:
            req.profile_json = json.dumps(p).encode()     # cheaper for the server than a Struct
        out.append(req.SerializeToString())
    return out


def batch_requests(singles: list[bytes], size: int) -> list[bytes]:
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    reqs = [pb.DecideRequest.FromString(b) for b in singles]
    out = []
    for i in range(0, max(len(reqs), size), size):
        chunk = [reqs[(i + j) % len(reqs)] for j in range(size)]
        out.append(pb.DecideBatchRequest(requests=chunk).SerializeToString())
    return out


def _enum_numbers():
    """name -> wire number of the event types and channels: the inverse of
    the server's own tables (engine.server.events.TYPES, CHANNELS)."""
    from engine.server.events import CHANNELS, TYPES
    return {v: k for k, v in TYPES.items()}, {v: k for k, v in CHANNELS.items()}


def event_to_pb(raw: dict, types: dict, channels: dict, out) -> None:
    """One event of bench/profiles_bench.py's month (the event model's raw
    object) into the wire Event ``out``: the inverse of engine.server.events.
    Covers the fields that month uses."""
    for name in ("event_id", "customer_id", "email_hash", "device_id", "loyalty_card", "sku", "category", "size",
                 "query", "page", "store_id", "campaign_id", "offer_id"):
        if name in raw:
            setattr(out, name, raw[name])
    out.type, out.channel = types[raw["type"]], channels[raw["channel"]]
    seconds = int(raw["timestamp"])
    out.timestamp.seconds, out.timestamp.nanos = seconds, int((raw["timestamp"] - seconds) * 1e9)
    for it in raw.get("items", ()):
        item = out.items.add()
        for name in ("sku", "category", "size", "price", "qty"):
            if name in it:
                setattr(item, name, it[name])
    for name in ("email", "push", "sms"):
        if name in raw:
            setattr(out.consent, name, raw[name])


def month_events(n_events: int, customers: int, now: float, seed: int, store_ids: list[str]) -> list[dict]:
    """The bench's realistic month (bench/profiles_bench.py's ``workload``:
    a fifth of the events from the 1 % busiest customers, random UUID event
    ids), ending at ``now``, its store ids replaced with ``store_ids`` (a
    server with store data refuses stores it does not list)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from profiles_bench import STORES, workload
    swap = {s: store_ids[i % len(store_ids)] for i, s in enumerate(STORES)} if store_ids else {}
    events = workload(n_events, customers, now, seed)
    for raw in events:
        if "store_id" in raw and swap:
            raw["store_id"] = swap[raw["store_id"]]
    return events


def sqlite_store_of_month(path: Path, n_events: int, customers: int, now: float,
                          store_ids: list[str]) -> list[str]:
    """A SQLite profile store at ``path`` holding the profiles that the
    month's events fold into (applied in batches of 100, as RecordEvents
    would); returns their customer ids."""
    from engine.profiles import open_store
    events = month_events(n_events, customers, now, 1, store_ids)
    with open_store(f"sqlite://{path}") as store:
        for i in range(0, len(events), 100):
            store.apply(events[i:i + 100], now)
    return sorted({e["customer_id"] for e in events})


def event_requests(batches: int, size: int, customers: int, now: float, seed: int,
                   store_ids: list[str]) -> list[bytes]:
    """``batches`` serialized RecordEventsRequests of ``size`` events of the
    bench's realistic month (bench/profiles_bench.py: a fifth of the events
    from the 1 % busiest customers, random UUID event ids, so every seed's
    events are new), ending at ``now``.  Its store ids are replaced with
    ``store_ids`` (a server with store data refuses stores it does not list)."""
    from engine.server.pb.maple.v1 import events_pb2 as epb
    types, channels = _enum_numbers()
    events = month_events(batches * size, customers, now, seed, store_ids)
    out = []
    for i in range(0, len(events), size):
        req = epb.RecordEventsRequest()
        for raw in events[i:i + size]:
            event_to_pb(raw, types, channels, req.events.add())
        out.append(req.SerializeToString())
    return out
