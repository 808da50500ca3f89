"""Folding events into a profile: ``fold(profile, event, config) -> new profile``.

A profile is a JSON-able dict of exactly the shape ``rules/schema.rules``
declares (timestamps are float seconds, sets are sorted lists of strings,
timelines are ascending lists of float seconds), plus one private key,
``_fold``, holding what the fold needs to stay correct; rules cannot read
it (the checker only admits declared attributes).

:func:`fold` is pure: the input profile is never modified.  Underneath it,
:func:`fold_into` updates a profile *in place* and is what the stores use on
the profiles they have just decoded (and so own): a batch of events costs no
copying.  Events may arrive in any order: whatever an event decides is
compared by its *stamp* ``[timestamp, tie, item index]`` (``tie`` is a hash
of the event id, see :func:`.events.tie_of`), never by
arrival, so folding a shuffled sequence gives the same profile as folding
the sorted one (within the size bounds of :class:`FoldConfig`; past them
the oldest entries are dropped first).  Duplicates are the stores' business:
they apply an event id once.

How each attribute is maintained (docs/profiles.md has the table):

* last_view: the product_view with the latest stamp.
* sizes[category]: the size of the latest purchased item of that category
  (by stamp; any channel, POS included).  Most recent rather than most
  frequent, because feet grow and brands fit differently: the last size
  bought is the best guess for the next.
* searched_sizes[category]: the size searched most often; ties go to the
  most recently searched, then to the smaller text.
* cart: replayed per sku from its operations (add +qty, partial remove -qty,
  full remove or purchase clears) in stamp order; a purchase clears the
  bought skus from the cart on every channel.
* preferred_store: the store with most purchases + visits; ties go to the
  most recent.
* lifecycle: see :func:`lifecycle`.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import reduce
from typing import Callable, Iterable

from .events import DAY, Event

FOLD_VERSION = 1
MAX_CENTS = 2 ** 53          # lifetime value in cents: a float holds it exactly up to here


@dataclass(frozen=True)
class FoldConfig:
    """Lifecycle thresholds and the size bounds of everything that grows."""
    new_for: float = 30 * DAY          # a first purchase this recent: still "new"
    lapsed_after: float = 180 * DAY    # no purchase for this long: "lapsed"
    vip_value: float = 1000.0          # lifetime value at least this: "vip"
    vip_orders: int = 12               # or at least this many orders
    visit_window: float = 30 * 60      # a visit: a window of this length with activity
    max_visits: int = 50               # visits kept per channel (the latest)
    max_offer_times: int = 50          # per offer, per timeline: enough for any sane cap
    max_offers: int = 100              # offers kept per timeline map (latest shown)
    max_cart_lines: int = 100          # skus remembered by the cart (emptied lines go first)
    max_cart_barriers: int = 20        # emptied lines remembered (against late, older adds)
    max_cart_ops: int = 20             # operations remembered per cart line
    max_wishlist: int = 200
    max_purchased_skus: int = 500
    max_categories: int = 200          # categories with searched sizes


DEFAULT_CONFIG = FoldConfig()

Handler = Callable[[dict, dict, Event, FoldConfig], None]


# ---------------------------------------------------------------- helpers (in place)
def _sub(d: dict, key: str) -> dict:
    """``d[key]``, a dict, created empty when missing."""
    v = d.get(key)
    if v is None:
        v = d[key] = {}
    return v


def _stamp(e: Event, idx: int = 0) -> list:
    """What orders two facts: [timestamp, tie-breaker of the event id, item index]."""
    return [e.timestamp, e.tie, idx]


def _claim(fb: dict, key: str, stamp: list) -> bool:
    """Whether ``stamp`` is the latest seen for ``key`` (recording it if so)."""
    stamps = _sub(fb, "lww")
    old = stamps.get(key)
    if old is not None and stamp <= old:
        return False
    stamps[key] = stamp
    return True


def _min(a, b):
    """The smaller of two optional values (None is no value)."""
    return b if a is None or (b is not None and b < a) else a


def _max(a, b):
    """The larger of two optional values (None is no value)."""
    return b if a is None or (b is not None and b > a) else a


def _add_member(p: dict, key: str, item: str) -> None:
    """Add ``item`` to the sorted string set ``p[key]``."""
    values = p.get(key)
    if values is None:
        p[key] = [item]
        return
    i = bisect.bisect_left(values, item)
    if i == len(values) or values[i] != item:
        values.insert(i, item)


def copy_profile(v):
    """A deep copy of a JSON-shaped value (dicts, lists, scalars)."""
    t = type(v)
    if t is dict:
        return {k: copy_profile(x) for k, x in v.items()}
    if t is list:
        return [copy_profile(x) for x in v]
    return v


def add_time(timeline: list | None, t: float, max_len: int) -> list:
    """An ascending timeline with ``t`` added, keeping the latest ``max_len``."""
    new = list(timeline or [])
    bisect.insort(new, t)
    return new[-max_len:]


def add_visit(timeline: list | None, t: float, window: float, max_len: int) -> list:
    """A visit timeline with the activity at ``t``.

    A visit is a ``window``-long slot (aligned to the epoch) with activity on
    the channel; its time is the earliest event in the slot.  Taking the
    minimum per slot makes the result independent of arrival order.
    """
    timeline = timeline or []
    slot = t // window
    for i in range(len(timeline) - 1, -1, -1):
        v = timeline[i]
        if v // window == slot:
            if t >= v:
                return timeline
            return timeline[:i] + [t] + timeline[i + 1:]
        if v // window < slot:
            break
    return add_time(timeline, t, max_len)


def _add_to_timelines(timelines: dict, key: str, t: float, cfg: FoldConfig) -> None:
    timelines[key] = add_time(timelines.get(key), t, cfg.max_offer_times)
    if len(timelines) > cfg.max_offers:
        del timelines[min(timelines, key=lambda k: (timelines[k][-1], k))]


# ---------------------------------------------------------------- every event
def new_profile(customer_id: str, seq: int = 0) -> dict:
    """An empty profile.  ``seq`` is the store's creation order (identity
    merges keep the earlier-created customer)."""
    return {"customer_id": customer_id, "lifecycle": "new",
            "_fold": {"v": FOLD_VERSION, "seq": seq}}


def _add_visit_in_place(timeline: list, t: float, window: float, max_len: int) -> None:
    """:func:`add_visit` on a timeline the caller owns, changed in place.

    add_visit scans back from the latest visit for the last one whose slot is
    not after t's.  The timeline ascends, so the visits after t (from ``j``)
    are those of t's slot (at most one: a slot has one visit), then later
    slots; the ones before are in t's slot or earlier.  Bisecting to ``j``
    finds the same visit without a floor division per visit passed (events
    arrive out of order: the scan went half way back on average)."""
    slot = t // window
    n = len(timeline)
    j = bisect.bisect_right(timeline, t)
    if j < n and timeline[j] // window == slot:
        while j + 1 < n and timeline[j + 1] // window == slot:
            j += 1
        timeline[j] = t                        # the slot's visit, later than t
        return
    if j and timeline[j - 1] // window == slot:
        return                                 # the slot's visit, no later than t
    timeline.insert(j, t)                      # bisect.insort
    if 0 < max_len < len(timeline):           # (add_time's [-max_len:] keeps all for 0)
        del timeline[:len(timeline) - max_len]


# ---------------------------------------------------------------- browsing
def _page_view(p, fb, e, cfg):
    """Presence only: pages feed visits and last_seen."""


def _product_view(p, fb, e, cfg):
    if _claim(fb, "last_view", _stamp(e)):
        p["last_view"] = {"category": e.data["category"], "sku": e.data["sku"],
                          "channel": e.channel, "at": e.timestamp}


def searched_size(counts: dict) -> str:
    """The size searched most often: ``counts`` is {size: [count, last_at]}."""
    return min(counts, key=lambda s: (-counts[s][0], -counts[s][1], s))


def _search(p, fb, e, cfg):
    category, size = e.get("category"), e.get("size")
    if category is None or size is None:
        return
    searches = _sub(fb, "searches")
    counts = _sub(searches, category)
    count, last = counts.get(size, (0, None))
    counts[size] = [count + 1, _max(last, e.timestamp)]
    sizes = _sub(p, "searched_sizes")
    sizes[category] = searched_size(counts)
    if len(searches) > cfg.max_categories:
        oldest = min(searches, key=lambda c: (max(v[1] for v in searches[c].values()), c))
        del searches[oldest], sizes[oldest]


# ---------------------------------------------------------------- cart
def replay_line(ops: list) -> tuple[int, float | None]:
    """A cart line's quantity after its operations (stamp order), and the
    time of the last operation that changed it.  An op is
    ``[t, tie, idx, delta]``: delta > 0 adds, < 0 removes, 0 clears."""
    qty, changed = 0, None
    for t, _tie, _idx, delta in ops:
        new = 0 if delta == 0 else max(0, qty + delta)
        if new != qty:
            qty, changed = new, t
    return qty, changed


def _cart_op(fb: dict, sku: str, op: list, info: list | None, cfg: FoldConfig) -> None:
    lines = _sub(fb, "cart")
    line = lines.get(sku)
    if line is None:
        line = lines[sku] = {"ops": []}
    ops = line["ops"]
    bisect.insort(ops, op)
    if len(ops) > cfg.max_cart_ops:
        del ops[:len(ops) - cfg.max_cart_ops]
    line["qty"], line["changed"] = replay_line(ops)
    if info is not None and (line.get("info") is None or info[:3] > line["info"][:3]):
        line["info"] = info
    if line["qty"] <= 0 or len(lines) > cfg.max_cart_lines:
        prune_cart(lines, cfg)


def prune_cart(lines: dict, cfg: FoldConfig) -> None:
    """Bound the cart's memory.  An emptied line is kept only as a barrier
    (an older add arriving late must not resurrect it); the latest
    ``max_cart_barriers`` are kept, then lines beyond ``max_cart_lines``
    go, emptied ones first, oldest first."""
    empty = [s for s, line in lines.items() if line["qty"] <= 0]
    if len(empty) > cfg.max_cart_barriers:
        # oldest first: (last op's stamp, sku) pairs sorted, the sort key of each
        # line built in one comprehension rather than by a lambda called per line
        oldest = sorted([(lines[s]["ops"][-1][:3], s) for s in empty])
        for _stamp, s in oldest[:len(empty) - cfg.max_cart_barriers]:
            del lines[s]
    while len(lines) > cfg.max_cart_lines:
        del lines[min(lines, key=lambda s: (lines[s]["qty"] > 0, lines[s]["ops"][-1][:3], s))]


def cart_summary(lines: dict) -> dict:
    """The profile's cart from the per-sku lines of ``_fold.cart``."""
    skus, categories, items, cents, updated = [], set(), 0, 0, None
    for sku in sorted(lines):
        line = lines[sku]
        changed = line.get("changed")
        if updated is None or (changed is not None and changed > updated):     # _max, inline
            updated = changed
        qty = line["qty"]
        if qty <= 0:
            continue
        _t, _tie, _idx, category, price, _size = line.get("info") or (None,) * 6
        skus.append(sku)
        items += qty
        if category is not None:
            categories.add(category)
        cents += round((price or 0.0) * 100) * qty
    cart = {"skus": skus, "categories": sorted(categories), "items": items, "value": cents / 100}
    if updated is not None:
        cart["updated_at"] = updated
    return cart


