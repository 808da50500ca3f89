"""bench.loadgen: which server each phase measures, without starting one.

The batch phase runs against ``maple serve`` with --batch-workers processes
(default: one per core, as ``maple serve`` defaults to); the other phases
against --server-workers (default 1) beside an echo of as many.
"""
from __future__ import annotations

import json
import os
import threading

import pytest

from bench import loadgen


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr("engine.server.config.cores", lambda: 4)


def test_batch_workers_default_to_maple_serves_default(four_cores):
    args = loadgen.parse_args([])
    assert (args.server_workers, args.batch_workers) == (1, 4)
    assert loadgen.batch_server(args) == "own"


@pytest.mark.parametrize("argv, plan", [
    (["--batch-workers", "1"], "shared"),
    (["--server-workers", "4"], "shared"),
    (["--server-workers", "0"], "shared"),            # 0 is one per core for both
    (["--batch-workers", "2"], "own"),
    (["--target", "10.0.0.1:50051"], "target"),
    (["--target", "10.0.0.1:50051", "--batch-workers", "1"], "target"),
])
def test_which_server_the_batch_phase_uses(four_cores, argv, plan):
    assert loadgen.batch_server(loadgen.parse_args(argv)) == plan


def test_negative_workers_are_refused():
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--batch-workers", "-1"])


class _Proc:
    pid = None                  # a fake: no /proc of its own to read

    def terminate(self):
        self.terminated = True

    def wait(self, timeout=None):
        return 0


def _fake(monkeypatch, tmp_path):
    """start_maple/start_echo/run_phase recorded, not run; returns the records."""
    started, phases, events_specs = [], [], []

    def start_maple(rules, workers, store, env=None, code=None, cpu_affinity="off"):
        pinned = () if cpu_affinity == "off" else (f"cpus {cpu_affinity}",)
        started.append((("maple", workers) if store is None else ("maple", workers, store.split(":")[0])) + pinned)
        return _Proc(), {"decisions": f"maple-{workers}:1", "metrics": None}

    def start_echo(workers, cpu_affinity="off"):
        started.append(("echo", workers) + (() if cpu_affinity == "off" else (f"cpus {cpu_affinity}",)))
        return _Proc(), f"echo-{workers}:1"

    def run_phase(phase, name, target, method, payloads, **kw):
        if kw.get("on_warm") is not None:
            kw["on_warm"]()
        phases.append((phase, name, target, kw["server_workers"]))
        if kw.get("events"):
            events_specs.append(kw["events"])
        hist = loadgen._hist()
        hist.record_value(100)
        return loadgen.Result(phase, name, 1, 1.0, {}, hist, kw.get("items_per_request", 1), kw["server_workers"])

    monkeypatch.setattr(loadgen, "start_maple", start_maple)
    monkeypatch.setattr(loadgen, "start_echo", start_echo)
    monkeypatch.setattr(loadgen, "run_phase", run_phase)
    monkeypatch.setattr(loadgen, "plot", lambda results, path, **kw: None)
    monkeypatch.setattr(loadgen, "default_pack", lambda: str(tmp_path))
    _fake.events_specs = events_specs
    return started, phases


def _with_pids(monkeypatch, maple: int, echo: int) -> None:
    """The faked servers (_fake's) started with these pids, for the readings of their CPU."""
    def with_pid(start, pid):
        def started_with_pid(*a, **kw):
            proc, info = start(*a, **kw)
            proc.pid = pid
            return proc, info
        return started_with_pid
    monkeypatch.setattr(loadgen, "start_maple", with_pid(loadgen.start_maple, maple))
    monkeypatch.setattr(loadgen, "start_echo", with_pid(loadgen.start_echo, echo))


def _report(tmp_path) -> dict:
    [path] = tmp_path.glob("loadgen-*.json")
    return json.loads(path.read_text())


def test_batch_alone_starts_only_its_own_server(four_cores, monkeypatch, tmp_path, capsys):
    started, phases = _fake(monkeypatch, tmp_path)
    assert loadgen.main(["--phases", "batch", "--customers", "20", "--out", str(tmp_path)]) == 0
    assert started == [("maple", 4)]
    assert phases == [("batch", "batch", "maple-4:1", 4)]
    report = _report(tmp_path)
    assert (report["batch_server_workers"], report["batch_target"]) == (4, "maple-4:1")
    assert report["results"][0]["server_workers"] == 4
    assert "workers" in capsys.readouterr().out.splitlines()[0]


def test_every_phase_a_second_server_for_batch(four_cores, monkeypatch, tmp_path):
    started, phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "c1,batch", "--turns", "1", "--customers", "20", "--out", str(tmp_path)])
    assert started == [("maple", 1), ("echo", 1), ("maple", 4)]
    assert phases == [("c1", "echo", "echo-1:1", 1), ("c1", "decide", "maple-1:1", 1),
                      ("batch", "batch", "maple-4:1", 4)]


