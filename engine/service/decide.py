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

A request may name the customer by the other identifiers events carry
(``DecideQuery.aliases``: loyalty card, email hash, device id); the first
of customer_id and those, in that order, that names a stored customer gives
the profile.  Known by none and without a customer_id, the customer is
decided as unknown under the id their first event with those identifiers
will create (:func:`~engine.profiles.identity.mint_customer_id`).
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

from ..ruleset import Ruleset
from . import results
from ._decide import decide as decide_compiled, decide_batch as decide_batch_compiled
from .assemble import Plan
from .errors import FailedPrecondition, ServiceError
from .model import DecideQuery, DecideResult, EncodedAnswer, ItemError, ProfileStatus
from .rules import RulesetHolder
from ..profiles.identity import mint_customer_id
from .sources import (NullProfiles, NullStores, ProfileLookup, ProfileSource, SourceUnavailable, StoresSource,
                      lookup_alias, lookup_profile)

log = logging.getLogger("maple.service")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class Decider:
    # the attributes a Decide reads, in slots: the compiled path reads them
    # from there (_decide's field slots), not by the generic attribute lookup
    __slots__ = ("holder", "profiles", "stores", "clock", "decision_log", "_plan", "__dict__", "__weakref__")

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
        """Raise ServiceError subclasses for what the client must be told.
        Compiled: ``_decide.decide`` (the current ruleset and its plan, then
        ``decide_one``: validate, the profile by :meth:`_profile`, the rules,
        the typed results, the nearby stores, the ``DecideResult``)."""
        return decide_compiled(self, q, deadline)

    # -- many
    def decide_batch(self, queries: Sequence[DecideQuery | ServiceError], deadline: float | None = None,
                     encode_raw=None) -> tuple[str, list[DecideResult | ItemError | EncodedAnswer]]:
        """Every item decided by the same ruleset version; an item's error is
        its own (an item may already be the error its translation raised, and
        its snapshot may still be the C reader's PendingJson, decoded at its
        turn: ``validate.decoded_snapshot``);
        a passed deadline stops the batch (no more work).  With
        ``encode_raw`` (the server's ``wire.encode_raw``) an item without
        ``explain`` comes as an EncodedAnswer, its bytes already written.
        Compiled: ``_decide.decide_batch``."""
        return decide_batch_compiled(self, queries, deadline, encode_raw)

    # -- the work (the rest is compiled: engine/service/_decide.pyx)
    def _profile(self, q: DecideQuery, deadline, now: float) -> tuple[dict, ProfileStatus, list[str]]:
        snapshot = q.profile
        cid = q.customer_id
        if not cid:
            if not q.aliases:
                if snapshot is None:
                    return {}, ProfileStatus.ANONYMOUS, []
                return snapshot, ProfileStatus.SNAPSHOT, []
            # known only by another identifier: if nobody has it yet, the id their
            # first event with it will create (so experiments assign them for good)
            cid = mint_customer_id(q.aliases)
        try:
            # no store: every id unknown, as NullProfiles.get says (not asked: this is every request's path)
            if type(self.profiles) is NullProfiles:
                found = _UNKNOWN
            elif not q.aliases:
                found = lookup_profile(self.profiles, cid, _remaining(deadline), now)
            else:
                found = self._find(q, deadline, now)
        except SourceUnavailable as err:
            base = dict(snapshot) if snapshot is not None else {}
            base.setdefault("customer_id", cid)
            return base, ProfileStatus.UNAVAILABLE, [f"profile store unavailable: {err}"]
        except Exception as err:  # a broken source must not fail the request
            log.exception("profile source failed")
            base = dict(snapshot) if snapshot is not None else {}
            base.setdefault("customer_id", cid)
            return base, ProfileStatus.UNAVAILABLE, [f"profile store failed: {type(err).__name__}"]
        stored = found.profile
        if stored is None:
            if snapshot is not None:
                return snapshot, ProfileStatus.SNAPSHOT, []
            return {"customer_id": cid}, ProfileStatus.UNKNOWN_CUSTOMER, []
        if snapshot:
            stored = {**stored, **snapshot}
        # a cached copy while the store is down: still STORED, but degraded
        return stored, ProfileStatus.STORED, [found.degraded] if found.degraded else []

    def _find(self, q: DecideQuery, deadline, now: float) -> ProfileLookup:
        """The stored profile of the first of the request's identifiers
        (customer_id, then ``q.aliases``, strongest first) that names a
        stored customer."""
        if q.customer_id:
            found = lookup_profile(self.profiles, q.customer_id, _remaining(deadline), now)
            if found.profile is not None:
                return found
        for kind, value in q.aliases:
            found = lookup_alias(self.profiles, kind, value, _remaining(deadline), now)
            if found.profile is not None:
                return found
        return _UNKNOWN

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


_UNKNOWN = ProfileLookup(None)                        # what NullProfiles answers (read-only, shared)