def _refresh_cart(p: dict, fb: dict) -> None:
    p["cart"] = cart_summary(fb.get("cart") or {})


def _add_to_cart(p, fb, e, cfg):
    for i, it in enumerate(e.data["items"]):
        info = _stamp(e, i) + [it.category, it.price, it.size]
        _cart_op(fb, it.sku, _stamp(e, i) + [it.qty or 1], info, cfg)
    _refresh_cart(p, fb)


def _remove_from_cart(p, fb, e, cfg):
    for i, it in enumerate(e.data["items"]):
        _cart_op(fb, it.sku, _stamp(e, i) + [-(it.qty or 0)], None, cfg)
    _refresh_cart(p, fb)


# ---------------------------------------------------------------- purchases and stores
def preferred_store(stores: dict) -> str:
    """The store with most purchases + visits: ``stores`` is {id: [count, last_at]}."""
    return min(stores, key=lambda s: (-stores[s][0], -stores[s][1], s))


def _count_store(p: dict, fb: dict, store: str, t: float) -> None:
    stores = _sub(fb, "stores")
    count, last = stores.get(store, (0, None))
    stores[store] = [count + 1, _max(last, t)]
    p["preferred_store"] = preferred_store(stores)


def _purchased_sku(p: dict, fb: dict, sku: str, t: float, cfg: FoldConfig) -> None:
    skus = _sub(fb, "skus")
    skus[sku] = _max(skus.get(sku), t)
    _add_member(p, "purchased_skus", sku)
    if len(skus) > cfg.max_purchased_skus:
        oldest = min(skus, key=lambda s: (skus[s], s))
        del skus[oldest]
        p["purchased_skus"].remove(oldest)


