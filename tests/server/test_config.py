"""``maple serve`` settings: a value the server cannot use is refused before
anything starts, naming the flag or variable, with exit 2 (as argparse)."""
from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys

import pytest

from engine.server.config import ConfigError, ServeConfig, from_args, parse_address, parse_host

from .conftest import ROOT


def config(environ=None, **flags) -> ServeConfig:
    return from_args(argparse.Namespace(rules="rules", **flags), environ=environ or {})


@pytest.mark.parametrize("address, host, port", [
    ("0.0.0.0:50051", "0.0.0.0", 50051),
    ("127.0.0.1:0", "127.0.0.1", 0),
    ("localhost:65535", "localhost", 65535),
    ("[::1]:50051", "[::1]", 50051),
    ("[::]:0", "[::]", 0),
])
def test_good_addresses(address, host, port):
    assert parse_address(address) == (host, port)
    assert config(listen=address, admin_listen=address).listen == address


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1:70000", "the port 70000 is not from 0 to 65535"),     # not 70000 mod 65536
    ("127.0.0.1:65536", "not from 0 to 65535"),
    ("127.0.0.1", "the port is missing"),                              # not 443
    ("127.0.0.1:", "is not a number"),
    ("127.0.0.1:-1", "is not a number"),
    ("127.0.0.1:http", "is not a number"),
    (":50051", "the host is missing"),
    ("::1:50051", "an IPv6 address goes in brackets"),
    ("[::1:50051", "closing bracket"),
    ("[::1]", "the port is missing"),
    ("[nope]:1", "is not an IPv6 address"),
])
@pytest.mark.parametrize("field, flag", [("listen", "--listen"), ("admin_listen", "--admin-listen")])
def test_bad_addresses_name_the_flag(address, why, field, flag):
    with pytest.raises(ConfigError, match=f"^maple serve: {flag} '{re.escape(address)}': .*{re.escape(why)}") as err:
        config(**{field: address})
    assert err.value.exit_code == 2


def test_a_bad_address_in_a_variable_names_the_variable():
    with pytest.raises(ConfigError, match=r"MAPLE_ADMIN_LISTEN='127.0.0.1:99999': the port 99999"):
        config(environ={"MAPLE_ADMIN_LISTEN": "127.0.0.1:99999"})
    with pytest.raises(ConfigError, match=r"MAPLE_LISTEN='127.0.0.1': the port is missing"):
        config(environ={"MAPLE_LISTEN": "127.0.0.1"})


def test_admin_off_is_allowed_and_listen_off_is_not():
    assert config(admin_listen="off").admin_listen == "off"
    assert config(environ={"MAPLE_ADMIN_LISTEN": "off"}).admin_listen == "off"
    with pytest.raises(ConfigError, match="--listen 'off'"):
        config(listen="off")


