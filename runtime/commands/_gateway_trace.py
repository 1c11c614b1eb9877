"""`filterlang test -c gateway.toml`: one message through the configured gateway, as AsyncOS's
`trace` does, with nothing sent and nothing stored.

The receipt is the listener's own code (host access table, recipient and size checks, the
Received line); the rest is the stages `filterlang serve` builds from the same file, run with
everything recorded; next hops come from the queue runner's router. The key store is a copy
(SQLite) or read-only (PostgreSQL) and quarantines are not written unless `--commit`.
"""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import attrs
from attrs import define, field

from runtime.config.config import GatewayConfig
from runtime.engine.plan import ActionPlan
from runtime.engine.run import StageResult
from runtime.engine.services import Services
from runtime.mta import listener as lst
from runtime.mta.dsn import RecipientStatus, build_dsn
from runtime.mta.quarantine import Quarantines
from runtime.mta.queue import Router
from runtime.mta.queue import hop_text as _hop
from runtime.mta.supervisor import mx_resolver
from runtime.pipeline.envelope import Envelope
from runtime.pipeline.flow import Stage, StageRecord, build_pipeline
from runtime.pipeline.offline import run_recorded
from runtime.pipeline.outcome import Leaving
from runtime.pipeline.stages import StageContext, load_context, stages_of
from runtime.pipeline.trace import MessageTrace
from smime import mime
from smime.compose import is_smime
from smime.keystore import KeyStore, KeyStoreUnavailableError, open_keystore
from smime.keystore._sqlite import SqliteKeyStore


@define
class Session:
    """What `filterlang test -c` stands in for the SMTP session of one message."""

    remote_ip: str = "127.0.0.1"
    helo: str = "localhost"
    listener: str = ""  # "" : the first configured listener
    mail_from: str = "sender@example.com"
    rcpts: list[str] = field(factory=lambda: ["rcpt@example.com"])
    auth_user: str = ""
    tls: bool = False
    tls_client_subject: str = ""  # a client certificate the listener verified (implies tls)


class ReadOnlyStore:
    """A key store that answers look-ups and refuses every write (PostgreSQL without
    `--commit`): harvesting reports that it was not tried, and no key use is counted."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def record_use(self, key_id: int, now: Any = None) -> None:
        return None

    def harvest(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyStoreUnavailableError("harvesting is not tried offline on PostgreSQL "
                                       "(give --commit to harvest for real)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def dry_store(url: str) -> KeyStore:
    """The key store as it is now, in a copy whose changes are thrown away."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        copy = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if Path(path).exists():
            source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                source.backup(copy)
            finally:
                source.close()
        return SqliteKeyStore(copy, f"{path} (a copy: filterlang test)")
    return cast(KeyStore, ReadOnlyStore(open_keystore(url)))


@define
class Gateway:
    """The configured gateway, loaded once for every message of a run."""

    config: GatewayConfig
    ctx: StageContext
    stages: tuple[Stage, ...]
    router: Router
    quarantines: Quarantines | None  # only with --commit
    alerts: list[str] = field(factory=list)
    recorded: Services | None = None  # --services: every message's answers, nothing asked

    @classmethod
    def load(cls, config: GatewayConfig, *, commit: bool = False,
             recorded: Services | None = None) -> Gateway:
        store = None if commit else dry_store(config.storage.keystore_url)
        alerts: list[str] = []
        ctx = load_context(config, store=store, alert=lambda kind, text: alerts.append(f"{kind}: {text}"))
        resolver = (mx_resolver(config) if config.delivery.mx or config.routes.uses_mx
                    else None)
        quarantines = (Quarantines(config.storage.data_dir / "quarantine", frozenset(config.quarantines))
                       if commit else None)
        return cls(config, ctx, build_pipeline(stages_of(ctx)), Router(config.delivery, resolver, config.routes),
                   quarantines, alerts, recorded)

    def listener_name(self, given: str) -> str:
        if given:
            return given
        return self.config.listeners[0].name if self.config.listeners else ""

    def hostname(self, listener: str) -> str:
        found = next((x for x in self.config.listeners if x.name == listener), None)
        return (found.hostname if found is not None else None) or self.config.hostname \
            or socket.getfqdn()


