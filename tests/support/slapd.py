"""A throwaway OpenLDAP directory for the tests: Debian's slapd on loopback, started by the
test with a generated slapd.conf and an mdb database in a temporary folder (no system service,
no cn=config of the machine's), loaded with the entries the test gives.

The groups are `nisMailAlias` entries (misc.schema): `cn` is the group's name and each
`rfc822MailMember` one member's address, so a group query is one search:
`(&(objectClass=nisMailAlias)(cn={g})(rfc822MailMember={a}))`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from tests.support.daemon import Daemon

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
BASE = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PW = "secret"
READER_DN = f"cn=reader,{BASE}"
READER_PW = "reader-pw"


def slapd_missing() -> str | None:
    """Why the LDAP tests cannot run here, or None when they can."""
    if not Path(SLAPD).exists() or not Path(SLAPADD).exists():
        return "OpenLDAP slapd is not installed (.ci/run installs the Debian package slapd)"
    if not (SCHEMA / "misc.schema").exists():
        return f"slapd's schema files are not in {SCHEMA}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def groups_ldif(groups: dict[str, list[str]]) -> str:
    """The base, a reader to bind as, and one nisMailAlias entry per group."""
    out = [f"dn: {BASE}", "objectClass: dcObject", "objectClass: organization", "o: Example",
           "dc: example", "", "dn: ou=groups," + BASE, "objectClass: organizationalUnit",
           "ou: groups", "", f"dn: {READER_DN}", "objectClass: simpleSecurityObject",
           "objectClass: organizationalRole", "cn: reader", f"userPassword: {READER_PW}", ""]
    for name, members in groups.items():
        out += [f"dn: cn={name},ou=groups,{BASE}", "objectClass: nisMailAlias", f"cn: {name}",
                *(f"rfc822MailMember: {m}" for m in members), ""]
    return "\n".join(out)


class Slapd(Daemon):
    """`slapd -d 0` on 127.0.0.1:PORT with its own folder; `groups` maps name -> addresses.
    stop() and start() again keep the database and the port (an outage, then recovery)."""

    def __init__(self, root: Path, groups: dict[str, list[str]]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        db = root / "db"
        db.mkdir(exist_ok=True)
        self.conf = root / "slapd.conf"
        self.conf.write_text("\n".join([
            *(f"include {SCHEMA / s}.schema" for s in ("core", "cosine", "nis", "misc")),
            f"pidfile {root}/slapd.pid", f"argsfile {root}/slapd.args",
            f"modulepath {MODULES}", "moduleload back_mdb",
            # Anyone bound may read; anonymous searches are refused, so a bind that fails shows.
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by users read by anonymous auth",
            "database mdb", f"suffix {BASE}", f"rootdn {ROOT_DN}", f"rootpw {ROOT_PW}",
            f"directory {db}", "maxsize 10485760", "index objectClass eq", "index cn eq", "",
        ]))
        (root / "data.ldif").write_text(groups_ldif(groups))
        subprocess.run([SLAPADD, "-f", str(self.conf), "-l", str(root / "data.ldif")],
                       check=True, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.proc = subprocess.Popen(
            [SLAPD, "-d", "0", "-f", str(self.conf), "-h", f"ldap://127.0.0.1:{self.port}/"],
            stdout=subprocess.DEVNULL, stderr=(self.root / "stderr.log").open("ab"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"slapd exited {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"slapd did not answer on {self.url}: {self.log()}")

    def log(self) -> str:
        p = self.root / "stderr.log"
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

