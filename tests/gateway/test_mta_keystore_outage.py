"""A key-store outage defers, never bounces (issue 13 item 3): mail that needs a key lookup
waits in the deferred queue while the store cannot be read, with one alert for the outage, and
goes out encrypted once the store is back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from smime.keystore import open_keystore
from tests.smime.pki import issue

from .served import Served, Sink, send, wait_until

GATEWAY = """
workers = 1
queue_workers = 1
message_filters = ["encrypt.filter"]
[storage]
data_dir = "data"
keystore_url = "sqlite:///{root}/ks/keys.sqlite3"
[[listeners]]
port = {port}
[sender_groups.local]
ips = ["127.0.0.0/8"]
policy = "relay"
[policies.relay]
action = "RELAY"
[profiles.enc]
mode = "encrypt"
missing_key_action = "bounce"
[alerts]
log = "alerts.jsonl"
[delivery]
relay = "127.0.0.1:{sink}"
retry_schedule = [1]
max_queue_lifetime = 3600
"""

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
        wait_until(lambda: len(_events(tracking, "deferred")) >= 4, what="retries")
        deferred = _events(tracking, "deferred")
        assert all("key store unavailable" in str(d["reply"]) for d in deferred)
        assert _events(tracking, "bounced") == [] and sink.messages == []
        outage = [a for a in _events(alerts, "alert") if a["kind"] == "keystore_unavailable"]
        assert len(outage) == 1, outage
        # The store comes back: both go out, encrypted, at their next retry.
        broken.rmdir()
        shutil.copy(good, broken)
        wait_until(lambda: len(sink.to("bob@example.org")) == 2, what="delivery after the outage")
    for m in sink.to("bob@example.org"):
        assert b"application/pkcs7-mime" in m.data and b"confidential" not in m.data
    assert sink.to("a@example.com") == []  # no DSN, no delay notice
