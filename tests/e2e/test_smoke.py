"""Plain relay through `filterlang serve`: what arrives is what was sent, and tracking says so."""

from __future__ import annotations

from pathlib import Path

from .harness import Gateway, Sink, message, running


def test_relayed_message_arrives_unchanged_below_a_received_line(tmp_path: Path, sink: Sink) -> None:
    gw = Gateway(tmp_path / "gw", next_hop=sink.port)
    with running(gw):
        data = message("alice@b.example", "zed@elsewhere.example", "smoke")
        mid = gw.send("alice@b.example", "zed@elsewhere.example", data)
        got, rec = gw.delivered(sink, "zed@elsewhere.example", mid)
    # The gateway adds its Received line on top and changes nothing else.
    assert got.data.startswith(b"Received: ")
    assert got.data.endswith(b"\r\n" + data)
    assert got.data.count(b"\r\nReceived: ") == 0
    assert got.mail_from == "alice@b.example" and got.rcpts == ["zed@elsewhere.example"]
    (received,) = [r for r in gw.records(mid) if r["event"] == "received"]
    assert received["policy"] == "users" and received["peer"] == "127.0.0.2"
    assert rec["dest"] == f"127.0.0.1:{sink.port}" and rec["reply"].startswith("250")
    assert rec["queue_id"] == received["queue_id"] and rec["attempts"] == 1
    assert not sink.dsns("alice@b.example")


MID_FILTER = """
stamp_mid:
  if true {
      insert-header('X-Filterlang-MID', '$MID');
  }
"""


def test_mid_is_the_queue_id_tracking_names(tmp_path: Path, sink: Sink) -> None:
    """$MID in a header (and in log-entry lines) is the message's queue id, the name tracking,
    `filterlang queue` and the logs use, so an administrator can follow a stamped message; it
    used to be 1 for every message."""
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, filters={"mid.filter": MID_FILTER})
    with running(gw):
        mids = []
        for n in range(2):
            data = message("alice@b.example", "zed@elsewhere.example", f"mid {n}")
            mids.append(gw.send("alice@b.example", "zed@elsewhere.example", data))
        stamped = [gw.delivered(sink, "zed@elsewhere.example", m)[0].header("X-Filterlang-MID")
                   for m in mids]
        assert stamped == [gw.queue_id(m) for m in mids]
    assert len(set(stamped)) == 2
