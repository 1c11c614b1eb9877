"""The queue runner: claim spooled messages, run the pipeline, deliver, retry, bounce, expire.

A message leaves `active` only after its successor state is durable: the deferred copy (with
the still-pending recipients) or the DSN is written and fsync'd before the active file is
removed. A crash in between leads to a duplicate delivery after restart, never to a loss.

One concurrency model (issue 12): the runner works the queue in an asyncio event loop, the one
of a queue process of `filterlang serve`. Tests and tools drive the very same loop with
`run_async(until_idle=True)`; there is no second, threaded runner for them to pass through
while the gateway fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, cast

import attrs

from runtime.config.config import Delivery as DeliveryConfig
from runtime.config.config import OutboundTls, Routes, TlsPolicy
from runtime.engine.fieldline import field
from runtime.mta import memtrim
from runtime.mta.dsn import RecipientStatus, build_dsn, status_from_code
from runtime.mta.metrics import Metrics
from runtime.mta.mtasts import MtaSts
from runtime.mta.quarantine import Quarantines
from runtime.mta.spool import CorruptEntry, Envelope, Spool, SpoolError
from runtime.mta.tracking import Tracker
from runtime.mta.transport import (
    Destination,
    MaildirTransport,
    MxFailure,
    Resolver,
    Result,
    StaticResolver,
    TlsNotMet,
    Transport,
    tls_not_met,
)
from runtime.pipeline.flow import (
    COPIED,
    DELIVER,
    EncryptRequest,
    InFlight,
    RetryLater,
    Stage,
    prepare_pipeline,
    run_pipeline,
)
from runtime.pipeline.outcome import Leaving, settle
from runtime.pipeline.stages.smime_out import ProfileOutcome

log = logging.getLogger("filterlang.delivery")

MAILDIR = Destination("maildir", 0)
ACTIVE_WINDOW = 200
DEFERRED_SCAN = 2.0  # seconds between scans of the deferred queue
LIST_EMPTY_EVERY = 0.1  # seconds: `incoming` listed at most this often when no offers are left
WAKE_EVERY = 0.5  # seconds: the event loop's queue runner looks at the queue at least this often
# Messages up to this size run the pipeline and delivery's file work in the event loop (about
# a millisecond for a typical message); larger ones in a thread, so one big message never
# stalls the SMTP sessions the loop serves.
INLINE_LIMIT = 256 * 1024


class AsyncTransport(Protocol):
    """A transport that delivers in the queue's event loop (runtime/smtp_client.py's)."""

    async def send_async(
        self, dest: Destination, mail_from: str, rcpts: Sequence[str], data: bytes,
        mail_options: Sequence[str] = (), rcpt_options: Sequence[Sequence[str]] = (),
        tls: TlsPolicy = ..., *, tls_first: bool = ...,
    ) -> dict[str, Result]: ...

    async def aclose(self) -> None: ...


# Recipients of one copy: (next hops in order, TLS policy, the domain a `secure` check
# depends on, the route's name).
RouteKey = tuple[tuple[Destination, ...], TlsPolicy, str, str]

NO_ROUTE = Result(451, "4.4.4 no route to the recipient's domain (no MX)")
# A recipient the encryption profile's sending profile dropped (missing_key_action = "drop"):
# settled without delivery and without a bounce.
DROPPED = Result(250, "2.0.0 dropped by the sending profile: no usable encryption key")


class DeliveryEncryptor(Protocol):
    """Rule 1 of encrypt / encrypt-deferred ("TLS first"): what TLS the next hop must offer
    for the message to go in clear, and the encryption when it does not (the pipeline's
    SmimeOutbound stage)."""

    def tls_policy(self, encryption_profile: str, destination: TlsPolicy) -> TlsPolicy: ...

    def encrypt_for_delivery(self, data: bytes, rcpts: tuple[str, ...], encryption_profile: str,
                             subject: str) -> ProfileOutcome: ...


def _tls_first(env: Envelope, req: EncryptRequest | None) -> Envelope:
    """`env` carrying rule 1 (or no rule 1) to delivery."""
    if req is None:
        return attrs.evolve(env, encrypt_unless_tls="", encrypt_subject="") \
            if env.encrypt_unless_tls else env
    return attrs.evolve(env, encrypt_unless_tls=req.profile, encrypt_subject=req.subject)


def alert(metrics: Metrics | None, kind: str, text: str, sink: Tracker | None = None) -> None:
    """Raise an operator alert: error log line, metric, and a JSON line in the alerts log."""
    log.error("ALERT %s: %s", kind, text)
    if metrics is not None:
        metrics.child(metrics.alerts, kind).inc()
    if sink is not None:
        sink.record("alert", "", kind=kind, text=text)


# A header line, other than the first, that starts "Message-ID:" (any case), up to its CRLF.
# Starting with CRLF lets the regex engine skip to each line start instead of trying every
# position of the header block.
_MESSAGE_ID = re.compile(rb"\r\nmessage-id:(.*?)(?:\r\n|\Z)", re.IGNORECASE | re.DOTALL)


def _message_id(data: bytes) -> str:
    """The Message-ID header's value, from the header block (or the first 64 KB), searched in
    place: slicing the header block and splitting it into lines copied it twice."""
    end = data.find(b"\r\n\r\n", 0, 65536)
    if end < 0:
        end = 65536
    if end >= 11 and data[:11].lower() == b"message-id:":
        line_end = data.find(b"\r\n", 11, end)
        value = data[11 : line_end if line_end >= 0 else end]
    else:
        found = _MESSAGE_ID.search(data, 0, end)
        if found is None:
            return ""
        value = found[1]
    return value.strip().decode("ascii", "replace")[:200]


@attrs.frozen
class Choice:
    """Which route a recipient takes: `route` names it for tracking and `filterlang routes
    test` (the [routes] key as written, "filter alt-mailhost", or "[delivery] relay" and the
    like); `dests` are the next hops in order, or None where the recipient domain's MX hosts
    are to be looked up."""

    route: str
    dests: tuple[Destination, ...] | None


ALT_MAILHOST = "filter alt-mailhost"


def is_maildir(dest: Destination) -> bool:
    return dest.port == 0 and (dest == MAILDIR or dest.host.startswith("maildir:"))


def hop_text(dest: Destination) -> str:
    """A next hop as an administrator writes it: host:port, "maildir" ([delivery]) or
    "maildir:/folder" (a route)."""
    if dest == MAILDIR:
        return "maildir"
    if is_maildir(dest):
        return dest.host
    return f"[{dest.host}]:{dest.port}" if ":" in dest.host else str(dest)  # IPv6


class Router:
    """Recipient → route: a filter's alt-mailhost first, then the most specific [routes] entry,
    then [delivery] (relay, reinject, maildir or MX) as before routes existed."""

    def __init__(self, config: DeliveryConfig, resolver: Resolver | None = None,
                 routes: Routes | None = None) -> None:
        self.config = config
        self.resolver = resolver or StaticResolver()
        self.routes = routes or Routes()
        # Each route's next hops as Destinations once, not built again for every recipient.
        self._routes: dict[str, Choice] = {}
        for key, r in self.routes.entries.items():
            if r.kind == "mx":
                dests: tuple[Destination, ...] | None = None
            elif r.kind == "maildir":
                dests = (Destination(f"maildir:{r.maildir}", 0),)
            else:
                dests = tuple(Destination(h, p) for h, p in r.hosts)
            self._routes[key] = Choice(r.name, dests)
        # The relay as a Destination once, not parsed (and built) again for every recipient;
        # the same object each time also keeps its hash (Destination caches it).
        self._relay: Destination | None = None
        target = config.relay or config.reinject
        if target and config.maildir is None:
            with contextlib.suppress(ValueError):  # (route() raises it, per message, as before)
                self._relay = Destination.parse(target)
        what = ("maildir" if config.maildir is not None else "relay" if config.relay
                else "reinject" if config.reinject else "mx")
        self._fallback = f"[delivery] {what}"

    @property
    def needs_dns(self) -> bool:
        """Whether some recipient may need an MX look-up (in the event loop, not in memory)."""
        return self.config.mx or self.routes.uses_mx

    def choose(self, rcpt: str, alt_mailhost: str = "") -> Choice:
        if alt_mailhost:
            host, sep, port = alt_mailhost.rpartition(":")
            if sep and port.isdigit():
                return Choice(ALT_MAILHOST, (Destination(host.strip("[]"), int(port)),))
            return Choice(ALT_MAILHOST, (Destination(alt_mailhost.strip("[]"), 25),))
        if self._routes:
            route = self.routes.for_domain(rcpt.rpartition("@")[2])
            if route is not None:
                return self._routes[route.name]
        c = self.config
        if c.maildir is not None:
            return Choice(self._fallback, (MAILDIR,))
        if self._relay is not None:
            return Choice(self._fallback, (self._relay,))
        if c.relay or c.reinject:
            return Choice(self._fallback, (Destination.parse(c.relay or c.reinject or ""),))
        return Choice(self._fallback, None)

    def route(self, rcpt: str, alt_mailhost: str = "") -> list[Destination]:
        choice = self.choose(rcpt, alt_mailhost)
        if choice.dests is not None:
            return list(choice.dests)
        return self.resolver.mx(rcpt.rpartition("@")[2])


class QueueRunner:
    """Works the spool in an event loop; several processes may share a spool.

    `transport` delivers in the loop when it is an AsyncTransport (the gateway's SMTP client);
    a blocking Transport (an in-memory one in tests) is called in a thread."""

    def __init__(
        self,
        spool: Spool,
        config: DeliveryConfig,
        transport: Transport | AsyncTransport,
        *,
        stages: tuple[Stage, ...] = (),
        resolver: Resolver | None = None,
        quarantines: Quarantines | None = None,
        tracker: Tracker | None = None,
        metrics: Metrics | None = None,
        alerts: Tracker | None = None,
        alert_email: str | None = None,
        clock: Callable[[], float] = time.time,
        encryptor: DeliveryEncryptor | None = None,
        tls: OutboundTls | None = None,
        hostname: str | None = None,
        postmaster: str | None = None,
        routes: Routes | None = None,
        mta_sts: MtaSts | None = None,
    ) -> None:
        self.spool = spool
        self.config = config
        self.transport = transport
        self.maildir = MaildirTransport(config.maildir) if config.maildir else None
        self.router = Router(config, resolver, routes)
        self._maildirs: dict[Destination, MaildirTransport] = {}  # [routes] maildir: folders
        self.stages = stages
        # Whether any stage has network work to do before the pipeline (see flow.Stage).
        self._prepares = any(hasattr(st, "prepare") for st in stages)
        # Whether a stage waits on a socket while it runs (a scanner, see stages.scanning):
        # then every message's pipeline runs in a thread, never in the event loop.
        self._blocks = any(getattr(st, "blocking", False) for st in stages)
        self.quarantines = quarantines
        self.tracker = tracker or Tracker(None)
        self.metrics = metrics
        self.alerts = alerts
        self.alert_email = alert_email
        self.clock = clock
        # Rule 1 encryption at delivery; by default the pipeline's own outbound S/MIME stage.
        self.encryptor = encryptor or next(
            (cast(DeliveryEncryptor, s) for s in stages if hasattr(s, "encrypt_for_delivery")), None)
        self.tls = tls or OutboundTls()
        self.mta_sts = mta_sts  # None: no MTA-STS look-ups (see _mta_sts)
        self.hostname = hostname  # the DSN's MAILER-DAEMON@hostname; None: this host's FQDN
        self.postmaster = postmaster
        # Queue ids to claim next, oldest first (a dict as an ordered set): the listeners
        # offer what they just stored, so `incoming` is listed only now and then (see
        # _claim_incoming).
        self._backlog: dict[str, None] = {}
        # Offers also come from threads (a large message's pipeline), so taking the oldest
        # name and adding one must not interleave.
        self._backlog_lock = threading.Lock()
        self._listed_at = -math.inf  # when `incoming` was last listed (time.monotonic)
        # Set while run_async drives this runner in an event loop.
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._awake: asyncio.Event | None = None
        self._astop = False
        # Spool write failures (a full disk): per message, to follow the retry schedule; and
        # whether the spool is failing now, for one alert per episode.
        self._spool_failures: dict[str, int] = {}
        self._spool_failing = False

    def alert(self, kind: str, text: str, mail: bool = True) -> None:
        """Log, count, record, and (when configured) mail an alert to the operator.

        No mail for spool write errors: the alert mail would need the spool that just failed.
        """
        alert(self.metrics, kind, text, self.alerts)
        if mail and self.alert_email:
            sender = self.postmaster or "MAILER-DAEMON"
            body = (field("From", f"<{sender}>") + field("To", f"<{self.alert_email}>")
                    + field("Subject", f"filterlang alert: {kind}")
                    + b"Auto-Submitted: auto-generated\r\n\r\n"
                    + f"{text}\r\n".encode("ascii", "replace"))
            try:
                self.offer(self.spool.store(
                    Envelope("", (self.alert_email,), policy="alert", processed=True), body))
            except SpoolError:
                log.error("could not queue the alert mail for %s", self.alert_email)

    # -- one message -------------------------------------------------------------------------

    def _read_active(self, queue_id: str) -> tuple[Envelope, bytes] | None:
        """The claimed message, or None when its file is unreadable (moved to `corrupt`)."""
        try:
            return self.spool.read("active", queue_id)
        except CorruptEntry as exc:
            if self.spool.move(queue_id, "active", "corrupt"):
                self.alert("corrupt_queue_file", f"{queue_id}: {exc}; moved to corrupt")
            return None

    def _spool_failed(self, queue_id: str, env: Envelope, exc: SpoolError) -> None:
        """The disk refused a write (full, failing) while this message was worked on: it goes
        back to `deferred` by a rename, no new bytes, not to be tried before its next attempt
        on the retry schedule (counting these failures too), where it used to be retried
        every second with an alert each time. One alert while the spool keeps failing."""
        failures = self._spool_failures[queue_id] = self._spool_failures.get(queue_id, 0) + 1
        schedule = self.config.retry_schedule
        delay = schedule[min(env.attempts + failures - 1, len(schedule) - 1)]
        if not self._spool_failing:
            self._spool_failing = True
            self.alert("spool_write", f"{queue_id}: {exc}; messages that need a queue write "
                       "wait in deferred and are retried on the retry schedule", mail=False)
        else:
            log.error("spool write failed for %s: %s; retry in %g s", queue_id, exc, delay)
        if not self.spool.hold_back(queue_id, time.time() + delay):
            log.error("%s left active while its spool write failed", queue_id)

    def _spool_works(self, queue_id: str) -> None:
        if self._spool_failures:
            self._spool_failures.pop(queue_id, None)
        if self._spool_failing:
            self._spool_failing = False
            log.warning("spool writes work again")

    def _pipeline(self, env: Envelope, data: bytes,
                  prepared: InFlight | None = None) -> tuple[Envelope, bytes] | None:
        """Run the stages and act on their outcome (bounces, copies, quarantine); the envelope
        and message left to deliver, or None when nothing is left to deliver."""
        qid = env.queue_id
        self.tracker.record("received", qid, mail_from=env.mail_from, rcpts=list(env.rcpt_tos),
                            peer=env.peer, helo=env.helo, policy=env.policy, size=len(data),
                            message_id=_message_id(data), received_at=env.received_at,
                            # Who submitted it, for the operator: only sessions that
                            # authenticated (SMTP AUTH) have one.
                            **({"auth_user": env.auth_user} if env.auth_user else {}))
        try:
            msg = run_pipeline(self.stages, prepared if prepared is not None else InFlight(env, data))
        except RetryLater as exc:
            self._retry_filters(env, data, str(exc))
            return None
        self._count(msg.events)
        # Stages may rewrite the envelope (alt-rcpt-to); from here on it is the truth.
        env = msg.envelope
        if env.queue_id != qid:
            env = attrs.evolve(env, queue_id=qid)
        if msg.headers_only_dsn and not env.headers_only_dsn:
            # Decrypted here: the deferred file, copies and quarantined messages carry the fact,
            # so a DSN at any later attempt (after a restart too) returns headers only.
            env = attrs.evolve(env, headers_only_dsn=True)
        outcome = settle(msg)
        if outcome.bounce_reasons:
            self._bounce(env, data, [RecipientStatus(r, "failed", "5.7.1", reason)
                                     for r, reason in outcome.bounce_reasons.items()],
                         headers_only=outcome.headers_only_dsn)
        for rcpt, disp in msg.dispositions.items():
            if disp not in (DELIVER, COPIED):
                self.tracker.record(disp, qid, rcpt=rcpt, trace=msg.trace)
        original: Leaving | None = None
        # What a quarantine parks missed the outgoing DKIM signing; it is signed if released.
        sign_later = msg.direction == "outgoing" and not msg.skip_dkim_signing
        for n, out in enumerate(outcome.leaving):
            if out.original:
                original = out
                continue
            # Each copy is durable in the spool before the original leaves `active`.
            if out.quarantine and self.quarantines is not None:
                self.quarantines.put(out.quarantine, _tls_first(attrs.evolve(
                    env, rcpt_tos=out.rcpts, processed=True, queue_id=f"{qid}.{n}",
                    dkim_on_release=sign_later), out.tls_first), out.data)
                self.tracker.record("quarantine", qid, quarantine=out.quarantine,
                                    rcpts=list(out.rcpts), note=out.note)
                continue
            keep = set(out.rcpts)
            self.offer(self.spool.store(_tls_first(attrs.evolve(
                env, rcpt_tos=out.rcpts, processed=True, mail_from=out.mail_from,
                rcpt_options=tuple(o for r, o in zip(env.rcpt_tos, env.rcpt_options, strict=False)
                                   if r in keep),
                alt_mailhost=out.alt_mailhost,
                trace=(*msg.trace, out.note) if out.note else tuple(msg.trace),
            ), out.tls_first), out.data))
        if msg.copies:
            self._notify()
        if original is not None and original.quarantine and self.quarantines is not None:
            # (Recipients served by copies are not in the quarantined original.)
            waiting = original.rcpts
            opts = dict(zip(env.rcpt_tos, env.rcpt_options, strict=False))
            self.quarantines.put(original.quarantine, _tls_first(attrs.evolve(
                env, processed=True, rcpt_tos=waiting, dkim_on_release=sign_later,
                rcpt_options=tuple(opts[r] for r in waiting if r in opts)
                if len(opts) == len(env.rcpt_tos) else ()), original.tls_first), original.data)
            self.tracker.record("quarantine", qid, quarantine=original.quarantine, trace=msg.trace)
            self.spool.remove("active", qid)
            return None
        # (A runner built without a quarantine store, in tests, delivers what it would park.)
        keep = set(original.rcpts) if original is not None else set()
        env = attrs.evolve(
            env, rcpt_tos=tuple(r for r in env.rcpt_tos if r in keep), processed=True,
            rcpt_options=tuple(o for r, o in zip(env.rcpt_tos, env.rcpt_options, strict=False)
                               if r in keep),
            alt_mailhost=original.alt_mailhost if original is not None else msg.alt_mailhost,
            trace=tuple(msg.trace))
        env = _tls_first(env, original.tls_first if original is not None else msg.tls_first)
        if not env.rcpt_tos:
            self.spool.remove("active", qid)
            return None
        assert original is not None
        return env, original.data

    def _retry_filters(self, env: Envelope, data: bytes, problem: str) -> None:
        """on_filter_error = "tempfail": every recipient waits for another attempt, on the
        retry schedule, and the filters run again then (the message stays unprocessed); one
        still failing at the end of the queue lifetime is bounced, as a delivery would be."""
        log.warning("%s: %s; the message stays queued", env.queue_id, problem)
        failure = Result(451, f"4.3.0 {problem}")
        self._settle(env, data, {r: (failure, "filters") for r in env.rcpt_tos}, self.clock())

    def _count(self, events: list[tuple[str, str]]) -> None:
        m = self.metrics
        if m is None:
            return
        counters = {"filter_hit": m.filter_hits, "smime": m.smime, "harvest": m.harvest}
        for kind, label in events:
            counter = counters.get(kind)
            if counter is not None:
                m.child(counter, label).inc()

    def _maildir(self, dest: Destination) -> MaildirTransport | None:
        if dest == MAILDIR:
            return self.maildir
        if not is_maildir(dest):
            return None
        box = self._maildirs.get(dest)
        if box is None:
            box = self._maildirs[dest] = MaildirTransport(Path(dest.host.removeprefix("maildir:")))
        return box

    def _send(self, dest: Destination, env: Envelope, rcpts: list[str], data: bytes) -> dict[str, Result]:
        """Deliver through a blocking transport: the maildir, or a transport without asyncio."""
        transport = self._maildir(dest) or cast(Transport, self.transport)
        opts = {r: o for r, o in zip(env.rcpt_tos, env.rcpt_options, strict=False)}
        return transport.send(
            dest, env.mail_from, rcpts, data, env.mail_options, [opts.get(r, ()) for r in rcpts]
        )

    def _routes(self, env: Envelope) -> dict[RouteKey, list[str]]:
        """Recipients grouped by their destinations (MX hosts in preference order), by their
        domains' TLS policies (one copy never goes out under two policies) and by the route
        that chose them (recorded per recipient); under `secure` without `match` also by
        domain, since the names checked are the domain's."""
        by_dest: dict[RouteKey, list[str]] = defaultdict(list)
        for rcpt in env.rcpt_tos:
            domain = rcpt.rpartition("@")[2].lower()
            policy = self.tls.for_domain(domain)
            own = domain if policy.level == "secure" and not policy.match else ""
            choice = self.router.choose(rcpt, env.alt_mailhost)
            dests = choice.dests if choice.dests is not None else tuple(self.router.resolver.mx(domain))
            by_dest[(dests, policy, own, choice.route)].append(rcpt)
        return by_dest

    async def _routes_async(self, env: Envelope, failed: dict[str, tuple[Result, str]],
                            ) -> dict[RouteKey, list[str]]:
        """`_routes` with MX look-ups in the loop; a recipient whose domain cannot be routed
        goes into `failed` with its temporary or permanent failure."""
        mx_async = getattr(self.router.resolver, "mx_async", None)
        by_dest: dict[RouteKey, list[str]] = defaultdict(list)
        domains: dict[str, list[Destination] | Result] = {}
        sts: dict[str, TlsPolicy | None] = {}  # MTA-STS's policy per domain, where it applies
        for rcpt in env.rcpt_tos:
            domain = rcpt.rpartition("@")[2].lower()
            policy = self.tls.for_domain(domain)
            own = domain if policy.level == "secure" and not policy.match else ""
            choice = self.router.choose(rcpt, env.alt_mailhost)
            if choice.dests is not None:
                by_dest[(choice.dests, policy, own, choice.route)].append(rcpt)
                continue
            if mx_async is None:
                dests = tuple(self.router.resolver.mx(domain))
                by_dest[(dests, policy, own, choice.route)].append(rcpt)
                continue
            if domain not in domains:  # once per domain, not per recipient
                try:
                    domains[domain] = await mx_async(domain)
                except MxFailure as exc:
                    domains[domain] = exc.result
                else:
                    sts[domain] = await self._mta_sts(env.queue_id, domain, policy)
            got = domains[domain]
            if isinstance(got, Result):
                failed[rcpt] = (got, f"MX {domain}")
            else:
                by_dest[(tuple(got), sts.get(domain) or policy, own, choice.route)].append(rcpt)
        return by_dest

    async def _mta_sts(self, qid: str, domain: str, policy: TlsPolicy) -> TlsPolicy | None:
        """The TLS policy MTA-STS gives mail to `domain`'s MX hosts, when the domain has no
        [tls.outbound] entry of its own and publishes a policy: mode enforce as verify against
        the policy's mx names (the certificate must carry one of them); testing is recorded
        in tracking and changes nothing, as is none. The MX hosts' names are not compared with
        the patterns (delivery connects to their addresses): a host the policy does not name
        fails the certificate check instead, which is what protects the mail."""
        sts = self.mta_sts
        if sts is None or not self.tls.mta_sts or self.tls.has_entry(domain):
            return None
        found = await sts.policy(domain)
        if found is None or found.mode == "none":
            problem = sts.problems.get(domain)
            if found is None and problem:
                self.tracker.record("mta_sts", qid, domain=domain, problem=problem)
            return None
        applied = "verify" if found.mode == "enforce" else "report only"
        self.tracker.record("mta_sts", qid, domain=domain, mode=found.mode, policy_id=found.id,
                            mx=list(found.mx), applied=applied)
        if found.mode != "enforce":
            return None
        return TlsPolicy(level="verify", match=found.match, min_version=policy.min_version,
                         ciphers=policy.ciphers, ca_file=policy.ca_file)

    def _settle(self, env: Envelope, data: bytes, results: dict[str, tuple[Result, str]],
                now: float, routes: dict[str, str] | None = None) -> None:
        """Record what each recipient got (and the route it took); bounce, defer or finish
        the message."""
        qid = env.queue_id
        used = routes or {}
        failed, deferred = [], []
        for rcpt, (res, where) in results.items():
            if res == DROPPED:
                self.tracker.record("drop", qid, rcpt=rcpt, trace=[*env.trace, res.text])
            elif res.ok:
                self.tracker.record("delivered", qid, rcpt=rcpt, mail_from=env.mail_from,
                                    dest=where, route=used.get(rcpt, ""),
                                    reply=f"{res.code} {res.text}",
                                    policy=env.policy, peer=env.peer, size=len(data),
                                    message_id=_message_id(data), trace=list(env.trace),
                                    attempts=env.attempts + 1,
                                    delay=round(now - env.received_at, 3))
                if self.metrics:
                    self.metrics.child(self.metrics.delivered, "delivered").inc()
                    self.metrics.latency.observe(max(0.0, now - env.received_at))
            elif res.permanent:
                failed.append(RecipientStatus(rcpt, "failed", status_from_code(res.code, res.text),
                                              f"{res.code} {res.text}", where))
            else:
                deferred.append((rcpt, res))
        expired = deferred and now - env.received_at >= self.config.max_queue_lifetime
        if expired:
            failed += [RecipientStatus(r, "failed", "4.4.7",
                                       f"message expired in queue; last error: {res.code} {res.text}")
                       for r, res in deferred]
            deferred = []
        if failed:
            self._bounce(env, data, failed, routes=used)
        if deferred:
            attempts = env.attempts + 1
            delay = self.config.retry_schedule[min(attempts - 1, len(self.config.retry_schedule) - 1)]
            keep = {r for r, _ in deferred}
            opts = [o for r, o in zip(env.rcpt_tos, env.rcpt_options, strict=False) if r in keep]
            last = deferred[0][1]
            notified = env.delay_notified or self._delay_notice(env, data, deferred, now)
            new = attrs.evolve(env, rcpt_tos=tuple(r for r in env.rcpt_tos if r in keep),
                               rcpt_options=tuple(opts), attempts=attempts, next_attempt=now + delay,
                               last_error=f"{last.code} {last.text}", delay_notified=notified)
            self.spool.rewrite("deferred", new, data)
            for rcpt, res in deferred:
                self.tracker.record("deferred", qid, rcpt=rcpt, reply=f"{res.code} {res.text}",
                                    attempts=attempts, retry_in=delay, route=used.get(rcpt, ""))
                if self.metrics:
                    self.metrics.child(self.metrics.delivered, "deferred").inc()
        self.spool.remove("active", qid)

    def _delay_notice(self, env: Envelope, data: bytes, deferred: list[tuple[str, Result]],
                      now: float) -> bool:
        """NOTIFY=DELAY (RFC 3461): once the message has waited `delay_notice_after`, one
        notice to the sender for the still-deferred recipients that asked for it (build_dsn
        leaves out the others). True once it is due, whether anyone asked or not: at most one
        per message."""
        after = self.config.delay_notice_after
        if not after or now - env.received_at < after:
            return False
        dsn = build_dsn(env, data, [
            RecipientStatus(r, "delayed", status_from_code(res.code, res.text),
                            f"{res.code} {res.text}") for r, res in deferred],
            reporting_mta=self.hostname, postmaster=self.postmaster)
        if dsn is not None:
            self.tracker.record("delay_notice", env.queue_id, rcpts=[r for r, _ in deferred])
            self.offer(self.spool.store(
                Envelope(mail_from="", rcpt_tos=(env.mail_from,), policy="dsn", processed=True),
                dsn))
        return True

    def _bounce(self, env: Envelope, data: bytes, statuses: list[RecipientStatus],
                headers_only: bool = False, routes: dict[str, str] | None = None) -> None:
        for s in statuses:
            if routes and s.recipient in routes:
                self.tracker.record("bounced", env.queue_id, rcpt=s.recipient, status=s.status,
                                    reply=s.diagnostic, route=routes[s.recipient])
            else:  # refused before any route was chosen
                self.tracker.record("bounced", env.queue_id, rcpt=s.recipient, status=s.status,
                                    reply=s.diagnostic)
            if self.metrics:
                self.metrics.child(self.metrics.delivered, "bounced").inc()
        dsn = build_dsn(env, data, statuses, headers_only=headers_only,
                        reporting_mta=self.hostname, postmaster=self.postmaster)
        if dsn is None:
            return  # null sender: never bounce a bounce
        dsn_env = Envelope(mail_from="", rcpt_tos=(env.mail_from,), policy="dsn", processed=True)
        self.offer(self.spool.store(dsn_env, dsn))

    # -- the loop ----------------------------------------------------------------------------

    def offer(self, queue_id: str) -> None:
        """A message just stored in `incoming` (by the listener or by this runner): claim it
        without listing the folder. Safe from any thread."""
        with self._backlog_lock:
            self._backlog[queue_id] = None
        self._notify()

    def _notify(self) -> None:
        loop, awake = self._aloop, self._awake
        if loop is not None and awake is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                awake.set()
            else:  # from a thread that runs a large message's pipeline
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    loop.call_soon_threadsafe(awake.set)

    def _claim_incoming_now(self, room: int, last_scan: float) -> tuple[list[str], float | None]:
        """Up to `room` messages from `incoming`; and the time now when the deferred queue is
        due for a scan and there is room left for it (else None).

        The deferred directory (and `incoming` in full, for messages other processes stored)
        is scanned only every DEFERRED_SCAN seconds: reading thousands of headers each pass
        would cost more than the retries it finds."""
        now = self.clock()
        scan = now - last_scan >= DEFERRED_SCAN
        ids: list[str] = []
        try:
            ids = self._claim_incoming(room, relist=scan)
        except Exception:
            log.exception("queue runner pass failed")
        return ids, now if scan and len(ids) < room else None

    def _claim_deferred(self, now: float, room: int) -> list[str]:
        return list(itertools.islice(self.spool.claim_ready(now, include_incoming=False), room))

    def _claim_incoming(self, room: int, relist: bool = False) -> list[str]:
        """Claim up to `room` messages from `incoming`, oldest first.

        The names come from what was offered and from listing the folder, which happens only
        when those are used up, or on `relist` when fewer are known than there is room for:
        listing and sorting a backlog of thousands for every few claims made the runner
        quadratic under load, and names piled up again with every listing. A name another
        process claimed meanwhile just fails its rename and is forgotten."""
        backlog, lock = self._backlog, self._backlog_lock
        listed = False
        if relist and len(backlog) < room:
            self._add_listing()
            listed = True
        ids: list[str] = []
        while len(ids) < room:
            with lock:
                qid = next(iter(backlog), None)
                if qid is not None:
                    del backlog[qid]
            if qid is None:
                # Offers are used up. Look in the folder for messages nobody offered (another
                # queue process's share, a lost doorbell note), but not at every pass: listing
                # whenever the offers ran dry read the folder for a third of all messages
                # under load, and the names it found were mostly claimed already (strace).
                if listed or time.monotonic() - self._listed_at < LIST_EMPTY_EVERY:
                    break
                self._add_listing()
                listed = True
                continue
            if self.spool.move(qid, "incoming", "active", durable=False):
                ids.append(qid)
        return ids

    def _add_listing(self) -> None:
        self._listed_at = time.monotonic()
        names = dict.fromkeys(self.spool.list("incoming"))
        with self._backlog_lock:
            self._backlog.update(names)

    # -- the queue's event loop ----------------------------------------------------------------

    async def run_async(self, *, until_idle: bool = False) -> int:
        """Work the queue in the running event loop; return how many messages it took.

        A queue process of `filterlang serve` runs this until `request_stop`, then finishes
        what is in flight. With `until_idle` (tests, tools) it returns instead as soon as
        nothing is in flight and nothing more is ready: whatever was in `incoming`, the
        deferred messages due when it started, and what they led to (DSNs, copies)."""
        loop = self._aloop = asyncio.get_running_loop()
        self._awake = awake = asyncio.Event()
        self._astop = False
        limit = 2 * self.config.workers
        inflight: set[asyncio.Task[None]] = set()
        last_scan = -math.inf  # the first pass lists `incoming` and scans `deferred`, whatever the clock
        taken = 0

        def done(task: asyncio.Task[None]) -> None:
            inflight.discard(task)
            awake.set()  # room for another message

        # Look at the queue at least every WAKE_EVERY seconds (deferred messages come due, other
        # processes store messages): one timer for the whole run, where a timeout around each
        # wait made a Timeout and armed and cancelled a timer for every message.
        def tick() -> None:
            awake.set()
            ticker[0] = loop.call_later(WAKE_EVERY, tick)

        ticker = [loop.call_later(WAKE_EVERY, tick)]
        try:
            while not self._astop:
                awake.clear()
                room = limit - len(inflight)
                if room > 0:
                    ids, scan_at = self._claim_incoming_now(room, last_scan)
                    if scan_at is not None:
                        try:  # reads message headers from disk: in a thread, off the loop
                            ids += await asyncio.to_thread(self._claim_deferred, scan_at,
                                                           room - len(ids))
                        except Exception:
                            log.exception("queue runner pass failed")
                        if len(ids) < room:
                            last_scan = scan_at
                    for qid in ids:
                        task = loop.create_task(self.process_async(qid), name=f"deliver {qid}")
                        inflight.add(task)
                        task.add_done_callback(done)
                    taken += len(ids)
                    if until_idle and not ids and not inflight:
                        break
                await awake.wait()
            if inflight:
                await asyncio.wait(inflight)
        finally:
            ticker[0].cancel()
            await self._close_transport()
            self._aloop = self._awake = None
        return taken

    async def _close_transport(self) -> None:
        """Close the connections the transport holds (they belong to this loop)."""
        aclose = getattr(self.transport, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            cast(Transport, self.transport).close()

    def request_stop(self) -> None:
        """Stop claiming messages; run_async returns once those in flight are done."""
        self._astop = True
        if self._awake is not None:
            self._awake.set()

    async def process_async(self, queue_id: str) -> None:
        """Handle one message already moved to `active`: pipeline, delivery, settle.

        Messages up to INLINE_LIMIT run the pipeline and the file work in the loop; larger
        ones in a thread. Nothing called here may assume it has (or has not) a running loop
        of its own: path validation, the key store and signing run as plain blocking code."""
        read = self._read_active(queue_id)
        if read is None:
            return
        env, data = read
        size = len(data)
        inline = size <= INLINE_LIMIT
        try:
            out: tuple[Envelope, bytes] | None = (env, data)
            prepared = None
            if not env.processed and self._prepares:
                # The checks that need the network (SPF, DKIM, DMARC, DNS lists) in the loop.
                prepared = await prepare_pipeline(self.stages, InFlight(env, data))
            if not env.processed and (not inline or self._blocks):
                out = await asyncio.to_thread(self._pipeline, env, data, prepared)
            elif not env.processed:
                out = self._pipeline(env, data, prepared)
            del prepared
            del data
            if out is not None:
                await self._deliver_async(*out, inline=inline)
            del out
            self._spool_works(queue_id)
            memtrim.after_message(size)
        except SpoolError as exc:
            self._spool_failed(queue_id, env, exc)
        except Exception:
            # A pipeline bug must not lose the message or stop the queue: park it in hold.
            log.exception("processing %s failed; moved to hold", queue_id)
            self.spool.move(queue_id, "active", "hold")
            self.alert("processing_error", f"{queue_id} moved to hold")

    async def _deliver_async(self, env: Envelope, data: bytes, *, inline: bool) -> None:
        now = self.clock()
        results: dict[str, tuple[Result, str]] = {}
        if self.router.needs_dns:
            routes = await self._routes_async(env, results)
        else:  # a relay, a static table or static routes: a lookup in memory
            routes = self._routes(env)
        # The route each recipient took, for its tracking line (those whose MX look-up failed
        # are in `results` already).
        used = {r: self.router.choose(r, env.alt_mailhost).route for r in results}
        for (dests, policy, _, route), rcpts in routes.items():
            used.update(dict.fromkeys(rcpts, route))
            pending = list(rcpts)
            if not dests:
                results.update({r: (NO_ROUTE, "") for r in rcpts})
            for dest in dests:  # MX hosts in preference order; the next only on temp failure
                if env.encrypt_unless_tls:
                    got = await self._send_tls_first(dest, env, pending, data, inline, policy)
                else:
                    got = await self._send_async(dest, env, pending, data, inline, policy)
                where = hop_text(dest)
                results.update({r: (res, where) for r, res in got.items()})
                pending = [r for r in pending if not got[r].ok and not got[r].permanent]
                if not pending:
                    break
        if env.encrypt_unless_tls and not env.headers_only_dsn:
            # Content meant to leave encrypted or over TLS: a DSN returns its headers only.
            env = attrs.evolve(env, headers_only_dsn=True)
        if inline:
            self._settle(env, data, results, now, used)
        else:
            await asyncio.to_thread(self._settle, env, data, results, now, used)

    async def _send_async(self, dest: Destination, env: Envelope, rcpts: list[str], data: bytes,
                          inline: bool, policy: TlsPolicy, *, tls_first: bool = False
                          ) -> dict[str, Result]:
        """Deliver one copy under the recipients' domain's TLS `policy`; with `tls_first`
        (rule 1, `policy` raised by the encryption profile) only over TLS that meets it:
        otherwise every recipient gets a TlsNotMet and nothing is sent."""
        send_async = getattr(self.transport, "send_async", None)
        if send_async is None or is_maildir(dest):
            if tls_first:  # a maildir or a test transport has no TLS session to judge
                return dict.fromkeys(rcpts, tls_not_met("no SMTP session to this destination"))
            if inline and is_maildir(dest):
                return self._send(dest, env, rcpts, data)
            return await asyncio.to_thread(self._send, dest, env, rcpts, data)
        opts = {r: o for r, o in zip(env.rcpt_tos, env.rcpt_options, strict=False)}
        args = (dest, env.mail_from, rcpts, data, env.mail_options,
                [opts.get(r, ()) for r in rcpts])
        if tls_first:
            result: dict[str, Result] = await send_async(*args, tls=policy, tls_first=True)
        else:
            result = await send_async(*args, tls=policy)
        return result

    async def _send_tls_first(self, dest: Destination, env: Envelope, rcpts: list[str],
                              data: bytes, inline: bool, policy: TlsPolicy) -> dict[str, Result]:
        """Rule 1 of encrypt / encrypt-deferred: in clear only over TLS that meets the
        destination's TLS policy raised to what the encryption profile asks (at least
        `encrypt`; `verify` with its tls_verify); otherwise encrypted by its sending profile
        (its missing-key action applies) and sent to the same next hop under the destination's
        own policy. One TLS mechanism ([tls.outbound]) decides both; a destination at `none`
        never gets STARTTLS, so its mail is encrypted at once. Fail safe: without the encryptor
        nothing goes out in clear except over such TLS."""
        qid, name = env.queue_id, env.encrypt_unless_tls
        if self.encryptor is None:
            return dict.fromkeys(rcpts, Result(451, f"4.7.0 encryption profile {name!r} is "
                                                    "not available here; the message waits"))
        if policy.level == "none":
            got: dict[str, Result] = dict.fromkeys(
                rcpts, tls_not_met(f"TLS policy 'none' for {dest}"))
        else:
            got = await self._send_async(dest, env, rcpts, data, inline,
                                         self.encryptor.tls_policy(name, policy), tls_first=True)
        insecure = tuple(r for r in rcpts if isinstance(got[r], TlsNotMet))
        if not insecure:
            # Only what the next hop took went in clear; a refused connection or a 4xx/5xx is
            # the delivery's own outcome, recorded as such, not a TLS decision.
            sent = [r for r in rcpts if got[r].code < 300]
            if sent:
                self.tracker.record("tls_first", qid, rcpts=sent, dest=str(dest),
                                    profile=name, decision="clear over TLS")
            return got
        self.tracker.record("tls_first", qid, rcpts=list(insecure), dest=str(dest), profile=name,
                            decision="encrypted: the next hop's TLS does not meet the policy",
                            reason=got[insecure[0]].text)
        try:
            if inline:
                out = self.encryptor.encrypt_for_delivery(data, insecure, name, env.encrypt_subject)
            else:
                out = await asyncio.to_thread(self.encryptor.encrypt_for_delivery, data,
                                              insecure, name, env.encrypt_subject)
        except RetryLater as exc:
            got.update(dict.fromkeys(insecure, Result(451, f"4.7.0 {exc}")))
            return got
        for r in out.bounced:
            got[r] = Result(int(out.reason[:3]) if out.reason[:3].isdigit() else 550,
                            out.reason[4:] if out.reason[:3].isdigit() else out.reason)
        for r in out.dropped:
            got[r] = DROPPED
        for who, sealed, _note in out.groups:
            got.update(await self._send_async(dest, env, list(who), sealed, inline, policy))
        return got
