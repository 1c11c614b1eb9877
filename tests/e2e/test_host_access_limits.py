"""Host access table limits (issue 17 item 5) through `filterlang serve` with two listener
processes: the counts are the gateway's, not each process's.

- `max_connections_per_ip = 4`: four connections from 127.0.0.1, held, taken by both listener
  processes, and the fifth is answered 421 4.7.0 naming the limit, whichever process takes it;
  127.0.0.2 is served meanwhile. A listener killed with connections open does not keep them
  counted: the supervisor takes them out when it replaces the process.
- `max_recipients_per_hour = 3` for an IP and `max_recipients_per_hour_per_sender = 4` for a
  sender, over connections in different listener processes (and IPs): 452 4.7.0 naming the
  limit, the recipients accepted before it delivered.
- `max_messages_per_connection = 2`: the third MAIL of a connection is answered 421 4.7.0 and
  the connection closed; the two messages before it are delivered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
from pathlib import Path

from .harness import Gateway, Sink, connect, held, message, read_reply, running, send, wait_until

ALICE, BOB = "alice@a.example", "bob@a.example"
RATES = """
[sender_groups.limited]
ips = ["127.0.0.1/32", "127.0.0.3/32"]
policy = "limited"

[sender_groups.short]
ips = ["127.0.0.4/32"]
policy = "short"

[policies.limited]
action = "RELAY"
max_recipients_per_hour = 3
max_recipients_per_hour_per_sender = 4

[policies.short]
action = "RELAY"
max_messages_per_connection = 2
"""
CONNECTIONS = """
[sender_groups.capped]
ips = ["127.0.0.1/32"]
policy = "capped"

