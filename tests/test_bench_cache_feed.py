"""bench.cache_feed runs two real `maple serve` on copies of one store
(SQLite files, or two databases of a redis-server it starts), one following
the change feed and one not, and reports each one's cache reads, CPU and
percentiles side by side."""
import json

import pytest

from bench import cache_feed


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_both_servers_are_measured_and_every_decide_read_the_cache_once(tmp_path, capsys, store):
    out = tmp_path / "cache_feed.json"
    assert cache_feed.main(["--customers", "150", "--calls", "120", "--turns", "2", "--writes", "10",
                            "--bound-rounds", "1", "--store", store, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["store"] == store
    assert set(report["servers"]) == {"feed", "ttl"}
    for server in report["servers"].values():
        reads = server["cache_reads"]
        assert reads["hit"] + reads["miss"] + reads.get("stale", 0) == 2 * 120       # one read a Decide by id
        assert 0.0 <= reads["hit_share"] <= 1.0
        assert len(server["cpu_us_per_turn"]) == 2 and server["wall_p50_us"] <= server["wall_p99_us"]
        assert len(server["stale_ms"]) == 1          # another process's write was seen (STORED) in the end
    assert set(report["ratios"]) == {"cpu", "wall_p50", "wall_p99"}
    printed = capsys.readouterr().out
    assert "feed ÷ ttl: CPU a call" in printed and "hit share" in printed
