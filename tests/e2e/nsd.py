"""An authoritative DNS server for the tests: Debian's NSD on loopback, serving zones the test
writes (SPF, DKIM keys, DMARC policies, DNS lists, MX records), as a real domain's name server
would. The gateway's resolver is pointed at it with `[dns] nameservers = ["127.0.0.1:PORT"]`.

NSD answers SERVFAIL for a zone whose file it cannot load, which gives the tests a real
temporary DNS failure: `broken_zones` are declared with a zone file that does not exist.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from tests.support.daemon import Daemon

NSD = shutil.which("nsd") or "/usr/sbin/nsd"


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (NSD binds both)."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for NSD")


def zone_text(origin: str, records: list[str]) -> str:
    """A zone file: SOA (negative TTL 1 s so tests never wait on a cached NXDOMAIN), NS, and
    `records` in zone-file syntax relative to `origin`."""
    return "\n".join([
        f"$ORIGIN {origin}.", "$TTL 60",
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 1",
        f"@ IN NS ns.{origin}.", "ns IN A 127.0.0.1", *records, ""])


class Nsd(Daemon):
    """`nsd -d` with its own folder; `zones` maps origin -> records (zone-file lines)."""

    def __init__(self, root: Path, zones: dict[str, list[str]],
                 broken_zones: tuple[str, ...] = ()) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_tcp_port()
        self.proc: subprocess.Popen[bytes] | None = None
        conf = [
            "server:", f"  ip-address: 127.0.0.1@{self.port}", f"  port: {self.port}",
            '  username: ""', '  chroot: ""', f"  zonesdir: {root}", '  database: ""',
            f"  pidfile: {root}/nsd.pid", f"  zonelistfile: {root}/zone.list",
            f"  xfrdfile: {root}/xfrd.state", f"  xfrdir: {root}", f"  logfile: {root}/nsd.log",
            "  server-count: 1", "  do-ip6: no", "  verbosity: 1", "  hide-version: yes",
            "remote-control:", "  control-enable: no",
        ]
        for origin, records in zones.items():
            (root / f"{origin}.zone").write_text(zone_text(origin, records))
            conf += ["zone:", f"  name: {origin}", f"  zonefile: {origin}.zone"]
        for origin in broken_zones:
            conf += ["zone:", f"  name: {origin}", f"  zonefile: {origin}.missing"]
        self.conf = root / "nsd.conf"
        self.conf.write_text("\n".join(conf) + "\n")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.proc = subprocess.Popen([NSD, "-d", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=(self.root / "stderr.log").open("wb"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nsd exited {self.proc.returncode}: {self.log()}")
            if self._answers():
                return self
            time.sleep(0.05)
        raise AssertionError(f"nsd did not answer on {self.address}: {self.log()}")

    def _answers(self) -> bool:
        """A TCP connection to the port works once NSD serves (it binds after loading)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def log(self) -> str:
        out = []
        for name in ("stderr.log", "nsd.log"):
            p = self.root / name
            if p.exists():
                out.append(p.read_text(errors="replace")[-2000:])
        return "\n".join(out)

