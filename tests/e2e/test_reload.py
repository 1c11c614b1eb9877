"""SIGHUP reload under traffic: `filterlang serve` takes a new configuration while clients keep
sending; no accepted message is lost or doubled, and mail after the reload gets the new one."""

from __future__ import annotations

import threading
from pathlib import Path

from .harness import DEADLINE, Gateway, Received, Sink, message, running, send, wait_until

STAMP = """
stamp:
  if true {{
      insert-header('X-Config', '{version}');
  }}
"""

RCPT = "zed@elsewhere.example"


def test_sighup_under_traffic_loses_nothing_and_applies_the_new_config(tmp_path: Path, sink: Sink) -> None:
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, filters={"stamp.filter": STAMP.format(version="v1")})
    sent: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(n: int) -> None:
        # Sessions of a few messages each, one after the other, until told to stop.
        i = 0
        try:
            while not stop.is_set() and i < 400:
                batch = [message("alice@b.example", RCPT, f"traffic {n}.{i + k}") for k in range(3)]
                for data in batch:
                    send(gw.port, "alice@b.example", [RCPT], data)
                    sent.append(Received("", [], data).header("Message-ID") or "")
                i += len(batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def arrived() -> dict[str, list[Received]]:
        by_id: dict[str, list[Received]] = {}
        for m in sink.to(RCPT):
            by_id.setdefault(m.header("Message-ID") or "", []).append(m)
        return by_id

    with running(gw):
        threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        wait_until("traffic to flow", lambda: len(sink.to(RCPT)) >= 10, explain=gw.explain)

        gw.filters["stamp.filter"] = STAMP.format(version="v2")
        gw.write_config()
        gw.reload()
        at_reload = len(sent)
        # Old and new workers overlap while the old ones finish; once serve logs the reload
        # as done, the old ones are gone. Each client may have had one message on the way.
        gw.wait_log("serve to log the reload", "configuration reloaded")
        new_config_from = len(sent) + len(threads)
        wait_until("a message stamped by the new configuration",
                   lambda: any(m.header("X-Config") == "v2" for m in sink.to(RCPT)), explain=gw.explain)
        wait_until("more traffic after the reload", lambda: len(sent) >= at_reload + 10)
        stop.set()
        for t in threads:
            t.join(DEADLINE)
        assert not errors, errors  # every message was accepted with 250 during the reload
        total = len(sent)
        wait_until(f"all {total} accepted messages at the next hop",
                   lambda: len(arrived()) >= total, explain=gw.explain)

    got = arrived()
    assert set(got) == set(sent), "lost: " + ", ".join(sorted(set(sent) - set(got)))
    assert all(len(copies) == 1 for copies in got.values()), "delivered twice"
    versions = [got[mid][0].header("X-Config") for mid in sent]
    assert set(versions) <= {"v1", "v2"}, versions  # every message went through one config
    assert versions[0] == "v1"
    # Nothing sent after the reload was done went through the old configuration.
    assert all(v == "v2" for v in versions[new_config_from:]), versions
    delivered = [r for r in gw.tracking() if r["event"] == "delivered"]
    assert len(delivered) == total