[policies.capped]
action = "RELAY"
max_connections_per_ip = 4
"""




def holders(gw: Gateway, socks: list[socket.socket]) -> list[int]:
    return [wait_until("the connection's listener process", lambda s=s: gw.holder(s),
                       explain=gw.explain) for s in socks]


def admitted(port: int, source: str, opened: list[socket.socket]) -> bool | None:
    """A probe for wait_until: a connection from `source` that was greeted (kept open), or
    None (a refused one is closed)."""
    if connect(port, source, opened).startswith("220 "):
        return True
    opened.pop().close()
    return None


def _greets(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        return read_reply(s).startswith("220 ")


def test_connections_per_ip_are_counted_over_both_listener_processes(
        tmp_path: Path, sink: Sink) -> None:
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, workers=2, extra=CONNECTIONS)
    refusal = ("421 4.7.0 Too many connections from your address (max_connections_per_ip=4), "
               "try again later\r\n")
    with running(gw), held() as opened:
        for _ in range(20):
            greetings = [connect(gw.port, "127.0.0.1", opened) for _ in range(4)]
            assert all(g.startswith("220 ") for g in greetings), greetings
            if len(set(holders(gw, opened))) == 2:
                break
            # The kernel gave them all to one process: again, until both hold some.
            for s in opened:
                s.close()
            opened.clear()
            wait_until("the four closed connections uncounted", lambda: _greets(gw.port),
                       explain=gw.explain)
        else:
            raise AssertionError(f"20 times, one listener process took all four\n{gw.explain()}")
        # Two held in each process, or three and one: the limit is the gateway's, and the
        # next ones are refused whichever process takes them.
        with held() as refused:
            assert [connect(gw.port, "127.0.0.1", refused) for _ in range(6)] == [refusal] * 6
        # Another address is served meanwhile (its policy's own cap).
        send(gw.port, ALICE, ["zed@elsewhere.example"],
             message(ALICE, "zed@elsewhere.example", "from another address"), source="127.0.0.2")
        sink.wait_for("zed@elsewhere.example", explain=gw.explain)
        # One closes: one more gets in, and no more.
        opened.pop(0).close()
        wait_until("a connection in the freed place",
                   lambda: admitted(gw.port, "127.0.0.1", opened), explain=gw.explain)
        with held() as refused:
            assert connect(gw.port, "127.0.0.1", refused) == refusal

        # A listener process dies (kill -9) holding some of the four: the supervisor starts
        # another and takes the dead one's connections out of the counts.
        pids = holders(gw, opened)
        victim = pids[0]
        lost = pids.count(victim)
        os.kill(victim, signal.SIGKILL)
        for s in [s for s, pid in zip(opened, pids, strict=True) if pid == victim]:
            opened.remove(s)
            s.close()
        for _ in range(lost):
            wait_until("a connection in a place the dead listener held",
                       lambda: admitted(gw.port, "127.0.0.1", opened), explain=gw.explain)
        assert len(opened) == 4
        with held() as refused:
            assert connect(gw.port, "127.0.0.1", refused) == refusal
        assert f"listener {victim} left {lost} connection(s) counted; released" in gw.log_text()
        wait_until("the dead listener replaced",
                   lambda: f"listener worker {victim} exited" in gw.log_text(),
                   explain=gw.explain)


def _client(port: int, source: str) -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
    c.ehlo("client.test")
    return c


def _rcpts(c: smtplib.SMTP, sender: str, rcpts: list[str]) -> list[tuple[int, str]]:
    assert c.mail(sender)[0] == 250
    return [(code, text.decode()) for code, text in (c.rcpt(r) for r in rcpts)]


def test_recipient_rates_and_messages_per_connection_over_both_listener_processes(
        tmp_path: Path, sink: Sink) -> None:
    gw = Gateway(tmp_path / "gw", next_hop=sink.port, workers=2, extra=RATES)
    per_ip = (452, "4.7.0 Too many recipients this hour from your address "
                   "(max_recipients_per_hour=3)")
    per_sender = (452, "4.7.0 Too many recipients this hour from this sender "
                       "(max_recipients_per_hour_per_sender=4)")
    ok = (250, "2.1.5 OK")
    with running(gw), contextlib.ExitStack() as stack:
        first = stack.enter_context(_client(gw.port, "127.0.0.1"))
        assert _rcpts(first, ALICE, ["r1@elsewhere.example", "r2@elsewhere.example"]) == [ok] * 2
        # The second connection from the same address in the other listener process.
        for _ in range(20):
            second = stack.enter_context(_client(gw.port, "127.0.0.1"))
            assert first.sock is not None and second.sock is not None
            if gw.holder(second.sock) != gw.holder(first.sock):
                break
        else:
            raise AssertionError("20 connections in a row went to the same listener process")
        assert _rcpts(second, ALICE, ["r3@elsewhere.example", "r4@elsewhere.example"]) == [
            ok, per_ip]
        # Another address of the same policy, the same sender: the sender's four an hour.
        third = stack.enter_context(_client(gw.port, "127.0.0.3"))
        assert _rcpts(third, ALICE, ["r5@elsewhere.example", "r6@elsewhere.example"]) == [
            ok, per_sender]
        # Another sender from there is not held by Alice's count.
        fourth = stack.enter_context(_client(gw.port, "127.0.0.3"))
        assert _rcpts(fourth, BOB, ["r7@elsewhere.example"]) == [ok]
        # What was accepted goes through.
        for c, to in [(first, "r1@elsewhere.example"), (second, "r3@elsewhere.example"),
                      (third, "r5@elsewhere.example"), (fourth, "r7@elsewhere.example")]:
            assert c.data(message(ALICE, to, "within the rates"))[0] == 250
        for to in ["r1", "r2", "r3", "r5", "r7"]:
            sink.wait_for(f"{to}@elsewhere.example", explain=gw.explain)
        assert not sink.to("r4@elsewhere.example") and not sink.to("r6@elsewhere.example")

        # Two messages a connection from 127.0.0.4: the third MAIL is told to reconnect.
        with _client(gw.port, "127.0.0.4") as c:
            for i in range(2):
                assert c.sendmail(ALICE, [f"m{i}@elsewhere.example"],
                                  message(ALICE, f"m{i}@elsewhere.example", f"message {i}")) == {}
            assert c.mail(ALICE) == (421, b"4.7.0 Too many messages in this connection "
                                          b"(max_messages_per_connection=2), send the rest on "
                                          b"a new one")
            with contextlib.suppress(smtplib.SMTPServerDisconnected):
                c.noop()
                raise AssertionError("the connection stayed open after the 421")
        with _client(gw.port, "127.0.0.4") as c:
            assert c.sendmail(ALICE, ["m2@elsewhere.example"],
                              message(ALICE, "m2@elsewhere.example", "message 2")) == {}
        for i in range(3):
            sink.wait_for(f"m{i}@elsewhere.example", explain=gw.explain)
