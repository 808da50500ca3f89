"""Property: every evaluator gives the same answer for every pack and profile.

Hypothesis writes random rule packs over tests/conftest.TEST_SCHEMA (every
policy, segments, offers with channels, caps and messages, experiments with
holdouts, priorities with ties) and random profiles and requests (missing
fields, wrong types, NaN, out-of-range coordinates, ISO and epoch times).
The compiled kernel with and without its rule index, the Python twin with
and without it, and the reference interpreter (which evaluates the AST and
shares no code with the compiler) must agree on every decision.
"""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import compile_ok, evaluators

NOW = 1_800_000_000.0
DAY = 86400.0

STRINGS = ["a", "b", "c", "x", "shoes", "tops", "k1", "k2", ""]
ENUMS = ["a", "b", "c"]
CHANNELS = ["web", "app", "email", "pos"]
OFFERS = ["o1", "o2", "o3", "o4", "o5"]


def lit_str(draw):
    return '"' + draw(st.sampled_from(STRINGS)) + '"'


def lit_num(draw):
    return draw(st.sampled_from(["0", "1", "2", "3", "2.5", "10", "100", "0.5", "1000"]))


@st.composite
def num_expr(draw, depth=2):
    leaves = ["profile.n", "profile.m", "profile.rec.x", 'profile.counts["k1"]', "size(profile.tags)",
              "count(profile.visits, 3 days)", "((now - profile.t) / 1 day)", 'profile.counts[request.category]',
              "size(profile.sizes)", "month(profile.t)", "weekday(now)", "hour(profile.t)"]
    if depth <= 0 or draw(st.booleans()):
        return draw(st.sampled_from(leaves)) if draw(st.booleans()) else lit_num(draw)
    kind = draw(st.sampled_from(["+", "-", "*", "/", "neg", "abs", "min", "max"]))
    a = draw(num_expr(depth - 1))
    b = draw(num_expr(depth - 1))
    if kind == "neg":
        return f"-({a})"
    if kind in ("abs",):
        return f"abs({a})"
    if kind in ("min", "max"):
        return f"{kind}({a}, {b})"
    return f"({a} {kind} {b})"


PLAIN_STRINGS = ["profile.s", "request.category", "profile.sizes[request.category]", 'profile.sizes["k1"]',
                 "profile.rec.y"]
ENUM_STRINGS = ["profile.e", "experiment.ex"]


@st.composite
def str_expr(draw, enums=True):
    """A string value; enum-typed ones only when ``enums`` (a literal compared
    with an enum must be one of its values, which the checker enforces)."""
    pool = PLAIN_STRINGS + (ENUM_STRINGS if enums else [])
    return draw(st.sampled_from(pool)) if draw(st.booleans()) else lit_str(draw)


@st.composite
def atom(draw, segments):
    choice = draw(st.integers(0, 21))
    if choice == 0:
        return f"{draw(num_expr())} {draw(st.sampled_from(['<', '<=', '>', '>=', '==', '!=']))} {draw(num_expr(1))}"
    if choice == 1:
        return f"profile.e {draw(st.sampled_from(['==', '!=']))} {draw(st.sampled_from(ENUMS))}"
    if choice == 2:
        items = draw(st.lists(st.sampled_from(ENUMS), min_size=1, max_size=3))
        return f"profile.e {draw(st.sampled_from(['in', 'not in']))} [{', '.join(items)}]"
    if choice == 3:
        op = draw(st.sampled_from(['==', '!=']))
        if draw(st.booleans()):
            return f"{draw(st.sampled_from(ENUM_STRINGS))} {op} {draw(st.sampled_from(ENUM_STRINGS))}"
        return f"{draw(str_expr(enums=False))} {op} {draw(str_expr(enums=False))}"
    if choice == 4:
        items = draw(st.lists(st.sampled_from(STRINGS), min_size=1, max_size=4))
        return f"profile.s in [{', '.join(chr(34) + s + chr(34) for s in items)}]"
    if choice == 5:
        return f"{draw(str_expr())} {draw(st.sampled_from(['starts with', 'ends with', 'contains']))} {lit_str(draw)}"
    if choice == 6:
        return f"{lit_str(draw)} {draw(st.sampled_from(['in', 'not in']))} profile.tags"
    if choice == 7:
        return "request.category in profile.tags"
    if choice == 8:
        return draw(st.sampled_from(["profile.b", "not profile.b", "profile.b == true", "profile.b != false",
                                     'profile.flags["k1"]']))
    if choice == 9:
        target = draw(st.sampled_from(["profile.n", "profile.s", "profile.g", "profile.tags", "profile.rec",
                                       'profile.sizes["k1"]', "request.location", "profile.rec.x"]))
        return f"{target} is {draw(st.sampled_from(['set', 'missing']))}"
    if choice == 10:
        return f"profile.t within {draw(st.sampled_from(['1 day', '2 days', '12 hours', '30 days']))}"
    if choice == 11:
        return f"profile.t > {draw(st.sampled_from(['1', '5', '40']))} days ago"
    if choice == 12:
        return f"distance(profile.g, request.location) < {draw(st.sampled_from(['1 km', '100 km', '5000 km']))}"
    if choice == 13:
        return f"experiment.ex == {draw(st.sampled_from(['v1', 'v2', 'holdout']))}"
    if choice == 14:
        return f"request.channel {draw(st.sampled_from(['==', '!=']))} {draw(st.sampled_from(CHANNELS))}"
    if choice == 15 and segments:
        return draw(st.sampled_from(segments))
    if choice == 16:
        return f"profile.n in [{', '.join(draw(st.lists(st.sampled_from(['0', '1', '2', '2.5', '3']), min_size=1, max_size=3)))}]"
    if choice == 17:
        return f"profile.n {draw(st.sampled_from(['>', '>=', '<', '<=']))} {lit_num(draw)}"
    if choice == 18:
        return f"profile.m {draw(st.sampled_from(['==', '!=', '<']))} {lit_num(draw)}"
    if choice == 19:
        return f'profile.seen["app"] within {draw(st.sampled_from(["1 day", "3 days"]))}'
    if choice == 20:
        return f"{lit_num(draw)} {draw(st.sampled_from(['<', '>=']))} profile.n"
    return draw(st.sampled_from(["true", "false"]))


