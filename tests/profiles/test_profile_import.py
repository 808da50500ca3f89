"""maple profile import: a JSON Lines file of events into a store."""
from __future__ import annotations

import json
import time
from pathlib import Path

from engine.cli import main
from engine.profiles.store import open_store

from profiles_support import NOW, ev, item


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_import_stores_the_good_lines_names_the_bad_ones_and_is_idempotent(tmp_path, capsys):
    t = time.time() - 3600
    f = write(tmp_path / "events.jsonl", [
        "# a comment",
        json.dumps(ev("purchase", t, cid="C9", channel="web", items=[item("S1", size="42")])),
        "",
        "{not json",
        json.dumps(ev("purchase", t, cid="C9", channel="web", items=[item("S2", price=-1)])),
    ])
    url = f"sqlite://{tmp_path / 'sub' / 'p.db'}"
    assert main(["profile", "import", f, "--store", url]) == 1
    out, err = capsys.readouterr()
    assert "1 stored, 0 already there, 2 rejected" in out
    assert f"{f}:4: not valid JSON" in err
    assert f"{f}:5: items[0].price:" in err
    assert main(["profile", "import", f, "--store", url]) == 1
    assert "0 stored, 1 already there, 2 rejected" in capsys.readouterr().out
    with open_store(url) as store:
        assert store.get("C9")["sizes"] == {"shoes": "42"}


def test_rejected_counts_events_not_problems_and_problems_come_in_line_order(tmp_path, capsys):
    """An event with three problems is one rejected event; the problems are
    printed in the file's order whichever step found them (the JSON reader
    before the validator)."""
    t = time.time() - 3600
    f = write(tmp_path / "events.jsonl", [
        json.dumps(ev("purchase", t, cid="C9", channel="web", items=[item("S1", size="42")])),
        json.dumps({"event_id": "e-bad", "type": "purchase", "channel": "fax", "timestamp": "yesterday"}),
        "{not json",
    ])
    assert main(["profile", "import", f, "--store", f"sqlite://{tmp_path / 'p.db'}"]) == 1
    out, err = capsys.readouterr()
    assert "1 stored, 0 already there, 2 rejected" in out
    lines = [int(x.split(":")[1]) for x in err.splitlines() if x.startswith(f"{f}:")]
    assert len(lines) >= 3 and lines == sorted(lines) and set(lines) == {2, 3}


def test_rebase_moves_old_sample_data_to_now(tmp_path, capsys):
    old = NOW - 900 * 86400                                  # far past the 400-day limit
    f = write(tmp_path / "old.jsonl", [json.dumps(ev("page_view", old, cid="C1", page="home")),
                                       json.dumps(ev("page_view", old + 86400, cid="C1", page="home"))])
    url = f"sqlite://{tmp_path / 'p.db'}"
    assert main(["profile", "import", f, "--store", url]) == 1    # too old as they are
    capsys.readouterr()
    assert main(["profile", "import", f, "--store", url, "--rebase"]) == 0
    with open_store(url) as store:
        seen = store.get("C1")["last_seen_at"]
    assert time.time() - 120 < seen <= time.time()


ROOT = Path(__file__).resolve().parents[2]


def test_with_store_data_unknown_store_ids_are_refused_as_the_server_does(tmp_path, capsys):
    t = time.time() - 3600
    f = write(tmp_path / "visits.jsonl", [
        json.dumps(ev("store_visit", t, cid="C1", channel="pos", store_id="s001")),
        json.dumps(ev("store_visit", t, cid="C1", channel="pos", store_id="nowhere")),
    ])
    url = f"sqlite://{tmp_path / 'p.db'}"
    assert main(["profile", "import", f, "--store", url, "--data", str(ROOT / "rules/data")]) == 1
    out, err = capsys.readouterr()
    assert "1 stored, 0 already there, 1 rejected" in out
    assert f"{f}:2: store_id: unknown store 'nowhere' [V108]" in err
    assert main(["profile", "import", f, "--store", url]) == 0        # without --data: any id (the second)
    assert main(["profile", "import", f, "--store", url, "--data", str(tmp_path / "none")]) == 2
    assert "cannot read the store data" in capsys.readouterr().err


def test_the_sample_events_import_cleanly(tmp_path, capsys):
    url = f"sqlite://{tmp_path / 'p.db'}"
    assert main(["profile", "import", str(ROOT / "rules/data/sample_events.jsonl"), "--store", url, "--rebase",
                 "--data", str(ROOT / "rules/data")]) == 0
    assert ", 0 rejected" in capsys.readouterr().out
    with open_store(url) as store:
        runner = store.get("c-1001")
    assert runner["sizes"]["running-shoes"] == "44" and runner["preferred_store"] == "s001"