@pytest.mark.parametrize("host, bound", [
    ("0.0.0.0", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("localhost", "localhost"),
    ("metrics.internal.example", "metrics.internal.example"),
    ("::", "::"), ("[::]", "::"), ("::1", "::1"), ("[::1]", "::1"),     # brackets optional: a host alone
])
def test_good_metrics_hosts(host, bound):
    assert parse_host(host) == bound
    assert config(metrics_host=host, metrics_port=0).metrics_host == bound
    assert config(environ={"MAPLE_METRICS_HOST": host}).metrics_host == bound


@pytest.mark.parametrize("host, why", [
    ("", "the host is missing"),
    (" ", "the host is missing"),
    ("0.0.0.0:9464", "give the host alone: the port is --metrics-port"),
    ("[::1]:9464", "give the host alone: the port is --metrics-port"),
    ("my host", "not a host name or address"),
    ("http://0.0.0.0", "not a host name or address"),
    ("[nope]", "nope is not an IPv6 address"),
])
def test_a_bad_metrics_host_is_refused_at_start_naming_the_flag_or_variable(host, why):
    """It was first seen when the metrics server bound (exit 1, "Name or
    service not known"), after the store data and the profile store were opened."""
    with pytest.raises(ConfigError, match=f"^maple serve: --metrics-host '{re.escape(host)}': {re.escape(why)}") as err:
        config(metrics_host=host, metrics_port=0)
    assert err.value.exit_code == 2
    with pytest.raises(ConfigError, match=f"^maple serve: MAPLE_METRICS_HOST='{re.escape(host)}': {re.escape(why)}"):
        config(environ={"MAPLE_METRICS_HOST": host})


@pytest.mark.parametrize("flags, message", [
    ({"metrics_port": 70000}, "--metrics-port 70000: the port must be from 0 to 65535"),
    ({"metrics_port": -5}, "--metrics-port -5: the port must be from 0 to 65535"),
    ({"threads": 0}, "--threads 0: must be 1 or more"),
    ({"workers": -1}, "--workers -1: use 1 or more, or 0 for one per core"),
    ({"max_concurrent_rpcs": 0}, "--max-concurrent-rpcs 0: must be 1 or more"),
    ({"max_message_bytes": 0}, "--max-message-bytes 0: must be at least 1024"),
    ({"drain_seconds": -1.0}, "--drain-seconds -1.0: must be a number of seconds >= 0"),
    ({"grace_seconds": -0.5}, "--grace-seconds -0.5: must be a number of seconds >= 0"),
    ({"grace_seconds": float("nan")}, "--grace-seconds nan: must be"),
    ({"watch_debounce_ms": -1}, "--watch-debounce-ms -1: must be >= 0"),
    ({"decision_log_rate": 2.0}, "--decision-log-rate 2.0: must be from 0 to 1"),
    ({"log_level": "LOUD"}, "--log-level 'LOUD': use one of DEBUG, INFO, WARNING, ERROR"),
    ({"watch": "sometimes"}, "--watch 'sometimes': use one of on, poll, off"),
    ({"profile_cache_feed": "yes"}, "--profile-cache-feed 'yes': use one of on, off"),
    ({"profile_cache_mib": 0.5}, "--profile-cache-mib 0.5: must be a number of MiB >= 1"),
    ({"profile_cache_mib": float("inf")}, "--profile-cache-mib inf: must be a number of MiB >= 1"),
])
def test_bad_values_are_refused_naming_the_flag(flags, message):
    with pytest.raises(ConfigError, match="^maple serve: " + re.escape(message)):
        config(**flags)


@pytest.mark.parametrize("variable, raw, message", [
    ("MAPLE_METRICS_PORT", "70000", "MAPLE_METRICS_PORT=70000: the port must be"),
    ("MAPLE_THREADS", "0", "MAPLE_THREADS=0: must be 1 or more"),
    ("MAPLE_THREADS", "many", "MAPLE_THREADS='many' is not a whole number"),
    ("MAPLE_WORKERS", "-1", "MAPLE_WORKERS=-1: use 1 or more"),
    ("MAPLE_LOG_LEVEL", "LOUD", "MAPLE_LOG_LEVEL='LOUD': use one of"),
    ("MAPLE_MAX_CONCURRENT_RPCS", "0", "MAPLE_MAX_CONCURRENT_RPCS=0: must be 1 or more"),
    ("MAPLE_MAX_MESSAGE_BYTES", "0", "MAPLE_MAX_MESSAGE_BYTES=0: must be at least 1024"),
    ("MAPLE_DRAIN_SECONDS", "-1", "MAPLE_DRAIN_SECONDS=-1.0: must be"),
    ("MAPLE_GRACE_SECONDS", "-1", "MAPLE_GRACE_SECONDS=-1.0: must be"),
    ("MAPLE_PROFILE_CACHE_MIB", "0", "MAPLE_PROFILE_CACHE_MIB=0.0: must be a number of MiB >= 1"),
])
def test_bad_values_in_variables_name_the_variable(variable, raw, message):
    with pytest.raises(ConfigError, match="^maple serve: " + re.escape(message)):
        config(environ={variable: raw})


@pytest.mark.parametrize("feed, follows", [("on", True), ("off", False)])
def test_a_sqlite_store_s_cache_follows_its_change_feed_unless_told_not_to(tmp_path, feed, follows, caplog):
    from engine.server.app import open_store_or_exit
    cfg = config(store=f"sqlite://{tmp_path / 'profiles.db'}", profile_cache_feed=feed)
    assert config(store="sqlite://x.db").profile_cache_feed == "on"                # the default
    with caplog.at_level(logging.INFO, logger="maple.server"):
        profiles = open_store_or_exit(cfg)
    try:
        thread = profiles.cache._sync_thread
        assert (thread is not None and thread.is_alive()) is follows
        assert ("kept until changed: the store's change feed is followed" in caplog.text) is follows
    finally:
        profiles.close()
    assert profiles.cache._sync_thread is None


def test_documented_meanings_are_kept():
    assert config(workers=0).worker_count >= 1                    # 0: one per core
    assert config(environ={"MAPLE_LOG_LEVEL": "warning"}).log_level == "WARNING"
    assert config(drain_seconds=0.0, grace_seconds=0.0, metrics_port=0).metrics_port == 0
    assert config(max_message_bytes=1024).max_message_bytes == 1024


def test_an_explicit_data_directory_must_exist(tmp_path):
    missing, a_file = tmp_path / "nope", tmp_path / "stores.csv"
    a_file.write_text("id\n")
    with pytest.raises(ConfigError, match=f"--data '{missing}': no such directory"):
        config(data=str(missing))
    with pytest.raises(ConfigError, match=f"--data '{a_file}': not a directory"):
        config(data=str(a_file))
    with pytest.raises(ConfigError, match=f"MAPLE_DATA='{missing}': no such directory"):
        config(environ={"MAPLE_DATA": str(missing)})
    assert config(data=str(tmp_path)).data_dir == str(tmp_path)   # an empty directory: no store data
    assert config(data="none").data_dir == ""


def test_without_data_a_missing_default_is_no_store_data(tmp_path):
    """The default, RULES/data, is used when it holds a stores.csv; without
    it the server runs with no store data, as before."""
    cfg = from_args(argparse.Namespace(rules=str(tmp_path)), environ={})
    assert cfg.data_dir == ""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stores.csv").write_text("id\n")
    assert from_args(argparse.Namespace(rules=str(tmp_path)), environ={}).data_dir == str(tmp_path / "data")


@pytest.mark.parametrize("args, env, message", [
    (["--listen", "127.0.0.1:70000"], {}, "maple serve: --listen '127.0.0.1:70000': the port 70000 is not from 0"),
    (["--threads", "0"], {}, "maple serve: --threads 0: must be 1 or more"),
    (["--log-level", "LOUD"], {}, "argument --log-level: invalid choice: 'LOUD'"),
    ([], {"MAPLE_LOG_LEVEL": "LOUD"}, "maple serve: MAPLE_LOG_LEVEL='LOUD': use one of"),
    ([], {"MAPLE_METRICS_PORT": "-5"}, "maple serve: MAPLE_METRICS_PORT=-5: the port must be"),
])
def test_maple_serve_exits_2_with_the_message_and_no_traceback(args, env, message, tmp_path):
    import os
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--rules", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("MAPLE_")}, **env})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""                                      # nothing announced: nothing started


def test_the_log_level_flag_takes_any_case():
    from engine.cli import build_parser
    args = build_parser().parse_args(["serve", "--rules", "rules", "--log-level", "warning"])
    assert from_args(args, environ={}).log_level == "WARNING"


def test_docs_table_lists_every_flag_with_its_variable():
    from engine.server.config import OPTIONS, env_name
    doc = (ROOT / "docs" / "service.md").read_text()
    for field, flag, _type, _help in OPTIONS:
        assert f"| `{flag}` | `{env_name(field)}` |" in doc, f"docs/service.md: the table lacks {flag}"


def test_one_worker_per_core_counts_the_cores_this_process_may_use():
    """A container's cpuset (or taskset) limits the cores: --workers 0 starts
    one per core it may use, not one per core of the host."""
    import textwrap
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from engine.server.config import ServeConfig
        os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})   # as taskset -c N would
        print(ServeConfig(rules="rules").worker_count, os.cpu_count() or 1)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    workers, host = map(int, out.stdout.split())
    assert workers == 1 and host >= 1
