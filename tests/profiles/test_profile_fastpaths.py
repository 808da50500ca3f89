"""The fast paths give exactly the answers of the reference code: the
validation fast path (``fast_event`` accepts only what ``validate_event``
accepts, and builds the same Event; its compiled twin in ``_fastpaths``
answers exactly as ``fast_event``), the fold's in-place visit timeline
(the same as ``add_visit``, compiled or not) and the compiled ``fold_into``
(the same profile as the Python one, to the types and key order)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.profiles import ValidationConfig
from engine.profiles import events as events_module
from engine.profiles.events import Event, Item, fast_event, validate_batch, validate_event
import importlib

from engine.profiles.fold import DEFAULT_CONFIG, FoldConfig, _add_visit_in_place, add_visit, new_profile
from profiles_histories import PROPERTY, ROOMY, histories
from profiles_support import DAY, NOW, ev, item

fold_module = importlib.import_module("engine.profiles.fold")
VISITS_IN_PLACE = [_add_visit_in_place] + ([fold_module._fastpaths.add_visit_in_place] if fold_module._fastpaths else [])
from test_profile_events import BAD, GOOD


# ---------------------------------------------------------------- validation
compiled = pytest.mark.skipif(events_module._fast_events is None, reason="engine.profiles._fastpaths not built")


def _typed(value):
    """``value`` with the type of every part spelt out (1 == 1.0 == True in Python)."""
    if isinstance(value, Event):
        return ("Event", *[(name, _typed(getattr(value, name))) for name in value.__slots__])
    if isinstance(value, Item):
        return ("Item", *[(name, _typed(getattr(value, name))) for name in value.__slots__])
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, *[_typed(v) for v in value])
    if hasattr(value, "items"):
        return (type(value).__name__, *[(k, _typed(v)) for k, v in value.items()])
    return (type(value).__name__, value)


def _compiled_agrees(raws, cfg, now=NOW):
    """The compiled fast path answers exactly as fast_event, to the types."""
    if events_module._fast_events is None:
        return
    c = events_module._fast_events(raws, now, cfg)
    py = [fast_event(raw, i, now, cfg) for i, raw in enumerate(raws)]
    assert [_typed(e) for e in c] == [_typed(e) for e in py], raws


def _agree(raw, cfg=ValidationConfig()):
    fast = fast_event(raw, 3, NOW, cfg)
    slow, errors = validate_event(raw, 3, NOW, cfg)
    if errors:
        assert fast is None, (raw, errors)
    elif fast is not None:
        assert fast == slow
        assert (fast.alias_keys, fast.tie, dict(fast.data)) == (slow.alias_keys, slow.tie, dict(slow.data))
    _compiled_agrees([None, 1, 2, raw], cfg)
    return fast


@pytest.mark.parametrize("raw", GOOD, ids=lambda e: e["type"])
def test_fast_path_accepts_the_good_events(raw):
    fast = _agree(raw)
    if isinstance(raw["timestamp"], (int, float)):      # ISO text is left to the full validator
        assert fast is not None


@pytest.mark.parametrize("raw, mutate, expected", BAD, ids=[b[2].split(": ", 1)[-1][:40] for b in BAD])
def test_fast_path_refuses_the_bad_events(raw, mutate, expected):
    raw = dict(raw) if isinstance(raw, dict) else raw
    if mutate:
        mutate(raw)
    assert _agree(raw) is None


def test_fast_path_checks_the_known_stores():
    raw = ev("store_visit", channel="pos", store_id="mars")
    assert _agree(raw, ValidationConfig(known_stores=frozenset({"riverside"}))) is None
    assert _agree(raw, ValidationConfig(known_stores=frozenset({"mars"}))) is not None


_odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(9_999, 10_001), st.just(2 ** 60),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", " ", "x", "42", "S1", "web", "pos"]),
    st.text(max_size=3), st.lists(st.integers(0, 2), max_size=2), st.just({"lat": 1, "lon": 2}),
    st.just({"lat": 100, "lon": 2}), st.just([{"sku": "S1", "category": "c", "price": 1}]),
    st.just([{"sku": "S1", "category": "c", "price": -1}]), st.just([{"sku": "S1", "qty": 2.0}]),
    st.just({}), st.just(NOW - 401 * DAY), st.just(NOW + 2 * DAY), st.just("2025-10-01T10:00:00Z"))
_field_names = st.sampled_from(
    ["event_id", "type", "channel", "timestamp", "customer_id", "device_id", "email_hash", "loyalty_card", "meta",
     "sku", "category", "price", "size", "qty", "items", "store_id", "total", "order_id", "offer_id", "email",
     "push", "sms", "home", "loyalty_points", "page", "url", "query", "campaign_id", "placement", "colour"])


def _edited(good: dict, edits) -> dict:
    """``good`` with each (name, value) of ``edits`` set, or removed for ``...``."""
    raw = dict(good)
    for name, value in edits:
        if value is ...:
            raw.pop(name, None)
        else:
            raw[name] = value
    return raw


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(GOOD), st.lists(st.tuples(_field_names, _odd_values | st.just(...)), max_size=3))
def test_fast_path_agrees_with_the_full_validator(good, edits):
    _agree(_edited(good, edits))


_item_values = st.one_of(
    _odd_values, st.sampled_from(["S1", "shoes", "42", " \t", "\u2003", "x" * 201, "x" * 33]),
    st.floats(-2, 2_000_000), st.integers(-2, 10_002), st.just(3.0), st.just(2 ** 64), st.just(True))
_item_names = st.sampled_from(["sku", "category", "size", "price", "qty", "colour"])


@compiled
@settings(max_examples=600, deadline=None)
@given(st.sampled_from([g for g in GOOD if "items" in g]),
       st.lists(st.lists(st.tuples(_item_names, _item_values | st.just(...)), max_size=3), min_size=1, max_size=3),
       st.sampled_from([None, frozenset({"riverside"}), frozenset()]),
       st.sampled_from([NOW, int(NOW), NOW + 0.5]))
def test_compiled_fast_path_agrees_on_items(good, line_edits, stores, now):
    raw = dict(good)
    lines = []
    for edits in line_edits:
        line = dict(good["items"][0])
        for name, value in edits:
            if value is ...:
                line.pop(name, None)
            else:
                line[name] = value
        lines.append(line)
    raw["items"] = lines
    _compiled_agrees([raw], ValidationConfig(known_stores=stores), now)


@compiled
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(GOOD), st.lists(st.tuples(_field_names, _item_values | st.just(...)), max_size=4),
       st.sampled_from([ValidationConfig(), ValidationConfig(known_stores=frozenset({"riverside"})),
                        ValidationConfig(max_future=60, max_past=3600)]),
       st.sampled_from([NOW, int(NOW), NOW - 300 * DAY]))
def test_compiled_fast_path_agrees(good, edits, cfg, now):
    _compiled_agrees([_edited(good, edits), dict(good), "junk"], cfg, now)


def test_batches_are_validated_the_same_either_way():
    batch = GOOD + [ev("purchase", items=[item("S1", price=-1)]), "junk", ev("page_view", cid=None)]
    result = validate_batch(batch, NOW)
    slow = [validate_event(raw, i, NOW) for i, raw in enumerate(batch)]
    assert result.events == tuple(e for e, _ in slow if e is not None)
    assert result.errors == tuple(err for _, errs in slow for err in errs)


# ---------------------------------------------------------------- the fold's in-place visit timeline
_visit_times = st.lists(st.integers(0, 400).map(lambda k: 1_700_000_000.0 + k * 600.0), max_size=30)


@pytest.mark.parametrize("in_place", VISITS_IN_PLACE)
@settings(max_examples=300, deadline=None)
@given(_visit_times, st.integers(0, 6))
def test_visits_in_place_match_add_visit(in_place, times, max_len):
    pure, owned = None, []
    for t in times:
        pure = add_visit(pure, t, 1800.0, max_len)
        in_place(owned, t, 1800.0, max_len)
        assert owned == pure


@pytest.mark.parametrize("in_place", VISITS_IN_PLACE)
@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 5_000, allow_nan=False) | st.integers(0, 50).map(float), max_size=40),
       st.sampled_from([1.0, 7.0, 0.3, 1800.0, 2.5]), st.integers(0, 8))
def test_visits_in_place_match_add_visit_any_window(in_place, times, window, max_len):
    pure, owned = None, []
    for t in times:
        pure = add_visit(pure, t, window, max_len)
        in_place(owned, t, window, max_len)
        assert owned == pure


# ---------------------------------------------------------------- the compiled fold
def _exact(value):
    """``value`` with every type and every dict's key order spelt out."""
    if type(value) is dict:
        return ("dict", [(k, _exact(v)) for k, v in value.items()])
    if type(value) is list:
        return ("list", [_exact(v) for v in value])
    return (type(value).__name__, value)


@pytest.mark.skipif(fold_module.fold_into is fold_module.reference_fold_into, reason="_fastpaths not built")
@PROPERTY
@given(histories, st.randoms(use_true_random=False),
       st.sampled_from([DEFAULT_CONFIG, ROOMY, FoldConfig(max_visits=2, visit_window=7.0, max_cart_lines=2)]))
def test_compiled_fold_into_folds_as_the_reference(events, rnd, cfg):
    events = list(events)
    rnd.shuffle(events)
    compiled, reference = new_profile("C1", 3), new_profile("C1", 3)
    for e in events:
        assert fold_module.fold_into(compiled, e, cfg) is compiled
        assert fold_module.reference_fold_into(reference, e, cfg) is reference
        assert _exact(compiled) == _exact(reference)
    assert _exact(fold_module.fold_into({}, events[0])) == _exact(fold_module.reference_fold_into({}, events[0]))
