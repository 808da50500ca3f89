"""bench.batch_size runs end to end, this checkout against a base in the
same rounds (here the checkout itself: its child must run the engine it
was pointed at, and the report holds both)."""
import json
from pathlib import Path

import pytest

from bench import batch_size

ROOT = Path(__file__).resolve().parents[1]


def test_batch_sizes_are_measured_beside_the_single_decide_and_a_base(tmp_path, capsys):
    out = tmp_path / "batch_size.json"
    assert batch_size.main(["--customers", "120", "--sizes", "10,60", "--rounds", "2", "--base-dir", str(ROOT),
                            "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    for side in ("this", "base"):
        assert set(r[side]) == {"inline", "by id"}
        for by_size in r[side].values():
            assert set(by_size) == {"single", "10", "60"} and all(v > 0 for v in by_size.values())
    assert "this ÷ base" in capsys.readouterr().out


def test_a_child_running_another_engine_than_asked_is_refused(tmp_path):
    (tmp_path / "engine").mkdir()       # no __init__.py: Python goes on to this checkout's engine package
    with pytest.raises(SystemExit, match="not the engine in"):
        batch_size.child_round(tmp_path, 10, [5])


def test_sizes_past_decidebatch_s_limit_are_refused():
    with pytest.raises(SystemExit):
        batch_size.main(["--sizes", "100,1001"])
