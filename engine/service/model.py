"""Domain requests and responses of the decision service.

msgspec Structs, not dataclasses: several are built on every request and
a Struct is built in C (a dataclass runs its generated ``__init__`` in the
interpreter: ~1.7x the time; a frozen one five times).  They are mutable
but read-only by convention; equality, ``repr`` and keyword or positional
construction are as a dataclass's.  The gRPC layer translates protobuf to
these and back, and nothing here knows about protobuf.  Field names
follow the wire contract (proto/maple/v1/decision.proto) so that errors
can name fields the way the client wrote them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgspec


class ProfileStatus(str, enum.Enum):
    STORED = "stored"                    # read from the profile store (plus any snapshot)
    SNAPSHOT = "snapshot"                # the inline snapshot only
    UNKNOWN_CUSTOMER = "unknown_customer"  # id unknown, no snapshot: an empty profile
    ANONYMOUS = "anonymous"              # neither id nor snapshot
    UNAVAILABLE = "unavailable"          # the store failed: snapshot or empty, degraded


# ---------------------------------------------------------------- requests
class RequestContext(msgspec.Struct):
    """The moment: what the frontend knows.  None means not known."""
    channel: str | None = None
    device: str | None = None
    locale: str | None = None
    page: str | None = None
    sku: str | None = None
    category: str | None = None
    location: tuple[float, float] | None = None
    store: str | None = None
    timestamp: float | None = None       # seconds since the epoch; None: the server's clock
    attributes: dict | None = None       # further request attributes of the pack

    def to_request(self) -> dict:
        """The ``request`` the rules read: typed fields over ``attributes``."""
        # on every request's path: field by field, no getattr loop
        req = dict(self.attributes) if self.attributes else {}
        if self.channel is not None:
            req["channel"] = self.channel
        if self.device is not None:
            req["device"] = self.device
        if self.locale is not None:
            req["locale"] = self.locale
        if self.page is not None:
            req["page"] = self.page
        if self.sku is not None:
            req["sku"] = self.sku
        if self.category is not None:
            req["category"] = self.category
        if self.store is not None:
            req["store"] = self.store
        location = self.location
        if location is not None:
            req["location"] = {"lat": location[0], "lon": location[1]}
        return req


class PendingJson:
    """A DecideBatch item's ``profile_json`` as it came, not decoded yet.

    The server's C reader (``engine.server.wire.batch_request``) leaves
    each item's snapshot so, and the batch decodes it when the item's turn
    comes (:func:`engine.service.validate.decoded_snapshot`): a batch then
    holds one decoded profile at a time, not all of them, and each is read
    while it is still in the CPU's caches (decoded all first, a decision
    of a 1,000-item inline batch took 1.4x what a single Decide does;
    ``python -m bench.batch_size``).  Only a DecideQuery in a batch holds one; the
    batch hands each item on with its snapshot decoded."""
    __slots__ = ("raw",)

    def __init__(self, raw: bytes):
        self.raw = raw

    def __repr__(self) -> str:
        return f"PendingJson({self.raw!r})"


class DecideQuery(msgspec.Struct):
    customer_id: str | None = None
    profile: dict | PendingJson | None = None   # the inline snapshot (PendingJson: see there)
    snapshot_bytes: int = 0              # its size on the wire (big ones get their shape checked)
    context: RequestContext = msgspec.field(default_factory=RequestContext)
    decisions: tuple[str, ...] = ()      # empty: all
    explain: bool = False
    snapshot_json: bool = False          # the snapshot came as DecideRequest.profile_json (errors name that)
    #: the customer's other identifiers, strongest first: (("loyalty_card", v), ("email_hash", v), ("device_id", v)),
    #: those given
    aliases: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------- results
class Reason(msgspec.Struct):
    rule: str
    because: str | None
    location: str


class Common(msgspec.Struct):
    """What every decision result carries."""
    source: str                                   # rule | default | holdout | capped
    reason: Reason | None = None
    experiments: tuple[tuple[str, str], ...] = ()


class HomepageCategory(msgspec.Struct):
    category: str | None
    common: Common


class PrefilledSize(msgspec.Struct):
    size: str | None
    common: Common


class NearbyStoresPolicy(msgspec.Struct):
    radius_km: float = 0.0
    max_stores: int = 0
    min_quantity: int = 1
    low_stock_below: int = 0
    preferred_first: bool = False
    open_now: bool = False          # only stores open at the decision's time (their hours, their zone)


class StoreAvailability(msgspec.Struct):
    store_id: str
    name: str
    distance_km: float
    quantity: int
    low_stock: bool
    preferred: bool
    open_now: bool | None = None    # open at decided_at by its hours and zone; None: not known


class NearbyStores(msgspec.Struct):
    stores: tuple[StoreAvailability, ...]
    policy: NearbyStoresPolicy
    common: Common
    located_by: str | None = None      # request, request_store, preferred_store or home
    empty_reason: str | None = None    # no_location, no_sku, no_size, no_stock, none_open, no_data, unavailable


class OfferResult(msgspec.Struct):
    id: str
    message: str
    score: float
    experiment: str | None
    variant: str | None
    reason: Reason | None
    fields: dict


class NextBestOffers(msgspec.Struct):
    offers: tuple[OfferResult, ...]
    common: Common


class GenericDecision(msgspec.Struct):
    """Any decision without a typed result: its JSON-able value."""
    kind: str                                     # value | record | offer
    value: Any
    common: Common
    offers: tuple[OfferResult, ...] = ()


class DecideResult(msgspec.Struct):
    ruleset_version: str
    decided_at: float
    profile_status: ProfileStatus
    homepage_category: HomepageCategory | None = None
    prefill_size: PrefilledSize | None = None
    nearby_stores: NearbyStores | None = None
    next_best_offer: NextBestOffers | None = None
    decisions: dict[str, GenericDecision] = msgspec.field(default_factory=dict)
    degraded: bool = False
    degraded_reason: str = ""
    explanation: dict | None = None
    # (decision, rule or None) for every decision made, for metrics
    decided_by: tuple[tuple[str, str | None], ...] = ()
    customer_id: str = ""              # who the answer is for (DecideResponse.customer_id); "": anonymous


@dataclass(frozen=True)
class ItemError:
    """One failed item of a batch: the error Decide would have raised."""
    error: Exception


class EncodedAnswer(msgspec.Struct):
    """An answer the server's encoder already wrote as the DecideResponse's
    wire bytes, straight from the kernel's raw answers (``decide_one`` with
    ``encode_raw``), with what the metrics count of it."""
    body: bytes
    decided_by: tuple
    degraded: bool
