"""`[antispam]`, `[antivirus]` and the mail policies' scanning keys (reference 11 steps 11-12).

Kept apart from config.py so that the scanners' keys read as one unit: where the scanner is
(`rspamd = "http://host:port"`, `clamd = "tcp://host:port"` or a socket path), how long to wait
for it, and per mail policy whether it runs and what happens to positive mail, as an AsyncOS
administrator sets them on the mail policy's anti-spam and anti-virus pages.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from attrs import frozen

from runtime.config.schema import Table

SPAM_ACTIONS = ("deliver", "drop", "quarantine")
VIRUS_ACTIONS = ("deliver", "drop", "quarantine")


@frozen
class AntiSpam:
    """Rspamd's normal worker, asked over its HTTP protocol (POST /checkv2)."""

    host: str
    port: int
    timeout: float = 10.0
    max_size: int = 2 * 1024 * 1024  # larger messages are not scanned (spam is small)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@frozen
class AntiVirus:
    """clamd, asked with INSTREAM over TCP (`host`, `port`) or its local socket (`socket`)."""

    host: str = ""
    port: int = 0
    socket: str = ""
    timeout: float = 30.0
    # Larger messages are not scanned and count as unscannable; keep it at or below clamd's
    # StreamMaxLength, past which clamd closes the stream.
    max_size: int = 10 * 1024 * 1024

    @property
    def address(self) -> str:
        return self.socket or f"tcp://{self.host}:{self.port}"


@frozen
class PolicyScanning:
    """One mail policy's anti-spam and anti-virus settings.

    Defaults as AsyncOS ships its default policies: anti-spam on for incoming mail and off for
    outgoing, anti-virus on for both; positive spam delivered (the content filters see the
    verdict), infected mail dropped."""

    antispam: bool = True
    spam_action: str = "deliver"
    spam_quarantine: str = ""
    spam_subject_tag: str = ""  # prepended to the Subject of delivered positive spam
    antivirus: bool = True
    virus_action: str = "drop"
    virus_quarantine: str = ""


def antispam(t: Table) -> AntiSpam | None:
    if not t._data:
        return None
    url = t.text("rspamd", required=True) or ""
    host, port = "", 0
    if url:
        parts = urlsplit(url)
        try:
            port = parts.port or 11333
        except ValueError:
            port = 0
        if parts.scheme != "http" or not parts.hostname or not port or parts.path not in ("", "/"):
            t.error("rspamd", f"{url!r}: give Rspamd's normal worker as http://HOST:PORT "
                    "(e.g. 'http://127.0.0.1:11333')")
        host = parts.hostname or ""
    return AntiSpam(host, port, t.number("timeout", 10.0, minimum=0.1),
                    t.integer("max_size", 2 * 1024 * 1024, minimum=1024))


def antivirus(t: Table) -> AntiVirus | None:
    if not t._data:
        return None
    where = t.text("clamd", required=True) or ""
    host, port, sock = "", 0, ""
    if where.startswith("tcp://"):
        parts = urlsplit(where)
        try:
            port = parts.port or 0
        except ValueError:
            port = 0
        host = parts.hostname or ""
        if not host or not port:
            t.error("clamd", f"{where!r}: give tcp://HOST:PORT (e.g. 'tcp://127.0.0.1:3310')")
    elif where.startswith("/"):
        sock = where
    elif where:
        t.error("clamd", f"{where!r}: give clamd's TCPSocket as tcp://HOST:PORT or its "
                "LocalSocket as an absolute path (e.g. '/run/clamav/clamd.ctl')")
    return AntiVirus(host, port, sock, t.number("timeout", 30.0, minimum=0.1),
                     t.integer("max_size", 10 * 1024 * 1024, minimum=1024))


def policy_scanning(t: Table, outgoing: bool, quarantines: frozenset[str]) -> PolicyScanning:
    """The keys of one [incoming_policies.X] / [outgoing_policies.X]; a quarantine action
    needs a quarantine the configuration defines."""
    s = PolicyScanning(
        antispam=t.flag("antispam", not outgoing),
        spam_action=t.choice("spam_action", SPAM_ACTIONS, "deliver"),
        spam_quarantine=t.text("spam_quarantine", ""),
        spam_subject_tag=t.text("spam_subject_tag", ""),
        antivirus=t.flag("antivirus", True),
        virus_action=t.choice("virus_action", VIRUS_ACTIONS, "drop"),
        virus_quarantine=t.text("virus_quarantine", ""),
    )
    for kind, action, name in (("spam", s.spam_action, s.spam_quarantine),
                               ("virus", s.virus_action, s.virus_quarantine)):
        if action == "quarantine" and not name:
            t.error(f"{kind}_quarantine", f"{kind}_action = \"quarantine\" needs the quarantine's "
                    f"name here (and a [quarantines.NAME] section)")
        elif name and name not in quarantines:
            t.error(f"{kind}_quarantine", f"no quarantine {name!r}; add [quarantines.{name}]")
        elif name and action != "quarantine":
            t.error(f"{kind}_quarantine", f"is only used with {kind}_action = \"quarantine\"")
    return s
