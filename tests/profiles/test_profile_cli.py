"""maple profile show ID --store URL"""
from __future__ import annotations

import json

from engine.cli import main
from engine.profiles import open_store
from engine.eval.values import iso_time
from profiles_support import NOW, T0, ev, item


def show(capsys, *args):
    code = main(["profile", "show", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_prints_the_public_profile(store_url, capsys):
    with open_store(store_url, clock=lambda: NOW) as s:
        s.apply([ev("purchase", T0, channel="pos", store_id="mall", items=[item("S1", size="42")],
                    loyalty_card="L1")])
    code, out, err = show(capsys, "C1", "--store", store_url)
    assert code == 0 and err == ""
    p = json.loads(out)
    assert p["sizes"] == {"shoes": "42"} and p["preferred_store"] == "mall" and "_fold" not in p
    code, out, _ = show(capsys, "L1", "--by", "loyalty_card", "--store", store_url, "--internal")
    assert code == 0 and json.loads(out)["_fold"]["seq"] == 1


def test_show_refreshes_the_lifecycle_as_of_now(sqlite_url, capsys):
    with open_store(sqlite_url, clock=lambda: NOW) as s:
        s.apply([ev("purchase", T0, items=[item("S1")])])
    assert json.loads(show(capsys, "C1", "--store", sqlite_url)[1])["lifecycle"] == "new"
    out = show(capsys, "C1", "--store", sqlite_url, "--now", "2027-01-01T00:00:00")[1]
    assert json.loads(out)["lifecycle"] == "lapsed"


def test_show_unknown_customer_and_bad_stores(sqlite_url, tmp_path, capsys):
    open_store(sqlite_url).close()
    code, out, err = show(capsys, "nobody", "--store", sqlite_url)
    assert (code, out) == (1, "") and "no customer with customer_id 'nobody'" in err
    code, _, err = show(capsys, "C1", "--store", f"sqlite://{tmp_path / 'nope.db'}")
    assert code == 2 and "does not exist" in err and not (tmp_path / "nope.db").exists()
    code, _, err = show(capsys, "C1", "--store", "redis://127.0.0.1:1/0")
    assert code == 2 and "ConnectionError" in err
    code, _, err = show(capsys, "C1", "--store", "ftp://x")
    assert code == 2 and "unknown profile store URL" in err


def test_show_prints_times_as_iso_text_or_as_stored(sqlite_url, capsys):
    with open_store(sqlite_url, clock=lambda: NOW) as s:
        s.apply([ev("purchase", T0 + 0.25, items=[item("S1")])])
    p = json.loads(show(capsys, "C1", "--store", sqlite_url)[1])
    assert p["first_purchase_at"] == iso_time(T0 + 0.25, True) == "2025-09-09T08:53:20.25Z"
    assert p["purchased_at"] == {"shoes": "2025-09-09T08:53:20.25Z"} and p["lifetime_value"] == 10.0
    p = json.loads(show(capsys, "C1", "--store", sqlite_url, "--times", "epoch")[1])
    assert p["first_purchase_at"] == T0 + 0.25 and p["purchased_at"] == {"shoes": T0 + 0.25}


def test_every_time_the_fold_writes_is_shown_as_iso_text(tmp_path):
    """A realistic month of events on every channel (bench.profiles_bench's):
    no number in the shown profiles looks like a time any more, and each
    ISO text reads back (as rules read it) to the stored time."""
    import time
    from bench.profiles_bench import ingest, workload
    from engine.profiles.commands import readable_times
    from engine.profiles.events import parse_timestamp
    from engine.profiles.fold import public
    now = time.time()
    events = workload(3000, 60, now)
    with open_store(f"sqlite://{tmp_path / 'p.db'}") as s:
        ingest(s, events, 100, now)
        profiles = [public(s.get(c)) for c in sorted({e["customer_id"] for e in events})]

    def leaves(v, path=""):
        if isinstance(v, dict):
            for k, x in v.items():
                yield from leaves(x, f"{path}.{k}")
        elif isinstance(v, list):
            for x in v:
                yield from leaves(x, path + "[]")
        else:
            yield path, v

    seen = 0
    for p in profiles:
        pairs = list(zip(leaves(p), leaves(readable_times(p))))
        assert [a[0] for a, _ in pairs] == [b[0] for _, b in pairs]
        for (path, raw), (_, text) in pairs:
            if type(raw) is float and raw > 1e9:                # a time: 2001 or later
                seen += 1
                assert type(text) is str and abs(parse_timestamp(text) - raw) < 1e-6, path
            else:
                assert text == raw, path                        # nothing else changes
    assert seen > 1000

