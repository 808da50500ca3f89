"""bench.cache_memory and bench.sqlite_cache run end to end on a small
store: the profile cache's counted memory is what its objects take, and
the page cache sizes are compared in one run."""
import json

from bench import cache_memory, sqlite_cache


def test_the_cache_s_counted_memory_is_what_its_objects_take(tmp_path):
    out = tmp_path / "cache_memory.json"
    assert cache_memory.main(["--customers", "400", "--db", str(tmp_path / "store.db"), "--cache-mib", "1",
                              "--threads", "2", "--reads", "500", "--events", "400", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["customers"] >= 396 and r["cache_entries"] > 0
    assert 0 < r["cache_counted_mib"] <= 1.0
    # at this size the dicts' fixed overhead shows (at 100,000 customers: 1.00x, docs/service.md)
    assert 0.7 * r["cache_counted_mib"] <= r["cache_traced_mib"] <= 1.8 * r["cache_counted_mib"]
    assert r["sqlite_mib"] > 0


def test_the_page_cache_sizes_are_compared_in_one_run(tmp_path, capsys):
    out = tmp_path / "sqlite_cache.json"
    assert sqlite_cache.main(["--customers", "400", "--db", str(tmp_path / "store.db"), "--sizes", "1,4",
                              "--rounds", "2", "--reads", "200", "--events", "100", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["results"]) == {"read", "read + writes", "apply"}
    for kind in r["results"].values():
        assert kind["4"]["ratio"] == 1.0 and len(kind["1"]["rounds_us"]) == 2 and kind["1"]["median_us"] > 0
    assert "ratio to 4 MiB" in capsys.readouterr().out
