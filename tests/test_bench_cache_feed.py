"""bench.cache_feed runs two real `maple serve` on copies of one store
(SQLite files, or two databases of a redis-server it starts), one following
the change feed and one not (or, with --base-dir, this checkout and
another, both following it), and reports each one's cache reads, CPU and
percentiles side by side."""
import json
from pathlib import Path

import pytest

from bench import cache_feed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("store, base", [("sqlite", False), ("redis", False), ("sqlite", True)],
                         ids=["sqlite", "redis", "sqlite-base-dir-batches"])
def test_both_servers_are_measured_and_every_decide_read_the_cache_once(tmp_path, capsys, store, base):
    out = tmp_path / "cache_feed.json"
    # the base: this checkout again (a real A/B names a built worktree of another commit), in batches of 3
    extra = ["--base-dir", str(ROOT), "--batch", "3"] if base else []
    per_call = 3 if base else 1
    assert cache_feed.main(["--customers", "150", "--calls", "120", "--turns", "2", "--writes", "10",
                            "--bound-rounds", "1", "--store", store, "--out", str(out)] + extra) == 0
    report = json.loads(out.read_text())
    assert report["store"] == store
    names = ("this", "base") if base else ("feed", "ttl")
    assert set(report["servers"]) == set(names) and report["compared"] == f"{names[0]} ÷ {names[1]}"
    assert report["base_dir"] == (str(ROOT) if base else None)
    for server in report["servers"].values():
        reads = server["cache_reads"]
        assert reads["hit"] + reads["miss"] + reads.get("stale", 0) == 2 * 120 * per_call     # one read a decision
        assert 0.0 <= reads["hit_share"] <= 1.0
        assert len(server["cpu_us_per_turn"]) == 2 and server["wall_p50_us"] <= server["wall_p99_us"]
        assert len(server["stale_ms"]) == 1          # another process's write was seen (STORED) in the end
    if base:        # both follow the feed: the same code, the same hits once warm
        assert report["servers"]["this"]["cache_reads"]["hit_share"] > 0.5
        assert report["servers"]["base"]["cache_reads"]["hit_share"] > 0.5
    assert set(report["ratios"]) == {"cpu", "wall_p50", "wall_p99", "cpu_paired"}
    printed = capsys.readouterr().out
    assert f"{names[0]} ÷ {names[1]}: CPU a {'decision' if base else 'call'}" in printed and "hit share" in printed
    assert report["cpu_per"] == ("decision" if base else "call") and report["batch"] == (3 if base else 0)


def test_a_base_dir_without_an_engine_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cache_feed.main(["--base-dir", str(tmp_path)])
    assert "no engine package there" in capsys.readouterr().err