def test_echo_and_decide_take_turns_abba_and_each_is_reported_once_merged(four_cores, monkeypatch, tmp_path):
    """The drift of a shared VM falls on both: --turns alternations in ABBA
    order, the duration split, the first turn of each warmed up in full;
    the turns' histograms and counts add up to one row per target."""
    _fake(monkeypatch, tmp_path)
    calls = []

    def run_phase(phase, name, target, method, payloads, **kw):
        calls.append((phase, name, kw["duration"], kw["warmup"]))
        hist = loadgen._hist()
        hist.record_value({"echo": 100, "decide": 150}[name] * (len(calls) % 3 + 1))
        return loadgen.Result(phase, name, 10, kw["duration"], {"X": 1} if name == "decide" else {}, hist, 1,
                              kw["server_workers"])
    monkeypatch.setattr(loadgen, "run_phase", run_phase)
    loadgen.main(["--phases", "c1", "--turns", "4", "--duration", "8", "--warmup", "2", "--customers", "20",
                  "--out", str(tmp_path)])
    assert [name for _, name, _, _ in calls] == ["echo", "decide", "decide", "echo"] * 2
    assert {d for _, _, d, _ in calls} == {2.0}
    assert [w for _, _, _, w in calls] == [2, 2] + [loadgen.TURN_WARMUP] * 6
    report = _report(tmp_path)
    assert report["turns"] == 4
    echo_row, decide_row = report["results"]
    assert (echo_row["target"], echo_row["requests"], echo_row["throughput_rps"]) == ("echo", 40, 5.0)
    assert (decide_row["requests"], decide_row["errors"]) == (40, {"X": 4})
    assert decide_row["max_us"] >= 300 and echo_row["p50_us"] >= 100       # every turn's values are in
    # and each turn's own ratio (echo 200, 200, 300, 300 µs; Decide 450, 150, 150, 300), in the turns' order
    assert report["ratios_per_turn"]["c1"]["p50"] == [2.25, 0.75, 0.5, 1.0]
    assert report["ratios_per_turn"]["c1"]["throughput"] == [1.0] * 4


@pytest.mark.parametrize("decide_max, noted", [(1000.0, True), (5000.0, False)])
def test_an_open_rate_near_decides_own_maximum_is_called_overload(four_cores, monkeypatch, tmp_path, capsys,
                                                                   decide_max, noted):
    """The open phase runs at half the echo's maximum; when that is most of
    Decide's own, the report says the phase measured queueing."""
    _fake(monkeypatch, tmp_path)
    rates = []

    def run_phase(phase, name, target, method, payloads, **kw):
        rates.append(kw["rate"])
        hist = loadgen._hist()
        hist.record_value(100)
        per_s = {"echo": 3000.0, "decide": decide_max}[name] if phase == "max" else 1.0
        return loadgen.Result(phase, name, int(per_s * kw["duration"]), kw["duration"], {}, hist, 1,
                              kw["server_workers"])
    monkeypatch.setattr(loadgen, "run_phase", run_phase)
    loadgen.main(["--phases", "max,open", "--turns", "1", "--customers", "20", "--out", str(tmp_path)])
    assert rates[-1] == 1500.0                                   # half the echo's 3,000/s
    assert _report(tmp_path)["open_rate_over_decide_max"] == round(1500.0 / decide_max, 3)
    assert ("measured overload" in capsys.readouterr().out) is noted


def test_queueing_is_read_from_decides_own_latencies_when_c1_ran():
    def result(phase, p50):
        hist = loadgen._hist()
        hist.record_value(p50)
        return loadgen.Result(phase, "decide", 1, 1.0, {}, hist)
    assert loadgen.queued([result("c1", 700), result("open", 52_000)], open_load=0.7)
    assert not loadgen.queued([result("c1", 700), result("open", 900)], open_load=0.9)
    assert loadgen.queued([result("open", 900)], open_load=0.9)          # no c1: the rate decides


def test_turns_must_be_one_or_more():
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--turns", "0"])


def test_equal_workers_share_one_server(four_cores, monkeypatch, tmp_path):
    started, phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "c1,batch", "--batch-workers", "1", "--customers", "20", "--out", str(tmp_path)])
    assert started == [("maple", 1), ("echo", 1)]
    assert phases[-1] == ("batch", "batch", "maple-1:1", 1)


def test_a_target_elsewhere_serves_the_batch_phase(four_cores, monkeypatch, tmp_path):
    started, phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "batch", "--target", "far:1", "--customers", "20", "--out", str(tmp_path)])
    assert started == []
    assert phases == [("batch", "batch", "far:1", None)]
    assert _report(tmp_path)["batch_server_workers"] is None


