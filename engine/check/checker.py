"""Resolve every name and type every expression of a rule pack.

:func:`check` walks the parsed modules once to collect declarations, then
checks each one, adding diagnostics as it goes (never stopping at the first)
and filling the side tables of a :class:`CheckedPack`.
"""
from __future__ import annotations

import re
from itertools import count

from .. import limits
from ..diagnostics import Diagnostics, containing, did_you_mean, q
from ..source import Span
from ..syntax import ast
from ..syntax.builder import UNITS, unescape
from ..syntax.parser import RESERVED, parse_expression
from . import types as T
from .builtins import BUILTINS
from .model import (AttrRef, Candidate, CheckedPack, ConstInfo, ConstRef, DecisionInfo,
                    EnumRef, ExperimentInfo, ExperimentRef, FieldInfo, RootRef, SegmentInfo,
                    SegmentRef)

ROOTS = ("profile", "request")
POLICIES = ("first", "best", "all")
#: caps count impressions in this profile attribute (a map of timelines keyed by offer name)
CAP_ATTRIBUTE = ("profile", ("offer_impressions",))
#: segments listed by name when a condition names one that is not declared
SEGMENTS_LISTED = 20
ARITH_OPS = ("+", "-", "*", "/")
COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")


def _depth(e: ast.Expr) -> int:
    """Nesting depth of an expression, computed without recursion."""
    best = 0
    stack = [(e, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in ast.children(node))
    return best


class Checker:
    def __init__(self, diags: Diagnostics, ids: count):
        self.d = diags
        self.ids = ids
        self.types: dict[int, T.Type] = {}
        self.refs: dict = {}
        self.schema: dict[str, T.Type] = {}
        self.schema_spans: dict[str, Span] = {}
        self.decisions: dict[str, DecisionInfo] = {}
        self.segments: dict[str, SegmentInfo] = {}
        self.consts: dict[str, ConstInfo] = {}
        self.experiments: dict[str, ExperimentInfo] = {}
        self.candidates: list[Candidate] = []
        self.broken: set[str] = set()
        self.incomplete = False
        self._first: dict[tuple[str, str], Span] = {}
        # name resolution context
        self._const_only: str | None = None      # "what must be a constant", when checking one
        self._depends: list[str] = []            # what a constant context saw
        self._segment_stack: list[str] = []
        self._const_stack: list[str] = []
        self._segment_decls: dict[str, ast.SegmentDecl] = {}
        self._const_decls: dict[str, ast.ConstDecl] = {}
        self._checked_segments: set[str] = set()
        self._checked_consts: set[str] = set()

    # ================================================================ driver
    def run(self, modules: list[ast.Module]) -> CheckedPack:
        modules = sorted(modules, key=lambda m: m.source.path)
        decls = [d for m in modules for d in m.decls]
        for m in modules:
            self.broken.update(m.broken)
        self.incomplete = any(m.incomplete for m in modules)
        for decl in decls:
            if isinstance(decl, ast.SchemaDecl):
                self._schema(decl)
        for decl in decls:
            self._declare(decl)
        for decl in decls:
            if isinstance(decl, ast.DecisionDecl):
                self._decision(decl)
        for decl in decls:
            if isinstance(decl, ast.ExperimentDecl):
                self._experiment(decl)
        for name in list(self._const_decls):
            self._check_const(name)
        for name in list(self._segment_decls):
            self._check_segment(name)
        order = count()
        for decl in decls:
            if isinstance(decl, ast.RuleDecl):
                self._rule(decl, next(order))
            elif isinstance(decl, ast.OfferDecl):
                self._offer(decl, next(order))
        self._warn_unused()
        return CheckedPack(self.schema, self.decisions, self.segments, self.consts, self.experiments,
                           self.types, self.refs, self.candidates, [m.source for m in modules])

    # ================================================================ declarations
    def _unique(self, space: str, kind: str, ident: ast.Ident) -> bool:
        key = (space, ident.name)
        first = self._first.get(key)
        if first is not None:
            self.d.add("E203", ident.span, kind=kind, name=q(ident.name), first=first.location())
            return False
        self._first[key] = ident.span
        return True

    def _declare(self, decl) -> None:
        if isinstance(decl, (ast.SegmentDecl, ast.ConstDecl)) and decl.name.name in RESERVED:
            self.d.add("E412", decl.name.span, what=f"the name {q(decl.name.name)}",
                       why=f"it is a keyword of the language; name the {decl.kind} something else")
            self.broken.add(decl.name.name)
            return
        if isinstance(decl, ast.SegmentDecl):
            if self._unique("value", "segment", decl.name):
                self._segment_decls[decl.name.name] = decl
        elif isinstance(decl, ast.ConstDecl):
            if self._unique("value", "const", decl.name):
                self._const_decls[decl.name.name] = decl

    # ---------------------------------------------------------------- schema
    def _schema(self, decl: ast.SchemaDecl) -> None:
        root = decl.root.name
        if root not in ROOTS:
            self.d.add("E211", decl.root.span, name=q(root), help=did_you_mean(root, ROOTS)
                       or "a pack declares schema profile { ... } and schema request { ... }")
            return
        fields = dict(self.schema[root].fields) if root in self.schema else {}
        spans: dict[str, Span] = {}
        for f in decl.fields:
            if f.name.name in fields:
                first = self._first.get(("schema", f"{root}.{f.name.name}"))
                self.d.add("E203", f.name.span, kind="attribute", name=q(f"{root}.{f.name.name}"),
                           first=first.location() if first else "another schema block")
                continue
            self._first[("schema", f"{root}.{f.name.name}")] = f.name.span
            fields[f.name.name] = self._type(f.type, where="schema")
            spans[f.name.name] = f.span
        self.schema[root] = T.record(fields.items())
        self.schema_spans.setdefault(root, decl.span)

    def _type(self, te, where: str) -> T.Type:
        if isinstance(te, ast.SimpleTypeExpr):
            name = te.name.name
            if name in T.SIMPLE_TYPES:
                return T.SIMPLE_TYPES[name]
            if name == "offer" and where == "decision":
                return T.OFFER
            alias = T.TYPE_ALIASES.get(name)
            help_ = f"did you mean {q(alias)}?" if alias else did_you_mean(
                name, list(T.SIMPLE_TYPES) + (["offer"] if where == "decision" else []))
            self.d.add("E206", te.name.span, name=q(name), help=help_,
                       notes=["types: bool, number, string, timestamp, duration, distance, geo, "
                              "timeline, enum(...), set<string>, map<...>, { ... }"])
            return T.ERROR
        if isinstance(te, ast.EnumTypeExpr):
            members = []
            for m in te.members:
                if m.name in members:
                    self.d.add("E203", m.span, kind="enum value", name=q(m.name), first="earlier in this enum")
                members.append(m.name)
            return T.enum(dict.fromkeys(members))
        if isinstance(te, ast.SetTypeExpr):
            elem = self._type(te.elem, where)
            if elem.kind != "string" and not elem.is_error:
                self.d.add("E311", te.span, what="a set", needs="string values (set<string>)",
                           got=f"a set of {T._plural(elem)}")
                return T.ERROR
            return T.set_of(elem)
        if isinstance(te, ast.MapTypeExpr):
            value = self._type(te.value, where)
            if not (value.is_scalar or value.kind in ("timeline", "error")):
                self.d.add("E311", te.span, what="a map", needs="plain values (map<string>, map<number>, "
                           "map<timestamp>, map<timeline>, ...)", got=f"a map of {value.describe()}")
                return T.ERROR
            return T.map_of(value)
        if isinstance(te, ast.RecordTypeExpr):
            fields = {}
            for f in te.fields:
                if f.name.name in fields:
                    self.d.add("E203", f.name.span, kind="attribute", name=q(f.name.name),
                               first="earlier in this group")
                    continue
                fields[f.name.name] = self._type(f.type, where)
            return T.record(fields.items())
        raise TypeError(te)  # pragma: no cover

    # ---------------------------------------------------------------- decisions
    def _decision(self, decl: ast.DecisionDecl) -> None:
        name = decl.name.name
        if not self._unique("decision", "decision", decl.name):
            return
        policy = decl.policy.name if decl.policy else "first"
        if policy not in POLICIES:
            self.d.add("E210", decl.policy.span, name=q(policy), help=did_you_mean(policy, POLICIES)
                       or "pick first, pick best or pick all")
            policy = "first"
        fields: dict[str, FieldInfo] = {}
        if decl.fields is not None:
            kind = "record"
            if decl.type is not None:
                self.d.add("E412", decl.type.span, what="a type", why="a decision with a field list "
                           "takes its types from the fields")
            for f in decl.fields:
                if f.name.name in fields:
                    self.d.add("E203", f.name.span, kind="decision field", name=q(f.name.name),
                               first=fields[f.name.name].span.location())
                    continue
                ftype = self._plain_decision_type(self._type(f.type, "decision"), f.type.span, "a decision field")
                fields[f.name.name] = FieldInfo(f.name.name, ftype, f.default, f.span)
                self._const_expr(f.default, ftype, what=f"the default of {q(f.name.name)}")
            type_ = T.record((n, fi.type) for n, fi in fields.items())
        elif decl.type is None:
            self.d.add("E406", decl.name.span, name=name)
            kind, type_ = "value", T.ERROR
        else:
            type_ = self._type(decl.type, "decision")
            kind = "offer" if type_.kind == "offer" else "value"
            if kind == "value":
                type_ = self._plain_decision_type(type_, decl.type.span, "a decision's value")
        if kind == "offer" and policy != "best":
            if decl.policy is not None:
                self.d.add("E407", decl.policy.span, name=q(name),
                           problem="offers compete on their scores: use pick best")
            policy = "best"
        if kind == "record" and policy == "all":
            self.d.add("E407", decl.policy.span, name=q(name),
                       problem="pick all collects values; a decision with fields needs pick first or best")
            policy = "first"
        if decl.default is not None:
            if kind != "value":
                self.d.add("E412", decl.default.span, what="default",
                           why="each field has its own default" if kind == "record"
                           else "add a fallback offer with a low score instead")
            else:
                expect = T.list_of(type_) if policy == "all" else type_
                self._const_expr(decl.default, expect, what=f"the default of {q(name)}")
        top = 1
        if decl.top is not None:
            if kind != "offer" and policy != "all":
                self.d.add("E412", decl.span, what="top", why="only offer decisions and pick all can return several")
            elif not 1 <= decl.top <= limits.MAX_TOP:
                self.d.add("E409", decl.span, what="top", low=1, high=limits.MAX_TOP, value=decl.top)
            else:
                top = decl.top
        elif policy == "all":
            top = 0  # no limit
        caps = []
        for cap in decl.caps:
            if kind != "offer":
                self.d.add("E412", cap.span, what="cap", why="caps limit offers")
                continue
            caps.append(self._cap(cap))
        self.decisions[name] = DecisionInfo(name, kind, policy, type_, decl.default, fields, top, caps,
                                            decl.span, len(self.decisions))

    def _plain_decision_type(self, t: T.Type, span: Span, what: str) -> T.Type:
        if t.is_scalar or t.is_error:
            return t
        self.d.add("E311", span, what=what, needs="a plain value (string, number, bool, timestamp, duration, "
                   "distance, geo or an enum)", got=t.describe(),
                   help="to return several values, use pick all; for several named values, a field list { ... }")
        return T.ERROR

    def _cap(self, cap: ast.Cap) -> tuple[int, ast.Expr, Span]:
        if cap.count < 1:
            self.d.add("E409", cap.span, what="a cap's count", low=1, high="1,000,000,000", value=cap.count)
        self._const_expr(cap.window, T.DURATION, what="a cap's window")
        root, path = CAP_ATTRIBUTE
        t = self._attribute_type(root, path)
        if root not in self.broken and (t is None or t.kind != "map" or t.elem.kind != "timeline"):
            if root in self.schema or root not in self.broken:
                self.d.add("E411", cap.span, attr=q(".".join((root,) + path)),
                           help="the profile keeps each offer's impressions there: "
                                "offer_impressions: map<timeline>")
        return (cap.count, cap.window, cap.span)

    # ---------------------------------------------------------------- segments, constants
    def _check_segment(self, name: str) -> None:
        if name in self._checked_segments:
            return
        decl = self._segment_decls[name]
        self._checked_segments.add(name)
        self._segment_stack.append(name)
        self._condition(decl.expr, "a segment")
        self._segment_stack.pop()
        self.segments[name] = SegmentInfo(name, decl.expr, decl.span)

    def _check_const(self, name: str) -> None:
        if name in self._checked_consts:
            return
        decl = self._const_decls[name]
        self._checked_consts.add(name)
        self._const_stack.append(name)
        t = self._const_expr(decl.expr, None, what=f"const {q(name)}")
        self._const_stack.pop()
        self.consts[name] = ConstInfo(name, decl.expr, t, decl.span)

    def _const_expr(self, e: ast.Expr | None, expect: T.Type | None, what: str) -> T.Type:
        if e is None:
            return T.ERROR
        saved = self._const_only, self._depends
        self._const_only, self._depends = what, []
        try:
            t = self.expr(e, expect)
        finally:
            depends = self._depends
            self._const_only, self._depends = saved
        if depends:
            self.d.add("E309", e.span, what=what, depends=depends[0])
        if expect is not None and not T.assignable(expect, t):
            self.d.add("E303", e.span, target=what, expected=expect.describe(), got=t.describe())
        return t

    # ---------------------------------------------------------------- rules, offers
    def _rule(self, decl: ast.RuleDecl, order: int) -> None:
        name = decl.name.name
        unique = self._unique("candidate", "rule", decl.name)
        if decl.when is not None:
            self._condition(decl.when, "when")
        if not decl.assignments:
            self.d.add("E401", decl.name.span, name=q(name))
            return
        targets = []
        for a in decl.assignments:
            if a.target.name not in targets:
                targets.append(a.target.name)
        if len(targets) > 1:
            other = next(a for a in decl.assignments if a.target.name == targets[1])
            self.d.add("E402", other.target.span, name=q(name), first=q(targets[0]), other=q(targets[1]))
        dname = targets[0]
        info = self.decisions.get(dname)
        if info is None:
            if dname not in self.broken:
                self.d.add("E204", decl.assignments[0].target.span, name=q(dname),
                           help=did_you_mean(dname, self.decisions, prefix=True))
            for a in decl.assignments:
                self.expr(a.value)
            return
        if info.kind == "offer":
            self.d.add("E412", decl.assignments[0].target.span, what="a rule for an offer decision",
                       why=f"declare offers with offer ... (decision {q(dname)} picks among offers)")
            return
        assignments = self._assignments(decl.assignments, info, name)
        self._score(decl.score, info, "rule", name, decl.name.span)
        cand = Candidate("rule", name, dname, decl.priority, order, decl.when, decl.score,
                         assignments, decl.because, decl.span, decl.name.span)
        if unique:
            info.candidates.append(cand)
            self.candidates.append(cand)

    def _assignments(self, assignments, info: DecisionInfo, rule: str):
        out = []
        seen: set = set()
        for a in assignments:
            if a.target.name != info.name:      # reported as E402
                self.expr(a.value)
                continue
            key = a.field.name if a.field else None
            if key in seen:
                self.d.add("E105", a.span, clause=q(a.target.name + (f".{key}" if key else "")),
                           kind="rule", name=q(rule))
                continue
            seen.add(key)
            if info.kind == "record":
                if a.field is None:
                    example = ", ".join(f"{info.name}.{f} = ..." for f in list(info.fields)[:2])
                    self.d.add("E410", a.target.span, name=q(info.name), kind="a group of fields",
                               example=example)
                    self.expr(a.value)
                    continue
                fi = info.fields.get(a.field.name)
                if fi is None:
                    self.d.add("E205", a.field.span, decision=q(info.name), name=q(a.field.name),
                               help=did_you_mean(a.field.name, info.fields))
                    self.expr(a.value)
                    continue
                self._value(a.value, fi.type, f"{q(info.name + '.' + a.field.name)}")
            else:
                if a.field is not None:
                    self.d.add("E205", a.field.span, decision=q(info.name), name=q(a.field.name),
                               help=f"{q(info.name)} holds one value: {info.name} = ...")
                    self.expr(a.value)
                    continue
                self._value(a.value, info.type, q(info.name))
            out.append((key, a.value))
        return out

    def _value(self, e: ast.Expr, target: T.Type, what: str) -> None:
        t = self.expr(e, target)
        if not T.assignable(target, t):
            self.d.add("E303", e.span, target=what, expected=target.describe(), got=t.describe())

    def _score(self, score, info: DecisionInfo, kind: str, name: str, span: Span) -> None:
        if score is not None:
            t = self.expr(score)
            if t.kind != "number" and not t.is_error:
                self.d.add("E308", score.span, got=t.describe())
            if info.policy != "best":
                self.d.add("W105", score.span, clause=q("score"), kind=kind, name=q(name),
                           why=f"decision {q(info.name)} picks {info.policy}, not best")
        elif info.policy == "best":
            self.d.add("E403", span, kind=kind, name=q(name), decision=q(info.name))

    def _offer(self, decl: ast.OfferDecl, order: int) -> None:
        name = decl.name.name
        unique = self._unique("candidate", "offer", decl.name)
        if decl.when is not None:
            self._condition(decl.when, "eligible when")
        info = self._offer_decision(decl)
        caps = [self._cap(c) for c in decl.caps]
        channels = None
        if decl.channels is not None:
            channels = self._channels(decl.channels)
        message = self._message(decl.message) if decl.message is not None else None
        fields = []
        seen_fields: set[str] = set()
        for a in decl.assignments:
            if a.target.name in seen_fields:
                self.d.add("E105", a.target.span, clause=q(a.target.name), kind="offer", name=q(name))
                continue
            seen_fields.add(a.target.name)
            if a.field is not None:
                self.d.add("E412", a.field.span, what=q(f"{a.target.name}.{a.field.name}"),
                           why="an offer's then sets its own fields: then cta = \"...\"")
            t = self.expr(a.value)
            if not (t.is_scalar or t.is_error):
                self.d.add("E311", a.value.span, what="an offer field", needs="a plain value", got=t.describe())
            fields.append((a.target.name, a.value))
        if info is None:
            if decl.score is not None:
                self.expr(decl.score)
            return
        self._score(decl.score, info, "offer", name, decl.name.span)
        cand = Candidate("offer", name, info.name, decl.priority, order, decl.when, decl.score, fields,
                         decl.because, decl.span, decl.name.span, caps, channels,
                         decl.channels[0].span.to(decl.channels[-1].span) if decl.channels else None,
                         message)
        if unique:
            info.candidates.append(cand)
            self.candidates.append(cand)

    def _offer_decision(self, decl: ast.OfferDecl) -> DecisionInfo | None:
        offer_decisions = [d for d in self.decisions.values() if d.kind == "offer"]
        if decl.decision is not None:
            info = self.decisions.get(decl.decision.name)
            if info is None:
                if decl.decision.name not in self.broken:
                    self.d.add("E204", decl.decision.span, name=q(decl.decision.name),
                               help=did_you_mean(decl.decision.name, [d.name for d in offer_decisions], prefix=True))
                return None
            if info.kind != "offer":
                self.d.add("E405", decl.decision.span,
                           problem=f"decision {q(info.name)} does not pick offers (declare it with : offer)")
                return None
            return info
        if len(offer_decisions) == 1:
            return offer_decisions[0]
        if not offer_decisions:
            if not self.broken:
                self.d.add("E405", decl.name.span, problem=f"offer {q(decl.name.name)} has no decision to "
                           "compete in: declare one, e.g. decision next_best_offer: offer pick best")
            return None
        self.d.add("E405", decl.name.span, problem=f"offer {q(decl.name.name)} could belong to "
                   + " or ".join(q(d.name) for d in offer_decisions) + ": say which with for ...")
        return None

    def _channels(self, idents) -> tuple[str, ...]:
        channel_t = self._attribute_type("request", ("channel",))
        if channel_t is None:
            if "request" not in self.broken:
                self.d.add("E412", idents[0].span, what="channels",
                           why="the request schema has no channel attribute")
            return tuple(i.name for i in idents)
        if channel_t.is_enum:
            for i in idents:
                if i.name not in channel_t.members:
                    self.d.add("E212", i.span, name=q(i.name), members=", ".join(channel_t.members),
                               help=did_you_mean(i.name, channel_t.members))
        return tuple(i.name for i in idents)

    _PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")

    def _message(self, msg: ast.String) -> list:
        """A message template: literal text and ``{expression}`` placeholders."""
        raw = msg.span.text[1:-1]
        base = msg.span.start + 1
        parts: list = []
        last = 0
        for m in self._PLACEHOLDER.finditer(raw):
            self._lone_braces(raw, last, m.start(), base, msg)
            parts.append(unescape('"' + raw[last:m.start()] + '"'))
            last = m.end()
            if m.group(0) in ("{{", "}}"):
                parts.append(m.group(0)[0])
                continue
            inner = m.group(1).replace('\\"', ' "')   # an escaped quote in the message is a quote here
            e = parse_expression(inner, msg.span.source, base + m.start(1), self.d, self.ids)
            if e is not None:
                t = self.expr(e)
                if not (t.is_scalar or t.is_error):
                    self.d.add("E311", e.span, what="a message placeholder", needs="a plain value",
                               got=t.describe())
                parts.append(e)
        self._lone_braces(raw, last, len(raw), base, msg)
        parts.append(unescape('"' + raw[last:] + '"'))
        return [p for p in parts if p != ""]

    def _lone_braces(self, raw: str, start: int, end: int, base: int, msg: ast.String) -> None:
        """Report a { or } in the literal text of a message: a placeholder
        that is never closed, or a brace meant literally but not doubled (it
        would otherwise reach the customer as it is)."""
        for i in range(start, end):
            ch = raw[i]
            if ch == "{":
                self.d.add("E108", Span(msg.span.source, base + i, base + i + 1), brace=q("{"),
                           problem="is never closed: a placeholder is {expression}",
                           help="write {{ for a literal brace, or close the placeholder with }")
            elif ch == "}":
                self.d.add("E108", Span(msg.span.source, base + i, base + i + 1), brace=q("}"),
                           problem="closes no placeholder", help="write }} for a literal brace")

    # ---------------------------------------------------------------- experiments
    def _experiment(self, decl: ast.ExperimentDecl) -> None:
        name = decl.name.name
        if not self._unique("experiment", "experiment", decl.name):
            return
        on = []
        for ident in decl.on:
            if ident.name not in self.decisions:
                if ident.name not in self.broken:
                    self.d.add("E204", ident.span, name=q(ident.name), help=did_you_mean(ident.name, self.decisions, prefix=True))
            else:
                on.append(ident.name)
        seen: dict[str, Span] = {}
        for v in decl.variants:
            if v.name.name == "holdout":
                self.d.add("E412", v.name.span, what="a variant named `holdout`",
                           why="holdout is the name of the group an experiment holds out: write holdout 10%")
            elif v.name.name in seen:
                self.d.add("E203", v.name.span, kind="variant", name=q(v.name.name),
                           first=seen[v.name.name].location())
            seen.setdefault(v.name.name, v.name.span)
            if not 0 <= v.percent <= 100:
                self.d.add("E409", v.span, what="a variant's weight", low="0%", high="100%", value=f"{v.percent:g}%")
        if not decl.variants:
            self.d.add("E413", decl.name.span, name=q(name))
        total = decl.holdout + sum(v.percent for v in decl.variants)
        if decl.variants and abs(total - 100.0) > 1e-9:
            self.d.add("E404", decl.name.span, name=q(name), total=f"{total:g}")
        if not decl.on:
            self.d.add("W106", decl.name.span, name=q(name))
        self.experiments[name] = ExperimentInfo(
            name, tuple(on), decl.salt if decl.salt is not None else name, decl.holdout,
            tuple((v.name.name, v.percent) for v in decl.variants), decl.span)

    # ================================================================ expressions
    def _condition(self, e: ast.Expr, clause: str) -> None:
        t = self.expr(e, T.BOOL)            # a bare unknown name here is a segment (E201's help)
        if t.kind != "bool" and not t.is_error:
            self.d.add("E302", e.span, clause=q(clause) if " " not in clause else clause, got=t.describe())

    def expr(self, e: ast.Expr, expect: T.Type | None = None) -> T.Type:
        """Type ``e`` (recording types and refs); ``expect`` helps resolve
        bare enum values such as ``app`` in ``request.channel == app``."""
        depth = _depth(e)
        if depth > limits.MAX_DEPTH:
            self.d.add("E502", e.span, depth=depth, limit=limits.MAX_DEPTH)
            return T.ERROR
        return self._expr(e, expect)

    def _expr(self, e: ast.Expr, expect: T.Type | None = None) -> T.Type:
        method = getattr(self, "_x_" + type(e).__name__)
        t = method(e, expect)
        self.types[e.nid] = t
        return t

    def _dep(self, what: str) -> None:
        if self._const_only is not None:
            self._depends.append(what)

    # -- literals
    def _x_Number(self, e, expect):
        return T.NUMBER

    def _x_Quantity(self, e, expect):
        return T.DURATION if e.kind == "duration" else T.DISTANCE

    def _x_String(self, e, expect):
        if expect is not None and expect.is_enum and e.value not in expect.members:
            self.d.add("E208", e.span, value=q(e.value), owner="this attribute",
                       members=", ".join(expect.members), help=did_you_mean(e.value, expect.members))
        return T.STRING if expect is None or not expect.is_enum else expect

    def _x_Bool(self, e, expect):
        return T.BOOL

    def _x_Now(self, e, expect):
        self._dep("now")
        return T.TIMESTAMP

    def _x_ListLit(self, e, expect):
        elem_expect = expect.elem if expect is not None and expect.kind in ("list", "set") else expect
        first = None
        for item in e.items:
            t = self._expr(item, elem_expect)
            if t.is_error:
                continue
            if not t.is_scalar:
                self.d.add("E311", item.span, what="a list item", needs="a plain value", got=t.describe())
                continue
            if first is None:
                first = t
            elif not T.same_kind(first, t):
                self.d.add("E310", item.span, first=first.describe(), other=t.describe())
        return T.list_of(T.plain(first) if first is not None else T.ANY)

    # -- names
    def _x_Name(self, e, expect):
        name = e.name
        if name in ROOTS:
            self.d.add("E213", e.span, name=q(name), example=q(f"{name}.{self._example_attr(name)}"))
            return T.ERROR
        if name == "experiment":
            self.d.add("E213", e.span, name=q(name), example=q("experiment.offer_copy"))
            return T.ERROR
        if expect is not None and expect.is_enum and name in expect.members:
            self.refs[e.nid] = EnumRef(name)
            return expect
        if name in self._segment_decls:
            self._dep(f"segment {q(name)}")
            if name in self._segment_stack:
                cycle = " -> ".join(self._segment_stack[self._segment_stack.index(name):] + [name])
                self.d.add("E209", e.span, kind="segment", name=q(name), cycle=cycle)
                self.broken.add(name)
                return T.ERROR
            if name not in self._checked_segments:
                self._check_segment(name)
            self.refs[e.nid] = SegmentRef(name)
            if name in self.segments:
                self.segments[name].used = True
            return T.BOOL
        if name in self._const_decls:
            if name in self._const_stack:
                cycle = " -> ".join(self._const_stack[self._const_stack.index(name):] + [name])
                self.d.add("E209", e.span, kind="const", name=q(name), cycle=cycle)
                return T.ERROR
            if name not in self._checked_consts:
                self._check_const(name)
            self.refs[e.nid] = ConstRef(name)
            info = self.consts.get(name)
            if info is not None:
                info.used = True
                return info.type
            return T.ERROR
        if name in self.broken:
            return T.ERROR
        if expect is not None and expect.is_enum:
            self.d.add("E208", e.span, value=q(name), owner="this attribute", members=", ".join(expect.members),
                       help=did_you_mean(name, expect.members))
            return T.ERROR
        candidates = list(self._segment_decls) + list(self._const_decls) + list(ROOTS) + ["experiment", "now"]
        help_ = self._attribute_help(name) or did_you_mean(name, candidates)
        if help_ is None and name in UNITS:
            help_ = f"a unit needs a number before it, e.g. 14 {name}"
        if help_ is None and name in ("yes", "no", "True", "False", "null", "none", "None"):
            help_ = {"yes": "write true", "True": "write true", "no": "write false", "False": "write false"}.get(
                name, "to test for no value, write `is missing`")
        notes: list[str] = []
        if help_ is None and expect is not None and expect.kind == "bool":
            help_, notes = self._segment_help(name)
        if help_ is None:
            help_ = 'quote text values: "' + name + '"'
        self.d.add("E201", e.span, name=q(name), help=help_, notes=notes)
        return T.ERROR

    def _segment_help(self, name: str) -> tuple[str, list[str]]:
        """A bare name where a condition stands is a segment (or a
        true/false constant) that is not declared: say so, and name the
        segments it may have meant, or else the segments there are
        (quoting it, the help elsewhere, would not make a condition)."""
        segments = sorted(self._segment_decls)
        close = containing(name, segments)
        if close:
            names = [q(c) for c in close]
            return (f"no segment is named {q(name)}; did you mean "
                    + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]) + "?"), []
        help_ = f"no segment is named {q(name)}: declare it (segment {name} = ...)"
        if not segments:
            return help_, []
        shown = ", ".join(segments[:SEGMENTS_LISTED]) + (
            f", … ({len(segments)} in all)" if len(segments) > SEGMENTS_LISTED else "")
        return help_ + ", or use a segment the pack declares", [f"segments: {shown}"]

    def _attribute_help(self, name: str) -> str | None:
        """``lifetime_value`` alone: the attribute of that name, with its root."""
        roots = [r for r in ROOTS if self.schema.get(r) is not None and self.schema[r].field(name) is not None]
        if not roots:
            return None
        return "did you mean " + " or ".join(q(f"{r}.{name}") for r in roots) + "? (attributes are read through profile. or request.)"

    def _example_attr(self, root: str) -> str:
        rec = self.schema.get(root)
        return rec.fields[0][0] if rec is not None and rec.fields else "attribute"

    def _attribute_type(self, root: str, path: tuple[str, ...]) -> T.Type | None:
        t = self.schema.get(root)
        for part in path:
            if t is None or t.kind != "record":
                return None
            t = t.field(part)
        return t

    def _x_Attr(self, e, expect):
        obj = e.obj
        attr = e.name.name
        if isinstance(obj, ast.Name) and obj.name in ROOTS:
            root = obj.name
            self._dep(root)
            self.refs[obj.nid] = RootRef(root)
            rec = self.schema.get(root)
            if rec is None:
                if root not in self.broken:
                    self.d.add("E408", obj.span, root=root)
                return T.ERROR
            return self._field(e, root, (), rec, attr)
        if isinstance(obj, ast.Name) and obj.name == "experiment":
            self._dep("an experiment")
            info = self.experiments.get(attr)
            if info is None:
                if attr not in self.broken:
                    self.d.add("E202", e.name.span, owner=q("experiment"), name=q(attr),
                               help=did_you_mean(attr, self.experiments) or "experiments are declared before use")
                return T.ERROR
            self.refs[e.nid] = ExperimentRef(attr)
            return T.enum(info.variant_type_members)
        base = self._expr(obj)
        if base.is_error:
            return T.ERROR
        ref = self.refs.get(obj.nid)
        if base.kind == "record" and isinstance(ref, AttrRef):
            return self._field(e, ref.root, ref.path, base, attr)
        self.d.add("E306", e.name.span, got=base.describe())
        return T.ERROR

    def _field(self, e: ast.Attr, root: str, path: tuple, rec: T.Type, attr: str) -> T.Type:
        t = rec.field(attr)
        if t is None:
            owner = ".".join((root,) + path)
            if root not in self.broken:
                self.d.add("E202", e.name.span, owner=q(owner), name=q(attr),
                           help=did_you_mean(attr, [n for n, _ in rec.fields or ()]))
            return T.ERROR
        self.refs[e.nid] = AttrRef(root, path + (attr,), t)
        return t

    def _x_Index(self, e, expect):
        base = self._expr(e.obj)
        key = self._expr(e.key)
        if base.is_error or key.is_error:
            return T.ERROR
        if base.kind != "map":
            self.d.add("E305", e.span, got=base.describe())
            return T.ERROR
        if key.kind != "string":
            self.d.add("E307", e.key.span, op=q("[...]"), needs="a string key", got=key.describe())
            return T.ERROR
        return base.elem

    def _x_Call(self, e, expect):
        fn = BUILTINS.get(e.func.name)
        args = [self._expr(a) for a in e.args]
        if fn is None:
            self.d.add("E207", e.func.span, name=q(e.func.name), help=did_you_mean(e.func.name, BUILTINS),
                       notes=["functions: " + ", ".join(sorted(BUILTINS))])
            return T.ERROR
        if any(a.is_error for a in args):
            return T.ERROR
        result = fn.typer(args)
        if isinstance(result, str):
            self.d.add("E304", e.span, name=e.func.name, problem=result, notes=[fn.signature])
            return T.ERROR
        return result

    # -- operators
    def _x_Unary(self, e, expect):
        t = self._expr(e.operand, T.BOOL if e.op == "not" else None)
        if t.is_error:
            return T.ERROR
        if e.op == "not":
            if t.kind != "bool":
                self.d.add("E307", e.span, op=q("not"), needs="a true/false condition", got=t.describe())
                return T.ERROR
            return T.BOOL
        if t.kind not in ("number", "duration", "distance"):
            self.d.add("E307", e.span, op=q("-"), needs="a number, duration or distance", got=t.describe())
            return T.ERROR
        return t

    def _x_Logic(self, e, expect):
        bad = False
        for operand in e.operands:
            t = self._expr(operand, T.BOOL)
            if not t.is_error and t.kind != "bool":
                self.d.add("E307", operand.span, op=q(e.op), needs="true/false conditions", got=t.describe())
                bad = True
        return T.ERROR if bad else T.BOOL

    def _x_Presence(self, e, expect):
        t = self._expr(e.operand)
        return T.ERROR if t.is_error else T.BOOL

    def _x_Ago(self, e, expect):
        t = self._expr(e.operand)
        if t.is_error:
            return T.ERROR
        if t.kind != "duration":
            self.d.add("E307", e.span, op=q("ago"), needs="a duration (14 days ago)", got=t.describe())
            return T.ERROR
        self._dep("now")
        return T.TIMESTAMP

    def _operands(self, e) -> tuple[T.Type, T.Type]:
        """Type both sides.  For ==, != and membership, a bare name or a
        literal on one side is resolved against an enum on the other, so
        ``request.channel == app`` works and ``== "emial"`` is caught."""
        enum_ops = ("==", "!=", "in", "not in", "contains")
        bare = (ast.Name, ast.String, ast.ListLit)
        if e.op in enum_ops and isinstance(e.left, bare) and not isinstance(e.right, bare):
            rt = self._expr(e.right)
            if rt.is_error and isinstance(e.left, ast.Name):
                return T.ERROR, rt          # do not report the bare name as well
            expect = rt if rt.is_enum else None
            if rt.kind == "set" and rt.elem is not None and rt.elem.is_enum:
                expect = rt.elem
            lt = self._expr(e.left, expect)
            return lt, rt
        lt = self._expr(e.left)
        if lt.is_error and e.op in enum_ops and (isinstance(e.right, ast.Name) or (
                isinstance(e.right, ast.ListLit) and any(isinstance(i, ast.Name) for i in e.right.items))):
            return lt, T.ERROR              # `profile.typo == web`: one error, not two
        expect = None
        if e.op in ("==", "!="):
            expect = lt if lt.is_enum else None
        elif e.op in ("in", "not in"):
            expect = T.list_of(lt) if lt.is_enum else None
        elif e.op == "contains" and lt.kind == "set" and lt.elem is not None and lt.elem.is_enum:
            expect = lt.elem
        rt = self._expr(e.right, expect)
        return lt, rt

    def _x_Binary(self, e, expect):
        op = e.op
        lt, rt = self._operands(e)
        if lt.is_error or rt.is_error:
            return T.ERROR
        if op in ARITH_OPS:
            result = _arith(op, lt, rt)
            if result is None:
                self.d.add("E301", e.span, op=q(op), left=lt.describe(), right=rt.describe(),
                           help=_arith_help(op, lt, rt))
                return T.ERROR
            return result
        if op in ("==", "!="):
            if not (lt.is_scalar and T.same_kind(lt, rt)) or lt.kind == "geo":
                self.d.add("E301", e.span, op=q(op), left=lt.describe(), right=rt.describe(),
                           help="compare a location with distance(a, b) < 5 km" if lt.kind == "geo" else None)
                return T.ERROR
            return T.BOOL
        if op in COMPARE_OPS:
            if not (lt.is_ordered and lt.kind == rt.kind):
                help_ = None
                if {lt.kind, rt.kind} == {"timestamp", "duration"}:
                    help_ = "compare a time with a time: profile.x.at > 14 days ago, or now - t < 14 days"
                self.d.add("E301", e.span, op=q(op), left=lt.describe(), right=rt.describe(), help=help_)
                return T.ERROR
            return T.BOOL
        if op in ("in", "not in"):
            if rt.kind not in ("list", "set"):
                self.d.add("E307", e.right.span, op=q(op), needs="a list [...] or a set",
                           got=rt.describe(), help="to look for text inside text, write: x contains \"...\""
                           if rt.kind == "string" else None)
                return T.ERROR
            if not (lt.is_scalar and T.same_kind(lt, rt.elem or T.ANY)):
                self.d.add("E301", e.span, op=q(op), left=lt.describe(), right=rt.describe())
                return T.ERROR
            return T.BOOL
        if op == "contains":
            if lt.kind in ("set", "list"):
                if not (rt.is_scalar and T.same_kind(rt, lt.elem or T.ANY)):
                    self.d.add("E301", e.span, op=q(op), left=lt.describe(), right=rt.describe())
                    return T.ERROR
                return T.BOOL
            if lt.kind == "string" and rt.kind == "string":
                return T.BOOL
            self.d.add("E301", e.span, op=q(op), left=lt.describe(), right=rt.describe())
            return T.ERROR
        if op in ("starts with", "ends with"):
            if lt.kind != "string" or rt.kind != "string":
                self.d.add("E301", e.span, op=q(op), left=lt.describe(), right=rt.describe())
                return T.ERROR
            return T.BOOL
        if op == "within":
            if lt.kind != "timestamp" or rt.kind != "duration":
                self.d.add("E301", e.span, op=q(op), left=lt.describe(), right=rt.describe(),
                           help="write: <time> within <duration>, e.g. profile.last_view.at within 14 days")
                return T.ERROR
            self._dep("now")
            return T.BOOL
        raise AssertionError(op)  # pragma: no cover

    # ================================================================ warnings
    def _warn_unused(self) -> None:
        if self.incomplete:         # what failed to parse may be what uses them
            return
        for name, info in self.segments.items():
            if not info.used and name not in self.broken:
                self.d.add("W101", self._segment_decls[name].name.span, name=q(name))
        for name, info in self.consts.items():
            if not info.used:
                self.d.add("W102", self._const_decls[name].name.span, name=q(name))
        if self.broken:             # declarations that failed to parse may be its rules
            return
        for name, info in self.decisions.items():
            if not info.candidates:
                self.d.add("W104", info.span, name=q(name),
                           consequence="no offers; it never answers" if info.kind == "offer"
                           else "no rules; it always answers its default")


