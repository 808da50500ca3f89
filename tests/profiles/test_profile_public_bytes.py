"""``store.public_bytes``: a stored profile's bytes without the fold's
bookkeeping, cut out of the MessagePack without decoding it (compiled,
``_fastpaths.public_bytes``), held to its Python definition
(``store.reference_public_bytes``: decode, drop the keys starting with
``_`` as ``fold.public`` does, encode) and to ``fold.public``.

The bytes are written here by a MessagePack writer that picks each
header's width at random (a fixstr or a str8/16/32 for the same text, a
fixmap or a map16/32, ...), so every kind of header the skipping walks is
met, not only the ones msgspec writes."""
from __future__ import annotations

import math
import struct

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from engine.profiles import _fastpaths
from engine.profiles.fold import public
from engine.profiles.store import decode, encode, public_bytes, reference_public_bytes

NAMED = ["_fold", "_x", "_", "customer_id", "sizes", "visits", "a_b", "cart"]
KEYS = st.one_of(st.sampled_from(NAMED), st.text(max_size=40))
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2 ** 63, max_value=2 ** 64 - 1),
    st.floats(allow_nan=False),
    # long ones (str16, bin16 headers) repeat a short draw: hypothesis is slow to draw 300 random characters
    st.text(max_size=40) | st.builds(lambda c, n: c * n, st.characters(blacklist_categories=("Cs",)), st.integers(250, 300)),
    st.binary(max_size=40) | st.builds(lambda b, n: (b * n)[:n], st.binary(min_size=1, max_size=3), st.integers(250, 300)),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                       st.dictionaries(KEYS, inner, max_size=4)),
                      max_leaves=40)
# Up to 20 entries (so msgspec writes a map16 that a cut may turn into a fixmap): the
# named keys (bookkeeping among them) and text keys drawn apart, as one dictionary of
# eight names would run out of fresh keys and make hypothesis retry and discard its draws.
PROFILES = st.builds(lambda named, other: {**other, **named},
                     st.dictionaries(st.sampled_from(NAMED), VALUES, max_size=8),
                     st.dictionaries(st.text(max_size=40).filter(lambda k: k not in NAMED), VALUES,
                                     max_size=12))


def _pack(draw, v, out: bytearray) -> None:
    """MessagePack for ``v``, each header in a width drawn at random."""
    w = draw(st.integers(0, 3))
    if v is None:
        out += b"\xc0"
    elif v is True or v is False:
        out += b"\xc3" if v else b"\xc2"
    elif isinstance(v, int):
        if w == 0 and -32 <= v <= 0x7f:
            out += struct.pack("b" if v < 0 else "B", v)      # a fixint
        else:
            widths = ([(0xcc, "B", 2 ** 8), (0xcd, ">H", 2 ** 16), (0xce, ">I", 2 ** 32), (0xcf, ">Q", 2 ** 64)]
                      if v >= 0 else
                      [(0xd0, "b", 2 ** 7), (0xd1, ">h", 2 ** 15), (0xd2, ">i", 2 ** 31), (0xd3, ">q", 2 ** 63)])
            fits = [f for f in widths if (v < f[2] if v >= 0 else -v <= f[2])]
            code, fmt, _ = fits[min(w, len(fits) - 1)]
            out += bytes([code]) + struct.pack(fmt, v)
    elif isinstance(v, float):
        if w == 0 and (not math.isfinite(v) or abs(v) < 3e38 and struct.unpack(">f", struct.pack(">f", v))[0] == v):
            out += b"\xca" + struct.pack(">f", v)
        else:
            out += b"\xcb" + struct.pack(">d", v)
    elif isinstance(v, str):
        _sized(out, v.encode(), w, fix=(0xa0, 31), codes=(0xd9, 0xda, 0xdb))
    elif isinstance(v, bytes):
        _sized(out, v, max(w, 1), fix=None, codes=(0xc4, 0xc5, 0xc6))
    elif isinstance(v, list):
        _header(out, len(v), w, fix=0x90, codes=(0xdc, 0xdd))
        for x in v:
            _pack(draw, x, out)
    else:
        _header(out, len(v), w, fix=0x80, codes=(0xde, 0xdf))
        for k, x in v.items():
            _pack(draw, k, out)
            _pack(draw, x, out)


def _sized(out: bytearray, data: bytes, w: int, fix, codes) -> None:
    n = len(data)
    if fix is not None and w == 0 and n <= fix[1]:
        out += bytes([fix[0] | n])
    elif w <= 1 and n <= 0xff:
        out += bytes([codes[0], n])
    elif w <= 2 and n <= 0xffff:
        out += bytes([codes[1]]) + struct.pack(">H", n)
    else:
        out += bytes([codes[2]]) + struct.pack(">I", n)
    out += data