def _sender_group(config: GatewayConfig, ip: str, helo: str, subject: str = "") -> str:
    policy = lst.choose_policy(config, ip, helo, subject)
    for g in config.sender_groups:
        if g.policy == policy.name and (lst.choose_policy(attrs.evolve(config, sender_groups=(g,)),
                                                          ip, helo, subject) is policy):
            return g.name
    return ""


def receive(gw: Gateway, s: Session, raw: bytes, n: int) -> tuple[Envelope | None, bytes, StageRecord]:
    """The listener's part: the mail flow policy, what SMTP would refuse, and the message as
    spooled (with our Received line). The envelope is None when nothing would be accepted."""
    config = gw.config
    tls = s.tls or bool(s.tls_client_subject)
    policy = lst.choose_policy(config, s.remote_ip, s.helo, s.tls_client_subject)
    listener = gw.listener_name(s.listener)
    found = next((x for x in config.listeners if x.name == listener), None)
    data = mime.to_crlf(raw)  # an SMTP client sends CRLF line ends
    facts: dict[str, Any] = {"listener": listener, "remote_ip": s.remote_ip, "helo": s.helo,
                             "sender_group": _sender_group(config, s.remote_ip, s.helo,
                                                           s.tls_client_subject) or None,
                             "policy": policy.name, "action": policy.action, "tls": tls}
    if s.tls_client_subject:
        facts["tls_client_subject"] = s.tls_client_subject
    if s.auth_user:
        facts["auth_user"] = s.auth_user  # as if the session had authenticated (SMTP AUTH)
    refused: dict[str, str] = {}
    problem = None
    if policy.action == "TCPREFUSE":
        problem = "connection refused (TCPREFUSE)"
    elif policy.action == "REJECT":
        problem = lst.POLICY_REJECT
    elif not tls and (policy.require_tls or (found is not None and found.require_tls)):
        problem = lst.TLS_REQUIRED
    elif not s.auth_user and found is not None and found.auth_required:
        problem = lst.AUTH_REQUIRED
    elif len(data) > policy.max_message_size:
        problem = lst.MESSAGE_TOO_BIG
    else:
        problem = lst.check_line_endings(data) or (
            lst.TOO_MANY_HOPS if lst.count_hops(data) >= lst.MAX_HOPS else None)
    accepted: list[str] = []
    for r in s.rcpts:
        if len(accepted) >= policy.max_recipients:
            refused[r] = lst.TOO_MANY_RCPTS.format(limit=policy.max_recipients)
        elif policy.action == "ACCEPT" and not _is_local(config, r) \
                and r.lower() != config.postmaster.lower() \
                and not lst.may_relay(policy, s.auth_user):
            refused[r] = lst.RELAY_DENIED
        else:
            accepted.append(r)
    if problem is None and not accepted:
        problem = "no recipient accepted"
    facts |= {"refused": refused, "problem": problem}
    title = f"listener {listener or '(none)'}: mail flow policy {policy.name} ({policy.action})"
    record = StageRecord("listener", title, facts)
    if problem is not None:
        return None, data, record
    queue_id = f"T{n:07d}"
    session = SimpleNamespace(peer=(s.remote_ip, 0), host_name=s.helo, extended_smtp=True)
    received = lst.received_header(cast(Any, session), gw.hostname(listener), queue_id,
                                   accepted, tls, bool(s.auth_user))
    env = Envelope(s.mail_from, tuple(accepted), rcpt_options=tuple(() for _ in accepted),
                   peer=s.remote_ip, policy=policy.name, helo=s.helo, listener=listener,
                   auth_user=s.auth_user, queue_id=queue_id,
                   tls_client_subject=s.tls_client_subject)
    return env, received + data, record


def _is_local(config: GatewayConfig, address: str) -> bool:
    domain = address.rpartition("@")[2].lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in config.local_domains)


_CTYPE = re.compile(rb"(?im)^content-type:[ \t]*([^;\r\n]+)((?:;[^\r\n]*|\r\n[ \t][^\r\n]*)*)")