@st.composite
def cond(draw, segments, depth=2):
    if depth <= 0 or draw(st.integers(0, 2)) > 0:
        parts = draw(st.lists(atom(segments), min_size=1, max_size=4))
        return " and ".join(f"({p})" for p in parts)
    kind = draw(st.sampled_from(["and", "or", "not"]))
    a = draw(cond(segments, depth - 1))
    if kind == "not":
        return f"not ({a})"
    b = draw(cond(segments, depth - 1))
    return f"({a}) {kind} ({b})"


@st.composite
def packs(draw):
    lines = []
    segments = []
    for i in range(draw(st.integers(0, 3))):
        lines.append(f"segment seg{i} = {draw(cond(segments))}")
        segments.append(f"seg{i}")
    top = draw(st.sampled_from(["", " top 1", " top 2", " top 3"]))
    cap = draw(st.sampled_from(["", " cap 3 per 1 day"]))
    lines += [
        'decision d_first: string pick first default "dflt"',
        "decision d_best: number pick best",
        "decision d_all: string pick all" + draw(st.sampled_from(["", " top 2"])),
        'decision d_rec pick first { radius: distance = 10 km, count: number = 3, label: string = "none" }',
        f"decision d_offer: offer pick best{top}{cap}",
    ]
    if draw(st.booleans()):
        on = draw(st.sampled_from(["d_offer", "d_first", "d_offer, d_first"]))
        holdout = draw(st.sampled_from([0, 10, 50]))
        v1 = draw(st.sampled_from([10, 45, 50]))
        lines.append(f"experiment ex on {on} holdout {holdout}% variant v1 {v1}% variant v2 {100 - holdout - v1}%")
    else:
        lines.append("experiment ex variant v1 50% variant v2 50%")
    priorities = st.sampled_from(["", " priority 1", " priority 5", " priority -2", " priority 5"])
    for i in range(draw(st.integers(0, 10))):
        when = f" when {draw(cond(segments))}" if draw(st.integers(0, 4)) else ""
        lines.append(f"rule f{i}{draw(priorities)}{when} then d_first = {draw(str_expr())}")
    for i in range(draw(st.integers(0, 6))):
        lines.append(f"rule b{i}{draw(priorities)} when {draw(cond(segments))} "
                     f"then d_best = {draw(num_expr(1))} score {draw(num_expr())}")
    for i in range(draw(st.integers(0, 6))):
        lines.append(f"rule a{i}{draw(priorities)} when {draw(cond(segments))} then d_all = {draw(str_expr())}")
    for i in range(draw(st.integers(0, 5))):
        fields = draw(st.lists(st.sampled_from(["radius", "count", "label"]), min_size=1, max_size=3, unique=True))
        values = {"radius": lambda: f"{draw(st.sampled_from(['1', '5', '25']))} km",
                  "count": lambda: draw(num_expr(1)), "label": lambda: draw(str_expr())}
        assigns = ", ".join(f"d_rec.{f} = {values[f]()}" for f in fields)
        lines.append(f"rule r{i}{draw(priorities)} when {draw(cond(segments))} then {assigns}")
    for name in draw(st.lists(st.sampled_from(OFFERS), max_size=5, unique=True)):
        parts = [f"offer {name}{draw(priorities)}", f"  when {draw(cond(segments))}", f"  score {draw(num_expr())}"]
        if draw(st.booleans()):
            parts.append("  channels " + ", ".join(draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3,
                                                                   unique=True))))
        if draw(st.booleans()):
            parts.append(f"  cap {draw(st.integers(1, 3))} per {draw(st.sampled_from(['1 day', '7 days']))}")
        if draw(st.booleans()):
            parts.append('  message "Hi {profile.s}, {profile.n} points, size {profile.sizes[request.category]}"')
        if draw(st.booleans()):
            parts.append(f"  then cta = {draw(str_expr())}, weight = {draw(num_expr(1))}")
        lines.append("\n".join(parts))
    return "\n".join(lines) + "\n"


