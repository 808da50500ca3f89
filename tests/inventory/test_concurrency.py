"""Readers never see half a batch or half a reload.

The first two tests are deterministic: the writer is parked half way through
its work (a patched step blocks on an Event), the reader asks in that exact
moment, then the writer is released.  No sleeps, no timing: the Event waits
have generous timeouts only so a broken build fails instead of hanging.
"""
from __future__ import annotations

import random
import threading

from engine.inventory import StockUpdate, availability

from .conftest import write_data

RIVERSIDE = (51.5, -0.1)
PARK = 30  # seconds: a safety net against hangs, never reached when things work


def quantities(inv):
    return {a.store_id: a.quantity for a in inv.nearby(*RIVERSIDE, "RUN-001", "42", radius_km=5)}


class Parked:
    """Wraps a function so its n-th call parks until released."""

    def __init__(self, real, at_call: int):
        self.real, self.at_call, self.calls = real, at_call, 0
        self.midway, self.release = threading.Event(), threading.Event()

    def __call__(self, *args):
        out = self.real(*args)
        self.calls += 1
        if self.calls == self.at_call:
            self.midway.set()
            assert self.release.wait(PARK)
        return out


def run(target) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(target()))
    t.start()
    return t, out


def test_a_reader_in_the_middle_of_a_batch_sees_none_of_it(small, monkeypatch):
    before, version = quantities(small), small.version
    assert before == {"s001": 1, "s003": 4, "s004": 2}
    parked = Parked(availability._apply_one, at_call=2)
    monkeypatch.setattr(availability, "_apply_one", parked)
    batch = [StockUpdate(s, "RUN-001", "42", quantity=20) for s in ("s001", "s002", "s003", "s004")]
    writer, result = run(lambda: small.apply(batch))
    try:
        assert parked.midway.wait(PARK)        # two of the four updates are applied ... privately
        assert quantities(small) == before and small.version == version
        assert small.quantity("s001", "RUN-001", "42") == 1
    finally:
        parked.release.set()
        writer.join(PARK)
    assert result[0].applied == 4
    assert quantities(small) == {"s001": 20, "s002": 20, "s003": 20, "s004": 20}
    assert small.version == version + 1


def test_a_reader_in_the_middle_of_a_reload_sees_the_old_data(small, tmp_path, monkeypatch):
    new_dir = tmp_path / "next"
    new_dir.mkdir()
    write_data(new_dir, inventory="store,sku,size,quantity\ns002,RUN-001,42,6\n")
    parked = Parked(availability.GeoIndex.of_stores, at_call=1)
    monkeypatch.setattr(availability.GeoIndex, "of_stores", parked)
    writer, _ = run(lambda: small.reload(new_dir))
    try:
        assert parked.midway.wait(PARK)        # the new files are loaded, the new index being built
        assert quantities(small) == {"s001": 1, "s003": 4, "s004": 2}
    finally:
        parked.release.set()
        writer.join(PARK)
    assert quantities(small) == {"s002": 6}


def test_transfers_keep_the_total_for_every_reader(small):
    """Every batch moves stock between two stores, so any one answer sums to
    the same total.  Not a proof (the deterministic tests above are): it
    cannot fail spuriously, and it can catch a torn read if one exists."""
    small.apply([StockUpdate("s001", "RUN-001", "42", quantity=50),
                 StockUpdate("s003", "RUN-001", "42", quantity=50)])
    done, sums = threading.Event(), set()

    def reader():
        while True:
            q = quantities(small)
            sums.add(q.get("s001", 0) + q.get("s003", 0))
            if done.is_set():
                return

    def writer():
        rng = random.Random(5)
        for _ in range(2000):
            a = rng.randint(0, 100)
            small.apply([StockUpdate("s001", "RUN-001", "42", quantity=a),
                         StockUpdate("s003", "RUN-001", "42", quantity=100 - a)])
        done.set()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PARK)
    assert sums == {100}
