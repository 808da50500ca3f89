"""Command-line clients of the admin service: ``maple rollback``, and the
live version's sources for ``maple replay --against-server``.

    maple rollback [--admin HOST:PORT] [--to VERSION] [--expect VERSION] [--token T]

The admin address defaults to ``MAPLE_ADMIN`` or 127.0.0.1:50052 (the
server's default ``--admin-listen``); the token to ``MAPLE_ADMIN_TOKEN``.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

DEFAULT_ADMIN = "127.0.0.1:50052"


def admin_address(given: str | None) -> str:
    return given or os.environ.get("MAPLE_ADMIN") or DEFAULT_ADMIN


def _metadata(token: str | None):
    token = token or os.environ.get("MAPLE_ADMIN_TOKEN")
    return [("authorization", f"Bearer {token}")] if token else None


class AdminError(Exception):
    """An admin call failed; the message says why, for a person."""


def _call(address: str, token: str | None, method: str, request, timeout: float = 60.0):
    import grpc
    from .pb.maple.v1 import admin_pb2_grpc
    with grpc.insecure_channel(address) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        try:
            return getattr(stub, method)(request, timeout=timeout, metadata=_metadata(token))
        except grpc.RpcError as err:
            code = err.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise AdminError(f"cannot reach the admin service at {address} ({err.details()})") from None
            raise AdminError(f"{code.name}: {err.details()}") from None


def fetch_sources(address: str, token: str | None = None, version: str | None = None) -> tuple[str, dict]:
    """The live version of a running server (or one it keeps): (version,
    {relative path: text})."""
    from .pb.maple.v1 import admin_pb2 as apb
    resp = _call(address, token, "GetRulesetSources", apb.GetRulesetSourcesRequest(version=version or ""))
    return resp.version, {s.path: s.text for s in resp.sources}


def load_server_version(address: str, token: str | None = None):
    """A Ruleset built from a running server's live sources, written to a
    temporary directory (so the version is computed exactly as the server
    did)."""
    from ..ruleset import load
    version, files = fetch_sources(address, token)
    root = Path(tempfile.mkdtemp(prefix="maple-live-"))
    for rel, text in files.items():
        path = (root / rel).resolve()
        if root.resolve() not in path.parents:
            raise AdminError(f"the server sent a file outside the pack: {rel!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    rs = load(root)
    if rs.version != version:
        print(f"maple: warning: the server's version is {version}, rebuilt here as {rs.version}", file=sys.stderr)
    return rs


# ---------------------------------------------------------------- maple rollback
def cmd_rollback(args) -> int:
    from .pb.maple.v1 import admin_pb2 as apb
    address = admin_address(args.admin)
    try:
        resp = _call(address, args.token, "RollbackRules",
                     apb.RollbackRulesRequest(to_version=args.to or "", expected_version=args.expect or ""))
    except AdminError as err:
        print(f"maple rollback: {err}", file=sys.stderr)
        return 1
    info = resp.ruleset
    if args.format == "json":
        print(json.dumps({"previous_version": resp.previous_version, "version": info.version,
                          "changed": resp.changed, "workers": [w.version for w in info.workers]}))
    elif resp.changed:
        print(f"rolled back {resp.previous_version} -> {info.version}; it stays live until {info.rules_dir} "
              f"changes again (or ReloadRules)")
    else:
        print(f"{info.version} is already live")
    return 0


def add_commands(sub) -> None:
    c = sub.add_parser("rollback", help="return a running server to its previous ruleset version",
                       description="Ask a running `maple serve` (its admin service) to serve the version "
                                   "that was live before the current one, or --to VERSION (any version kept "
                                   "in its --state directory; a unique prefix will do). One step, every "
                                   "worker. The version stays live until the rules directory changes again "
                                   "(the watcher then loads it) or until ReloadRules.")
    c.add_argument("--admin", metavar="HOST:PORT", help=f"admin address (default: $MAPLE_ADMIN or {DEFAULT_ADMIN})")
    c.add_argument("--to", metavar="VERSION", help="the version to return to (default: the previous one)")
    c.add_argument("--expect", metavar="VERSION", help="only if this version is live now (else ABORTED)")
    c.add_argument("--token", help="admin bearer token (default: $MAPLE_ADMIN_TOKEN)")
    c.add_argument("--format", choices=["text", "json"], default="text")
    c.set_defaults(func=cmd_rollback)
