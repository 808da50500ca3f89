"""Every ruleset version the server loaded, kept on disk for rollback.

Layout under the state directory (``--state``, default ``.maple/state``)::

    versions/<hash>/files/...      the version's .rules sources, as loaded
    versions/<hash>/meta.json      version, loaded at, counts, file list
    history.jsonl                  one line per change: loaded, rolled back, rejected

A version is written once (versions are content hashes, so the same sources
are the same directory) and atomically: files go to a temporary directory
renamed into place.  ``current()`` is the last version the history says was
made live; ``previous()`` the one before it, which ``maple rollback`` returns
to.  A restart whose rules directory is unreadable or broken starts from
``current()``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .source import SourceFile


@dataclass(frozen=True)
class VersionInfo:
    version: str
    loaded_at: float
    counts: dict
    files: tuple[str, ...]
    origin: str               # where the sources came from: a directory, "rollback", "admin"
    paths: tuple[str, ...] = ()   # the files' paths when first loaded (rules/homepage.rules), as rules name them


class VersionStore:
    def __init__(self, state_dir: str | os.PathLike):
        self.root = Path(state_dir)
        self.versions = self.root / "versions"
        self.history_path = self.root / "history.jsonl"
        self._lock = threading.Lock()
        self.versions.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- writing
    def save(self, ruleset, origin: str, **extra) -> VersionInfo:
        """Keep a ruleset's sources (idempotent) and record it as live;
        ``extra`` fields go into the history line (e.g. the trigger)."""
        info = self.keep(ruleset, origin)
        with self._lock:
            self._append({"event": "live", "version": info.version, "origin": origin, "at": time.time(), **extra})
        return info

    def keep(self, ruleset, origin: str) -> VersionInfo:
        """Write a version's directory unless it is there (no history line).
        Live reload calls it in the compiler process, so the serving process
        only appends to the history."""
        info = VersionInfo(ruleset.version, ruleset.loaded_at, dict(ruleset.counts),
                           tuple(relative_names(ruleset.sources)), origin, tuple(s.path for s in ruleset.sources))
        target = self.versions / info.version
        with self._lock:
            if not (target / "meta.json").exists():
                tmp = Path(tempfile.mkdtemp(prefix=f".{info.version}-", dir=self.versions))
                for name, src in zip(info.files, ruleset.sources):
                    path = tmp / "files" / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(src.text, encoding="utf-8")
                (tmp / "meta.json").write_text(json.dumps(info.__dict__, indent=1))
                _fsync_tree(tmp)
                if target.exists():         # a half-written leftover from a crash
                    shutil.rmtree(target)
                try:
                    os.replace(tmp, target)
                except OSError:             # another process kept the same version meanwhile
                    shutil.rmtree(tmp, ignore_errors=True)
                    if not (target / "meta.json").exists():
                        raise
        return info

    def record_rejected(self, diagnostics: list[str], origin: str) -> None:
        with self._lock:
            self._append({"event": "rejected", "origin": origin, "at": time.time(), "errors": diagnostics[:20]})

    def _append(self, entry: dict) -> None:
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # ---------------------------------------------------------------- reading
    def history(self) -> list[dict]:
        if not self.history_path.exists():
            return []
        out = []
        for line in self.history_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:    # a torn last line after a crash
                continue
        return out

    def live_sequence(self) -> list[str]:
        """The versions made live, oldest first (repeats collapsed)."""
        seq: list[str] = []
        for e in self.history():
            if e.get("event") == "live" and (not seq or seq[-1] != e["version"]):
                seq.append(e["version"])
        return seq

    def last_live(self) -> dict | None:
        """The history line of the version made live last (with its extras)."""
        for e in reversed(self.history()):
            if e.get("event") == "live":
                return e
        return None

    def current(self) -> str | None:
        seq = self.live_sequence()
        return seq[-1] if seq else None

    def previous(self, before: str | None = None) -> str | None:
        """The version live before ``before`` (default: the current one)."""
        seq = self.live_sequence()
        before = before or (seq[-1] if seq else None)
        for i in range(len(seq) - 1, 0, -1):
            if seq[i] == before:
                for v in reversed(seq[:i]):
                    if v != before:
                        return v
        return None

    def info(self, version: str) -> VersionInfo:
        meta = json.loads((self.versions / version / "meta.json").read_text())
        return VersionInfo(meta["version"], meta["loaded_at"], meta["counts"], tuple(meta["files"]),
                           meta.get("origin", ""), tuple(meta.get("paths", ())))

    def list(self) -> list[VersionInfo]:
        out = []
        for d in sorted(self.versions.iterdir()):
            if (d / "meta.json").exists():
                out.append(self.info(d.name))
        return sorted(out, key=lambda v: v.loaded_at)

    def sources(self, version: str) -> list[SourceFile]:
        """The version's sources, named by the paths they had when it was
        first loaded (``rules/stores.rules``), so a rolled-back ruleset's
        rule locations read as before the rollback; versions kept before
        the paths were recorded are named by their copies here."""
        base = self.versions / version / "files"
        if not base.is_dir():
            raise KeyError(f"version {version} is not in {self.versions}")
        try:
            info = self.info(version)
            original = dict(zip(info.files, info.paths)) if len(info.paths) == len(info.files) else {}
        except (OSError, ValueError, KeyError):
            original = {}
        return [SourceFile(original.get(p.relative_to(base).as_posix(), str(p)), p.read_text(encoding="utf-8"))
                for p in sorted(base.rglob("*.rules"))]

    def resolve(self, prefix: str) -> str:
        """A full version from a unique prefix (as people type them)."""
        matches = [d.name for d in self.versions.iterdir() if d.name.startswith(prefix) and (d / "meta.json").exists()]
        if len(matches) != 1:
            raise KeyError(f"no version starts with {prefix!r}" if not matches else
                           f"{prefix!r} matches several versions: {', '.join(sorted(matches))}")
        return matches[0]


def relative_names(sources) -> list[str]:
    paths = [s.path for s in sources]
    base = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0]) if paths else ""
    return [os.path.relpath(p, base) if base else os.path.basename(p) for p in paths]


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
