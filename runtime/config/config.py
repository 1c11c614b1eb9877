"""`gateway.toml`: load with tomllib into frozen attrs objects, or fail with one line per mistake.

Layout (every section optional except where noted; paths are relative to the file):

    [storage]            data_dir, keystore_url, spool_sync, min_free_space
    [[listeners]]        name, address, port, tls_cert, tls_key, max_message_size, ...;
                         auth, users_file, auth_required (SMTP AUTH for submission)
    [sender_groups.X]    ips (IPs and CIDRs), hosts (shell patterns), policy
    [policies.X]         action ACCEPT|RELAY|REJECT|TCPREFUSE, limits, S/MIME inbound options
    [certificates.X]     cert, key (PEM)
    [profiles.X]         S/MIME sending profiles; `profiles_file` includes more from a TOML file
    [encryption_profiles.X]  what encrypt('X') / encrypt-deferred('X') do: sending_profile,
                         tls_verify, tls_ca_file (see docs/deploy.md)
    message_filters      list of .filter files
    [incoming_policies.X] / [outgoing_policies.X]  senders, recipients, content_filters,
                         antispam, spam_action, ..., antivirus, virus_action, ...
    [dictionaries] / [text_resources]  name = file
    [delivery]           relay, reinject, mx (mx_port), maildir, retry schedule, max queue lifetime
    [dns]                nameservers ("ip" or "ip:port"), timeout, cache_size, reputation_zone
    [authentication]     authserv_id, spf, dkim, dmarc, arc (inbound SPF/DKIM/DMARC/ARC)
    [antispam] / [antivirus]  rspamd URL / clamd address, timeout, max_size (the mail
                         policies' antispam, antivirus, spam_* and virus_* keys: scanning.py)
    [dkim.DOMAIN]        selector, key, canonicalization, headers (signing outgoing mail)
    [ldap.NAME]          url, bind_dn, bind_password(_file), base, filter, attribute, timeout,
                         cache_ttl, cache_size, ca_file (a group query); [ldap] group_query
    allow_unavailable    providers filters may use without the configuration defining them
    [quarantines.X]      retention_days
    [smime]              trust_anchors, crls, decryption_certificates, on_decrypt_failure,
                         decrypt_failure_quarantine, require_signed_attributes,
                         accept_domain_certificates (inbound S/MIME; see docs/deploy.md)
    [alerts]             log, email
    [metrics]            address, port
    [tls.outbound]       level, min_version, ciphers, ca_file, match; per-domain entries in
                         [tls.outbound.domains."example.com"] (Postfix's smtp_tls_policy_maps)
    [routes]             "domain" = next hops (SMTP routes, chosen after a filter's alt-mailhost
                         and before [delivery])
    hostname, postmaster the gateway's own name and the address answering for it
"""

from __future__ import annotations

import ipaddress
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from attrs import field, frozen

from runtime.config.scanning import (
    AntiSpam,
    AntiVirus,
    PolicyScanning,
    antispam,
    antivirus,
    policy_scanning,
)
from runtime.config.schema import ConfigError, ConfigIssue, Table

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "GatewayConfig",
    "load_config",
]

POLICY_ACTIONS = ("ACCEPT", "RELAY", "REJECT", "TCPREFUSE")
PROFILE_MODES = ("sign", "encrypt", "sign-encrypt", "triple")
SIGN_MODES = ("opaque", "detached")
MISSING_KEY_ACTIONS = ("bounce", "drop", "split")
BARE_LINE_ENDINGS = ("reject", "normalize")
CIPHERS = ("aes128-cbc", "aes192-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm")


# How a listener makes a group commit durable (see Storage.spool_sync).
SPOOL_SYNC_MODES = ("filesystem", "file")

# Outbound TLS levels, as Postfix's smtp_tls_security_level names them (see TlsPolicy).
TLS_LEVELS = ("none", "may", "encrypt", "verify", "secure")
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# SMTP AUTH mechanisms a listener may offer: both carry the password itself, hence TLS only.
AUTH_MECHANISMS = ("PLAIN", "LOGIN")

@frozen
class Listener:
    name: str
    address: str = "127.0.0.1"
    port: int = 2525
    hostname: str | None = None  # the name in the greeting; default: the top-level hostname
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # 530 5.7.0 to MAIL until the client has done STARTTLS (needs tls_cert and tls_key).
    require_tls: bool = False
    # CA certificates (a PEM file or a folder of them) for partner gateways' client
    # certificates: with it, STARTTLS asks the client for one, and one that verifies against
    # these gives the session its subject (sender_groups' tls_subjects, $TLSClientSubject).
    # A client without one, or with one that does not verify, is served as before.
    tls_client_ca: Path | None = None
    max_line_length: int = 1000
    max_commands: int = 1000
    command_timeout: float = 300.0
    session_timeout: float = 600.0  # cap on time to first MAIL and on each transaction
    # Concurrent connections to this listener on the host (counted over every listener
    # process in the host access table); more are answered 421 4.7.0 at connect.
    max_connections: int = 1000
    # SMTP AUTH (RFC 4954) for users submitting mail, as Postfix's smtpd_sasl_* and AsyncOS's
    # SMTP authentication profile: the mechanisms offered ("PLAIN", "LOGIN"), only after
    # STARTTLS (a password never crosses in clear), checked against `users_file`.
    auth: tuple[str, ...] = ()
    users_file: Path | None = None
    # 530 5.7.0 to MAIL until the client has authenticated (a pure submission port).
    auth_required: bool = False
    # Failed AUTH attempts from one IP within `auth_failure_window` seconds before it is
    # answered 421 4.7.0 and disconnected (counted over every listener process in the host
    # access table); each failure is answered only after `auth_failure_delay` seconds.
    auth_max_failures: int = 5
    auth_failure_window: float = 900.0
    auth_failure_delay: float = 1.0
    # The [ldap.NAME] group query mail-from-group / rcpt-to-group use for mail received here
    # (reference 6.3: the group query is configured per listener); None: [ldap] group_query.
    ldap_group_query: str | None = None


@frozen
class SenderGroup:
    name: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    hosts: tuple[str, ...]
    policy: str
    # Shell patterns over a verified client certificate's subject (RFC 4514, e.g.
    # "CN=mx.partner.example,O=Partner Ltd"); the group is chosen again after STARTTLS.
    tls_subjects: tuple[str, ...] = ()


@frozen
class MailFlowPolicy:
    name: str
    action: str = "ACCEPT"
    max_message_size: int = 20 * 1024 * 1024
    max_recipients: int = 100
    max_messages_per_hour: int = 0  # 0: unlimited
    # Concurrent connections from one client IP (0: unlimited), as AsyncOS's host access table
    # has it, counted over every listener process; more are answered 421 4.7.0 at connect.
    max_connections_per_ip: int = 50
    # MAIL commands one connection may give (0: unlimited); past it 421 4.7.0 and the close.
    max_messages_per_connection: int = 0
    # Recipients accepted per hour from one client IP, and for one envelope sender whatever
    # its IP (0: unlimited); past either 452 4.7.0 at RCPT.
    max_recipients_per_hour: int = 0
    max_recipients_per_hour_per_sender: int = 0
    smime_decrypt_verify: bool = False
    smime_signature: str = "retain"  # retain|remove
    harvest: bool = False
    harvest_on_failed_verification: bool = False
    harvest_updated_keys: bool = False
    # Which mail policy table and content-filter list applies: RELAY policies carry our own
    # users' mail out ("outgoing"), everything else comes in ("incoming").
    direction: str = "incoming"
    # Structure limits checked at DATA time (runtime.engine.limits): what parsing costs grows
    # with these, so a message beyond them is refused before it is accepted.
    max_header_bytes: int = 1024 * 1024
    max_header_fields: int = 1000
    max_addresses_per_header: int = 1000
    max_mime_parts: int = 1000
    max_mime_depth: int = 50
    # A message line ending in a bare LF: "reject" it (550, as Postfix's
    # smtpd_forbid_bare_newline = reject) or "normalize" it to CRLF (as Postfix 3.9's default),
    # for clients that write Unix line ends. Either way only CRLF.CRLF ends DATA and a bare CR
    # or a NUL is refused, so no SMTP-smuggling shape gets through.
    bare_line_endings: str = "reject"
    # 530 5.7.0 to MAIL from a client of this policy until it has done STARTTLS.
    require_tls: bool = False
    # A session that authenticated (SMTP AUTH) may relay: recipients outside local_domains are
    # accepted, and its mail is ours going out (the outgoing mail policies), as Postfix's
    # permit_sasl_authenticated and AsyncOS's "relay after authentication".
    auth_relay: bool = True