def _purchase_item(p: dict, fb: dict, e: Event, i: int, it, cfg: FoldConfig) -> None:
    t, cat = e.timestamp, it.category
    _add_member(p, "purchased_categories", cat)
    _purchased_sku(p, fb, it.sku, t, cfg)
    purchased_at = _sub(p, "purchased_at")
    if purchased_at.get(cat, t) <= t:
        purchased_at[cat] = t
    if it.size is not None and _claim(fb, "size:" + cat, _stamp(e, i)):
        _sub(p, "sizes")[cat] = it.size
    _cart_op(fb, it.sku, _stamp(e, i) + [0], None, cfg)


def _purchase(p, fb, e, cfg):
    items = e.data["items"]
    total = e.get("total")
    amount = total if total is not None else sum(it.amount for it in items)
    # capped where a float still holds cents exactly (and far inside the codec's int64)
    fb["cents"] = min(fb.get("cents", 0) + round(amount * 100), MAX_CENTS)
    p["lifetime_value"] = fb["cents"] / 100
    p["orders_count"] = p.get("orders_count", 0) + 1
    p["first_purchase_at"] = _min(p.get("first_purchase_at"), e.timestamp)
    p["last_purchase_at"] = _max(p.get("last_purchase_at"), e.timestamp)
    for i, it in enumerate(items):
        _purchase_item(p, fb, e, i, it, cfg)
    if e.get("store_id") is not None:
        _count_store(p, fb, e.data["store_id"], e.timestamp)
    _refresh_cart(p, fb)


