"""`filterlang serve` as operators run it: metrics endpoint, SIGHUP reload, SIGTERM drain."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
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
    log = (tmp_path / "log").open("wb")
    proc = subprocess.Popen([str(FILTERLANG), "serve", "-c", str(cfg)], stdout=log, stderr=log,
                            start_new_session=True)
    try:
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
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