@frozen
class Certificate:
    name: str
    cert: Path
    key: Path | None


@frozen
class SendingProfile:
    name: str
    mode: str
    signing_certificate: str | None
    sign_mode: str = "detached"
    missing_key_action: str = "bounce"
    cipher: str | None = None


# Sending-profile modes that encrypt: what an encryption profile may name.
ENCRYPTING_MODES = ("encrypt", "sign-encrypt", "triple")


@frozen
class EncryptionProfile:
    """What `encrypt('name')` and `encrypt-deferred('name')` do (reference 7.10): envelope
    encryption carried out with S/MIME by a sending profile, whose mode and missing-key action
    apply. Rule 1 ("TLS first") delivers in clear only over TLS that meets the destination's
    [tls.outbound] policy raised to at least `encrypt`; `tls_verify` raises it to `verify`
    (against `tls_ca_file` when given), see TlsPolicy.at_least."""

    name: str
    sending_profile: str
    tls_verify: bool = False
    tls_ca_file: Path | None = None  # None: the system's trusted CAs


@frozen
class MailPolicy:
    name: str
    senders: tuple[str, ...]
    recipients: tuple[str, ...]
    content_filters: tuple[Path, ...]
    scanning: PolicyScanning = PolicyScanning()  # anti-spam and anti-virus for this policy


# Messages each queue process works on at once is twice this. Delivery waits on the next hop's
# replies far more than it computes, so a queue process keeps many transactions open side by
# side, in its event loop (the name stays from when delivery ran in threads).
DELIVERY_THREADS = 16


@frozen
class Delivery:
    relay: str | None = None  # "host:port"
    reinject: str | None = None  # "host:port": Postfix's re-injection smtpd
    mx: bool = False
    maildir: Path | None = None
    retry_schedule: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0)
    max_queue_lifetime: float = 5 * 86400.0
    # RFC 3461 NOTIFY=DELAY: one "still trying" notice once a message has waited this long
    # (seconds; 0: never), for the recipients that asked.
    delay_notice_after: float = 4 * 3600.0
    connect_timeout: float = 30.0
    workers: int = 16  # see DELIVERY_THREADS
    # The port MX hosts are reached on: 25 on the Internet; a test or lab points it elsewhere.
    mx_port: int = 25


@frozen
class Dns:
    """The one resolver: SPF, DKIM keys, DMARC records, DNS lists, reputation and MX."""

    nameservers: tuple[tuple[str, int], ...] = ()  # empty: the system's (/etc/resolv.conf)
    timeout: float = 5.0  # seconds for one whole look-up, retries included
    cache_size: int = 10000  # answers kept (each for its TTL)
    # A DNS zone answering `<reversed IP>.<zone> TXT "<score>"` with a score from -10 to 10,
    # for the reputation rules (reference 6.1 REP); None: no reputation provider.
    reputation_zone: str | None = None
    # DNS lists of domain names (RFC 5782 2.3: Spamhaus DBL, SURBL, URIBL): for these zones
    # `dnslist('zone')` asks the host names of the URLs in the message, not the connecting IP.
    uri_lists: frozenset[str] = frozenset()
    # Most URL host names asked per message and list (a message full of links costs no more).
    uri_limit: int = 20


@frozen
class Authentication:
    """Inbound SPF, DKIM, DMARC and ARC checks, stamped as one Authentication-Results."""

    authserv_id: str
    spf: bool = True
    dkim: bool = True
    dmarc: bool = True
    arc: bool = True


#: Headers signed when [dkim.X] names none: RFC 6376 5.4.1's list of those that matter.
DKIM_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "In-Reply-To",
                "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding")
DKIM_CANONICALIZATIONS = ("relaxed/relaxed", "relaxed/simple", "simple/simple", "simple/relaxed")


@frozen
class DkimSigning:
    """DKIM signing of outgoing mail whose From domain is `domain` (or a subdomain of it)."""

    domain: str
    selector: str
    key: Path
    canonicalization: str = "relaxed/simple"
    headers: tuple[str, ...] = DKIM_HEADERS


# The placeholders of an LDAP group query's filter: the address, its local part and domain,
# and the group's name; each is escaped (RFC 4515) before it goes in.
LDAP_PLACEHOLDERS = {"a": "the address", "u": "its local part", "d": "its domain",
                     "g": "the group's name"}


@frozen
class LdapQuery:
    """[ldap.NAME]: a directory server and its group query. With {g} in `filter` an address
    is in group G when the search for (address, G) finds an entry; without it, the search for
    the address finds its groups, named by `attribute` of the entries found (a DN there, as
    memberOf holds, counts by its first value: cn=engineers,ou=groups,... is "engineers")."""

    name: str
    url: str  # ldap://host[:port] or ldaps://host[:port]
    base: str
    filter: str
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    attribute: str | None = None
    timeout: float = 5.0  # seconds for connecting, and for each answer
    cache_ttl: float = 300.0  # seconds an answer (member or not) is kept
    cache_size: int = 10000  # answers kept at most (the oldest go first)
    ca_file: Path | None = None  # ldaps: CAs for the server's certificate (None: the system's)


@frozen
class Ldap:
    queries: dict[str, LdapQuery] = field(factory=dict, hash=False)
    group_query: str | None = None  # the query of the group rules (default: the only one)


@frozen
class Quarantine:
    name: str
    retention_days: int = 14


@frozen
class Alerts:
    log: Path | None = None
    email: str | None = None


@frozen
class Metrics:
    address: str = "127.0.0.1"
    port: int = 0  # 0: no endpoint


@frozen
class Storage:
    data_dir: Path
    keystore_url: str
    # How a listener makes a group commit's messages durable: "filesystem", one syncfs(2) of
    # the spool's filesystem for the batch (Linux 5.8+; elsewhere as "file"), or "file", an
    # fdatasync per message. See docs/operations.md.
    spool_sync: Literal["filesystem", "file"] = "filesystem"
    # Bytes the spool's filesystem keeps free: below this (or below this plus a MAIL's
    # declared SIZE) the listener answers 452 4.3.1 at MAIL, before any data is sent.
    min_free_space: int = 100 * 1024 * 1024


@frozen
class Smime:
    """Inbound S/MIME: what the gateway trusts and decrypts with, and what a failure does."""

    trust_anchors: tuple[Path, ...] = ()
    crls: tuple[Path, ...] = ()
    decryption_certificates: tuple[str, ...] | None = None  # None: every certificate with a key
    on_decrypt_failure: str = "deliver"  # deliver (as received) | quarantine
    decrypt_failure_quarantine: str | None = None
    # A signer without signed attributes is not verified (reason no-signed-attributes).
    require_signed_attributes: bool = True
    # A partner gateway's organisation certificate (SAN domain) signs for its whole domain.
    accept_domain_certificates: bool = True
    # RFC 8551 Appendix B: read historic algorithms (SHA-1, RSA-1024, DSA), each flagged; for
    # gateways that receive old partners' mail. `at_signing_time` validates paths at the
    # signer's signingTime (only with legacy: it trusts the sender's clock).
    legacy: bool = False
    at_signing_time: bool = False
    # 3DES envelopes: read with a `legacy-3des` warning (true), or refused as
    # unsupported-algorithm (false). Never chosen for sending either way.
    decrypt_3des: bool = True