def test_every_server_it_starts_takes_the_cpu_affinity_the_echo_floor_too(four_cores, monkeypatch, tmp_path):
    import shutil
    shutil.copytree(loadgen.ROOT / "rules" / "data", tmp_path / "data")      # the reference stores
    started, _phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "c1,batch,events", "--turns", "1", "--customers", "20", "--cpu-affinity", "auto",
                  "--out", str(tmp_path)])
    assert started == [("maple", 1, "cpus auto"), ("echo", 1, "cpus auto"), ("maple", 4, "cpus auto"),
                       ("maple", 1, "sqlite", "cpus auto")]
    report = json.loads(next(tmp_path.glob("loadgen-*.json")).read_text())
    assert report["cpu_affinity"] == "auto"


def test_events_run_against_a_server_of_their_own_on_a_fresh_sqlite_file(four_cores, monkeypatch, tmp_path):
    import shutil
    shutil.copytree(loadgen.ROOT / "rules" / "data", tmp_path / "data")      # the reference stores
    started, phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "events", "--customers", "20", "--out", str(tmp_path)])
    assert started == [("maple", 1, "sqlite")]
    assert phases == [("events", "events", "maple-1:1", 1)]
    [spec] = _fake.events_specs
    stores = (tmp_path / "data" / "stores.csv").read_text().splitlines()[1:]
    assert spec["stores"] == [line.split(",", 1)[0] for line in stores if line.strip()]   # every one, in order
    assert spec["stores"][:2] == ["s001", "s002"] and spec["size"] == 100
    report = _report(tmp_path)
    assert (report["events_target"], report["events_server_workers"]) == ("maple-1:1", 1)
    assert "events_per_s" in report["results"][0] and "decisions_per_s" not in report["results"][0]


def test_a_target_elsewhere_is_sent_no_events_unless_asked(four_cores, monkeypatch, tmp_path):
    assert "events" not in loadgen.parse_args(["--target", "far:1"]).phases.split(",")
    assert "events" in loadgen.parse_args([]).phases.split(",")
    started, phases = _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "events", "--target", "far:1", "--customers", "20", "--out", str(tmp_path)])
    assert started == [] and phases == [("events", "events", "far:1", None)]


def test_unknown_phases_are_refused():
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--phases", "c1,evnets"])


def test_the_event_batches_are_the_bench_month_on_the_wire():
    """What the events phase sends is what profiles_bench ingests: every
    event reads back (engine.server.events) as the month's raw event, new
    ids per seed, store ids swapped for the server's, and all valid."""
    import sys
    import time
    from pathlib import Path
    from bench import profiles
    from engine.profiles.events import ValidationConfig, validate_batch
    from engine.server.events import events_from_pb
    from engine.server.pb.maple.v1 import events_pb2 as epb
    sys.path.insert(0, str(Path(loadgen.ROOT) / "bench"))
    from profiles_bench import workload
    now = time.time()
    [wire] = profiles.event_requests(1, 300, 50, now, seed=5, store_ids=["s001"])
    sent = events_from_pb(epb.RecordEventsRequest.FromString(wire))
    month = workload(300, 50, now, 5)
    assert len(sent) == 300
    assert not validate_batch(sent, now, ValidationConfig(known_stores=frozenset({"s001"}))).errors
    for got, raw in zip(sent, month):
        got, raw = dict(got), {**raw, **({"store_id": "s001"} if "store_id" in raw else {})}
        assert got.pop("timestamp") == pytest.approx(raw.pop("timestamp"), abs=1e-6)
        assert got == raw
    [other] = profiles.event_requests(1, 300, 50, now, seed=6, store_ids=["s001"])
    assert not {e["event_id"] for e in sent} & {e["event_id"] for e in
                                                  events_from_pb(epb.RecordEventsRequest.FromString(other))}


