"""The next hop through `filterlang serve`: down, then back (the queue retries), and a
recipient it never takes (the message expires and the sender gets a DSN)."""

from __future__ import annotations

from pathlib import Path

from .harness import Gateway, Sink, message, running, wait_until

ALICE = "alice@b.example"


def test_next_hop_down_then_back_delivers_once(tmp_path: Path) -> None:
    hop = Sink()  # not started: its port is closed
    gw = Gateway(tmp_path / "gw", next_hop=hop.port)
    rcpt = "zed@elsewhere.example"
    try:
        with running(gw):
            mid = gw.send(ALICE, rcpt, message(ALICE, rcpt, "while the next hop is down"))
            deferred = gw.wait_event(mid, "deferred", rcpt)
            assert deferred["reply"].startswith("4"), deferred
            qid = deferred["queue_id"]
            listing = gw.cli("queue", "list", "--state", "deferred")
            assert qid in listing and rcpt in listing, listing

            hop.start()  # back
            got, delivered = gw.delivered(hop, rcpt, mid)
            assert delivered["attempts"] >= 2 and delivered["queue_id"] == qid
            assert got.data.endswith(b"\r\n\r\nHello.\r\n")
            wait_until("the queue to be empty", lambda: qid not in gw.cli("queue", "list"),
                       explain=gw.explain)
            assert not hop.dsns(ALICE)
    finally:
        hop.stop()


def test_recipient_never_taken_expires_with_a_dsn(tmp_path: Path, sink: Sink) -> None:
    """The next hop answers 451 for one recipient for ever; after max_queue_lifetime the
    gateway gives up on it (4.4.7) and tells the sender, while the other recipient got it."""
    slow, fine = "slow@elsewhere.example", "fine@elsewhere.example"
    sink.tempfail.add(slow)
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, lifetime=3)
    with running(gw):
        body = "Numbers for the board.\r\n"
        mid = gw.send(ALICE, [slow, fine], message(ALICE, [slow, fine], "expires", body))
        gw.delivered(sink, fine, mid)
        assert gw.wait_event(mid, "deferred", slow)["reply"].startswith("451")
        bounced = gw.wait_event(mid, "bounced", slow)
        assert bounced["status"] == "4.4.7", bounced
        dsn = wait_until("the DSN", lambda: sink.dsns(ALICE), explain=gw.explain)
        assert len(dsn) == 1
        report = dsn[0].data
        assert b"Final-Recipient: rfc822; slow@elsewhere.example" in report
        assert b"Status: 4.4.7" in report and b"Action: failed" in report
        assert fine.encode() not in report.split(b"message/delivery-status", 1)[1].split(b"\r\n--")[0]
        # Not encrypted and no RET=HDRS: the whole original comes back.
        assert b"Content-Type: message/rfc822" in report and body.encode() in report
        assert not sink.to(slow)
        wait_until("the queue to be empty", lambda: not gw.cli("queue", "list").strip(),
                   explain=gw.explain)