@frozen
class TlsPolicy:
    """Outbound TLS towards one destination, with Postfix's levels:

    - none: never STARTTLS; may: STARTTLS when offered, any certificate, plain text when the
      handshake fails (opportunistic); encrypt: TLS required, any certificate;
    - verify: TLS required, the chain checked against `ca_file` (else the system's CAs) and the
      host name against `match` (default: the next hop's name, the MX host or relay);
    - secure: as verify, but only the configured names count (default: the recipient domain
      and its subdomains), never a name that came from DNS.

    A failure to meet encrypt, verify or secure is a temporary failure (4.7.x) with the reason,
    never a downgrade. `match` entries: a name, or ".example.com" for any subdomain of it."""

    level: str = "may"
    match: tuple[str, ...] = ()
    min_version: str = "TLSv1.2"
    ciphers: str | None = None  # an OpenSSL cipher list; None: OpenSSL's defaults
    ca_file: Path | None = None

    def at_least(self, level: str, ca_file: Path | None = None) -> TlsPolicy:
        """This policy raised to `level` when it is weaker (rule 1 of an encryption profile:
        mail goes in clear only over TLS); `ca_file` is used when the raise makes it verify
        (else the policy's own). A policy at `level` or stronger stays as it is."""
        if TLS_LEVELS.index(self.level) >= TLS_LEVELS.index(level):
            return self
        return TlsPolicy(level=level, match=self.match, min_version=self.min_version,
                         ciphers=self.ciphers, ca_file=ca_file or self.ca_file)


T = TypeVar("T")


def by_domain(table: Mapping[str, T], domain: str) -> T | None:
    """The entry of a table keyed by domain ([tls.outbound.domains], [routes]) for `domain`:
    its exact key, else the longest ".suffix" key that covers it; None when none does."""
    domain = domain.lower().rstrip(".")
    found = table.get(domain)
    if found is not None:
        return found
    labels = domain.split(".")
    for i in range(1, len(labels)):
        found = table.get("." + ".".join(labels[i:]))
        if found is not None:
            return found
    return None


@frozen
class OutboundTls:
    """[tls.outbound]: the default policy and per-domain ones ("example.com" exact,
    ".example.com" its subdomains; the exact entry wins, then the longest suffix)."""

    default: TlsPolicy = TlsPolicy()
    domains: dict[str, TlsPolicy] = field(factory=dict, hash=False)
    # MTA-STS (RFC 8461) for recipient domains without an entry here, delivered to by MX:
    # a published policy in mode enforce applies as verify against its mx names.
    mta_sts: bool = True
    # The policy host's HTTPS port: 443 on the Internet; a lab or a test points it elsewhere.
    mta_sts_port: int = 443

    def has_entry(self, domain: str) -> bool:
        """Whether a [tls.outbound.domains] entry (exact or .suffix) covers `domain`."""
        return self.for_domain(domain) is not self.default

    def for_domain(self, domain: str) -> TlsPolicy:
        found = by_domain(self.domains, domain)
        return found if found is not None else self.default


# Next-hop kinds of an SMTP route (see Route).
ROUTE_KINDS = ("hosts", "mx", "maildir")


@frozen
class Route:
    """One [routes] entry: where mail for the domains `name` covers goes.

    - hosts: SMTP next hops (host, port), tried in this order, the next only on a temporary
      failure (as MX hosts are);
    - mx: the recipient domain's MX hosts, looked up as `[delivery] mx = true` does;
    - maildir: local delivery into maildirs below `maildir`."""

    name: str  # the key as written: "example.com", ".example.com" or "*"
    kind: str
    hosts: tuple[tuple[str, int], ...] = ()
    maildir: Path | None = None

    def describe(self) -> str:
        if self.kind == "mx":
            return "mx"
        if self.kind == "maildir":
            return f"maildir:{self.maildir}"
        return ", ".join(f"{h}:{p}" for h, p in self.hosts)


@frozen
class Routes:
    """[routes]: "example.com" exact, ".example.com" its subdomains, "*" everything else;
    the exact entry wins, then the longest suffix, then "*" (as [tls.outbound] domains, so one
    reading of a domain key serves both)."""

    entries: dict[str, Route] = field(factory=dict, hash=False)

    def for_domain(self, domain: str) -> Route | None:
        if not self.entries:
            return None
        found = by_domain(self.entries, domain)
        return found if found is not None else self.entries.get("*")

    @property
    def uses_mx(self) -> bool:
        return any(r.kind == "mx" for r in self.entries.values())


@frozen
class GatewayConfig:
    source: Path
    storage: Storage
    listeners: tuple[Listener, ...]
    sender_groups: tuple[SenderGroup, ...]
    policies: dict[str, MailFlowPolicy] = field(hash=False)
    default_policy: str
    certificates: dict[str, Certificate] = field(hash=False)
    profiles: dict[str, SendingProfile] = field(hash=False)
    message_filters: tuple[Path, ...]
    incoming_policies: tuple[MailPolicy, ...]
    outgoing_policies: tuple[MailPolicy, ...]
    dictionaries: dict[str, Path] = field(hash=False)
    text_resources: dict[str, Path] = field(hash=False)
    delivery: Delivery
    quarantines: dict[str, Quarantine] = field(hash=False)
    alerts: Alerts
    metrics: Metrics
    workers: int = 0  # listener processes; 0: default_workers()
    queue_workers: int = 0  # queue processes; 0: as many as listeners (one more when automatic)
    # Reference 4.7: a filter that fails at run time; "bypass" goes on without that stage's
    # actions, "tempfail" keeps the message in the queue and runs the filters again later.
    on_filter_error: Literal["bypass", "tempfail"] = "bypass"
    profiles_file: Path | None = None
    # Recipient domains accepted under an ACCEPT policy (RELAY policies may mail anywhere).
    local_domains: frozenset[str] = frozenset()
    smime: Smime = Smime()
    encryption_profiles: dict[str, EncryptionProfile] = field(hash=False, factory=dict)
    dns: Dns = Dns()
    authentication: Authentication | None = None  # None: no SPF/DKIM/DMARC provider
    dkim: dict[str, DkimSigning] = field(factory=dict, hash=False)  # signing domain -> how
    antispam: AntiSpam | None = None  # None: no anti-spam scanner (its rules unavailable)
    antivirus: AntiVirus | None = None  # None: no anti-virus scanner
    # The gateway's own name: greeting, Received lines, EHLO when delivering, the DSN's
    # MAILER-DAEMON@hostname and Reporting-MTA. Default: this machine's FQDN.
    hostname: str = field(factory=socket.getfqdn)
    # Who answers for the gateway: accepted as a recipient under any ACCEPT policy (RFC 5321
    # 4.5.1), named in DSNs, and the sender of alert mail. Default: postmaster@hostname.
    postmaster: str = ""
    tls_outbound: OutboundTls = OutboundTls()
    routes: Routes = Routes()
    ldap: Ldap = Ldap()
    # Providers (filterlang.services) the filters may use although this file does not define
    # them: their rules are always false, and `lint --config` / `serve --check` only warn.
    allow_unavailable: frozenset[str] = frozenset()
    # Who is one client for the host access table's counts (runtime.mta.hostlimits.client_of):
    # an IPv4 address, and an IPv6 /64 (one host's usual share, which it may roam at will).
    client_ipv4_prefix_length: int = 32
    client_ipv6_prefix_length: int = 64

    def names(self) -> dict[str, frozenset[str]]:
        """Names filters may refer to, per kind (the linter checks filters against these)."""
        return {
            "quarantine": frozenset(self.quarantines),
            "profile": frozenset(self.profiles),
            "encryption_profile": frozenset(self.encryption_profiles),
            "dictionary": frozenset(self.dictionaries),
            "listener": frozenset(lst.name for lst in self.listeners),
            "text_resource": frozenset(self.text_resources),
            "policy": frozenset(self.policies),
        }