def outline(data: bytes) -> str:
    """The S/MIME structure of a message, `filterlang smime inspect`-style, in one line."""
    head = data[: data.find(b"\r\n\r\n") + 2] if b"\r\n\r\n" in data else data
    m = _CTYPE.search(head)
    ctype = m.group(1).decode("ascii", "replace").strip().lower() if m else "text/plain"
    params = m.group(2).decode("ascii", "replace").lower() if m else ""
    signed, encrypted = is_smime(data)
    if encrypted:
        kind = "authenveloped-data" if "authenveloped" in params else "enveloped-data"
        return f"{ctype} ({kind})"
    if signed and ctype == "multipart/signed":
        return "multipart/signed (detached signature)"
    if signed:
        return f"{ctype} (opaque signed-data)"
    return ctype


def trace_message(gw: Gateway, s: Session, raw: bytes, name: str, n: int,
                  services: Services | None = None) -> MessageTrace:
    """One message through the configured gateway. The providers it configures are asked as
    the queue asks them, unless `services` (recorded answers: --services, a suite case's
    `services`) or the gateway's own recorded ones stand in for them."""
    env, data, received = receive(gw, s, raw, n)
    if env is None:
        t = MessageTrace(name, StageResult(ActionPlan(), []), records=[received])
        t.recipients = dict.fromkeys(s.rcpts, "refused")
        t.bounce_reasons = {r: received.facts["refused"].get(r) or received.facts["problem"]
                            for r in s.rcpts}
        return t
    recorded = services if services is not None else gw.recorded
    t = run_recorded(gw.stages, env, data, name=name, services=recorded,
                     prepare=recorded is None)
    t.records.insert(0, received)
    for r, why in received.facts["refused"].items():
        t.recipients[r] = "refused"
        t.bounce_reasons[r] = why
    if t.tempfail:
        return t
    bounced = [r for r, d in t.recipients.items() if d == "bounce"]
    leaving = list(t.leaving)
    if bounced:
        statuses = [RecipientStatus(r, "failed", "5.7.1", t.bounce_reasons[r]) for r in bounced]
        dsn = build_dsn(env, data, statuses, headers_only=t.headers_only_dsn)
        if dsn is not None:
            leaving.append(Leaving((env.mail_from,), dsn, "", note="DSN"))
    t.leaving = tuple(leaving)
    t.structure = [outline(m.data) for m in t.leaving]
    for m in t.leaving:
        for r in m.rcpts:
            if m.quarantine:
                hop = f"quarantine {m.quarantine}"
            else:
                dests = gw.router.route(r, m.alt_mailhost)
                hop = ", ".join(_hop(d) for d in dests) or "no route"
            t.next_hops.setdefault(r, hop)
    t.log += gw.alerts
    gw.alerts.clear()
    return t


def commit(gw: Gateway, t: MessageTrace) -> None:
    """--commit: park what the gateway would park (the key store was the real one already)."""
    if gw.quarantines is None:
        return
    for i, m in enumerate(t.leaving):
        if m.quarantine:
            env = Envelope(m.mail_from, m.rcpts, processed=True,
                           queue_id=f"test-{abs(hash((t.message, i))):x}")
            gw.quarantines.put(m.quarantine, env, m.data)


def write_outputs(gw: Gateway, t: MessageTrace, out: Path, stem: str) -> list[Path]:
    """Each message leaving, exactly as the next hop would get it (a maildir delivery starts
    with the Return-Path line the maildir transport writes)."""
    written: list[Path] = []
    for i, m in enumerate(t.leaving):
        what = "dsn" if m.note == "DSN" else (f"quarantine-{m.quarantine}" if m.quarantine else "deliver")
        name = f"{stem}.{i + 1}.{what}.eml" if len(t.leaving) > 1 else f"{stem}.{what}.eml"
        data = m.data
        if not m.quarantine and gw.config.delivery.maildir is not None and not m.alt_mailhost:
            data = f"Return-Path: <{m.mail_from}>\r\n".encode("utf-8", "replace") + data
        path = out / name
        path.write_bytes(data)
        written.append(path)
    return written


def rcpt_list(values: Sequence[str]) -> list[str]:
    return [v for v in values if v] or ["rcpt@example.com"]
