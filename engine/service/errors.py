"""The decision service's errors, one class per status a client can be told.

The domain raises these; ``engine.server.status`` maps each to a gRPC status
code.  Nothing here knows about gRPC.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path as the client wrote it, and what is wrong."""
    field: str
    description: str

    def prefixed(self, prefix: str) -> "FieldViolation":
        return FieldViolation(f"{prefix}.{self.field}" if self.field else prefix, self.description)


class ServiceError(Exception):
    """Base: a request the service answers with an error status."""
    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """The request is malformed; ``violations`` name every bad field."""
    code = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation] | FieldViolation):
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = list(violations)
        first = self.violations[0]
        more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        where = f"{first.field}: " if first.field else ""       # "": the request as a whole
        super().__init__(f"{where}{first.description}{more}")

    def prefixed(self, prefix: str) -> "InvalidArgument":
        return InvalidArgument([v.prefixed(prefix) for v in self.violations])


class FailedPrecondition(ServiceError):
    """The service cannot answer yet (no ruleset loaded) or the rules on disk
    do not compile (``diagnostics`` says where)."""
    code = "FAILED_PRECONDITION"

    def __init__(self, message: str, diagnostics: tuple = (), violations: tuple = ()):
        super().__init__(message)
        self.diagnostics = tuple(diagnostics)
        #: other failed conditions as (type, subject, description), e.g. rule tests
        self.violations = tuple(violations)


class NotFound(ServiceError):
    """The thing named does not exist (e.g. a ruleset version that is not kept)."""
    code = "NOT_FOUND"


class ResourceExhausted(ServiceError):
    """The request is larger than the service accepts, or it is shedding load."""
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(ServiceError):
    """The caller's deadline passed before the work was done; no more is done."""
    code = "DEADLINE_EXCEEDED"


class Aborted(ServiceError):
    """A concurrent change won (ReloadRules with a stale expected version)."""
    code = "ABORTED"


class Unavailable(ServiceError):
    """A dependency the request cannot do without is down."""
    code = "UNAVAILABLE"
