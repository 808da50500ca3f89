"""Domain errors -> gRPC status codes, with google.rpc rich error details.

INVALID_ARGUMENT carries a ``google.rpc.BadRequest`` naming each bad field;
FAILED_PRECONDITION from a broken rule pack carries a
``google.rpc.PreconditionFailure`` with one violation per diagnostic
(type = the diagnostic code, subject = path:line:col).  Clients read them
with ``grpc_status.rpc_status.from_call``.
"""
from __future__ import annotations

import functools
import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..service.errors import FailedPrecondition, InvalidArgument, ServiceError

log = logging.getLogger("maple.server")

MAX_MESSAGE = 1000         # characters of a status message
MAX_DETAILS = 20           # violations in the details (trailing metadata is small)


def code_of(err: ServiceError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.code, grpc.StatusCode.INTERNAL)


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def to_status(err: ServiceError) -> grpc.Status:
    code = code_of(err)
    details = []
    if isinstance(err, InvalidArgument):
        br = error_details_pb2.BadRequest()
        for v in err.violations[:MAX_DETAILS]:
            br.field_violations.add(field=_clip(v.field, 200), description=_clip(v.description, 300))
        details.append(br)
    elif isinstance(err, FailedPrecondition) and (err.diagnostics or err.violations):
        pf = error_details_pb2.PreconditionFailure()
        for d in [d for d in err.diagnostics if d.is_error][:MAX_DETAILS]:
            pf.violations.add(type=d.code, subject=d.span.location() if d.span is not None else "",
                              description=_clip(d.message, 300))
        for kind, subject, description in err.violations[:MAX_DETAILS]:
            pf.violations.add(type=kind, subject=_clip(subject, 200), description=_clip(description, 300))
        details.append(pf)
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=_clip(err.message),
                                                  details=packed))


def abort(context: grpc.ServicerContext, err: ServiceError):
    """End the call with the status for ``err`` (raises, like context.abort).

    The same as context.abort_with_status, spelled so grpc_testing's
    context (which lacks abort_with_status) runs it too."""
    status = to_status(err)
    context.set_trailing_metadata(status.trailing_metadata)
    context.abort(status.code, status.details)


def internal_error(context: grpc.ServicerContext, name: str):
    """The answer to an exception servicer method ``name`` did not turn into
    a ServiceError: a bug, logged and answered INTERNAL (never UNKNOWN).
    Call it while handling the exception (it logs the traceback)."""
    log.exception("%s failed", name)
    context.abort(grpc.StatusCode.INTERNAL, "internal error (logged on the server)")


def translated(method):
    """Servicer method decorator: ServiceError -> its status; anything else
    is a bug, logged and answered INTERNAL (never UNKNOWN).  (``maple
    serve``'s Decide has it compiled: ``_recording.DecideBytes``.)"""
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServiceError as err:
            abort(context, err)
        except Exception:
            internal_error(context, method.__name__)
    return wrapper
