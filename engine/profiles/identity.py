"""Identity: many identifiers, one customer; two known customers, one merge.

Every identifier an event carries (customer_id, loyalty_card, email_hash,
device_id) is an *alias*, stored as ``"kind:value"`` and pointing at one
customer id.  :func:`resolve` decides, from the aliases already known, which
customer an event belongs to:

* no identifier known: a new customer, named by the event's customer_id, or
  minted from its strongest identifier (:func:`mint_customer_id`, the same
  name on every replica and every retry);
* identifiers of one customer: that customer; the event's other identifiers
  become its aliases;
* identifiers of several customers: they are the same person.  The
  **survivor is the earliest-created customer** (the store's creation order,
  ``_fold.seq``; ties by id), the others are merged into it
  (:func:`merge`), their aliases repointed, their profiles deleted.  A
  merged-away customer id stays an alias, so it still finds the profile.

Merge rules (:func:`merge`), chosen so that merging the profiles of two
event histories gives the profile of the combined history:

=============================  ==================================================
customer_id, creation order    the survivor's
first_* times                  the earlier; last_* times and per-channel last_seen,
                               purchased_at, email opens/clicks: the later
channels, purchased_categories union; purchased_skus: union (latest kept)
orders_count, lifetime_value   added (money to the cent)
visits, offer timelines        union per channel / offer, bounded as in the fold
last_view, sizes, consent,     the value with the later stamp (timestamp, event id):
home, loyalty_points           latest by event time wins, whichever profile had it
cart                           per sku, both operation histories replayed together
wishlist                       per sku, the later add/remove
searched_sizes, preferred_store counts added, then the most frequent
lifecycle                      recomputed
=============================  ==================================================
"""
from __future__ import annotations

import hashlib
from typing import Callable, Mapping, NamedTuple, Sequence

from . import fold as F
from .events import IDENTIFIERS
from .fold import DEFAULT_CONFIG, FOLD_VERSION, FoldConfig