def _maybe(draw, strategy):
    return draw(st.one_of(st.none(), strategy))


NUMBERS = st.one_of(st.integers(-5, 120), st.sampled_from([0.5, 2.5, 1e9, -0.0, math.inf, math.nan]),
                    st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from(["3", True, None]))
TIMES = st.one_of(st.floats(NOW - 60 * DAY, NOW + DAY, allow_nan=False),
                  st.sampled_from(["2027-01-14T08:00:00Z", "2027-01-15T07:59:59+00:00", "garbage", None, 0]))
GEOS = st.one_of(st.fixed_dictionaries({"lat": st.floats(-90, 90), "lon": st.floats(-180, 180)}),
                 st.tuples(st.floats(-95, 95, allow_nan=False), st.floats(-185, 185, allow_nan=False)).map(list),
                 st.sampled_from([{"lat": 51.5, "lon": -0.12}, {"lat": "x", "lon": 0}, [1], None]))


@st.composite
def profiles(draw):
    p = {}
    fields = {
        "customer_id": st.one_of(st.sampled_from(["c1", "c2", "c3", "c42", "", None]), st.text(max_size=8)),
        "s": st.one_of(st.sampled_from(STRINGS), st.text(max_size=4), st.just(7)),
        "e": st.sampled_from(ENUMS + ["zzz", 1]),
        "n": NUMBERS, "m": NUMBERS,
        "b": st.sampled_from([True, False, None, 1]),
        "t": TIMES,
        "d": NUMBERS,
        "g": GEOS,
        "tags": st.one_of(st.lists(st.sampled_from(STRINGS + [3]), max_size=5), st.just("a")),
        "sizes": st.dictionaries(st.sampled_from(["k1", "k2", "shoes", "tops"]),
                                 st.one_of(st.sampled_from(STRINGS), st.just(42)), max_size=3),
        "counts": st.dictionaries(st.sampled_from(["k1", "k2", "shoes"]), NUMBERS, max_size=3),
        "flags": st.dictionaries(st.sampled_from(["k1", "k2"]), st.sampled_from([True, False, "yes"]), max_size=2),
        "seen": st.dictionaries(st.sampled_from(["app", "web"]), TIMES, max_size=2),
        "visits": st.lists(TIMES, max_size=4),
        "offer_impressions": st.dictionaries(st.sampled_from(OFFERS), st.lists(TIMES, max_size=3), max_size=3),
        "rec": st.one_of(st.fixed_dictionaries({"x": NUMBERS, "y": st.sampled_from(STRINGS)}), st.just("rec")),
    }
    for key, strategy in fields.items():
        if draw(st.integers(0, 4)):
            p[key] = draw(strategy)
    return p


@st.composite
def requests(draw):
    r = {}
    if draw(st.integers(0, 4)):
        r["channel"] = draw(st.sampled_from(CHANNELS + ["kiosk", 5]))
    if draw(st.integers(0, 3)):
        r["category"] = draw(st.sampled_from(["shoes", "tops", "k1", "a", "nothing"]))
    if draw(st.booleans()):
        r["location"] = draw(GEOS)
    return r


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pack=packs(), inputs=st.lists(st.tuples(profiles(), requests(), st.sampled_from([NOW, NOW + 3 * DAY, None])),
                                     min_size=1, max_size=25))
def test_every_evaluator_agrees(pack, inputs):
    result = compile_ok(pack)
    evs = evaluators(result)
    for profile, request, now in inputs:
        cid = profile.get("customer_id") if isinstance(profile.get("customer_id"), str) else None
        answers = {name: ev.run(profile, request, now, cid) for name, ev in evs.items()}
        expected = answers.pop("reference")
        for name, got in answers.items():
            assert got == expected, (name, profile, request, now)
        assert evs["compiled"].run_primary(profile, request, now, cid) == \
            evs["python"].run_primary(profile, request, now, cid)
