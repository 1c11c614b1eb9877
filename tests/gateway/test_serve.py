"""`filterlang serve` as operators run it: metrics endpoint, SIGHUP reload, SIGTERM drain."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .test_noloss import free_port, wait_port

FILTERLANG = Path(sys.executable).parent / "filterlang"

CONFIG = """
workers = 2
[storage]
data_dir = "data"
[[listeners]]
port = {port}
[sender_groups.local]
ips = ["127.0.0.0/8"]
policy = "relay"
[policies.relay]
action = "RELAY"
max_recipients = {max_rcpt}
[delivery]
maildir = "md"
[metrics]
port = {metrics}
"""


@contextlib.contextmanager
def serving(cfg: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`filterlang serve -c cfg` for the test's duration; killed if the test did not stop it."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(FILTERLANG), "serve", "-c", str(cfg)], stdout=log, stderr=log,
                                start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def rcpt_reply(port: int, n: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
        c.ehlo()
        c.mail("a@example.com")
        codes = [c.rcpt(f"r{i}@example.org")[0] for i in range(n)]
        c.rset()
    return codes[-1]


def test_metrics_reload_and_drain(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(CONFIG.format(port=port, max_rcpt=2, metrics=metrics))
    with serving(cfg, tmp_path / "log") as proc:
        wait_port(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
            c.sendmail("a@example.com", ["b@example.org"], b"Subject: m\r\n\r\nx\r\n")
        end = time.monotonic() + 10
        new = tmp_path / "md" / "b@example.org" / "new"
        while not (new.exists() and any(new.iterdir())) and time.monotonic() < end:
            time.sleep(0.05)
        assert list(new.iterdir())
        text = ""
        while time.monotonic() < end and "filterlang_queue_size" not in text:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.1)
        assert 'filterlang_queue_size{state="incoming"}' in text
        # Whichever of the two workers took the message, the endpoint counts it.
        assert "filterlang_messages_received_total 1.0" in text
        assert "filterlang_delivery_seconds_bucket" in text

        assert rcpt_reply(port, 3) == 452
        cfg.write_text("this is = not toml [")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert rcpt_reply(port, 3) == 452  # the bad config left the running one in place
        assert b"reload failed; keeping the running configuration" in (tmp_path / "log").read_bytes()

        cfg.write_text(CONFIG.format(port=port, max_rcpt=5, metrics=metrics))
        proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 10
        while rcpt_reply(port, 3) != 250 and time.monotonic() < end:
            time.sleep(0.2)
        assert rcpt_reply(port, 3) == 250

        text = ""
        end = time.monotonic() + 20
        while time.monotonic() < end and "filterlang_queue_size" not in text:
            try:  # the new workers serve metrics again once the old ones let the port go
                text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        assert "filterlang_queue_size" in text

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0


def _children(pid: int) -> dict[int, int]:
    """The supervisor's worker processes and their nice values (queue processes run niced)."""
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out[int(p)] = int(stat[16])
    return out


def _subjects(maildir: Path) -> set[bytes]:
    """The Subject of every message delivered into `maildir` (written complete, then renamed)."""
    if not maildir.exists():
        return set()
    return {f.read_bytes().split(b"Subject: ")[1].split(b"\r\n")[0] for f in maildir.iterdir()}


def test_listener_and_queue_workers_are_replaced_when_killed(tmp_path: Path) -> None:
    """Two listener and two queue processes; SIGKILL one of each: the supervisor starts new
    ones, the messages the dead queue process held go back to the queue, and all arrive."""
    port, metrics = free_port(), free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(CONFIG.format(port=port, max_rcpt=5, metrics=metrics))
    new = tmp_path / "md" / "b@example.org" / "new"

    def send(n: int, first: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
            for i in range(first, first + n):
                c.sendmail("a@example.com", ["b@example.org"], f"Subject: m{i}\r\n\r\nx\r\n".encode())

    with serving(cfg, tmp_path / "log") as proc:
        wait_port(port)
        end = time.monotonic() + 10
        while sorted(n > 0 for n in _children(proc.pid).values()) != [False, False, True, True] \
                and time.monotonic() < end:
            time.sleep(0.05)  # each queue process lowers its own priority as it starts
        workers = _children(proc.pid)
        queue = [p for p, nice in workers.items() if nice > 0]
        listeners = [p for p, nice in workers.items() if nice == 0]
        assert len(queue) == 2 and len(listeners) == 2
        send(20, 0)
        os.kill(queue[0], signal.SIGKILL)
        os.kill(listeners[0], signal.SIGKILL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            now = _children(proc.pid)
            if sorted(n > 0 for n in now.values()) == [False, False, True, True] \
                    and queue[0] not in now and listeners[0] not in now:
                break
            time.sleep(0.05)
        assert sorted(n > 0 for n in _children(proc.pid).values()) == [False, False, True, True]
        send(20, 20)
        # Wait for every subject, not for 40 files: a message the killed queue process had
        # delivered but not yet removed is delivered again (a duplicate, never a loss), so
        # 40 files can be there while the last message is still on its way.
        wanted = {f"m{i}".encode() for i in range(40)}
        end = time.monotonic() + 20
        subjects = _subjects(new)
        while subjects != wanted and time.monotonic() < end:
            time.sleep(0.1)
            subjects = _subjects(new)
        assert subjects == wanted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0


def test_a_worker_told_to_stop_while_it_starts_stops(tmp_path: Path) -> None:
    """SIGTERM for a replacement worker before its event loop has taken the signal over (what
    the supervisor sends when it is stopped right then) ends that worker; it used to inherit
    the supervisor's handler, ignore the signal, and keep `serve` from ever exiting."""
    port, metrics = free_port(), free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(CONFIG.format(port=port, max_rcpt=5, metrics=metrics))
    with serving(cfg, tmp_path / "log") as proc:
        wait_port(port)
        first = set(_children(proc.pid))
        os.kill(min(first), signal.SIGKILL)
        end = time.monotonic() + 10
        new: set[int] = set()
        while not new and time.monotonic() < end:
            new = set(_children(proc.pid)) - first
        assert new, "the supervisor did not replace the killed worker"
        (replacement,) = new
        os.kill(replacement, signal.SIGTERM)  # at once: it is still starting
        end = time.monotonic() + 10
        while replacement in _children(proc.pid) and time.monotonic() < end:
            time.sleep(0.02)
        assert replacement not in _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