def test_by_id_from_a_sqlite_store_of_the_month(four_cores, monkeypatch, tmp_path):
    """--by-id --profile-store sqlite: the server it starts reads a SQLite
    store holding what the month's events fold into, and the requests name
    exactly the customers in it, by id alone."""
    import shutil
    import sqlite3
    from engine.server.pb.maple.v1 import decision_pb2 as pb
    import grpc
    shutil.copytree(loadgen.ROOT / "rules", tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))
    real_start = loadgen.start_maple                # a real maple serve on the store, the phases faked
    started, phases = _fake(monkeypatch, tmp_path)
    sent = {}
    fake_run_phase = loadgen.run_phase

    def run_phase(phase, name, target, method, payloads, on_warm=None, **kw):
        sent[phase] = payloads
        if on_warm is not None:                     # the measured calls begin
            on_warm()
        if name == "decide":                        # each request twice: a miss, then a hit
            with grpc.insecure_channel(target) as channel:
                call = channel.unary_unary(method)
                for raw in payloads * 2:
                    call(raw, timeout=30)
        return fake_run_phase(phase, name, target, method, payloads, **kw)
    monkeypatch.setattr(loadgen, "run_phase", run_phase)
    stores = []
    monkeypatch.setattr(loadgen, "start_maple", lambda rules, workers, store, **kw: (
        stores.append(store), started.append(("maple", workers, store.split(":")[0])),
        real_start(rules, workers, store, env={"MAPLE_PROFILE_CACHE_TTL": "3600"}))[2])     # nothing expires
    loadgen.main(["--phases", "c1", "--turns", "1", "--by-id", "--profile-store", "sqlite", "--customers", "30",
                  "--rules", str(tmp_path / "rules"), "--out", str(tmp_path)])
    [store] = stores
    assert store.startswith("sqlite://") and started[0] == ("maple", 1, "sqlite")
    with sqlite3.connect(store[len("sqlite://"):]) as db:
        stored = {cid for (cid,) in db.execute("SELECT customer_id FROM customers")}
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 300         # 10 events a customer
    requests = [pb.DecideRequest.FromString(b) for b in sent["c1"]]
    assert {r.customer_id for r in requests} == stored and len(requests) == len(stored)
    assert not any(r.profile_json or r.HasField("profile") for r in requests)
    report = _report(tmp_path)
    assert report["profile_store"] == "sqlite"
    assert report["profile_cache"] == {"c1": {"hit": 30, "miss": 30, "stale": 0, "prefetched": 0, "hit_share": 0.5}}


def test_the_cache_s_hit_share_leaves_out_what_a_batch_fetched_ahead():
    assert loadgen.cache_hit_share({"hit": 70.0, "miss": 20.0, "stale": 10.0, "prefetched": 30.0}) == {
        "hit": 70, "miss": 20, "stale": 10, "prefetched": 30, "hit_share": 0.4}
    assert loadgen.cache_hit_share({"hit": 0.0, "miss": 0.0})["hit_share"] is None


@pytest.mark.parametrize("argv", [["--profile-store", "sqlite"],
                                  ["--by-id", "--profile-store", "sqlite", "--profiles", "p.jsonl"],
                                  ["--by-id", "--profile-store", "sqlite", "--target", "far:1"]])
def test_a_sqlite_profile_store_is_refused_where_it_would_not_apply(argv):
    with pytest.raises(SystemExit):
        loadgen.parse_args(argv)


def _result(phase, target, us: list[int], requests=None, seconds=1.0, items=1):
    hist = loadgen._hist()
    for v in us:
        hist.record_value(v)
    return loadgen.Result(phase, target, len(us) if requests is None else requests, seconds, {}, hist, items)


def test_each_target_is_judged_from_the_run():
    results = [_result("c1", "echo", [500] * 98 + [900] * 2), _result("c1", "decide", [560] * 98 + [1_200] * 2),
               _result("open", "echo", [600] * 100), _result("open", "decide", [650] * 100),
               _result("max", "echo", [1] * 10, requests=4_000), _result("max", "decide", [1] * 10, requests=3_400),
               _result("batch", "batch", [1] * 10, requests=800, items=100)]
    rows = {t["target"]: t for t in loadgen.targets(results, {"c1": {"p99_le_us": 150.0}})}
    assert {k: (v["measured"], v["met"]) for k, v in rows.items()} == {
        "server-side Decide p99, one caller": ("<= 150 µs", False),
        "Decide / echo p50, one caller": ("1.12x", True),
        "Decide / echo p99, one caller": ("1.33x", False),
        "Decide / echo p50, open loop, half the echo's maximum": ("1.08x", True),
        "Decide / echo p99, open loop, half the echo's maximum": ("1.08x", True),
        "Decide / echo maximum throughput": ("0.85x", True),
        "DecideBatch decisions/s": ("80,000", False),
        "Decide p99 end to end, one caller (the brief)": ("1,200 µs", False)}
    assert rows["server-side Decide p99, one caller"]["goal"] == "< 100 µs"
    met = loadgen.targets(results, {"c1": {"p99_le_us": 100.0}})[0]
    assert met["met"] is True and met["measured"] == "<= 100 µs"
    # an open phase that measured overload says nothing of half load
    over = {t["target"]: t for t in loadgen.targets(results, {}, overload=True)}
    assert over["Decide / echo p50, open loop, half the echo's maximum"]["met"] is None
    assert over["Decide / echo p50, open loop, half the echo's maximum"]["measured"] == "1.08x (overload)"
    assert "server-side Decide p99, one caller" not in over          # no metrics scraped: not judged
    text = loadgen.targets_table(list(over.values()))
    assert text.splitlines()[0] == "targets, this run:" and "cannot tell" in text and "NOT met" in text
    assert loadgen.targets([], {}) == [] and loadgen.targets_table([]) == ""