def _store_visit(p, fb, e, cfg):
    _count_store(p, fb, e.data["store_id"], e.timestamp)


# ---------------------------------------------------------------- messaging and offers
def _email_open(p, fb, e, cfg):
    email = _sub(p, "email")
    email["last_open_at"] = _max(email.get("last_open_at"), e.timestamp)


def _email_click(p, fb, e, cfg):
    email = _sub(p, "email")
    email["last_click_at"] = _max(email.get("last_click_at"), e.timestamp)


def _push_open(p, fb, e, cfg):
    """Presence only (the app channel's last_seen and visits)."""


def _offer_impression(p, fb, e, cfg):
    _add_to_timelines(_sub(p, "offer_impressions"), e.data["offer_id"], e.timestamp, cfg)


def _offer_redeemed(p, fb, e, cfg):
    _add_to_timelines(_sub(p, "offer_redemptions"), e.data["offer_id"], e.timestamp, cfg)


def _consent_change(p, fb, e, cfg):
    for topic in ("email", "push", "sms"):
        if topic in e.data and _claim(fb, "consent:" + topic, _stamp(e)):
            _sub(p, "consent")[topic] = e.data[topic]


# ---------------------------------------------------------------- wishlist and profile data
def wishlist_summary(entries: dict) -> dict:
    """The profile's wishlist from ``_fold.wishlist``: {sku: [t, tie, idx, in, category]}."""
    skus = sorted(s for s, v in entries.items() if v[3])
    categories = sorted({entries[s][4] for s in skus if entries[s][4] is not None})
    wishlist = {"skus": skus, "categories": categories}
    if entries:
        wishlist["updated_at"] = max(v[0] for v in entries.values())
    return wishlist