def _listener(t: Table, index: int) -> Listener:
    cert, key = t.path("tls_cert"), t.path("tls_key")
    if (cert is None) != (key is None):
        t.error("tls_cert" if cert is None else "tls_key", "set both tls_cert and tls_key for STARTTLS")
    require_tls = t.flag("require_tls", False)
    if require_tls and cert is None:
        t.error("require_tls", "requiring STARTTLS needs tls_cert and tls_key on this listener")
    client_ca = t.path("tls_client_ca")
    if client_ca is not None:
        if cert is None:
            t.error("tls_client_ca", "client certificates need STARTTLS: set tls_cert and tls_key")
        elif not client_ca.exists():
            t.error("tls_client_ca", f"{client_ca} does not exist; give a PEM file or a folder of them")
    auth = t.str_list("auth")
    for i, mech in enumerate(auth):
        if mech.upper() not in AUTH_MECHANISMS:
            t.error(f"auth[{i}]", f"{mech!r} is not a mechanism the gateway offers; give "
                    f"{' and/or '.join(repr(m) for m in AUTH_MECHANISMS)}")
    auth = tuple(dict.fromkeys(m.upper() for m in auth if m.upper() in AUTH_MECHANISMS))
    users_file = t.path("users_file")
    auth_required = t.flag("auth_required", False)
    if auth and cert is None:
        t.error("auth", "SMTP AUTH is offered only over TLS (the password would cross in "
                "clear): set tls_cert and tls_key on this listener")
    if auth and users_file is None:
        t.error("users_file", "a listener with auth needs the users to check passwords "
                "against: create one with `filterlang users -f users.db add NAME` and set "
                "users_file = \"users.db\"")
    if users_file is not None:
        from runtime.config import users  # only for submission listeners

        if not auth:
            t.error("users_file", "is only read with auth = [\"PLAIN\", \"LOGIN\"]; set auth "
                    "or remove users_file")
        elif not users_file.is_file():
            t.error("users_file", f"{users_file} does not exist; create it with "
                    f"`filterlang users -f {users_file} add NAME`")
        else:
            try:
                users.read(users_file)
            except users.UsersFileError as exc:
                t.error("users_file", str(exc).replace("\n", "; "))
    if auth_required and not auth:
        t.error("auth_required", "requiring AUTH needs auth = [\"PLAIN\", \"LOGIN\"] (and "
                "users_file) on this listener")
    return Listener(
        name=t.text("name", f"listener{index}"),
        address=t.text("address", "127.0.0.1"),
        port=t.integer("port", 2525, minimum=0),
        hostname=t.text("hostname"),
        tls_cert=cert,
        tls_key=key,
        require_tls=require_tls,
        tls_client_ca=client_ca,
        max_line_length=t.integer("max_line_length", 1000, minimum=80),
        max_commands=t.integer("max_commands", 1000, minimum=1),
        command_timeout=t.number("command_timeout", 300.0, minimum=1.0),
        session_timeout=t.number("session_timeout", 600.0, minimum=1.0),
        max_connections=t.integer("max_connections", 1000, minimum=1),
        auth=auth,
        users_file=users_file,
        auth_required=auth_required,
        auth_max_failures=t.integer("auth_max_failures", 5, minimum=1),
        auth_failure_window=t.number("auth_failure_window", 900.0, minimum=1.0),
        auth_failure_delay=t.number("auth_failure_delay", 1.0, minimum=0.0),
        ldap_group_query=t.text("ldap_group_query"),
    )


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?")


def _sender_group(name: str, t: Table) -> SenderGroup:
    nets = []
    for i, text in enumerate(t.str_list("ips")):
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            t.error(f"ips[{i}]", f"{text!r} is not an IP address or CIDR (e.g. 192.0.2.0/24)")
    return SenderGroup(name, tuple(nets), t.str_list("hosts"), t.text("policy", "", required=True),
                       t.str_list("tls_subjects"))


def _policy(name: str, t: Table) -> MailFlowPolicy:
    action = t.choice("action", POLICY_ACTIONS, "ACCEPT")
    return MailFlowPolicy(
        name=name,
        action=action,
        direction=t.choice("direction", ("incoming", "outgoing"),
                           "outgoing" if action == "RELAY" else "incoming"),
        max_message_size=t.integer("max_message_size", 20 * 1024 * 1024, minimum=1024),
        max_recipients=t.integer("max_recipients", 100, minimum=1),
        max_messages_per_hour=t.integer("max_messages_per_hour", 0),
        max_connections_per_ip=t.integer("max_connections_per_ip", 50),
        max_messages_per_connection=t.integer("max_messages_per_connection", 0),
        max_recipients_per_hour=t.integer("max_recipients_per_hour", 0),
        max_recipients_per_hour_per_sender=t.integer("max_recipients_per_hour_per_sender", 0),
        smime_decrypt_verify=t.flag("smime_decrypt_verify", False),
        smime_signature=t.choice("smime_signature", ("retain", "remove"), "retain"),
        harvest=t.flag("harvest", False),
        harvest_on_failed_verification=t.flag("harvest_on_failed_verification", False),
        harvest_updated_keys=t.flag("harvest_updated_keys", False),
        max_header_bytes=t.integer("max_header_bytes", 1024 * 1024, minimum=1024),
        max_header_fields=t.integer("max_header_fields", 1000, minimum=10),
        max_addresses_per_header=t.integer("max_addresses_per_header", 1000, minimum=1),
        max_mime_parts=t.integer("max_mime_parts", 1000, minimum=1),
        max_mime_depth=t.integer("max_mime_depth", 50, minimum=2),
        bare_line_endings=t.choice("bare_line_endings", BARE_LINE_ENDINGS, "reject"),
        require_tls=t.flag("require_tls", False),
        auth_relay=t.flag("auth_relay", True),
    )


def _certificate(name: str, t: Table) -> Certificate:
    return Certificate(name, t.path("cert", "", required=True), t.path("key"))


def _profile(name: str, t: Table) -> SendingProfile:
    t.known("cipher")  # read only when given: a misspelling of it still gets its name
    mode = t.choice("mode", PROFILE_MODES)
    signing = t.text("signing_certificate")
    if mode in ("sign", "sign-encrypt", "triple") and signing is None:
        t.error("signing_certificate", f"mode {mode!r} signs: name a [certificates] entry")
    return SendingProfile(
        name=name,
        mode=mode or "sign",
        signing_certificate=signing,
        sign_mode=t.choice("sign_mode", SIGN_MODES, "detached"),
        missing_key_action=t.choice("missing_key_action", MISSING_KEY_ACTIONS, "bounce"),
        cipher=t.choice("cipher", CIPHERS, None) if t.has("cipher") else None,
    )


def _encryption_profile(name: str, t: Table) -> EncryptionProfile:
    ca = t.path("tls_ca_file")
    if ca is not None and not ca.is_file():
        t.error("tls_ca_file", f"{ca} is not a file; give a PEM file of the CAs that may sign "
                "the next hop's certificate")
    return EncryptionProfile(
        name=name,
        sending_profile=t.text("sending_profile", "", required=True),
        tls_verify=t.flag("tls_verify", False),
        tls_ca_file=ca,
    )


