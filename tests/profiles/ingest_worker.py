"""A writer for the kill -9 tests: applies batches of 100 purchases to a
profile store forever, printing ``READY <the store's health detail>``
and then ``ACK <event ids>`` after each batch is acknowledged.  Usage: python ingest_worker.py STORE_URL RUN_ID"""
from __future__ import annotations

import itertools
import sys
import time

from engine.profiles import open_store


def batch(run: str, b: int, now: float) -> list[dict]:
    return [{"event_id": f"{run}-{b}-{i}", "type": "purchase", "channel": "web", "timestamp": now,
             "customer_id": f"K{i}", "items": [{"sku": f"{run}-{b}-{i}", "category": "c", "price": 1.0}]}
            for i in range(100)]


def main(url: str, run: str) -> None:
    with open_store(url) as store:
        print("READY", store.health().detail, flush=True)
        for b in itertools.count():
            result = store.apply(batch(run, b, time.time()))
            assert not result.errors, result.errors
            print("ACK", " ".join(result.acknowledged), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