def _wish(p: dict, fb: dict, e: Event, present: bool, cfg: FoldConfig) -> None:
    """Per sku, the latest add or remove wins; the summary is rebuilt only
    when what is on the list changes."""
    entries = _sub(fb, "wishlist")
    wishlist = p.get("wishlist")
    if wishlist is None:
        wishlist = p["wishlist"] = {"skus": [], "categories": []}
    wishlist["updated_at"] = _max(wishlist.get("updated_at"), e.timestamp)
    sku, stamp = e.data["sku"], _stamp(e)
    old = entries.get(sku)
    if old is not None and stamp <= old[:3]:
        return
    new = entries[sku] = stamp + [present, e.get("category")]
    changed = old is None or old[3:] != new[3:]
    if len(entries) > cfg.max_wishlist:
        del entries[min(entries, key=lambda s: (entries[s][:3], s))]
        changed = True
    if changed:
        skus = sorted(s for s, v in entries.items() if v[3])
        wishlist["skus"] = skus
        wishlist["categories"] = sorted({entries[s][4] for s in skus if entries[s][4] is not None})


def _wishlist_add(p, fb, e, cfg):
    _wish(p, fb, e, True, cfg)


def _wishlist_remove(p, fb, e, cfg):
    _wish(p, fb, e, False, cfg)


def _profile_update(p, fb, e, cfg):
    for name in ("home", "loyalty_points"):
        if name in e.data and _claim(fb, name, _stamp(e)):
            p[name] = e.data[name]


# ---------------------------------------------------------------- lifecycle
def lifecycle(p: dict, as_of: float | None, cfg: FoldConfig = DEFAULT_CONFIG) -> str:
    """new: no purchase yet, or the first one less than ``new_for`` ago;
    lapsed: no purchase for ``lapsed_after``; vip: lifetime value or orders
    past the VIP thresholds; active: everyone else.  Checked in the order
    lapsed, vip, new, active (a lapsed VIP is lapsed: win them back first)."""
    orders = p.get("orders_count") or 0
    if not orders or as_of is None:
        return "new"
    if as_of - p["last_purchase_at"] > cfg.lapsed_after:
        return "lapsed"
    if (p.get("lifetime_value") or 0) >= cfg.vip_value or orders >= cfg.vip_orders:
        return "vip"
    if as_of - p["first_purchase_at"] <= cfg.new_for:
        return "new"
    return "active"


def refresh(profile: dict, now: float, cfg: FoldConfig = DEFAULT_CONFIG) -> dict:
    """The profile with its lifecycle as of ``now`` (a stored profile's
    lifecycle is as of its latest event: a customer who stops coming lapses
    only when someone looks)."""
    as_of = max(now, profile.get("last_seen_at") or now)
    stage = lifecycle(profile, as_of, cfg)
    if stage == profile.get("lifecycle"):
        return profile
    return {**profile, "lifecycle": stage}


# ---------------------------------------------------------------- the fold
HANDLERS: dict[str, Handler] = {
    "page_view": _page_view,
    "product_view": _product_view,
    "search": _search,
    "add_to_cart": _add_to_cart,
    "remove_from_cart": _remove_from_cart,
    "purchase": _purchase,
    "store_visit": _store_visit,
    "email_open": _email_open,
    "email_click": _email_click,
    "push_open": _push_open,
    "offer_impression": _offer_impression,
    "offer_redeemed": _offer_redeemed,
    "consent_change": _consent_change,
    "wishlist_add": _wishlist_add,
    "wishlist_remove": _wishlist_remove,
    "profile_update": _profile_update,
}