def test_turns_that_agree_give_an_interval_of_one_point():
    """Every turn the same: however the turns are drawn, the ratio is the
    merged rows' own."""
    echo = [_result("c1", "echo", [500] * 100) for _ in range(4)]
    decide = [_result("c1", "decide", [600] * 100, seconds=1.25) for _ in range(4)]
    spans = loadgen.turn_intervals(echo, decide, resamples=200)
    assert spans == {"p50": (1.2, 1.2), "p99": (1.2, 1.2), "throughput": (0.8, 0.8)}
    assert loadgen.turn_intervals(echo[:1], decide[:1]) is None         # one turn: nothing to draw from


def test_a_turn_that_disagrees_widens_the_interval_around_the_merged_ratio():
    """Three turns at 1.0x and one whose p99 is 3x: the merged p99 ratio
    lies inside the interval, which spans from the draws without that turn
    (1.0x) to draws with it more than once; the p50, alike in every turn,
    stays one point.  Seeded: the same turns give the same interval."""
    echo = [_result("open", "echo", [500] * 100) for _ in range(4)]
    decide = [_result("open", "decide", [500] * 100) for _ in range(3)]
    decide.append(_result("open", "decide", [500] * 95 + [1_500] * 5))
    spans = loadgen.turn_intervals(echo, decide, resamples=500)
    merged_p99 = loadgen.ratios([loadgen.merged(echo), loadgen.merged(decide)])["open"]["p99"]
    lo, hi = spans["p99"]
    assert lo == 1.0 and hi == 3.0 and lo <= merged_p99 <= hi
    assert spans["p50"] == (1.0, 1.0)
    assert loadgen.turn_intervals(echo, decide, resamples=500) == spans


@pytest.mark.parametrize("span, met, clear, verdict", [
    ((1.02, 1.10), True, True, "met"),
    ((1.05, 1.30), True, False, "met, turns disagree"),
    ((1.10, 1.40), False, False, "NOT met, turns disagree"),
    ((1.20, 1.40), False, True, "NOT met"),
])
def test_a_verdict_says_whether_the_run_s_turns_agree_on_it(span, met, clear, verdict):
    """The verdict is the merged ratio's; ``clear`` says whether the turns'
    whole interval lies on its side of the goal (1.15x at most)."""
    x = 1.10 if met else 1.25
    results = [_result("c1", "echo", [1000] * 100), _result("c1", "decide", [round(1000 * x)] * 100)]
    rows = {t["target"]: t for t in loadgen.targets(results, {}, intervals={"c1": {"p50": span, "p99": span}})}
    row = rows["Decide / echo p50, one caller"]
    assert (row["met"], row["clear"], row["interval"]) == (met, clear, list(span))
    assert row["measured"] == f"{x:.2f}x ({span[0]:.2f}-{span[1]:.2f})"
    line = next(ln for ln in loadgen.targets_table([row]).splitlines() if "p50, one caller" in ln)
    assert line.rstrip().endswith("  " + verdict)
    # a throughput has its goal from below
    maxed = [_result("max", "echo", [1], requests=1000), _result("max", "decide", [1], requests=820)]
    [row] = loadgen.targets(maxed, {}, intervals={"max": {"throughput": (0.78, 0.86)}})
    assert (row["met"], row["clear"]) == (True, False)
    [row] = loadgen.targets(maxed, {})
    assert (row["interval"], row["clear"]) == (None, None)


def test_a_run_of_turns_reports_each_ratio_s_interval(four_cores, monkeypatch, tmp_path, capsys):
    _fake(monkeypatch, tmp_path)
    loadgen.main(["--phases", "c1", "--turns", "4", "--customers", "20", "--out", str(tmp_path)])
    report = _report(tmp_path)
    assert report["ratio_intervals"]["c1"] == {"p50": [1.0, 1.0], "p99": [1.0, 1.0], "throughput": [1.0, 1.0]}
    assert report["ratio_interval_coverage"] == loadgen.COVERAGE
    row = next(t for t in report["targets"] if t["target"] == "Decide / echo p50, one caller")
    assert (row["interval"], row["clear"]) == ([1.0, 1.0], True)
    assert "in brackets: the ratio's central 90%" in capsys.readouterr().out


