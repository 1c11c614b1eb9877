"""Inbound signed mail through `filterlang serve` is verified and delivered, never held.

Regression for issue 12: a queue process ran the pipeline of every message of 256 KB or less
inside its event loop, and path validation called `asyncio.run()`, which cannot run there; so
every small signed inbound message went to `hold` with "processing_error" while the in-process
tests (which drove a threaded runner `serve` never used) stayed green. Here the gateway runs as
operators run it: a subprocess started from a written gateway.toml, two identities made with
`filterlang cert create`, the sender's certificate as trust anchor, SMTP over loopback, and
what arrives at a real next hop (an aiosmtpd sink) inspected.
"""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization

from runtime.mta.spool import Spool
from smime import sign
from smime._keys import load_certificate, load_private_key

FILTERLANG = Path(sys.executable).parent / "filterlang"
DEADLINE = 90.0  # seconds: generous, the machine is shared and loaded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"filterlang serve exited early:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            if s.recv(100).startswith(b"220"):
                return
        time.sleep(0.1)
    raise AssertionError(f"filterlang serve did not answer on port {port}:\n{log.read_text()}")


class Sink:
    """The next hop: keeps every message it is given, by recipient."""

    def __init__(self) -> None:
        self.got: list[tuple[tuple[str, ...], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.got.append((tuple(envelope.rcpt_tos), bytes(envelope.original_content)))
        return "250 2.0.0 kept"

    def messages(self) -> list[bytes]:
        with self.lock:
            return [data for _, data in self.got]


def cli(*args: str, cwd: Path) -> str:
    done = subprocess.run([str(FILTERLANG), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=DEADLINE, check=False)
    assert done.returncode == 0, f"filterlang {' '.join(args)}: {done.stderr}"
    return done.stdout


def message(subject: str, size: int) -> bytes:
    line = "A line of a small signed business message, written to reach the size wanted.\r\n"
    body = line * (size // len(line) + 1)
    return (f"From: alice@partner.example.net\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@partner.example.net>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{body}").encode()


def signed(root: Path, subject: str, identity: str, form: str, size: int = 3072) -> bytes:
    """Signed as the partner's own S/MIME agent would (in-process: a CLI start per message
    costs seconds on the loaded test machine)."""
    key = load_private_key((root / f"{identity}.key.pem").read_bytes())
    cert = load_certificate((root / f"{identity}.crt.pem").read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    return sign(message(subject, size), key, der, detached=form == "detached")


@contextlib.contextmanager
def serving(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = config.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(FILTERLANG), "serve", "-c", str(config)], cwd=config.parent,
                                stdout=out, stderr=out, start_new_session=True)
    try:
        wait_for_banner(port, proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_small_signed_inbound_is_verified_and_delivered_not_held(tmp_path: Path) -> None:
    # The partner who signs (and whose certificate the gateway trusts), the organisation that
    # receives, and a stranger whose signature cannot be trusted.
    cli("cert", "create", "--cn", "partner.example.net", "--san-email",
        "alice@partner.example.net", "--out", "partner", cwd=tmp_path)
    cli("cert", "create", "--cn", "example.org", "--san-email", "postmaster@example.org",
        "--out", "org", cwd=tmp_path)
    cli("cert", "create", "--cn", "stranger.example.com", "--san-email",
        "alice@partner.example.net", "--out", "stranger", cwd=tmp_path)
    detached = signed(tmp_path, "detached-3k", "partner", "detached")
    opaque = signed(tmp_path, "opaque-3k", "partner", "opaque")
    untrusted = signed(tmp_path, "untrusted-3k", "stranger", "detached")
    assert all(len(m) < 256 * 1024 for m in (detached, opaque, untrusted))

    sink = Sink()
    sink_port, port = free_port(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
workers = 1
queue_workers = 1
local_domains = ["example.org"]

[storage]
data_dir = "data"

[[listeners]]
name = "in"
address = "127.0.0.1"
port = {port}

[sender_groups.partners]
ips = ["127.0.0.0/8"]
policy = "inbound"

[policies.inbound]
action = "ACCEPT"
smime_decrypt_verify = true
smime_signature = "remove"

[certificates.org]
cert = "org.crt.pem"
key = "org.key.pem"

[smime]
trust_anchors = ["partner.crt.pem"]

[delivery]
relay = "127.0.0.1:{sink_port}"
connect_timeout = 10
""")
    try:
        with serving(config, port):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                for data in (detached, opaque, untrusted):
                    client.sendmail("alice@partner.example.net", ["bob@example.org"], data)
            end = time.monotonic() + DEADLINE
            spool = Spool(tmp_path / "data" / "spool")
            while (len(sink.messages()) + spool.counts()["hold"] < 3
                   and time.monotonic() < end):
                time.sleep(0.1)
            held = cli("queue", "-c", str(config), "list", "--state", "hold", cwd=tmp_path)
            log = (tmp_path / "serve.log").read_text()
    finally:
        controller.stop()

    assert held == "", f"messages went to hold:\n{held}\n{log}"
    assert "processing_error" not in log and "RuntimeError" not in log, log
    got = {m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode(): m for m in sink.messages()}
    assert sorted(got) == ["detached-3k", "opaque-3k", "untrusted-3k"], log
    verified = b"X-Filterlang-SMIME: verified; signers=alice@partner.example.net"
    assert verified in got["detached-3k"]
    assert verified in got["opaque-3k"]
    # The stranger's signature is checked too, and is not called verified.
    assert b"X-Filterlang-SMIME: verification=failed" in got["untrusted-3k"]
    assert b"X-Filterlang-SMIME: verified" not in got["untrusted-3k"]
    # A verified signature is removed (smime_signature = "remove"): the content arrives
    # unwrapped; an unverified one is kept for the recipient to judge.
    for subject in ("detached-3k", "opaque-3k"):
        assert b"A line of a small signed business message" in got[subject]
        assert b"application/pkcs7-signature" not in got[subject]
        assert b"application/pkcs7-mime" not in got[subject]
    assert b"application/pkcs7-signature" in got["untrusted-3k"]
    tracking = (tmp_path / "data" / "tracking.jsonl").read_text()
    assert tracking.count('"event":"delivered"') == 3, tracking