def fold_into(p: dict, event: Event, cfg: FoldConfig = DEFAULT_CONFIG) -> dict:
    """Fold ``event`` into ``p`` IN PLACE and return it.  Only for a profile
    the caller owns outright (freshly decoded, or a copy): nothing else may
    hold ``p`` or any part of it."""
    fb = p.get("_fold")
    if fb is None:
        fb = p["_fold"] = {"v": FOLD_VERSION, "seq": 0}
    # Presence (first/last seen, last seen per channel, channels, visits): every
    # event runs it, so it is written out flat here (what _min, _max, _add_member
    # and add_visit would do).
    t, ch = event.timestamp, event.channel
    first = p.get("first_seen_at")
    if first is None or t < first:
        p["first_seen_at"] = t
    last = p.get("last_seen_at")
    if last is None or t > last:
        p["last_seen_at"] = last = t
    last_seen = p.get("last_seen")
    if last_seen is None:
        p["last_seen"] = {ch: t}
    elif last_seen.get(ch, t) <= t:
        last_seen[ch] = t
    channels = p.get("channels")
    if channels is None:
        p["channels"] = [ch]
    elif ch not in channels:
        bisect.insort(channels, ch)
    visits = p.get("visits")
    if visits is None:
        p["visits"] = {ch: [t]}
    else:
        timeline = visits.get(ch)
        if timeline is None:
            visits[ch] = [t]
        else:
            _add_visit_in_place(timeline, t, cfg.visit_window, cfg.max_visits)
    HANDLERS[event.type](p, fb, event, cfg)
    # lifecycle(p, last_seen_at): "new" at once for a customer with no orders (most)
    p["lifecycle"] = lifecycle(p, last, cfg) if p.get("orders_count") else "new"
    return p


#: The Python fold_into, the reference of the compiled one (_fastpaths.fold_into,
#: with its own add_visit_in_place) that fold_into is when the module is built.
reference_fold_into = fold_into
try:
    from . import _fastpaths
except ImportError:             # not built (python setup.py build_ext --inplace)
    _fastpaths = None
else:
    _fastpaths.setup_fold(handlers=HANDLERS, lifecycle=lifecycle, fold_version=FOLD_VERSION,
                          default_config=DEFAULT_CONFIG, insort=bisect.insort, bisect_right=bisect.bisect_right,
                          reference=reference_fold_into, add_visit_reference=_add_visit_in_place)
    fold_into = _fastpaths.fold_into                        # noqa: F811


def fold(profile: dict, event: Event, cfg: FoldConfig = DEFAULT_CONFIG) -> dict:
    """The profile after ``event``; ``profile`` is left as it was."""
    return fold_into(copy_profile(profile), event, cfg)


def fold_all(profile: dict, events: Iterable[Event], cfg: FoldConfig = DEFAULT_CONFIG) -> dict:
    """The profile after ``events`` (pure: one copy, then folded in place)."""
    return reduce(lambda p, e: fold_into(p, e, cfg), events, copy_profile(profile))


#: Where the fold writes times (seconds since the epoch), for ``maple profile show``'s ISO-8601:
#: a key ``at`` or ``*_at`` holds a time, or a map of times (``purchased_at``); these hold a
#: map of times (per channel) and maps of timelines (ascending lists of times).
TIME_MAPS = frozenset({"last_seen"})
TIMELINE_MAPS = frozenset({"visits", "offer_impressions", "offer_redemptions"})


def is_time_key(key: str) -> bool:
    return key == "at" or key.endswith("_at")


def public(profile: dict) -> dict:
    """The profile as rules see it: without the fold's bookkeeping."""
    return {k: v for k, v in profile.items() if not k.startswith("_")}