# ---------------------------------------------------------------- resolution
def alias_key(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def mint_customer_id(ids: Sequence[tuple[str, str]]) -> str:
    """A customer id for a customer who arrives without one, from the
    strongest identifier they arrive with (deterministic)."""
    kind, value = min(ids, key=lambda kv: IDENTIFIERS.index(kv[0]))
    return "m-" + hashlib.sha256(alias_key(kind, value).encode("utf-8")).hexdigest()[:20]


class Resolution(NamedTuple):
    """Which customer an event belongs to, and what that changes."""
    customer_id: str
    new: bool                              # a customer to create
    losers: tuple[str, ...] = ()           # known customers to merge into customer_id
    link: tuple[str, ...] = ()             # alias keys to point at customer_id


def resolve(ids: Sequence[tuple[str, str]], known: Mapping[str, str],
            seq_of: Callable[[str], int], keys: Sequence[str] | None = None) -> Resolution:
    """The customer for an event with identifiers ``ids`` (``keys``: the same
    as alias keys, when the caller has them), given the known aliases
    (``known``: alias key -> customer id) and each known customer's creation
    order (``seq_of``)."""
    if keys is None:
        keys = [alias_key(k, v) for k, v in ids]
    first = known.get(keys[0]) if keys else None
    if first is not None:                              # the common case: every identifier known,
        for key in keys[1:]:                           # all of one customer
            if known.get(key) != first:
                break
        else:
            return Resolution(first, False)
    cids = list(dict.fromkeys(known[k] for k in keys if k in known))
    if not cids:
        given = dict(ids).get("customer_id")
        cid = given or mint_customer_id(ids)
        own = alias_key("customer_id", cid)
        return Resolution(cid, True, (), tuple(keys) + (() if own in keys else (own,)))
    survivor = min(cids, key=lambda c: (seq_of(c), c))
    losers = tuple(c for c in cids if c != survivor)
    link = tuple(k for k in keys if known.get(k) != survivor)
    return Resolution(survivor, False, losers, link)


# ---------------------------------------------------------------- merge helpers
def _earlier(a, b, cfg):
    return min(a, b)


def _later(a, b, cfg):
    return max(a, b)


def _add(a, b, cfg):
    return a + b


def _union(a, b, cfg):
    return sorted(set(a) | set(b))


def _later_per_key(a, b, cfg):
    return {k: max(v for v in (a.get(k), b.get(k)) if v is not None) for k in a.keys() | b.keys()}


def _visits(a, b, cfg):
    out = dict(a)
    for ch, times in b.items():
        merged = out.get(ch)
        for t in times:
            merged = F.add_visit(merged, t, cfg.visit_window, cfg.max_visits)
        out[ch] = merged
    return out


def _timelines(a, b, cfg):
    out = {k: sorted((a.get(k) or []) + (b.get(k) or []))[-cfg.max_offer_times:] for k in a.keys() | b.keys()}
    while len(out) > cfg.max_offers:
        del out[min(out, key=lambda k: (out[k][-1], k))]
    return out


#: Attributes merged from their own values; everything derived from the
#: fold's bookkeeping is rebuilt by the functions below.
RULES = {
    "first_seen_at": _earlier, "first_purchase_at": _earlier,
    "last_seen_at": _later, "last_purchase_at": _later,
    "last_seen": _later_per_key, "purchased_at": _later_per_key, "email": _later_per_key,
    "channels": _union, "purchased_categories": _union,
    "orders_count": _add,
    "visits": _visits,
    "offer_impressions": _timelines, "offer_redemptions": _timelines,
}

#: Where each latest-wins stamp's value lives: stamp key -> (attribute, sub-key).
def _lww_place(key: str) -> tuple[str, str | None]:
    kind, _, sub = key.partition(":")
    if kind == "size":
        return "sizes", sub
    if kind == "consent":
        return "consent", sub
    return key, None


def _merge_lww(p: dict, f: dict, a: dict, b: dict) -> None:
    stamps_a = a.get("_fold", {}).get("lww") or {}
    stamps_b = b.get("_fold", {}).get("lww") or {}
    if not stamps_a and not stamps_b:
        return
    merged = {}
    for key in stamps_a.keys() | stamps_b.keys():
        sa, sb = stamps_a.get(key), stamps_b.get(key)
        source = a if sb is None or (sa is not None and sa >= sb) else b
        merged[key] = sa if source is a else sb
        attr, sub = _lww_place(key)
        value = source[attr] if sub is None else source[attr][sub]
        if sub is None:
            p[attr] = value
        else:
            p.setdefault(attr, {})[sub] = value
    f["lww"] = merged


def _merge_counts(ca: dict, cb: dict) -> dict:
    """{key: [count, last_at]} added together."""
    out = dict(ca)
    for k, (n, last) in cb.items():
        if k in out:
            out[k] = [out[k][0] + n, max(out[k][1], last)]
        else:
            out[k] = [n, last]
    return out


def _merge_searches(p, f, fa, fb, cfg):
    sa, sb = fa.get("searches"), fb.get("searches")
    if sa is None and sb is None:
        return
    sa, sb = sa or {}, sb or {}
    searches = {c: _merge_counts(sa.get(c, {}), sb.get(c, {})) for c in sa.keys() | sb.keys()}
    while len(searches) > cfg.max_categories:
        del searches[min(searches, key=lambda c: (max(v[1] for v in searches[c].values()), c))]
    f["searches"] = searches
    p["searched_sizes"] = {c: F.searched_size(v) for c, v in searches.items()}


def _merge_stores(p, f, fa, fb, cfg):
    if fa.get("stores") is None and fb.get("stores") is None:
        return
    f["stores"] = _merge_counts(fa.get("stores") or {}, fb.get("stores") or {})
    p["preferred_store"] = F.preferred_store(f["stores"])


def _merge_line(la: dict | None, lb: dict | None, cfg: FoldConfig) -> dict:
    if la is None or lb is None:
        return la or lb
    ops = sorted({tuple(op) for op in la["ops"] + lb["ops"]})
    line = {"ops": [list(op) for op in ops][-cfg.max_cart_ops:]}
    line["qty"], line["changed"] = F.replay_line(line["ops"])
    infos = [x for x in (la.get("info"), lb.get("info")) if x is not None]
    if infos:
        line["info"] = max(infos, key=lambda x: x[:3])
    return line


def _merge_cart(p, f, fa, fb, cfg):
    ca, cb = fa.get("cart"), fb.get("cart")
    if ca is None and cb is None:
        return
    ca, cb = ca or {}, cb or {}
    lines = {sku: _merge_line(ca.get(sku), cb.get(sku), cfg) for sku in ca.keys() | cb.keys()}
    F.prune_cart(lines, cfg)
    f["cart"] = lines
    p["cart"] = F.cart_summary(lines)


def _merge_wishlist(p, f, fa, fb, cfg):
    wa, wb = fa.get("wishlist"), fb.get("wishlist")
    if wa is None and wb is None:
        return
    entries = dict(wa or {})
    for sku, entry in (wb or {}).items():
        if sku not in entries or entry[:3] > entries[sku][:3]:
            entries[sku] = entry
    while len(entries) > cfg.max_wishlist:
        del entries[min(entries, key=lambda s: (entries[s][:3], s))]
    f["wishlist"] = entries
    p["wishlist"] = F.wishlist_summary(entries)


def _merge_purchases(p, f, fa, fb, cfg):
    if "cents" in fa or "cents" in fb:
        f["cents"] = min(fa.get("cents", 0) + fb.get("cents", 0), F.MAX_CENTS)
        p["lifetime_value"] = f["cents"] / 100
    sa, sb = fa.get("skus"), fb.get("skus")
    if sa is None and sb is None:
        return
    skus = _later_per_key(sa or {}, sb or {}, cfg)
    while len(skus) > cfg.max_purchased_skus:
        del skus[min(skus, key=lambda s: (skus[s], s))]
    f["skus"] = skus
    p["purchased_skus"] = sorted(skus)


_FROM_BOOKKEEPING = (_merge_searches, _merge_stores, _merge_cart, _merge_wishlist, _merge_purchases)


# ---------------------------------------------------------------- merge
def merge(survivor: dict, loser: dict, cfg: FoldConfig = DEFAULT_CONFIG) -> dict:
    """One profile from two profiles of the same person (see the module's
    table).  Pure; ``survivor`` keeps its customer id and creation order."""
    fa, fb = survivor.get("_fold") or {}, loser.get("_fold") or {}
    f = {"v": FOLD_VERSION, "seq": fa.get("seq", 0)}
    p = {k: v for k, v in loser.items() if not k.startswith("_")}
    p.update({k: v for k, v in survivor.items() if not k.startswith("_")})
    p["_fold"] = f
    for key, rule in RULES.items():
        va, vb = survivor.get(key), loser.get(key)
        if va is not None and vb is not None:
            p[key] = rule(va, vb, cfg)
    for name in ("sizes", "consent"):
        p.pop(name, None)
    _merge_lww(p, f, survivor, loser)
    for step in _FROM_BOOKKEEPING:
        step(p, f, fa, fb, cfg)
    p["lifecycle"] = F.lifecycle(p, p.get("last_seen_at"), cfg)
    return p