def _check_encryption_profiles(root: Table, encryption: dict[str, EncryptionProfile],
                               profiles: dict[str, SendingProfile]) -> None:
    for enc in encryption.values():
        key = f"encryption_profiles.{enc.name}.sending_profile"
        prof = profiles.get(enc.sending_profile)
        if not enc.sending_profile:
            continue  # (reported as required)
        if prof is None:
            root.error(key, f"no sending profile {enc.sending_profile!r}; add "
                       f"[profiles.{enc.sending_profile}] with a mode that encrypts")
        elif prof.mode not in ENCRYPTING_MODES:
            # Fail safe: an "encryption" that only signs would send the content in clear.
            root.error(key, f"sending profile {enc.sending_profile!r} has mode {prof.mode!r}, "
                       f"which does not encrypt; use one of {', '.join(ENCRYPTING_MODES)}")
        if enc.tls_ca_file is not None and not enc.tls_verify:
            root.error(f"encryption_profiles.{enc.name}.tls_ca_file",
                       "is only used with tls_verify = true; set it or remove tls_ca_file")


def _mail_policy(name: str, t: Table, outgoing: bool, quarantines: frozenset[str]) -> MailPolicy:
    return MailPolicy(
        name,
        t.str_list("senders"),
        t.str_list("recipients"),
        tuple((t.base_dir / p).resolve() for p in t.str_list("content_filters")),
        policy_scanning(t, outgoing, quarantines),
    )


def _host_port(t: Table, name: str) -> str | None:
    value = t.text(name)
    if value is not None:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            t.error(name, f"must be 'host:port' (e.g. '127.0.0.1:10026'), not {value!r}")
            return None
    return value


_ROUTE_FORMS = ('give "host:port", a list of them (tried in order), a list of tables '
                '{ host = "...", port = 25, preference = 10 }, "mx" or "maildir:/path"')


def _route_host(t: Table, where: str, text: str) -> tuple[str, int] | None:
    """ "host:port", "[address]:port" or "host" (port 25), checked; None after an error."""
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            t.error(where, f"{text!r}: an address literal is written [address]:port")
            return None
        port_text = rest[1:]
        try:
            ipaddress.ip_address(host.removeprefix("IPv6:"))
        except ValueError:
            t.error(where, f"{text!r}: {host!r} in brackets is not an IP address")
            return None
        host = host.removeprefix("IPv6:")
    elif text.count(":") > 1:
        t.error(where, f"{text!r}: write an IPv6 address in brackets, [2001:db8::1]:25")
        return None
    else:
        host, _, port_text = text.partition(":")
        if ":" in text and not port_text:
            port_text = "missing"
        if not _HOSTNAME.fullmatch(host):
            t.error(where, f"{text!r}: {host!r} is not a host name or address; {_ROUTE_FORMS}")
            return None
    if not port_text:
        return host, 25
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        t.error(where, f"{text!r}: the port must be a number from 1 to 65535")
        return None
    return host, int(port_text)


