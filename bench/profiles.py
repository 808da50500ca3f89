"""Synthetic customers and requests for load tests (deterministic by seed),
or profiles read from a JSON Lines file (one profile object per line)."""
from __future__ import annotations

import json
import random
from pathlib import Path

CATEGORIES = ["running-shoes", "shoes", "shirts", "coffee-beans", "mugs", "jackets", "socks", "bags"]
CHANNELS = ["web", "app", "email", "pos", "kiosk"]
NOW = 1_800_000_000


def synthetic(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        cats = rnd.sample(CATEGORIES, 3)
        out.append({
            "customer_id": f"c{i:06d}",
            "lifecycle": rnd.choice(["new", "active", "lapsed", "vip"]),
            "channels": rnd.sample(CHANNELS, 2),
            "last_view": {"category": cats[0], "sku": f"sku-{rnd.randrange(500)}", "channel": rnd.choice(CHANNELS),
                          "at": NOW - rnd.randrange(30 * 86400)},
            "sizes": {"shoes": str(rnd.randrange(36, 47)), "shirts": rnd.choice(["S", "M", "L", "XL"])},
            "cart": {"categories": cats[1:], "skus": [f"sku-{rnd.randrange(500)}"], "items": 2,
                     "value": round(rnd.uniform(5, 200), 2)},
            "orders_count": rnd.randrange(20),
            "lifetime_value": round(rnd.uniform(0, 3000), 2),
            "loyalty_points": rnd.randrange(5000),
            "preferred_store": f"s-{rnd.randrange(40)}",
            "home": {"lat": 51.5 + rnd.uniform(-0.2, 0.2), "lon": -0.12 + rnd.uniform(-0.2, 0.2)},
            "consent": {"email": rnd.random() < 0.6, "push": rnd.random() < 0.4},
        })
    return out


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
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    rnd = random.Random(seed)
    channels = [pb.CHANNEL_WEB, pb.CHANNEL_APP, pb.CHANNEL_EMAIL, pb.CHANNEL_KIOSK]
    out = []
    for p in profiles:
        req = pb.DecideRequest(customer_id=str(p.get("customer_id", "")))
        c = req.context
        c.channel = rnd.choice(channels)
        c.page = "product"
        c.category = rnd.choice(["shoes", "shirts"])
        c.sku = f"sku-{rnd.randrange(500)}"
        c.location.lat, c.location.lon = 51.5 + rnd.uniform(-0.1, 0.1), -0.12 + rnd.uniform(-0.1, 0.1)
        c.timestamp.seconds = NOW
        if not by_id:
            req.profile.update(p)
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