def _header(out: bytearray, n: int, w: int, fix: int, codes) -> None:
    if w == 0 and n <= 15:
        out += bytes([fix | n])
    elif w <= 2 and n <= 0xffff:
        out += bytes([codes[0]]) + struct.pack(">H", n)
    else:
        out += bytes([codes[1]]) + struct.pack(">I", n)


@st.composite
def packed(draw, values=PROFILES):
    v = draw(values)
    out = bytearray()
    _pack(draw, v, out)
    return v, bytes(out)


def _outcome(data: bytes):
    try:
        return "decoded", decode(data)
    except msgspec.DecodeError as err:
        return "refused", type(err)


@settings(max_examples=150, deadline=None)
@given(packed())
def test_the_cut_decodes_to_the_public_profile_whatever_the_headers(case):
    profile, data = case
    assert decode(data) == profile                      # the writer above writes MessagePack
    cut = public_bytes(data)
    assert decode(cut) == public(profile) == decode(reference_public_bytes(data))
    if not any(k.startswith("_") for k in profile):
        assert cut is data                              # nothing to cut: the same object, no copy


@settings(max_examples=150, deadline=None)
@given(PROFILES)
def test_msgspec_bytes_lose_exactly_the_bookkeeping_and_keep_the_rest_verbatim(profile):
    data = encode(profile)
    cut = public_bytes(data)
    assert decode(cut) == public(profile)
    assert len(cut) <= len(data)
    if cut is not data:
        assert cut == encode(public(profile))           # msgspec's own headers: the same bytes it would write


@settings(max_examples=150, deadline=None)
@given(packed(), st.data())
def test_damaged_bytes_never_crash_and_what_decodes_decodes_alike(case, data):
    """Truncated or altered bytes: the cut never raises; when the damaged
    bytes still decode to a map, the cut decodes to its public part; when
    the walk cannot read them, they come back as they are."""
    _, good = case
    damaged = bytearray(good)
    for _ in range(data.draw(st.integers(0, 3))):
        if damaged:
            i = data.draw(st.integers(0, len(damaged) - 1))
            damaged[i] = data.draw(st.integers(0, 255))
    damaged = bytes(damaged[:data.draw(st.integers(0, len(damaged)))])
    cut = public_bytes(damaged)
    assert type(cut) is bytes
    before = _outcome(damaged)
    if before[0] == "decoded" and type(before[1]) is dict:
        try:
            assert decode(cut) == public(before[1])
        except AttributeError:                          # a non-text key: fold.public cannot say
            pass


@given(st.binary(max_size=200))
def test_any_bytes_never_crash(blob):
    assert type(public_bytes(blob)) is bytes


@pytest.mark.parametrize("blob", [b"", b"\x80", b"\x90", b"\xa3abc", b"\xc1", b"\x81\xa5_fold", b"\x82\xa5_fold\x01",
                                  b"\xde\x00", b"\xdf\x00\x00\x00", b"\x81\xa5_fold\x01\x00"])
def test_what_is_not_one_whole_map_comes_back_as_it_is(blob):
    """Empty, not a map, cut short, or with bytes after the map."""
    assert public_bytes(blob) is blob


def test_a_profile_the_fold_wrote():
    from profiles_histories import events
    from profiles_support import T0, ev, item
    from engine.profiles.fold import fold_all, new_profile
    profile = fold_all(new_profile("C1"), events(ev("purchase", T0, items=[item("S1", size="42")]),
                                                 ev("add_to_cart", T0 + 5, items=[item("S2")])))
    data = encode(profile)
    cut = public_bytes(data)
    assert "_fold" in profile and decode(cut) == public(profile) and "_fold" not in decode(cut)
    assert len(cut) < len(data)


def test_more_bookkeeping_keys_than_the_compiled_cut_holds_go_to_the_reference():
    profile = {f"_k{i}": i for i in range(40)} | {"customer_id": "C1"}
    assert decode(_fastpaths.public_bytes(encode(profile))) == {"customer_id": "C1"}


def test_a_map_of_more_than_65535_entries_keeps_a_map32_header():
    profile = {"_fold": {"seq": 1}} | {f"k{i}": i for i in range(70_000)}
    data = encode(profile)
    cut = public_bytes(data)
    assert cut[0] == 0xdf and cut == encode(public(profile))