def _route(t: Table, name: str, value: Any) -> Route | None:
    where = f'"{name}"'
    items = [value] if isinstance(value, str) else value
    if not items:
        t.error(where, f"names no next hop; {_ROUTE_FORMS}")
        return None
    hops: list[tuple[int, int, tuple[str, int]]] = []  # (preference, position, hop)
    for i, item in enumerate(items):
        at = where if isinstance(value, str) else f"{where}[{i}]"
        if isinstance(item, dict):
            unknown = set(item) - {"host", "port", "preference"}
            if unknown:
                t.error(at, f"unknown key {sorted(unknown)[0]!r}; a next hop's table has host, "
                        "port and preference")
                continue
            host, port, pref = item.get("host"), item.get("port", 25), item.get("preference", 0)
            if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool) \
                    or not isinstance(pref, int) or isinstance(pref, bool):
                t.error(at, "needs host (a string), and port and preference as integers")
                continue
            hop = _route_host(t, at, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            if hop is not None:
                hops.append((pref, i, hop))
            continue
        if not isinstance(item, str):
            t.error(at, f"must be a string or a table, not {type(item).__name__}; {_ROUTE_FORMS}")
            continue
        text = item.strip()
        if text.lower().startswith("lmtp:"):
            # The SMTP client speaks SMTP: LMTP's LHLO and its one reply per recipient after
            # DATA would need a client of their own; refused rather than half-spoken.
            t.error(at, f"{text!r}: lmtp: next hops are not supported (the gateway's client "
                    "speaks SMTP only); route to the LMTP server's SMTP port, or use maildir:")
            continue
        if text.lower() == "mx" or text.lower().startswith("maildir:"):
            if len(items) > 1:
                t.error(at, f"{text!r} must be the route's only next hop")
                continue
            if text.lower() == "mx":
                return Route(name, "mx")
            folder = text[len("maildir:"):]
            if not folder:
                t.error(at, "maildir: needs a folder, e.g. \"maildir:/var/mail/partner\"")
                return None
            return Route(name, "maildir", maildir=(t.base_dir / folder).resolve())
        hop = _route_host(t, at, text)
        if hop is not None:
            hops.append((0, i, hop))
    if not hops:
        return None
    return Route(name, "hosts", tuple(h for _, _, h in sorted(hops)))


def _routes(t: Table) -> Routes:
    entries: dict[str, Route] = {}
    for name, value in t._data.items():
        t.known(name)
        if not isinstance(value, str | list):
            t.error(f'"{name}"', f"must be a string or a list; {_ROUTE_FORMS}")
            continue
        key = name.strip().lower().rstrip(".")
        labels = key.removeprefix(".").split(".")
        if key != "*" and (not all(_HOSTNAME.fullmatch(label) for label in labels) or "@" in key):
            t.error(f'"{name}"', 'must be a domain ("example.com"), ".example.com" for its '
                    'subdomains, or "*" for every other domain')
            continue
        if key in entries:
            t.error(f'"{name}"', f"the same domain as {entries[key].name!r}; keep one")
            continue
        route = _route(t, key, value)
        if route is not None:
            entries[key] = route
    return Routes(entries)


def _delivery(t: Table, routes: Routes | None = None) -> Delivery:
    schedule = t._get("retry_schedule", list, [60, 300, 900, 3600], False)
    if not schedule or not all(
        isinstance(s, int | float) and not isinstance(s, bool) and s > 0 for s in schedule
    ):
        t.error("retry_schedule", "must be a non-empty list of positive seconds, e.g. [60, 300]")
        schedule = [60]
    d = Delivery(
        relay=_host_port(t, "relay"),
        reinject=_host_port(t, "reinject"),
        mx=t.flag("mx", False),
        maildir=t.path("maildir"),
        retry_schedule=tuple(float(s) for s in schedule),
        max_queue_lifetime=t.number("max_queue_lifetime", 5 * 86400.0, minimum=1.0),
        delay_notice_after=t.number("delay_notice_after", 4 * 3600.0, minimum=0.0),
        connect_timeout=t.number("connect_timeout", 30.0, minimum=0.1),
        workers=t.integer("workers", DELIVERY_THREADS, minimum=1),
        mx_port=t.integer("mx_port", 25, minimum=1),
    )
    given = sum(t.has(k) for k in ("relay", "reinject", "maildir")) + int(d.mx)
    # A "*" route takes every domain no other route names: [delivery] may then name no target
    # (it would never be used), but still not two.
    if given > 1 or (given == 0 and (routes is None or "*" not in routes.entries)):
        also = ('; or add a "*" entry to [routes] for the domains no route names'
                if given == 0 and routes is not None and routes.entries else "")
        t.error("relay", "set exactly one delivery target: relay, reinject, mx = true or "
                f"maildir{also}")
    t.finish()
    return d


def _nameserver(t: Table, i: int, text: str) -> tuple[str, int] | None:
    host, port = text, 53
    if text.count(":") == 1 or text.startswith("["):  # ip:port, [v6]:port
        h, _, p = text.rpartition(":")
        if not p.isdigit():
            t.error(f"nameservers[{i}]", f"{text!r}: give 'IP' or 'IP:port' (e.g. '127.0.0.1:5353')")
            return None
        host, port = h.strip("[]"), int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        t.error(f"nameservers[{i}]", f"{text!r} is not an IP address (a name server is given by "
                "address, e.g. '127.0.0.1:5353')")
        return None
    if not 0 < port < 65536:
        t.error(f"nameservers[{i}]", f"{text!r}: port must be 1-65535")
        return None
    return host, port


def _dns(t: Table) -> Dns:
    servers = [_nameserver(t, i, s) for i, s in enumerate(t.str_list("nameservers"))]
    zone = t.text("reputation_zone")
    uri_lists = []
    t.str_list("uri_lists")  # reports the entries that are not strings
    raw = t._data.get("uri_lists")
    for i, name in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(name, str):
            continue
        cleaned = name.strip().strip(".").lower()
        if not cleaned or any(c in cleaned for c in " /@:") or ".." in cleaned:
            t.error(f"uri_lists[{i}]", f"{name!r} is not a DNS zone (e.g. 'dbl.example.net')")
        else:
            uri_lists.append(cleaned)
    d = Dns(tuple(s for s in servers if s is not None),
            t.number("timeout", 5.0, minimum=0.1),
            t.integer("cache_size", 10000, minimum=0),
            zone.strip(".").lower() if isinstance(zone, str) and zone.strip(".") else None,
            frozenset(uri_lists), t.integer("uri_limit", 20, minimum=1))
    t.finish()
    return d


def _authentication(t: Table) -> Authentication | None:
    if not t._data:
        return None
    a = Authentication(t.text("authserv_id", required=True) or "",
                       t.flag("spf", True), t.flag("dkim", True), t.flag("dmarc", True),
                       t.flag("arc", True))
    if a.authserv_id and not all(c.isalnum() or c in ".-_" for c in a.authserv_id):
        t.error("authserv_id", f"{a.authserv_id!r}: give the gateway's host name "
                "(letters, digits, '.', '-'), e.g. 'mx.example.org'")
    return a


def _dkim(domain: str, t: Table) -> DkimSigning:
    canon = t.choice("canonicalization", DKIM_CANONICALIZATIONS, "relaxed/simple")
    headers = t.str_list("headers") if t.has("headers") else DKIM_HEADERS
    if not any(h.lower() == "from" for h in headers):
        t.error("headers", "must include From (RFC 6376 5.4: From is always signed)")
    key = t.path("key", required=True)
    if key is not None and not Path(key).is_file():
        written = t._data.get("key")  # as written: relative to this file's folder
        t.error("key", f"{written} does not exist; make one with `filterlang dkim keygen "
                f"--domain {domain} --selector SELECTOR --out FILE`")
    return DkimSigning(domain.lower().rstrip("."), t.text("selector", "", required=True),
                       key, canon, headers)


def _ldap_filter(t: Table, template: str) -> set[str]:
    """The placeholders `template` uses; each mistake in it is one error on `filter`."""
    import string

    from ldap3.operation.search import parse_filter
    from ldap3.utils.conv import escape_filter_chars

    try:
        used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        t.error("filter", f"{template!r}: {exc}; placeholders are {{a}}, {{u}}, {{d}}, {{g}} "
                "(write {{ and }} for a brace)")
        return set()
    unknown = sorted(used - set(LDAP_PLACEHOLDERS))
    if unknown:
        t.error("filter", f"unknown placeholder {{{unknown[0]}}}; use " + ", ".join(
            f"{{{k}}} ({v})" for k, v in LDAP_PLACEHOLDERS.items()))
        return used
    if not used & {"a", "u"}:
        t.error("filter", "must name the address: {a} (or {u} and {d}), e.g. "
                "'(&(objectClass=nisMailAlias)(cn={g})(rfc822MailMember={a}))'")
        return used
    sample = {k: escape_filter_chars(f"x*{k}(y)") for k in LDAP_PLACEHOLDERS}
    try:
        parse_filter(template.format(**sample), None, True, False, None, False)
    except Exception:  # ldap3 says only "invalid filter", whatever is wrong
        t.error("filter", f"{template!r} is not an LDAP search filter (RFC 4515), e.g. "
                "'(&(objectClass=nisMailAlias)(cn={g})(rfc822MailMember={a}))'")
    return used


_LDAP_URL = re.compile(r"ldaps?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?/?",
                       re.IGNORECASE)


def _ldap_query(name: str, t: Table) -> LdapQuery:
    url = t.text("url", "", required=True) or ""
    if url and not _LDAP_URL.fullmatch(url):
        t.error("url", f"{url!r}: give ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
    template = t.text("filter", "", required=True) or ""
    used = _ldap_filter(t, template) if template else set()
    attribute = t.text("attribute")
    if template and "g" not in used and not attribute:
        t.error("attribute", "the filter has no {g}, so it finds an address's groups: name the "
                "attribute holding the group's name (e.g. 'cn', or 'memberOf')")
    bind_dn = t.text("bind_dn")
    password = t.text("bind_password")
    pfile = t.path("bind_password_file")
    if password is not None and pfile is not None:
        t.error("bind_password_file", "give bind_password or bind_password_file, not both")
    elif pfile is not None:
        try:
            password = pfile.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            t.error("bind_password_file", f"cannot read {pfile}: "
                    f"{getattr(exc, 'strerror', None) or exc}")
    if password is not None and bind_dn is None:
        t.error("bind_dn", "a password needs the DN it binds as; add bind_dn")
    ca_file = t.path("ca_file")
    if ca_file is not None and not ca_file.is_file():
        t.error("ca_file", f"{ca_file} is not a file; give the PEM CA certificates of the "
                "server's certificate")
    return LdapQuery(
        name, url, t.text("base", "", required=True) or "", template, bind_dn, password,
        attribute, t.number("timeout", 5.0, minimum=0.1), t.number("cache_ttl", 300.0),
        t.integer("cache_size", 10000, minimum=0), ca_file)


def _ldap(t: Table, listeners: list[Listener]) -> Ldap:
    queries: dict[str, LdapQuery] = {}
    for name, value in t._data.items():
        if name == "group_query":
            continue
        if not isinstance(value, dict):
            t.error(name, "must be a table ([ldap.NAME] with url, base and filter); the only "
                    "other key of [ldap] is group_query")
            continue
        sub = Table(value, t.key(name), t._file, t._issues)
        queries[name] = _ldap_query(name, sub)
        sub.finish()
    group_query = t.text("group_query")
    if group_query is None and len(queries) == 1:
        group_query = next(iter(queries))
    if group_query is not None and group_query not in queries:
        t.error("group_query", f"no query {group_query!r}; add [ldap.{group_query}]")
    if group_query is None and len(queries) > 1 and any(
            lst.ldap_group_query is None for lst in listeners):
        t.error("group_query", "several queries are defined: name the one the group rules "
                f"use ({', '.join(sorted(queries))}), or give each listener its "
                "ldap_group_query")
    for i, lst in enumerate(listeners):
        if lst.ldap_group_query is not None and lst.ldap_group_query not in queries:
            t._issues.append(ConfigIssue(str(t._file), f"listeners[{i}].ldap_group_query",
                                         f"no query {lst.ldap_group_query!r}; add "
                                         f"[ldap.{lst.ldap_group_query}]"))
    t.finish(known=[n for n in t._data if n != "group_query"])  # (each reported above)
    return Ldap(queries, group_query)


def _check_policy_groups(root: Table, ldap: Ldap, incoming: tuple[MailPolicy, ...],
                         outgoing: tuple[MailPolicy, ...]) -> None:
    """Mail policy entries `NAME.ldapgroup: GROUP` name an [ldap.NAME] query: one that is
    not defined could only ever be "not in the group"."""
    for kind, pols in (("incoming_policies", incoming), ("outgoing_policies", outgoing)):
        for p in pols:
            for part, entries in (("senders", p.senders), ("recipients", p.recipients)):
                for i, e in enumerate(entries):
                    query, sep, group = e.partition(".ldapgroup:")
                    if not sep:
                        continue
                    where = f"{kind}.{p.name}.{part}[{i}]"
                    if not group.strip():
                        root.error(where, f"{e!r}: name the group: '{query}.ldapgroup: GROUP'")
                    elif query.strip() not in ldap.queries:
                        root.error(where, f"{e!r}: no LDAP query {query.strip()!r}; add "
                                   f"[ldap.{query.strip()}]")


def _allow_unavailable(root: Table) -> frozenset[str]:
    from filterlang.services import PROVIDER_NAMES

    names = root.str_list("allow_unavailable")
    for i, name in enumerate(names):
        if name not in PROVIDER_NAMES:
            import difflib

            hint = difflib.get_close_matches(name, sorted(PROVIDER_NAMES), n=1)
            root.error(f"allow_unavailable[{i}]", f"no provider {name!r}" + (
                f"; did you mean {hint[0]!r}?" if hint else
                f"; providers: {', '.join(sorted(PROVIDER_NAMES))}"))
    return frozenset(names)


def _smime(t: Table, certificates: dict[str, Certificate],
           quarantines: dict[str, Quarantine]) -> Smime:
    anchors = tuple((t.base_dir / p).resolve() for p in t.str_list("trust_anchors"))
    crls = tuple((t.base_dir / p).resolve() for p in t.str_list("crls"))
    for key, paths in (("trust_anchors", anchors), ("crls", crls)):
        for i, p in enumerate(paths):
            if not p.exists():
                t.error(f"{key}[{i}]", f"{p} does not exist; give a PEM file or a folder of them")
    names: tuple[str, ...] | None = None
    if t.has("decryption_certificates"):
        names = t.str_list("decryption_certificates")
        for i, n in enumerate(names):
            cert = certificates.get(n)
            if cert is None:
                t.error(f"decryption_certificates[{i}]", f"no certificate {n!r}; add [certificates.{n}]")
            elif cert.key is None:
                t.error(f"decryption_certificates[{i}]",
                        f"certificate {n!r} has no key; decryption needs certificates.{n}.key")
    on_failure = t.choice("on_decrypt_failure", ("deliver", "quarantine"), "deliver")
    quarantine = t.text("decrypt_failure_quarantine")
    if on_failure == "quarantine":
        if quarantine is None:
            t.error("decrypt_failure_quarantine", "on_decrypt_failure = 'quarantine' needs a "
                    "quarantine name; add one from [quarantines]")
        elif quarantine not in quarantines:
            t.error("decrypt_failure_quarantine", f"no quarantine {quarantine!r}; add [quarantines.{quarantine}]")
    require_attrs = t.flag("require_signed_attributes", True)
    domain_certs = t.flag("accept_domain_certificates", True)
    legacy = t.flag("legacy", False)
    at_signing_time = t.flag("at_signing_time", False)
    if at_signing_time and not legacy:
        t.error("at_signing_time", "validating at the signing time trusts the sender's clock; "
                "it is only for old mail: set legacy = true as well, or remove it")
    decrypt_3des = t.flag("decrypt_3des", True)
    t.finish()
    return Smime(anchors, crls, names, on_failure, quarantine, require_attrs, domain_certs,
                 legacy, at_signing_time, decrypt_3des)


def _tls_policy(t: Table, base: TlsPolicy) -> TlsPolicy:
    """One [tls.outbound] table (or a per-domain one, whose unset keys come from `base`)."""
    if t.has("level") and t._data.get("level") == "dane":
        t._seen.add("level")
        # DANE trusts TLSA records only when DNSSEC validated them; the resolver here
        # (dnspython through the system's stub resolver) does not validate, so an answer an
        # attacker forged would decide which certificate is trusted.
        t.error("level", "'dane' needs DNSSEC-validated TLSA records, and the gateway's DNS "
                "resolver cannot validate DNSSEC; use 'verify' or 'secure' (with match)")
        level = base.level
    else:
        level = t.choice("level", TLS_LEVELS, base.level)
    match = t.str_list("match") if t.has("match") else base.match
    for i, name in enumerate(match):
        if not name.strip(".") or " " in name:
            t.error(f"match[{i}]", f"{name!r} is not a host name (or .domain for its subdomains)")
    ca_file = t.path("ca_file") if t.has("ca_file") else base.ca_file
    if t.has("ca_file") and ca_file is not None and not ca_file.exists():
        t.error("ca_file", f"{t._data['ca_file']!r} does not exist (relative to this file); "
                "give a PEM file or a folder of them")
    if match and level not in ("verify", "secure"):
        t.error("match", f"names are checked only at level 'verify' or 'secure', not {level!r}")
    ciphers = t.text("ciphers", base.ciphers)
    if ciphers is not None:
        import ssl  # only here: checking a cipher list needs a context

        try:
            ssl.create_default_context().set_ciphers(ciphers)
        except (ssl.SSLError, ValueError):  # ValueError: a NUL in the text
            t.error("ciphers", f"OpenSSL knows no cipher in {ciphers!r}; give an OpenSSL cipher "
                    "list such as 'ECDHE+AESGCM:ECDHE+CHACHA20'")
    return TlsPolicy(level=level, match=tuple(n.lower() for n in match),
                     min_version=t.choice("min_version", TLS_VERSIONS, base.min_version),
                     ciphers=ciphers, ca_file=ca_file)


def _tls(t: Table) -> OutboundTls:
    out = t.table("outbound")
    default = _tls_policy(out, TlsPolicy())
    mta_sts = out.flag("mta_sts", True)
    mta_sts_port = out.integer("mta_sts_port", 443, minimum=1)
    if mta_sts_port > 65535:
        out.error("mta_sts_port", f"must be a port from 1 to 65535, not {mta_sts_port}")
    domains: dict[str, TlsPolicy] = {}
    for name, value in out._get("domains", dict, {}, False).items():
        # Quoted in the key names we report: domain names hold dots (and ".example.com" is
        # one key, not two tables).
        where = f'domains."{name}"'
        domain = name.lower().rstrip(".")
        if not isinstance(value, dict):
            out.error(where, "must be a table ([tls.outbound.domains.\"example.com\"])")
            continue
        if not domain.strip(".") or "@" in domain or " " in domain:
            out.error(where, "must be a domain (example.com) or .example.com for its subdomains")
        dt = Table(value, out.key(where), out._file, out._issues)
        domains[domain] = _tls_policy(dt, default)
        dt.finish()
    out.finish()
    t.finish()
    return OutboundTls(default, domains, mta_sts, mta_sts_port)


def _named_files(t: Table) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name in list(t._data):
        p = t.path(name)
        if p is not None:
            out[name] = p
    return out


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), "(file)", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue(str(path), "(syntax)", f"{exc}; fix the TOML syntax")]) from None
    except UnicodeDecodeError as exc:  # tomllib decodes before it parses: no line to name
        raise ConfigError([ConfigIssue(
            str(path), "(syntax)", f"invalid UTF-8 byte at offset {exc.start}; save the file as UTF-8",
        )]) from None


