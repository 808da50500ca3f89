"""The decision service's domain: requests, results, rules, sources.

No generated protobuf code is imported here (``engine.server`` translates);
this package is what a Decide means, independent of the wire:

* :mod:`.model`     request and result dataclasses
* :mod:`.validate`  input validation naming the field
* :mod:`.rules`     the current-ruleset holder (atomic swap) and admin operations
* :mod:`.sources`   profile and stores source protocols, null implementations
* :mod:`.results`   outcomes -> the four typed results and the generic map
* :mod:`.decide`    :class:`Decider`: one Decide, a DecideBatch
* :mod:`.errors`    one exception per status a client can be told
"""
from .decide import Decider
from .errors import (Aborted, DeadlineExceeded, FailedPrecondition, FieldViolation, InvalidArgument,
                     ResourceExhausted, ServiceError, Unavailable)
from .model import DecideQuery, DecideResult, ItemError, ProfileStatus, RequestContext
from .reload import LocalRules, RulesManager
from .rules import RulesetHolder

__all__ = ["Decider", "Aborted", "DeadlineExceeded", "FailedPrecondition", "FieldViolation",
           "InvalidArgument", "ResourceExhausted", "ServiceError", "Unavailable", "DecideQuery",
           "DecideResult", "ItemError", "ProfileStatus", "RequestContext", "LocalRules", "RulesManager",
           "RulesetHolder"]
