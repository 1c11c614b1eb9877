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


def test_refused_recipient_bounces_at_once_and_one_never_taken_expires(tmp_path: Path, sink: Sink) -> None:
    """The next hop refuses one recipient for good (550) and answers 451 for another for ever:
    the first is bounced at once, the second after max_queue_lifetime (4.4.7), each with its
    own DSN to the sender, while the third recipient got the message."""
    slow, gone, fine = "slow@elsewhere.example", "gone@elsewhere.example", "fine@elsewhere.example"
    sink.tempfail.add(slow)
    sink.reject.add(gone)
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, lifetime=3)
    with running(gw):
        body = "Numbers for the board.\r\n"
        mid = gw.send(ALICE, [slow, gone, fine], message(ALICE, [slow, gone, fine], "expires", body))
        gw.delivered(sink, fine, mid)
        refused = gw.wait_event(mid, "bounced", gone)
        assert refused["status"] == "5.1.1", refused
        assert gw.wait_event(mid, "deferred", slow)["reply"].startswith("451")
        expired = gw.wait_event(mid, "bounced", slow)
        assert expired["status"] == "4.4.7", expired
        dsns = wait_until("two DSNs", lambda: (lambda d: d if len(d) >= 2 else None)(sink.dsns(ALICE)),
                          explain=gw.explain)
        assert len(dsns) == 2, dsns

        def report(rcpt: str) -> bytes:
            (dsn,) = [d for d in dsns if f"Final-Recipient: rfc822; {rcpt}".encode() in d.data]
            status = dsn.data.split(b"message/delivery-status", 1)[1].split(b"\r\n--")[0]
            assert fine.encode() not in status  # the delivered recipient is in neither
            # Not encrypted and no RET=HDRS: the whole original comes back.
            assert b"Content-Type: message/rfc822" in dsn.data and body.encode() in dsn.data
            return status

        assert b"Status: 5.1.1" in report(gone) and b"550 5.1.1 no such user here" in report(gone)
        assert b"Status: 4.4.7" in report(slow) and b"Action: failed" in report(slow)
        assert not sink.to(slow) and not sink.to(gone)
        wait_until("the queue to be empty", lambda: not gw.cli("queue", "list").strip(),
                   explain=gw.explain)
