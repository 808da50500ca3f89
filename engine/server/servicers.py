"""Thin servicers: protobuf in, domain call, protobuf out.

Nothing here decides anything; every rule of the service lives in
``engine.service``.  Errors are domain exceptions mapped by
``engine.server.status``.
"""
from __future__ import annotations

import time

from ..service._decide import answer
from ..service.decide import Decider
from ..service.errors import InvalidArgument, FieldViolation, ResourceExhausted, ServiceError
from ..service.model import DecideQuery, ItemError
from ..service.validate import validate_batch_size
from ..source import SourceFile
from ..limits import MAX_FILE_BYTES, MAX_FILES
from . import convert, wire
from .pb.maple.v1 import admin_pb2 as apb
from .pb.maple.v1 import admin_pb2_grpc
from .pb.maple.v1 import decision_pb2 as pb
from .pb.maple.v1 import decision_pb2_grpc
from ._recording import DecideBytes
from .status import abort, code_of, internal_error, translated


def deadline_of(context) -> float | None:
    """The call's deadline on the monotonic clock (None: no deadline)."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e9:       # grpc reports "no deadline" as a huge number
        return None
    return time.monotonic() + remaining


class DecisionServicer(decision_pb2_grpc.DecisionServiceServicer):
    """``Decide``/``DecideBatch`` answer messages (grpcio-testing, or a
    server built from the generated ``add_..._to_server``); ``maple serve``
    registers ``decide_bytes``/``decide_batch_bytes``, the same answers
    written straight to wire bytes by ``engine.server.wire``, which take the
    request as ``engine.server.wire`` read it: a DecideQuery (a list of them
    for a batch) or, for what only the protobuf runtime reads, the message."""

    def __init__(self, decider: Decider, on_result=None):
        self.decider = decider
        self.on_result = on_result            # called with each DecideResult (metrics)
        # decide_bytes(request, context) -> bytes, maple serve's Decide: what _decide does, then the
        # encoder, in one compiled call (engine.service._decide.answer), its errors answered as
        # @translated answers them; compiled too (engine.server._recording.DecideBytes), so a Decide
        # runs no Python frame of ours; the request is what _decide takes
        self.decide_bytes = DecideBytes(decider, on_result, answer, wire.encode_result, wire.encode_raw, DecideQuery,
                                        convert.query_from_pb, ServiceError, abort, internal_error)

    def _decide(self, request: pb.DecideRequest | DecideQuery, context):
        # maple serve's handler hands over a DecideQuery its C decoder read (engine.server.wire)
        q = request if type(request) is DecideQuery else convert.query_from_pb(request)
        result = self.decider.decide(q, deadline_of(context))
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _decide_batch(self, request: pb.DecideBatchRequest | list[DecideQuery], context, encode_raw=None):
        deadline = deadline_of(context)
        if type(request) is list:             # read by the C decoder (engine.server.wire.batch_request)
            validate_batch_size(len(request))
            items = request
        else:
            validate_batch_size(len(request.requests))
            items = []
            for item in request.requests:
                try:
                    items.append(convert.query_from_pb(item))
                except InvalidArgument as err:
                    items.append(err)
        version, results = self.decider.decide_batch(items, deadline, encode_raw)
        if self.on_result is not None:
            many = getattr(self.on_result, "many", None)
            if many is not None:              # the metrics: the whole batch in one call
                many(results)
            else:
                for r in results:
                    if not isinstance(r, ItemError):
                        self.on_result(r)
        return version, results

    @translated
    def Decide(self, request: pb.DecideRequest, context) -> pb.DecideResponse:
        return convert.result_to_pb(self._decide(request, context))

    @translated
    def DecideBatch(self, request: pb.DecideBatchRequest, context) -> pb.DecideBatchResponse:
        version, results = self._decide_batch(request, context)
        out = pb.DecideBatchResponse(ruleset_version=version)
        for r in results:
            item = out.results.add()
            if isinstance(r, ItemError):
                _item_error(r.error, item.error)
            else:
                convert.result_to_pb(r, item.response)
        return out

    @translated
    def decide_batch_bytes(self, request: pb.DecideBatchRequest | list[DecideQuery], context) -> bytes:
        version, results = self._decide_batch(request, context, wire.encode_raw)
        return wire.encode_batch(version, results, _item_error_bytes)


def _item_error_bytes(item: ItemError) -> bytes:
    out = pb.ItemError()
    _item_error(item.error, out)
    return out.SerializeToString()


def _item_error(err, out: pb.ItemError) -> None:
    out.code = code_of(err).value[0]
    out.message = err.message
    if isinstance(err, InvalidArgument):
        convert.violations_to_pb(err.violations, out.field_violations)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """``rules`` is a rules controller (engine.service.reload.RulesManager):
    validate(sources), reload(expected), rollback(to, expected), sources(version), state()."""

    def __init__(self, rules, on_reload=None):
        self.rules = rules
        self.on_reload = on_reload            # called with "ok" | "error" | "aborted"

    @translated
    def ValidateRules(self, request: apb.ValidateRulesRequest, context) -> apb.ValidateRulesResponse:
        if len(request.sources) > MAX_FILES:
            raise ResourceExhausted(f"sources: at most {MAX_FILES} files, got {len(request.sources)}")
        bad = []
        for i, s in enumerate(request.sources):
            if not s.path:
                bad.append(FieldViolation(f"sources[{i}].path", "a path is needed to name it in diagnostics"))
            if len(s.text) > MAX_FILE_BYTES:
                bad.append(FieldViolation(f"sources[{i}].text", f"at most {MAX_FILE_BYTES} characters"))
        if not request.sources:
            bad.append(FieldViolation("sources", "send the whole pack, schema included"))
        if bad:
            raise InvalidArgument(bad)
        sources = [SourceFile(s.path, s.text) for s in request.sources]
        return convert.validation_to_pb(self.rules.validate(sources))

    @translated
    def ReloadRules(self, request: apb.ReloadRulesRequest, context) -> apb.ReloadRulesResponse:
        from ..service.errors import Aborted, FailedPrecondition
        try:
            result = self.rules.reload(request.expected_version or None)
        except Aborted:
            self._count("aborted")
            raise
        except FailedPrecondition:
            self._count("error")
            raise
        self._count("ok")
        out = apb.ReloadRulesResponse(previous_version=result.previous_version, changed=result.changed)
        convert.ruleset_info_to_pb(self.rules.state(), out.ruleset)
        for d in result.ruleset.warnings:
            convert.diagnostic_to_pb(d, out.warnings.add())
        return out

    @translated
    def GetRuleset(self, request: apb.GetRulesetRequest, context) -> apb.GetRulesetResponse:
        state = self.rules.state()
        out = apb.GetRulesetResponse()
        convert.ruleset_info_to_pb(state, out.ruleset)
        if state.last_error is not None:
            convert.load_error_to_pb(state.last_error, out.last_error)
        return out

    @translated
    def RollbackRules(self, request: apb.RollbackRulesRequest, context) -> apb.RollbackRulesResponse:
        result = self.rules.rollback(request.to_version or None, request.expected_version or None)
        out = apb.RollbackRulesResponse(previous_version=result.previous_version, changed=result.changed)
        convert.ruleset_info_to_pb(self.rules.state(), out.ruleset)
        return out

    @translated
    def GetRulesetSources(self, request: apb.GetRulesetSourcesRequest, context) -> apb.GetRulesetSourcesResponse:
        version, files = self.rules.sources(request.version or None)
        out = apb.GetRulesetSourcesResponse(version=version)
        for path, text in files:
            out.sources.add(path=path, text=text)
        return out

    def _count(self, result: str) -> None:
        if self.on_reload is not None:
            self.on_reload(result)
