"""A key-store outage defers, never bounces (issue 13 item 3): mail that needs a key lookup
waits in the deferred queue while the store cannot be read, with one alert for the outage, and
goes out encrypted once the store is back."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from smime.keystore import open_keystore
from tests.smime.pki import issue

from .served import Served, Sink, relay_config, send, wait_until

GATEWAY = relay_config(
    top='message_filters = ["encrypt.filter"]',
    storage='keystore_url = "sqlite:///{root}/ks/keys.sqlite3"',
    sections='[profiles.enc]\nmode = "encrypt"\nmissing_key_action = "bounce"\n'
             '[alerts]\nlog = "alerts.jsonl"',
    delivery="retry_schedule = [1]\nmax_queue_lifetime = 3600")

FILTER = """
encrypt_everything:
  if true {
      smime-gateway-deferred('enc');
  }
"""


def _events(path: Path, event: str) -> list[dict[str, object]]:
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [r for r in records if r.get("event") == event]


def test_unreadable_sqlite_store_defers_with_one_alert_then_delivers(tmp_path: Path) -> None:
    bob = issue("bob@example.org", issue("Partner CA", ca=True), emails=["bob@example.org"],
                key_usage=None)
    good = tmp_path / "good.sqlite3"
    store = open_keystore(f"sqlite:///{good}")
    store.add_public("bob", bob.pem.decode("ascii"))
    store.close()
    (tmp_path / "encrypt.filter").write_text(FILTER)
    broken = tmp_path / "ks" / "keys.sqlite3"
    broken.mkdir(parents=True)  # a folder where the database should be: it cannot be opened
    tracking, alerts = tmp_path / "data" / "tracking.jsonl", tmp_path / "alerts.jsonl"
    with Sink() as sink, Served(tmp_path, GATEWAY, sink) as gw:
        for n in range(2):
            body = f"From: a@example.com\r\nSubject: m{n}\r\n\r\nconfidential {n}\r\n".encode()
            assert send(gw.port, "a@example.com", ["bob@example.org"], body)[-1][:3] == "250"
        # Each message is tried, found waiting for the store, and tried again on schedule.
        wait_until("retries", lambda: len(_events(tracking, "deferred")) >= 4)
        deferred = _events(tracking, "deferred")
        assert all("key store unavailable" in str(d["reply"]) for d in deferred)
        assert _events(tracking, "bounced") == [] and sink.messages == []
        outage = [a for a in _events(alerts, "alert") if a["kind"] == "keystore_unavailable"]
        assert len(outage) == 1, outage
        # The store comes back: both go out, encrypted, at their next retry.
        broken.rmdir()
        shutil.copy(good, broken)
        wait_until("delivery after the outage", lambda: len(sink.to("bob@example.org")) == 2)
    for m in sink.to("bob@example.org"):
        assert b"application/pkcs7-mime" in m.data and b"confidential" not in m.data
    assert sink.to("a@example.com") == []  # no DSN, no delay notice


SCRIPT = Path(__file__).resolve().parents[1] / "support" / "start-postgres.sh"


def _pg_ctl(data: str, *args: str) -> None:
    ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
    cmd = [str(ctl), "-D", data, *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, capture_output=True, check=True, timeout=120)


@pytest.mark.postgres
def test_postgres_down_defers_with_one_alert_then_delivers(tmp_path: Path) -> None:
    """The real outage: the gateway's PostgreSQL server stops while mail waits, and starts
    again (a throwaway cluster of this test's own, so no other test sees it go)."""
    if not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL binaries not installed")
    out = subprocess.run([str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    url, data = env["FILTERLANG_TEST_POSTGRES_URL"], env["FILTERLANG_TEST_POSTGRES_DIR"]
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
               f"-c unix_socket_directories={Path(data).parent} -c fsync=off")
    try:
        bob = issue("bob@example.org", issue("Partner CA", ca=True), emails=["bob@example.org"],
                    key_usage=None)
        store = open_keystore(url)
        store.add_public("bob", bob.pem.decode("ascii"))
        store.close()
        (tmp_path / "encrypt.filter").write_text(FILTER)
        toml = GATEWAY.replace('"sqlite:///{root}/ks/keys.sqlite3"', f'"{url}"')
        tracking, alerts = tmp_path / "data" / "tracking.jsonl", tmp_path / "alerts.jsonl"
        with Sink() as sink, Served(tmp_path, toml, sink) as gw:
            def submit(n: int) -> None:
                body = f"From: a@example.com\r\nSubject: m{n}\r\n\r\nconfidential {n}\r\n".encode()
                assert send(gw.port, "a@example.com", ["bob@example.org"], body)[-1][:3] == "250"

            submit(0)  # while the server is up: the queue process has its connection
            wait_until("delivery before the outage", lambda: sink.to("bob@example.org"))
            _pg_ctl(data, "stop", "-m", "fast", "-w")
            submit(1)
            submit(2)
            wait_until("retries", lambda: len(_events(tracking, "deferred")) >= 4)
            assert all("key store unavailable" in str(d["reply"])
                       for d in _events(tracking, "deferred"))
            assert _events(tracking, "bounced") == [] and len(sink.to("bob@example.org")) == 1
            kinds = [a["kind"] for a in _events(alerts, "alert")]
            assert kinds.count("keystore_unavailable") == 1, kinds
            _pg_ctl(data, "start", "-w", "-l", str(Path(data).parent / "log"), "-o", options)
            wait_until("delivery after it", lambda: len(sink.to("bob@example.org")) == 3)
        for m in sink.to("bob@example.org"):
            assert b"application/pkcs7-mime" in m.data and b"confidential" not in m.data
        assert sink.to("a@example.com") == []
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            _pg_ctl(data, "stop", "-m", "immediate")
        shutil.rmtree(Path(data).parent, ignore_errors=True)
