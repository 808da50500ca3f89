"""bench.soak runs a real `maple serve --workers 2` under every kind of
call at once, samples each of its processes' memory, and fails on any
error it did not provoke on purpose or an unclean exit."""
import json

from bench import soak


def test_a_short_soak_meets_every_kind_of_call_and_the_server_drains(tmp_path, capsys):
    out = tmp_path / "soak.json"
    assert soak.main(["--minutes", "0.1", "--sample-seconds", "2", "--customers", "100", "--event-batches", "10",
                      "--profile-cache-mib", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["exit_code"] == 0 and report["errors_unexpected"] == {}
    assert set(report["calls"]) == {"decide_by_id", "decide_inline", "decide_batch", "record_events",
                                    "update_inventory", "reload", "bad"}
    assert all(count > 0 for count in report["calls"].values())
    # the bad requests were refused as such, and a broken rule file was refused by the reload
    assert report["errors_expected"].get("bad:INVALID_ARGUMENT", 0) > 0
    labels = [p["label"] for p in report["processes"].values()]
    assert "supervisor" in labels and sum(label.startswith("worker ") for label in labels) == 2
    assert len(report["samples"]) >= 3
    # each process's anonymous memory and the store's files are sampled beside the RSS
    assert all(s["store_mib"] > 0 and set(s["anon_mib"]) == set(s["rss_mib"]) for s in report["samples"])
    assert report["store"]["end_mib"] >= report["store"]["start_mib"] > 0
    # RecordEvents went through several rounds of new events, all stored (no unexpected error)
    assert report["event_rounds"] >= 2
    # what the two workers say they hold: the profile caches (within --profile-cache-mib each) and SQLite
    assert report["held"]["cache_entries"]["max"] > 0 and report["held"]["sqlite_mib"]["max"] > 0
    assert 0 < report["held"]["cache_mib"]["max"] <= 2 * 1.0
    assert (tmp_path / "soak.png").stat().st_size > 0
    assert "after SIGTERM the server exited 0" in capsys.readouterr().out


def test_growth_is_the_second_half_slope_in_mib_a_minute():
    flat = [(t, 100.0) for t in range(0, 600, 10)]
    assert soak.growth(flat) == 0.0
    rising = [(t, 100.0 + (t / 60 if t >= 300 else 0)) for t in range(0, 600, 10)]
    assert soak.growth(rising) == 1.0
    assert soak.growth([(0, 1.0)]) is None
