"""The rules watcher: rule edits poke the manager, data edits go to the data
listeners, Maple's own files are ignored.  Waits are on events, with a
deadline."""
from __future__ import annotations

import threading

import pytest

from engine.server.watch import PackWatcher, _changed_text

DEADLINE = 30


class Pokes:
    """Counts on_rules_change calls; wait(n) until there were n."""

    def __init__(self):
        self.n = 0
        self.cond = threading.Condition()

    def __call__(self):
        with self.cond:
            self.n += 1
            self.cond.notify_all()

    def wait(self, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.n >= n, DEADLINE)


@pytest.mark.parametrize("mode", ["on", "poll"])
def test_rule_edits_poke_the_manager_and_data_edits_go_to_listeners(tmp_path, mode):
    root = tmp_path / "rules"
    (root / "data").mkdir(parents=True)
    (root / "a.rules").write_text("const a = 1\n")
    pokes, data, got_data = Pokes(), [], threading.Event()
    w = PackWatcher(str(root), pokes, mode=mode, debounce_ms=50, ignore_paths=[root / "log.jsonl"])
    w.on_data_change(lambda paths: (data.append(paths), got_data.set()))
    w.start()
    try:
        assert w.ready.wait(DEADLINE) and pokes.wait(1)          # the catch-up poke once watching
        (root / "data" / "inventory.csv").write_text("sku,store,qty\n")
        assert got_data.wait(DEADLINE)
        assert str((root / "data" / "inventory.csv").resolve()) in data[0]   # (polling adds the folder)
        before = pokes.n
        (root / ".maple").mkdir()
        (root / ".maple" / "history.jsonl").write_text("{}\n")     # Maple's own state: ignored
        (root / "log.jsonl").write_text("{}\n")                    # the decision log: ignored
        (root / "a.rules").write_text("const a = 2\n")
        assert pokes.wait(before + 1)
    finally:
        w.stop()


def test_off_watches_nothing(tmp_path):
    w = PackWatcher(str(tmp_path), Pokes(), mode="off")
    w.start()
    assert not w.ready.is_set()
    w.stop()
    with pytest.raises(ValueError):
        PackWatcher(str(tmp_path), Pokes(), mode="sometimes")


def test_a_directory_swapped_behind_a_symlink_is_watched_again(tmp_path):
    """Deploys that switch a symlink to a new directory (as Kubernetes does
    for mounted ConfigMaps) still reload."""
    for v in ("v1", "v2"):
        (tmp_path / v).mkdir()
        (tmp_path / v / "a.rules").write_text(f"const a = \"{v}\"\n")
    link = tmp_path / "rules"
    link.symlink_to(tmp_path / "v1")
    pokes = Pokes()
    w = PackWatcher(str(link), pokes, mode="on", debounce_ms=50)
    w.start()
    try:
        assert w.ready.wait(DEADLINE) and pokes.wait(1)
        tmp = tmp_path / "rules.new"
        tmp.symlink_to(tmp_path / "v2")
        tmp.replace(link)                                           # atomic switch
        assert pokes.wait(2)                                        # noticed, and the new one read
        before = pokes.n
        (tmp_path / "v2" / "a.rules").write_text("const a = 3\n")    # edits in the new directory count
        assert pokes.wait(before + 1)
    finally:
        w.stop()


@pytest.mark.parametrize("mode", ["on", "poll"])
def test_a_data_directory_outside_the_rules_is_watched_too(tmp_path, mode):
    """maple serve --data DIR with DIR elsewhere: its edits reach the data
    listeners; rule edits still poke the manager."""
    root, data_dir = tmp_path / "rules", tmp_path / "store-data"
    root.mkdir()
    data_dir.mkdir()
    (root / "a.rules").write_text("const a = 1\n")
    pokes, data, got_data = Pokes(), [], threading.Event()
    w = PackWatcher(str(root), pokes, data_dir=str(data_dir), mode=mode, debounce_ms=50)
    w.on_data_change(lambda paths: (data.append(paths), got_data.set()))
    w.start()
    try:
        assert w.ready.wait(DEADLINE) and pokes.wait(1)
        (data_dir / "stores.csv").write_text("id,name\n")
        assert got_data.wait(DEADLINE)
        assert any(str((data_dir / "stores.csv").resolve()) in paths for paths in data)
        before = pokes.n
        (root / "a.rules").write_text("const a = 2\n")
        assert pokes.wait(before + 1)
    finally:
        w.stop()


def test_the_log_names_the_pack_files_changed_and_counts_temporary_ones(tmp_path):
    """``sed -i`` writes a temporary copy beside the file and renames it over
    it: the watcher sees both; the log names the rule file (and any file
    still there) and counts the copy that came and went."""
    (tmp_path / "homepage.rules").write_text("")
    (tmp_path / "notes.txt").write_text("")
    gone = [str(tmp_path / "sedYkzhMN"), str(tmp_path / "tests" / "old.yaml")]
    changed = {str(tmp_path / "homepage.rules"), str(tmp_path / "notes.txt"), gone[0]}
    assert _changed_text(changed, tmp_path) == "homepage.rules, notes.txt; 1 temporary file that came and went"
    assert _changed_text({gone[1]}, tmp_path) == "tests/old.yaml"              # a deleted rule test is named
    assert _changed_text({gone[0], gone[0] + "2"}, tmp_path) == "2 temporary files that came and went"
    many = {str(tmp_path / f"r{i:02}.rules") for i in range(12)}
    assert _changed_text(many, tmp_path) == ", ".join(f"r{i:02}.rules" for i in range(10)) + " and 2 more"

