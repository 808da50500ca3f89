"""Deciding for one customer, or a batch: the decision service's domain.

:class:`Decider` reads the current ruleset once per request, resolves the
profile (store, snapshot or neither), evaluates, and maps the kernel's
answers to typed results (:mod:`.assemble`).  Failures of the profile or
stores source never fail the request: the answer is computed with what is
there and marked degraded.

An unknown customer (an id the store does not know) with no snapshot is
decided on an empty profile that carries only the id: request-only rules
still fire (channel, page, location), everything else answers its default,
experiments still assign by the id, and the result says
``profile_status = unknown_customer``.  It is not an error and not degraded.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Sequence

from ..eval.values import to_geo
from ..ruleset import Ruleset
from . import results
from .assemble import Plan
from .errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, ServiceError
from .model import Common, DecideQuery, DecideResult, ItemError, NearbyStores, NearbyStoresPolicy, ProfileStatus
from .rules import RulesetHolder
from .sources import (NearbyFound, NearbyQuery, NullProfiles, NullStores, ProfileLookup, ProfileSource,
                      SourceUnavailable, StoresSource, lookup_profile)
from .validate import validate_batch_size, validate_query

log = logging.getLogger("maple.service")


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the deadline passed before the decision was made")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class Decider:
    def __init__(self, holder: RulesetHolder, profiles: ProfileSource | None = None,
                 stores: StoresSource | None = None, clock=time.time):
        self.holder = holder
        self.profiles = profiles or NullProfiles()
        self.stores = stores or NullStores()
        self.clock = clock
        self.decision_log = None               # engine.service.decision_log.DecisionLog, when sampling
        # the current ruleset's plan (engine.service.assemble), made when a ruleset
        # is swapped in, not by the first Decide after a reload
        self._plan: Plan | None = Plan(holder.current) if holder.current is not None else None
        holder.on_swap(self._prepare)

    # -- the ruleset
    def _prepare(self, rs: Ruleset) -> None:
        self._plan = Plan(rs)

    def ruleset(self) -> Ruleset:
        rs = self.holder.current
        if rs is None:
            raise FailedPrecondition("no ruleset is loaded yet (see AdminService.GetRuleset for the last error)")
        return rs

    # -- one
    def decide(self, q: DecideQuery, deadline: float | None = None) -> DecideResult:
        """Raise ServiceError subclasses for what the client must be told."""
        _check_deadline(deadline)
        rs = self.ruleset()
        return self._decide(rs, q, deadline)

    # -- many
    def decide_batch(self, queries: Sequence[DecideQuery | ServiceError], deadline: float | None = None
                     ) -> tuple[str, list[DecideResult | ItemError]]:
        """Every item decided by the same ruleset version; an item's error is
        its own (an item may already be the error its translation raised);
        a passed deadline stops the batch (no more work)."""
        validate_batch_size(len(queries))
        _check_deadline(deadline)
        rs = self.ruleset()
        out: list[DecideResult | ItemError] = []
        for i, q in enumerate(queries):
            _check_deadline(deadline)
            try:
                if isinstance(q, ServiceError):
                    raise q
                out.append(self._decide(rs, q, deadline))
            except InvalidArgument as err:
                out.append(ItemError(err.prefixed(f"requests[{i}]")))
            except DeadlineExceeded:
                raise
            except ServiceError as err:
                out.append(ItemError(err))
        return rs.version, out

    # -- the work
    def _decide(self, rs: Ruleset, q: DecideQuery, deadline: float | None) -> DecideResult:
        validate_query(q, rs.decision_names)
        now = q.context.timestamp if q.context.timestamp is not None else self.clock()
        profile, status, degraded = self._profile(q, deadline, now)
        _check_deadline(deadline)
        wanted = self._wanted(rs, q.decisions)
        request = q.context.to_request()
        cid = q.customer_id or None
        raw = rs.run(profile, request, now, cid, wanted)
        if self.decision_log is not None:          # the outcomes are made on the log's thread, if sampled
            self.decision_log.offer(rs.version, q.customer_id, profile, request,
                                    functools.partial(rs.decision_set, raw, now), status)
        plan = self._plan
        if plan is None or plan.ruleset is not rs:   # a swap this request raced with
            plan = Plan(rs)
        asked = set(q.decisions) if q.decisions else None
        fields, generic, decided_by, nearby = plan.map(raw, asked)
        if nearby is not None:
            fields[results.NEARBY] = self._nearby(q, plan.size(raw), nearby[0], nearby[1], profile, degraded,
                                                  deadline, now)
        explanation = None
        if q.explain:
            explained = rs.explain(profile, request, now, cid, wanted)
            explanation = {name: e for name, e in explained.items()
                           if e is not None and (asked is None or name in asked)}
        get = fields.get
        return DecideResult(rs.version, now, status, get(results.HOMEPAGE), get(results.SIZE), get(results.NEARBY),
                            get(results.OFFER), generic, bool(degraded), "; ".join(degraded) if degraded else "",
                            explanation, tuple(decided_by))

    def _profile(self, q: DecideQuery, deadline, now: float) -> tuple[dict, ProfileStatus, list[str]]:
        snapshot = q.profile
        if not q.customer_id:
            if snapshot is None:
                return {}, ProfileStatus.ANONYMOUS, []
            return snapshot, ProfileStatus.SNAPSHOT, []
        try:
            # no store: every id unknown, as NullProfiles.get says (not asked: this is every request's path)
            found = (_UNKNOWN if type(self.profiles) is NullProfiles
                     else lookup_profile(self.profiles, q.customer_id, _remaining(deadline), now))
        except SourceUnavailable as err:
            base = dict(snapshot) if snapshot is not None else {}
            base.setdefault("customer_id", q.customer_id)
            return base, ProfileStatus.UNAVAILABLE, [f"profile store unavailable: {err}"]
        except Exception as err:  # a broken source must not fail the request
            log.exception("profile source failed")
            base = dict(snapshot) if snapshot is not None else {}
            base.setdefault("customer_id", q.customer_id)
            return base, ProfileStatus.UNAVAILABLE, [f"profile store failed: {type(err).__name__}"]
        stored = found.profile
        if stored is None:
            if snapshot is not None:
                return snapshot, ProfileStatus.SNAPSHOT, []
            return {"customer_id": q.customer_id}, ProfileStatus.UNKNOWN_CUSTOMER, []
        if snapshot:
            stored = {**stored, **snapshot}
        # a cached copy while the store is down: still STORED, but degraded
        return stored, ProfileStatus.STORED, [found.degraded] if found.degraded else []

    @staticmethod
    def _wanted(rs: Ruleset, names: tuple[str, ...]):
        """The decisions to evaluate: all, or the named ones (plus
        prefill_size when nearby_stores needs the size)."""
        if not names:
            return None
        wanted = list(dict.fromkeys(names))
        if results.NEARBY in wanted and results.SIZE not in wanted and results.SIZE in rs._by_name:
            wanted.append(results.SIZE)
        return wanted

    def _nearby(self, q: DecideQuery, size: str | None, p: NearbyStoresPolicy, common: Common, profile: dict,
                degraded: list[str], deadline, now: float) -> NearbyStores:
        """The stores near the customer holding the viewed item in ``size``,
        by the policy the rules chose."""
        preferred = profile.get("preferred_store")
        preferred = preferred if isinstance(preferred, str) and preferred else None
        found = _NO_STOCK
        if p.max_stores > 0 and p.radius_km > 0:
            where = q.context.location
            # the home is only the last fallback: a request's location (validated) comes first
            home = profile.get("home") if where is None else None
            query = NearbyQuery(q.context.sku or None, size, where, preferred,
                                to_geo(home), p.radius_km, p.max_stores,
                                p.min_quantity, p.low_stock_below, now if p.open_now else None, now)
            try:
                found = self.stores.nearby(query, None if deadline is None else _remaining(deadline))
            except SourceUnavailable as err:
                degraded.append(f"store availability unavailable: {err}")
            except Exception as err:
                log.exception("stores source failed")
                degraded.append(f"store availability failed: {type(err).__name__}")
        return results.nearby_answer(p, common, found, preferred)

_NO_STOCK = NearbyFound((), None, "no_stock")       # no query made (read-only, shared)
_UNKNOWN = ProfileLookup(None)                        # what NullProfiles answers (read-only, shared)