def test_the_plot_shows_the_targets_turn_by_turn_beside_the_distributions(tmp_path):
    """A PNG with a panel per phase and, given the turns, one more: each
    judged ratio's turns, merged ratio, interval and goal (matplotlib draws
    it; the test reads the figure's axes back)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    results = [_result("c1", "echo", [500] * 100), _result("c1", "decide", [560] * 100),
               _result("max", "echo", [900] * 10, requests=4_000), _result("max", "decide", [950] * 10, requests=3_400)]
    per_turn = {"c1": {"p50": [1.1, 1.14], "p99": [1.0, float("nan")], "throughput": [1.0, 1.0]},
                "max": {"p50": [1.0, 1.0], "p99": [1.0, 1.0], "throughput": [0.8, 0.9]}}
    intervals = {"c1": {"p50": (1.1, 1.14), "p99": (1.0, 1.0)}, "max": {"throughput": (0.8, 0.9)}}
    seen = []
    real_savefig = plt.Figure.savefig

    def savefig(fig, path, **kw):
        seen.append([ax.get_title() for ax in fig.axes])
        seen.append([t.get_text() for t in fig.axes[-1].get_xticklabels()])
        legend = fig.axes[-1].get_legend()
        seen.append(sorted(t.get_text() for t in legend.get_texts()) if legend else None)
        return real_savefig(fig, path, **kw)
    plt.Figure.savefig = savefig
    try:
        loadgen.plot(results, tmp_path / "with.png", per_turn=per_turn, intervals=intervals)
        loadgen.plot(results, tmp_path / "without.png")
    finally:
        plt.Figure.savefig = real_savefig
    assert seen[0] == ["c1", "max", "the targets, turn by turn"]
    assert seen[1] == ["one caller\np50", "one caller\np99", "maximum\nthroughput"]   # no open phase: none of it
    assert seen[2] == ["90% over the turns drawn again", "a turn", "goal", "the run (merged turns)"]   # once each
    assert seen[3] == ["c1", "max"]
    for name in ("with.png", "without.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_carries_the_targets(four_cores, monkeypatch, tmp_path, capsys):
    _fake(monkeypatch, tmp_path)
    assert loadgen.main(["--phases", "c1,batch", "--out", str(tmp_path), "--duration", "1", "--warmup", "0"]) == 0
    names = [t["target"] for t in _report(tmp_path)["targets"]]
    assert "Decide / echo p50, one caller" in names and "DecideBatch decisions/s" in names
    assert "targets, this run:" in capsys.readouterr().out


def test_the_server_side_times_are_read_from_a_real_scrape():
    """maple_decide_seconds (from the request parsed) and, beside it,
    maple_request_seconds' answered Decides (from the request's bytes), as a
    server's Recorder exposes them; another RPC's times are not a Decide's."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from engine.server import metrics as m
    registry = CollectorRegistry()
    metrics = (Counter("maple_requests", "", ["rpc", "code"], registry=registry),
               Histogram("maple_request_seconds", "", ["rpc", "code"], buckets=m.FAST_BUCKETS, registry=registry),
               Histogram("maple_decide_seconds", "", buckets=m.FAST_BUCKETS, registry=registry),
               Counter("maple_decisions", "", ["decision", "rule"], registry=registry),
               Counter("maple_degraded_responses", "", registry=registry))
    recorder = m.Recorder(*metrics)
    before = generate_latest(registry).decode()
    recorder.request("Decide", "OK", 0.000140, 0.000060)    # 80 µs reading the request, 60 deciding
    recorder.request("Decide", "INVALID_ARGUMENT", 0.0009)
    recorder.request("DecideBatch", "OK", 0.0009)
    recorder.flush()
    after = generate_latest(registry).decode()
    for metric, le in ((("maple_decide_seconds", {}), 0.000075), (loadgen.READ_INCLUDED, 0.00015)):
        total = {}
        loadgen.add_buckets(total, loadgen.scrape_decide_buckets(None, before, metric),
                            loadgen.scrape_decide_buckets(None, after, metric))
        assert total[float("inf")] == 1                     # the answered Decide alone
        assert {b for b, n in total.items() if n} == {b for b in total if b >= le}


def _echo_server(echo, threads: int):
    """A started gRPC server answering /t.T/Echo with ``echo`` on a free
    loopback port: (server, port)."""
    from concurrent import futures

    import grpc
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "t.T", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_on_warm_marks_the_end_of_the_warm_up_so_the_server_side_counts_the_measured_calls():
    """run_phase calls on_warm once, when the client's warm-up is over: what
    a server counts after it is what the client-side percentiles count
    (the load generator reads maple_decide_seconds from there)."""
    served = [0]

    def echo(request, context):
        served[0] += 1
        return request
    server, port = _echo_server(echo, threads=2)
    marks = []
    try:
        result = loadgen.run_phase("c1", "echo", f"127.0.0.1:{port}", "/t.T/Echo", [b"x" * 100], mode="closed",
                                   procs=1, threads=1, rate=0, duration=0.4, warmup=0.4,
                                   on_warm=lambda: marks.append(served[0]))
    finally:
        server.stop(None)
    [at_warm] = marks                                   # once
    after = served[0] - at_warm
    assert at_warm > 0 and result.requests > 0          # calls on both sides of the mark
    assert after <= result.requests + 1                 # none of the warm-up's (one may be in flight)
    assert after >= result.requests * 0.8               # the mark is taken as the measured calls begin


