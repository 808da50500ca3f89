"""maple profile show ID --store URL"""
from __future__ import annotations

import json

from engine.cli import main
from engine.profiles import open_store
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