def load_profiles_file(path: Path, issues: list[ConfigIssue]) -> dict[str, SendingProfile]:
    """Load a profiles-only TOML file (`[profiles.NAME]` sections)."""
    root = Table(_load_toml(path), "", path, issues)
    profiles = {p.name: p for p in root.each("profiles", _profile)}
    root.finish()
    return profiles


def load_config(path: str | Path) -> GatewayConfig:
    """Load and check `gateway.toml`; raise `ConfigError` listing every mistake."""
    path = Path(path).resolve()
    issues: list[ConfigIssue] = []
    root = Table(_load_toml(path), "", path, issues)

    st = root.table("storage")
    data_dir = st.path("data_dir", "var")
    url = st.text("keystore_url", f"sqlite:///{data_dir}/keys.sqlite3")
    if isinstance(url, str) and url.startswith("sqlite:///") and not url[10:].startswith("/"):
        url = f"sqlite:///{(path.parent / url[10:]).resolve()}"  # relative to this file
    spool_sync = st.choice("spool_sync", SPOOL_SYNC_MODES, "filesystem")
    storage = Storage(data_dir, url, spool_sync,
                      st.integer("min_free_space", 100 * 1024 * 1024, minimum=0))
    if not storage.keystore_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        st.error("keystore_url", "must start with sqlite:/// or postgresql://")
    st.finish()

    listeners = []
    for i, t in enumerate(root.array_of_tables("listeners")):
        listeners.append(_listener(t, i))
        t.finish()
    if not listeners:
        root.error("listeners", "add at least one [[listeners]] section with address and port")

    policies = {p.name: p for p in root.each("policies", _policy)}
    if "default" not in policies:
        # Never an open relay by default: unknown senders may only mail our local_domains.
        policies["default"] = MailFlowPolicy("default", action="ACCEPT")
    default_policy = root.text("default_policy", "default")
    groups = root.each("sender_groups", _sender_group)
    for g in groups:
        if g.policy and g.policy not in policies:
            root.error(f"sender_groups.{g.name}.policy", f"no policy {g.policy!r}; add [policies.{g.policy}]")
    if default_policy not in policies:
        root.error("default_policy", f"no policy {default_policy!r}; add [policies.{default_policy}]")

    certificates = {c.name: c for c in root.each("certificates", _certificate)}
    profiles = {p.name: p for p in root.each("profiles", _profile)}
    pfile = root.path("profiles_file")
    if pfile is not None:
        try:
            for name, prof in load_profiles_file(pfile, issues).items():
                if name in profiles:
                    root.error("profiles_file", f"profile {name!r} is also defined in this file; keep one")
                profiles[name] = prof
        except ConfigError as exc:
            issues.extend(exc.issues)
    for prof in profiles.values():
        if prof.signing_certificate and prof.signing_certificate not in certificates:
            root.error(
                f"profiles.{prof.name}.signing_certificate",
                f"no certificate {prof.signing_certificate!r}; add [certificates.{prof.signing_certificate}]",
            )

    encryption = {e.name: e for e in root.each("encryption_profiles", _encryption_profile)}
    _check_encryption_profiles(root, encryption, profiles)

    message_filters = tuple((path.parent / p).resolve() for p in root.str_list("message_filters"))
    quarantines = {
        q.name: q
        for q in root.each("quarantines", lambda n, t: Quarantine(n, t.integer("retention_days", 14, minimum=1)))
    }
    names = frozenset(quarantines)
    incoming = root.each("incoming_policies", lambda n, t: _mail_policy(n, t, False, names))
    outgoing = root.each("outgoing_policies", lambda n, t: _mail_policy(n, t, True, names))
    dictionaries = _named_files(root.table("dictionaries"))
    text_resources = _named_files(root.table("text_resources"))
    routes = _routes(root.table("routes"))
    delivery = _delivery(root.table("delivery"), routes)
    smime = _smime(root.table("smime"), certificates, quarantines)
    at = root.table("alerts")
    alerts = Alerts(at.path("log"), at.text("email"))
    at.finish()
    mt = root.table("metrics")
    metrics = Metrics(mt.text("address", "127.0.0.1"), mt.integer("port", 0))
    if metrics.address not in ("127.0.0.1", "::1", "localhost"):
        mt.error("address", "the metrics endpoint must listen on loopback (127.0.0.1)")
    mt.finish()
    local_domains = frozenset(d.lower().lstrip("@") for d in root.str_list("local_domains"))
    workers = root.integer("workers", 0, minimum=0)
    queue_workers = root.integer("queue_workers", 0, minimum=0)
    on_filter_error = root.choice("on_filter_error", ("bypass", "tempfail"), "bypass")
    dns_config = _dns(root.table("dns"))
    at = root.table("authentication")
    authentication = _authentication(at)
    at.finish()
    dkim = {d.domain: d for d in root.each("dkim", _dkim)}
    st, vt = root.table("antispam"), root.table("antivirus")
    spam_scanner, virus_scanner = antispam(st), antivirus(vt)
    st.finish()
    vt.finish()
    hostname = root.text("hostname") or socket.getfqdn()
    if not _HOSTNAME.fullmatch(hostname):
        root.error("hostname", f"{hostname!r} is not a host name (letters, digits, '-' and '.')")
    postmaster = root.text("postmaster") or f"postmaster@{hostname}"
    if postmaster.count("@") != 1 or any(c in postmaster for c in " <>\r\n"):
        root.error("postmaster", f"{postmaster!r} is not an address like postmaster@example.org")
    tls_outbound = _tls(root.table("tls"))
    ldap = _ldap(root.table("ldap"), listeners)
    _check_policy_groups(root, ldap, incoming, outgoing)
    allow_unavailable = _allow_unavailable(root)
    ipv4_prefix = _prefix_length(root, "client_ipv4_prefix_length", 32)
    ipv6_prefix = _prefix_length(root, "client_ipv6_prefix_length", 64, 128)
    root.finish(known=("dictionaries", "text_resources", "alerts", "metrics", "storage", "delivery",
                       "smime", "dns", "authentication", "dkim", "tls", "antispam",
                       "antivirus", "routes", "ldap"))
    if issues:
        raise ConfigError(issues)
    return GatewayConfig(
        source=path,
        storage=storage,
        listeners=tuple(listeners),
        sender_groups=groups,
        policies=policies,
        default_policy=default_policy,
        certificates=certificates,
        profiles=profiles,
        message_filters=message_filters,
        incoming_policies=incoming,
        outgoing_policies=outgoing,
        dictionaries=dictionaries,
        text_resources=text_resources,
        delivery=delivery,
        quarantines=quarantines,
        alerts=alerts,
        metrics=metrics,
        workers=workers,
        queue_workers=queue_workers,
        on_filter_error=on_filter_error,
        profiles_file=pfile,
        local_domains=local_domains,
        smime=smime,
        encryption_profiles=encryption,
        dns=dns_config,
        authentication=authentication,
        dkim=dkim,
        antispam=spam_scanner,
        antivirus=virus_scanner,
        hostname=hostname,
        postmaster=postmaster,
        tls_outbound=tls_outbound,
        routes=routes,
        ldap=ldap,
        allow_unavailable=allow_unavailable,
        client_ipv4_prefix_length=ipv4_prefix,
        client_ipv6_prefix_length=ipv6_prefix,
    )


def _prefix_length(root: Table, name: str, default: int, longest: int = 32) -> int:
    """A network prefix length for counting clients, at least 8 and at most `longest`."""
    value = int(root.integer(name, default, minimum=8))
    if value > longest:
        root.error(name, f"must be at most {longest}, not {value}")
        return default
    return value
