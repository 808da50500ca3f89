"""The SQLite store's WAL writes, one system call per commit (see
``_walbuf.pyx`` for what the VFS does and why it is safe).

:func:`vfs` registers the VFS in the SQLite library Python's ``sqlite3``
module uses and returns its name for ``sqlite3.connect("file:...?vfs=NAME",
uri=True)``, or None when it cannot be used -- the module was not built,
the library is not a shared object this process has loaded (a Python with
SQLite linked in statically), or ``MAPLE_SQLITE_WALBUF=0`` -- and the store
then opens its file with the default VFS, as before.  Nothing else changes
either way: the file format, the locking and the durability are SQLite's.
"""
from __future__ import annotations

import functools
import os
import sqlite3
from urllib.parse import quote

BUFFER_KIB = 4096            # per WAL file that is written to: a commit of ~1,000 pages fits


def _loaded_sqlite() -> str | None:
    """The path of the one libsqlite3 mapped into this process (the one
    ``_sqlite3`` links), or None (none, several, or no /proc)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[5].strip() for line in maps if "libsqlite3" in line
                     and len(line.split(None, 5)) == 6}
    except OSError:
        return None
    return paths.pop() if len(paths) == 1 else None


@functools.lru_cache(maxsize=1)
def vfs() -> str | None:
    """The VFS's name once registered and seen by ``sqlite3``; else None."""
    if os.environ.get("MAPLE_SQLITE_WALBUF", "1") == "0":
        return None
    try:
        from . import _walbuf
    except ImportError:
        return None
    lib = _loaded_sqlite()
    if lib is None:
        return None
    try:
        name = _walbuf.register(lib, BUFFER_KIB)
        sqlite3.connect(f"file::memory:?vfs={name}", uri=True).close()   # the same library as sqlite3's?
    except (OSError, sqlite3.Error):
        return None
    return name


def uri(path: str, vfs_name: str) -> str:
    """``sqlite3.connect(uri(path, name), uri=True)`` opens ``path`` (as a
    plain ``connect(path)`` would: relative to the working directory) with
    that VFS."""
    return f"file:{quote(path)}?vfs={vfs_name}"


def stats() -> dict:
    """The VFS's counters (:func:`._walbuf.stats`), or {} without it."""
    if vfs() is None:
        return {}
    from . import _walbuf
    return _walbuf.stats()


__all__ = ["vfs", "uri", "stats", "BUFFER_KIB"]
