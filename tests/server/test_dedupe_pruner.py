"""maple serve's decision process prunes the SQLite store's old event ids
(engine.service.retention) from start to drain."""
from __future__ import annotations

from pathlib import Path

from engine.server.app import DecisionNode
from engine.server.config import ServeConfig
from engine.service.retention import DedupePruner

RULES = Path(__file__).resolve().parents[2] / "rules"


def node_for(store: str) -> DecisionNode:
    cfg = ServeConfig(rules=str(RULES), listen="127.0.0.1:0", admin_listen="off", workers=1, store=store,
                      state="off", watch="off", drain_seconds=0)
    node = DecisionNode(cfg, metrics=False, report_data=False)
    node.listen(cfg.listen)
    return node


def test_a_sqlite_store_is_pruned_from_start_to_drain(tmp_path):
    node = node_for(f"sqlite://{tmp_path / 'p.db'}")
    assert node.pruner is None                   # nothing runs before start
    node.start()
    pruner = node.pruner
    assert isinstance(pruner, DedupePruner) and pruner.store is node.profiles.store
    assert pruner._thread.is_alive()
    node.drain(0, 1)
    assert not pruner._thread.is_alive() and pruner.passes == 0     # its first pass was minutes away


def test_no_pruner_without_a_store_that_keeps_rows(tmp_path):
    node = node_for("")
    node.start()
    assert node.pruner is None
    node.drain(0, 1)
