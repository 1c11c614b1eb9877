"""The work-queue pipeline: named stages in the order of reference section 11.

Each stage is a `Stage` over one `InFlight` message. The integration fills the S/MIME, filter
and policy slots; until then they are pass-through so the gateway already accepts, spools and
delivers mail durably. The delivery stage itself lives in `runtime.mta.queue`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from attrs import define, field, frozen

from runtime.engine.context import SmimeState
from runtime.engine.run import StageResult
from runtime.pipeline.envelope import Envelope

METRIC_KINDS = ("filter_hit", "smime", "harvest")

# Disposition of one recipient after the pipeline.
DELIVER = "deliver"
DROP = "drop"
BOUNCE = "bounce"
QUARANTINE = "quarantine"
COPIED = "copied"  # the recipient is served by one of `InFlight.copies`

# (stage name, reference-11 step, why it is there). Order is the contract.
PIPELINE: tuple[tuple[str, str, str], ...] = (
    ("mail_flow_policy", "1", "applied at receipt by the listener; recorded in the envelope"),
    ("smime_inbound", "7", "decrypt, verify, harvest; sets smime-gateway-* before filters"),
    ("message_filters", "8", "one ordered list over the whole message, all recipients"),
    ("mail_policies", "10", "split recipients into splinters, first match wins"),
    ("anti_spam", "11", "Rspamd, once per message, per splinter as its policy says "
     "(skip-spamcheck)"),
    ("anti_virus", "12", "clamd, once per message, per splinter as its policy says "
     "(skip-viruscheck)"),
    ("content_filters", "15", "per splinter: the policy's incoming or outgoing list"),
    ("smime_outbound", "19", "deferred actions: smime-gateway-deferred via the sending profile, "
     "then encrypt-deferred via its encryption profile"),
    ("delivery", "20", "alt-mailhost, routes, SMTP delivery with retry; DSN on failure"),
)
STAGE_NAMES: tuple[str, ...] = tuple(name for name, _, _ in PIPELINE)


@frozen
class EncryptRequest:
    """What `encrypt` / `encrypt-deferred` asked for: the encryption profile, the subject of the
    encrypted message (expanded), and the rule: 0 always encrypt, 1 "TLS first" (deliver in
    clear only over TLS that meets the destination's policy, decided at delivery)."""

    profile: str
    subject: str = ""
    rule: int = 0

    @property
    def tls_first(self) -> bool:
        return self.rule == 1


@define
class Copy:
    """A separate copy for some recipients, e.g. the split branch of a sending profile
    (encrypted for recipients with keys, signed-only for the others) or a policy splinter."""

    rcpts: tuple[str, ...]
    data: bytes
    alt_mailhost: str = ""
    note: str = ""
    profile: str = ""  # a sending profile still to apply (smime-gateway-deferred of a splinter)
    quarantine: str = ""  # park this copy in the named quarantine instead of delivering it
    mail_from: str | None = None  # None: the original's envelope sender
    encrypt: EncryptRequest | None = None  # encrypt-deferred of a splinter, still to apply
    tls_first: EncryptRequest | None = None  # rule 1: the queue decides at delivery


@define
class StageRecord:
    """What one stage did to one message, as it ran: the trace of `filterlang test` is a view
    of these records, so the offline answer and the gateway's decision are the same code."""

    stage: str  # the slot of PIPELINE ("listener" for what happened at receipt)
    title: str  # one line for people, e.g. "content filters, policy sales_team"
    facts: dict[str, Any] = field(factory=dict)  # JSON-ready details
    result: StageResult | None = None  # a filter stage: the engine's per-filter trace
    recipients: tuple[str, ...] = ()  # the recipients the record is about (empty: all)
    data: bytes | None = None  # the message as the stage left it (for the suite's header checks)


@define
class InFlight:
    """One message in the work queue: envelope, raw bytes, per-recipient dispositions, trace."""

    envelope: Envelope
    data: bytes
    dispositions: dict[str, str] = field(factory=dict)
    quarantine: str | None = None
    trace: list[str] = field(factory=list)
    final: bool = False  # a final action was taken: skip to delivery
    headers_only_dsn: bool = False  # the original was encrypted: DSNs carry headers only
    alt_mailhost: str = ""  # message-wide alt-mailhost ("host" or "host:port")
    # When a stage produces copies, each is spooled and delivered on its own; the recipients
    # they cover must be marked with a disposition other than DELIVER on the original.
    copies: list[Copy] = field(factory=list)
    # Observations for metrics, as (kind, label): kind is one of METRIC_KINDS, e.g.
    # ("filter_hit", "block_exe"), ("smime", "verified"), ("harvest", "stored").
    events: list[tuple[str, str]] = field(factory=list)
    # What the inbound S/MIME stage found; the filters see it (reference 12.7).
    smime: SmimeState = SmimeState()
    direction: str = "incoming"  # "outgoing" under a RELAY mail flow policy
    deferred_profile: str = ""  # smime-gateway-deferred: the profile the outbound stage applies
    deferred_encrypt: EncryptRequest | None = None  # encrypt-deferred: applied at step 19
    # Rule 1 of encrypt/encrypt-deferred: delivered in clear over TLS that meets the policy,
    # else encrypted by the queue at delivery (kept in the spooled envelope).
    tls_first: EncryptRequest | None = None
    # Per-recipient SMTP text for bounced recipients (the DSN's diagnostic), when a stage knows
    # better than the generic policy refusal.
    bounce_reasons: dict[str, str] = field(factory=dict)
    # Recipient groups of the mail-policy stage: (policy name, recipients), first match wins.
    splinters: list[tuple[str, tuple[str, ...]]] = field(factory=list)
    # None in the gateway (nothing recorded, filters run without rule notes); a list when
    # `filterlang test` runs the same stages and shows what they did.
    records: list[StageRecord] | None = None
    # This message's outside services (SPF/DKIM/DMARC verdict, DNS list answers, reputation),
    # filled before the stages run by the stages' `prepare` (None: the worker's shared ones).
    services: Any = None
    # `services` are recorded answers (filterlang test --services, a suite case's): no
    # provider is asked, and the scanners' recorded verdicts stand for their answers.
    replayed: bool = False
    skip_dkim_signing: bool = False  # a filter's skip-dkim-signing(): leave unsigned
    # Flag actions the message filters took (skip-spamcheck, skip-viruscheck ...), for the
    # later stages they turn off.
    flags: set[str] = field(factory=set)
    # Per splinter, what the anti-spam / anti-virus stages left when splinters differ
    # (policy -> runtime.pipeline.stages.scanning.SplinterScan); None: the message itself.
    scans: Any = None

    @property
    def recording(self) -> bool:
        return self.records is not None

    def record(self, stage: str, title: str, *, result: StageResult | None = None,
               recipients: tuple[str, ...] = (), data: bytes | None = None, **facts: Any) -> None:
        if self.records is not None:
            self.records.append(StageRecord(stage, title, facts, result, recipients, data))

    def __attrs_post_init__(self) -> None:
        for rcpt in self.envelope.rcpt_tos:
            self.dispositions.setdefault(rcpt, DELIVER)

    def recipients(self, disposition: str) -> tuple[str, ...]:
        return tuple(r for r, d in self.dispositions.items() if d == disposition)


class RetryLater(Exception):
    """A stage cannot decide now (a filter failed under `on_filter_error = "tempfail"`,
    reference 4.7): the message waits in the queue, and the pipeline runs again at its next
    attempt."""

    def __init__(self, text: str, *, stage: str = "", result: StageResult | None = None) -> None:
        super().__init__(text)
        self.stage = stage  # the stage that could not decide, and its filters' trace
        self.result = result


class Stage(Protocol):
    """One pipeline step. `process` may change the message, its envelope or dispositions.

    A stage may also have `async def prepare(self, msg)`, awaited in the worker's event loop
    before any stage runs (what needs the network: DNS for the authentication checks), and
    `def finish(self, msg)`, run after every stage, final actions included (DKIM signing:
    it must cover what is delivered)."""

    name: str

    def process(self, msg: InFlight) -> None: ...


@define
class PassThrough:
    """A slot not filled yet: changes nothing (and adds nothing to the trace)."""

    name: str

    def process(self, msg: InFlight) -> None:
        return None


def build_pipeline(stages: Mapping[str, Stage] | None = None) -> tuple[Stage, ...]:
    """The pre-delivery stages in order; slots without an implementation pass through."""
    given = dict(stages or {})
    unknown = set(given) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"unknown pipeline stage(s): {', '.join(sorted(unknown))}")
    return tuple(given.get(n) or PassThrough(n) for n in STAGE_NAMES if n != "delivery")


def run_pipeline(stages: tuple[Stage, ...], msg: InFlight) -> InFlight:
    for stage in stages:
        if msg.final:  # a final action already did its S/MIME work and delivers now
            break
        # Nothing left to do: no recipient to deliver to, nothing to quarantine, and no copy
        # still waiting for its sending profile (splinters become copies before step 19).
        if (DELIVER not in msg.dispositions.values() and msg.quarantine is None
                and not any(c.profile or c.encrypt for c in msg.copies)):
            break
        stage.process(msg)
    for stage in stages:
        finish = getattr(stage, "finish", None)
        if finish is not None:
            finish(msg)
    return msg


async def prepare_pipeline(stages: tuple[Stage, ...], msg: InFlight) -> InFlight:
    """Each stage's `prepare`, in order, in the running loop (see `Stage`)."""
    for stage in stages:
        prepare = getattr(stage, "prepare", None)
        if prepare is not None:
            await prepare(msg)
    return msg
