"""Synthetic customers and requests for the reference pack (rules/schema.rules).

Deterministic from a seed, with realistic skew: most customers are active or
new, a few are VIP; carts, purchases, sizes and offer impressions follow the
event fold's shapes (docs/profiles.md).  Used by the benchmarks and the load
generator; ``python bench/synth.py --count 1000 --out customers.jsonl`` writes
a JSONL file.
"""
from __future__ import annotations

import argparse
import json
import random

DAY = 86400.0
CATEGORIES = ["running-shoes", "trail-shoes", "sneakers", "boots", "tops", "t-shirts", "hoodies", "jeans",
              "dresses", "jackets", "socks", "coffee-beans", "coffee-gear", "gift-cards"]
SHOE_SIZES = [str(s) for s in range(36, 48)]
APPAREL_SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
CHANNELS = ["web", "app", "email", "pos", "call_centre"]
OFFERS = ["abandoned_cart_reminder", "abandoned_cart_last_chance", "free_latte_with_beans", "coffee_gear_upsell",
          "wishlist_reminder", "welcome_10_off", "double_points", "win_back_20_off", "free_shipping"]
STORES = [f"s{i:03d}" for i in range(1, 321)]
CITIES = [(51.5074, -0.1278), (53.4808, -2.2426), (52.52, 13.405), (48.1351, 11.582), (48.8566, 2.3522),
          (45.764, 4.8357), (52.3676, 4.9041), (51.9244, 4.4777), (40.7128, -74.006)]


_CATALOG: dict[str, list[str]] | None = None


def skus(category: str) -> list[str]:
    """The catalogue's skus of a category (rules/data/catalog.csv)."""
    global _CATALOG
    if _CATALOG is None:
        import csv
        from pathlib import Path
        _CATALOG = {}
        path = Path(__file__).resolve().parents[1] / "rules" / "data" / "catalog.csv"
        if path.exists():
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    _CATALOG.setdefault(row["category"], []).append(row["sku"])
    return _CATALOG.get(category) or [f"{category[:3].upper()}-001"]


def size_for(category: str, rng: random.Random) -> str:
    if category in ("running-shoes", "trail-shoes", "sneakers", "boots"):
        return rng.choice(SHOE_SIZES)
    if category in ("coffee-beans", "coffee-gear", "gift-cards", "socks"):
        return "one-size"
    return rng.choice(APPAREL_SIZES)


def customer(i: int, now: float, rng: random.Random) -> dict:
    lifecycle = rng.choices(["new", "active", "lapsed", "vip"], [0.25, 0.5, 0.17, 0.08])[0]
    p: dict = {"customer_id": f"c{i:07d}", "lifecycle": lifecycle}
    channels = rng.sample(CHANNELS, rng.randint(1, 4))
    p["channels"] = channels
    p["last_seen"] = {c: now - rng.uniform(0, 60) * DAY for c in channels}
    p["visits"] = {c: sorted(now - rng.uniform(0, 40) * DAY for _ in range(rng.randint(0, 8))) for c in channels}
    if rng.random() < 0.8:
        cat = rng.choice(CATEGORIES)
        p["last_view"] = {"category": cat, "sku": rng.choice(skus(cat)),
                          "channel": rng.choice(channels), "at": now - rng.expovariate(1 / (6 * DAY))}
    orders = 0 if lifecycle == "new" else rng.randint(1, 6) if lifecycle != "vip" else rng.randint(15, 60)
    p["orders_count"] = orders
    if orders:
        bought = rng.sample(CATEGORIES, min(len(CATEGORIES), rng.randint(1, 5)))
        p["purchased_categories"] = bought
        p["purchased_at"] = {c: now - rng.uniform(1, 400 if lifecycle == "lapsed" else 120) * DAY for c in bought}
        p["sizes"] = {c: size_for(c, rng) for c in bought if size_for(c, rng) != "one-size"}
        p["lifetime_value"] = round(orders * rng.lognormvariate(4.0, 0.5), 2)
        p["last_purchase_at"] = max(p["purchased_at"].values())
        p["loyalty_points"] = int(p["lifetime_value"] * 10)
        p["preferred_store"] = rng.choice(STORES)
    if rng.random() < 0.3:
        cats = rng.sample(CATEGORIES, 2)
        p["cart"] = {"skus": [rng.choice(skus(c)) for c in cats], "categories": cats, "items": len(cats),
                     "value": round(rng.uniform(20, 300), 2), "updated_at": now - rng.uniform(0, 9) * DAY}
    if rng.random() < 0.2:
        p["wishlist"] = {"skus": ["BOT-004"], "categories": ["boots"], "updated_at": now - rng.uniform(0, 40) * DAY}
    if rng.random() < 0.4:
        p["searched_sizes"] = {c: size_for(c, rng) for c in rng.sample(CATEGORIES, 2)}
    p["consent"] = {"email": rng.random() < 0.6, "push": rng.random() < 0.4, "sms": rng.random() < 0.2}
    if rng.random() < 0.5:
        lat, lon = rng.choice(CITIES)
        p["home"] = {"lat": lat + rng.uniform(-0.1, 0.1), "lon": lon + rng.uniform(-0.1, 0.1)}
    p["offer_impressions"] = {o: [now - rng.uniform(0, 10) * DAY for _ in range(rng.randint(0, 2))]
                              for o in rng.sample(OFFERS, rng.randint(0, 3))}
    return p


def request(rng: random.Random) -> dict:
    channel = rng.choices(["web", "app", "email", "pos", "kiosk"], [0.45, 0.35, 0.1, 0.07, 0.03])[0]
    device = {"web": rng.choice(["desktop", "mobile", "tablet"]), "app": "mobile", "email": "mobile",
              "pos": "till", "kiosk": "kiosk"}[channel]
    cat = rng.choice(CATEGORIES)
    r = {"channel": channel, "device": device, "locale": "en-GB", "page": rng.choice(["home", "product", "category"]),
         "category": cat, "sku": rng.choice(skus(cat))}
    if device == "mobile" and rng.random() < 0.5:
        lat, lon = rng.choice(CITIES)
        r["location"] = {"lat": lat + rng.uniform(-0.05, 0.05), "lon": lon + rng.uniform(-0.05, 0.05)}
    if channel in ("pos", "kiosk"):
        r["store"] = rng.choice(STORES)
    return r


def customers(count: int, now: float, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [customer(i, now, rng) for i in range(count)]


def requests(count: int, seed: int = 8) -> list[dict]:
    rng = random.Random(seed)
    return [request(rng) for _ in range(count)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--now", type=float, default=1_795_435_200.0, help="seconds since the epoch (2026-11-23)")
    ap.add_argument("--out", required=True, help="JSONL file: one {profile, request} per line")
    a = ap.parse_args()
    reqs = requests(a.count, a.seed + 1)
    with open(a.out, "w") as f:
        for p, r in zip(customers(a.count, a.now, a.seed), reqs):
            f.write(json.dumps({"profile": p, "request": r}) + "\n")


if __name__ == "__main__":
    main()