def test_the_open_loop_counts_a_stall_in_full_from_each_intended_send_time():
    """A server that answers nothing until the measured window is over:
    every send the schedule intended in the window still goes out (late,
    its callers busy) and counts, and its latency runs from its intended
    time, so half of them waited at least half the window (no coordinated
    omission). Both are bounds by construction, not speeds."""
    gate = threading.Event()

    def echo(request, context):
        gate.wait(30)
        return request
    server, port = _echo_server(echo, threads=4)
    rate, duration = 200, 0.5
    release = threading.Timer(duration, gate.set)      # from the window's start: it stalls the whole window
    try:
        result = loadgen.run_phase("open", "echo", f"127.0.0.1:{port}", "/t.T/Echo", [b"x" * 100], mode="open",
                                   procs=1, threads=2, rate=rate, duration=duration, warmup=0.2,
                                   on_warm=release.start)
    finally:
        gate.set()
        release.cancel()
        server.stop(None)
    assert not result.errors
    assert abs(result.requests - rate * duration) <= 1
    assert result.pct(50) >= 0.45 * duration * 1e6


def test_the_machine_s_busy_share_is_read_over_each_turn_s_measured_window(four_cores, monkeypatch, tmp_path,
                                                                             capsys):
    """Read at the end of the warm-up (on_warm) and at the turn's end, echo
    and Decide apart: the echo's turns here find the machine 25 % idle, and
    Decide's 50 %, so the report says 75 % and 50 %."""
    _fake(monkeypatch, tmp_path)
    order = []
    real_run = loadgen.run_phase

    def run_phase(phase, name, target, method, payloads, **kw):
        order.append(name)
        return real_run(phase, name, target, method, payloads, **kw)
    monkeypatch.setattr(loadgen, "run_phase", run_phase)

    readings = {"echo": iter([(0, 0), (100, 25)] * 4),          # (total, idle) at each turn's start and end
                "decide": iter([(1000, 0), (1100, 50)] * 4)}

    def cpu_ticks():
        return next(readings[order[-1]])
    monkeypatch.setattr(loadgen, "cpu_ticks", cpu_ticks)
    assert loadgen.main(["--phases", "c1", "--out", str(tmp_path), "--duration", "1", "--warmup", "0"]) == 0
    assert _report(tmp_path)["machine_busy"] == {"c1": {"echo": 0.75, "decide": 0.5}}
    assert "c1 echo 75% decide 50%" in capsys.readouterr().out


def test_the_server_s_cpu_a_request_is_read_over_each_turn_s_measured_window(four_cores, monkeypatch, tmp_path,
                                                                               capsys):
    """The servers it started, each read at the end of a turn's warm-up and
    at its end (every thread and child: tree_cpu_seconds), over the
    requests the client counted in the turn (one, from the fake); a server
    elsewhere has no pid and is not read."""
    _fake(monkeypatch, tmp_path)
    _with_pids(monkeypatch, maple=101, echo=202)
    seconds = {101: iter([0.0, 0.000450] * 4), 202: iter([0.0, 0.000400] * 4)}     # each turn's start, end
    monkeypatch.setattr(loadgen, "tree_cpu_seconds", lambda pid: next(seconds[pid]))
    assert loadgen.main(["--phases", "c1", "--out", str(tmp_path), "--duration", "1", "--warmup", "0"]) == 0
    assert _report(tmp_path)["server_cpu_us_per_request"] == {"c1": {"echo": 400.0, "decide": 450.0}}
    assert "c1 echo 400.0 decide 450.0" in capsys.readouterr().out


def test_each_server_s_cores_busy_and_how_much_slower_decide_s_queue_drains_in_the_open_loop(
        four_cores, monkeypatch, tmp_path, capsys):
    """Each server's CPU a request times the requests a second it answered,
    over its workers: at the open loop's rate (half the echo's 4,000/s)
    400 and 560 µs a request keep a worker's core 80 % and 112 % busy with
    one worker, 40 % and 56 % with two; the echo's idle share over Decide's
    is how much slower a queue behind a stall drains."""
    _fake(monkeypatch, tmp_path)

    def run_phase(phase, name, target, method, payloads, **kw):
        if kw.get("on_warm") is not None:
            kw["on_warm"]()
        hist = loadgen._hist()
        hist.record_value(100)
        per_s = 4000.0 if phase == "max" else kw["rate"]
        return loadgen.Result(phase, name, int(per_s * kw["duration"]), kw["duration"], {}, hist, 1,
                              kw["server_workers"])
    monkeypatch.setattr(loadgen, "run_phase", run_phase)
    _with_pids(monkeypatch, maple=101, echo=202)
    per_request = {101: 560e-6, 202: 400e-6}
    clock = {101: 0.0, 202: 0.0}

    def tree_cpu_seconds(pid):          # each reading after the first: one turn's requests more
        clock[pid] += per_request[pid] * 1000       # 2,000/s for the 0.5 s of each open turn
        return clock[pid]
    monkeypatch.setattr(loadgen, "tree_cpu_seconds", tree_cpu_seconds)
    for workers, busy, drain in ((1, {"echo": 0.8, "decide": 1.12}, None), (2, {"echo": 0.4, "decide": 0.56}, 1.36)):
        for old in tmp_path.glob("loadgen-*"):
            old.unlink()
        assert loadgen.main(["--phases", "max,open", "--turns", "1", "--duration", "0.5", "--warmup", "0",
                             "--customers", "20", "--server-workers", str(workers), "--out", str(tmp_path)]) == 0
        report = _report(tmp_path)
        assert report["server_cpu_us_per_request"]["open"] == {"echo": 400.0, "decide": 560.0}
        assert report["server_core_busy"]["open"] == busy
        assert report["open_drain_ratio"] == drain
        out = capsys.readouterr().out
        assert f"open echo {busy['echo']:.0%} decide {busy['decide']:.0%}" in out
        assert ("drains that much slower" in out) is (drain is not None)


