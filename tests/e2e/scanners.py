"""Real scanners for the tests, on loopback, as administrators run them beside Postfix:

- Rspamd (Debian `rspamd`) with a minimal configuration in a temporary folder: one normal
  worker, no Redis, no DNS (a dead name server answers nothing quickly), hyperscan off (it
  compiles for seconds at start). Rspamd itself recognises the GTUBE test string and answers
  `reject`, which the gateway reads as spam.
- clamd (Debian `clamav-daemon`) in the foreground with a signature database of one line: the
  EICAR test file's MD5 and size (no signature download is possible here), on a TCP port and a
  local socket.

Each test module shares one of each (fixture scope module): Rspamd takes a second or two to
start.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from tests.support.daemon import Daemon

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"

# The standard anti-virus and anti-spam test strings (eicar.org; SpamAssassin's GTUBE).
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def have_rspamd() -> bool:
    return Path(RSPAMD).exists()


def have_clamd() -> bool:
    return Path(CLAMD).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Daemon(Daemon):
    name = ""
    group = True  # Rspamd forks workers

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = root / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.log()}")
            if self.answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"{self.name} did not answer on port {self.port}: {self.log()}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""


class Rspamd(_Daemon):
    name = "rspamd"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        (root / "db").mkdir(exist_ok=True)
        self.conf = root / "rspamd.conf"
        self.conf.write_text(f"""
options {{
  pidfile = "{root}/rspamd.pid";
  dbdir = "{root}/db";
  filters = "";
  disable_hyperscan = true;
  dns {{ nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }}
}}
logging {{ type = "console"; level = "error"; }}
actions {{ reject = 15; add_header = 6; greylist = 4; }}
worker "normal" {{ bind_socket = "127.0.0.1:{self.port}"; count = 1; }}
""")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
        return [RSPAMD, "-f", "-u", user, "-g", group, "-c", str(self.conf)]

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
                return b"pong" in s.recv(1024)
        except OSError:
            return False


class Clamd(_Daemon):
    name = "clamd"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        db = root / "db"
        db.mkdir(exist_ok=True)
        (db / "test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:"
                                     "Eicar-Test-Signature\n")
        self.socket = root / "clamd.sock"
        self.conf = root / "clamd.conf"
        self.conf.write_text(f"""Foreground yes
DatabaseDirectory {db}
LocalSocket {self.socket}
TCPSocket {self.port}
TCPAddr 127.0.0.1
Bytecode no
LogSyslog no
StreamMaxLength 1M
""")

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [CLAMD, "-c", str(self.conf)]

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"zPING\0")
                return s.recv(64).startswith(b"PONG")
        except OSError:
            return False


def with_attachment(mail_from: str, to: str, subject: str, payload: bytes,
                    filename: str = "invoice.com") -> bytes:
    """A small multipart message with `payload` as a base64 attachment."""
    body = base64.b64encode(payload).decode()
    return (f"From: {mail_from}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n"
            "Date: Mon, 07 Dec 2026 03:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
            f"--b1\r\nContent-Type: application/octet-stream; name=\"{filename}\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename=\"{filename}\"\r\n\r\n"
            f"{body}\r\n--b1--\r\n").encode()