_ARITH = {
    ("+", "number", "number"): T.NUMBER, ("-", "number", "number"): T.NUMBER,
    ("*", "number", "number"): T.NUMBER, ("/", "number", "number"): T.NUMBER,
    ("-", "timestamp", "timestamp"): T.DURATION,
    ("+", "timestamp", "duration"): T.TIMESTAMP, ("-", "timestamp", "duration"): T.TIMESTAMP,
    ("+", "duration", "timestamp"): T.TIMESTAMP,
}
for _k in ("duration", "distance"):
    _ARITH.update({("+", _k, _k): T.Type(_k), ("-", _k, _k): T.Type(_k), ("/", _k, _k): T.NUMBER,
                   ("*", _k, "number"): T.Type(_k), ("*", "number", _k): T.Type(_k),
                   ("/", _k, "number"): T.Type(_k)})


def _arith(op: str, a: T.Type, b: T.Type) -> T.Type | None:
    return _ARITH.get((op, a.kind, b.kind))


def _arith_help(op: str, a: T.Type, b: T.Type) -> str | None:
    if a.kind == "string" or b.kind == "string":
        return "text cannot be added or multiplied"
    if {a.kind, b.kind} == {"timestamp", "number"}:
        return "add a duration to a time: profile.x.at + 2 days"
    return None


def check(modules: list[ast.Module], diags: Diagnostics, ids: count | None = None) -> CheckedPack:
    """Check parsed modules; diagnostics go to ``diags``."""
    return Checker(diags, ids if ids is not None else count(10**9)).run(modules)