def test_a_busy_share_needs_two_readings_apart():
    assert loadgen.busy_share((100, 40), (300, 90)) == 0.75
    assert loadgen.busy_share(None, (300, 90)) is None
    assert loadgen.busy_share((100, 40), (100, 40)) is None
    total, idle = loadgen.cpu_ticks()
    assert total > idle >= 0


def test_a_server_is_measured_only_once_its_process_tree_is_quiet():
    """settle waits out a started server's own work (maple serve's compiler
    process importing after SERVING): a tree with a child spinning is
    never quiet, and the child's CPU is counted to the parent; an idle one
    is quiet at once."""
    import subprocess
    import sys

    from tests.server.conftest import until
    spin = "import sys, time\nwhile True: pass"
    busy = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time\n"
                             f"subprocess.Popen([sys.executable, '-c', {spin!r}])\ntime.sleep(300)"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        until(lambda: loadgen.children(busy.pid), "the spinning child")
        until(lambda: loadgen.tree_cpu_seconds(busy.pid) > 0.2, "the child's CPU counted to the parent")
        assert loadgen.settle(busy.pid, window=0.2, timeout=1.0) is False
        assert loadgen.settle(idle.pid, window=0.2, timeout=30.0) is True
    finally:
        for c in loadgen.children(busy.pid):
            os.kill(c, 9)
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()


def test_the_echo_floor_stands_in_for_decide_with_or_without_compact_work():
    """bench.echo_server answers DecisionService/Decide with the request's
    bytes too, so ``--target`` at it is an A/A run; with --spin-us it first
    runs sum(range(n)), n found at start (a positive count for X > 0, none
    for 0), and still echoes, with --spin-p99-us too (n drawn per call);
    the Echo method answers beside it."""
    import subprocess
    import sys

    import grpc

    from bench import echo_server
    assert echo_server.spin_size(0) == 0
    for spin_us, spread, spins in (("0", [], False), ("10", [], True), ("10", ["--spin-p99-us", "30"], True)):
        proc = subprocess.Popen([sys.executable, "-m", "bench.echo_server", "--spin-us", spin_us, *spread],
                                cwd=loadgen.ROOT, stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(proc.stdout.readline())
            assert (info["spin_n"] > 0) is spins
            assert info["spin_p99_ratio"] == (3.0 if spread else 1.0)
            with grpc.insecure_channel(info["decisions"]) as ch:
                for method in (loadgen.DECIDE, loadgen.ECHO):
                    assert ch.unary_unary(method)(b"r" * 600, timeout=30) == b"r" * 600
        finally:
            proc.terminate()
            proc.wait(30)


def test_a_spin_out_of_range_is_refused():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "bench.echo_server", "--spin-us", "-1"], cwd=loadgen.ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--spin-us -1: use 0 to 1000000 µs" in r.stderr


@pytest.mark.parametrize("argv, says", [
    (["--spin-p99-us", "50"], "--spin-p99-us 50: use --spin-us (0) to 1000000 µs, with --spin-us above 0"),
    (["--spin-us", "30", "--spin-p99-us", "20"], "--spin-p99-us 20: use --spin-us (30) to 1000000 µs"),
])
def test_a_spread_without_a_median_or_below_it_is_refused(argv, says):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "bench.echo_server", *argv], cwd=loadgen.ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and says in r.stderr


def test_a_varied_spin_has_the_median_and_p99_asked_for_and_repeats_with_its_seed():
    """--spin-p99-us: each call's n from a log-normal of median n and p99
    n x ratio; a ratio of 1 (or no spin) is the same n every call."""
    from bench import echo_server
    draw = echo_server.spin_draw(1000, 10 / 3, seed=7)
    ns = sorted(draw() for _ in range(40_000))
    assert 960 <= ns[len(ns) // 2] <= 1040
    assert 3150 <= ns[int(len(ns) * 0.99)] <= 3520
    again = echo_server.spin_draw(1000, 10 / 3, seed=7)
    assert sorted(again() for _ in range(40_000)) == ns
    assert {echo_server.spin_draw(1000, 1.0)() for _ in range(50)} == {1000}
    assert echo_server.spin_draw(0, 5.0)() == 0
