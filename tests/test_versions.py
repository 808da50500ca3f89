"""The version store: every live version kept, rollback one step back."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine import ruleset
from engine.versions import VersionStore

RULES = Path(__file__).resolve().parents[1] / "rules"


@pytest.fixture
def two_versions(tmp_path):
    new = tmp_path / "new"
    shutil.copytree(RULES, new)
    (new / "extra.rules").write_text('decision banner: string default "none"\n')
    return ruleset.load(RULES), ruleset.load(new)


def test_versions_are_kept_and_the_previous_one_is_known(tmp_path, two_versions):
    a, b = two_versions
    store = VersionStore(tmp_path / "state")
    store.save(a, "rules/")
    store.save(b, "rules/")
    assert store.current() == b.version
    assert store.previous() == a.version
    assert {v.version for v in store.list()} == {a.version, b.version}


def test_stored_sources_rebuild_the_same_version(tmp_path, two_versions):
    a, _ = two_versions
    store = VersionStore(tmp_path / "state")
    store.save(a, "rules/")
    again = ruleset.build(store.sources(a.version))
    assert again.version == a.version
    assert again.counts == a.counts


def test_a_kept_version_names_its_sources_as_they_were_loaded(tmp_path, two_versions):
    """A rolled-back ruleset's rule locations read as before the rollback
    (rules/stores.rules:22:6), not as the state directory's copies; a
    version kept before the paths were recorded keeps the copies' names."""
    import json
    a, _ = two_versions
    store = VersionStore(tmp_path / "state")
    store.save(a, "rules/")
    back = store.sources(a.version)
    assert [s.path for s in back] == sorted(s.path for s in a.sources)
    assert {s.path: s.text for s in back} == {s.path: s.text for s in a.sources}
    meta = store.versions / a.version / "meta.json"
    old = json.loads(meta.read_text())
    del old["paths"]
    meta.write_text(json.dumps(old))
    assert all(str(store.versions) in s.path for s in store.sources(a.version))


def test_saving_the_same_version_twice_keeps_one_copy(tmp_path, two_versions):
    a, b = two_versions
    store = VersionStore(tmp_path / "state")
    for rs in (a, b, a):
        store.save(rs, "rules/")
    assert len(store.list()) == 2
    assert store.live_sequence() == [a.version, b.version, a.version]
    assert store.previous() == b.version


def test_a_torn_history_line_is_ignored(tmp_path, two_versions):
    a, _ = two_versions
    store = VersionStore(tmp_path / "state")
    store.save(a, "rules/")
    with open(store.history_path, "a") as f:
        f.write('{"event": "live", "vers')          # the process died mid-write
    assert store.current() == a.version


def test_prefixes_resolve(tmp_path, two_versions):
    a, _ = two_versions
    store = VersionStore(tmp_path / "state")
    store.save(a, "rules/")
    assert store.resolve(a.version[:6]) == a.version
    with pytest.raises(KeyError):
        store.resolve("zzzz")
