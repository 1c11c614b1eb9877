"""Steps 11 and 12: anti-spam (Rspamd) and anti-virus (clamd) per policy splinter (issue 16).

Each scanner is asked at most once per message, after the message filters (which may have
changed the message, or set skip-spamcheck() / skip-viruscheck()) and after splintering, and
only when some splinter's mail policy enables it. Each splinter then gets the verdict its policy
asked for: its content filters read it (`spam-verdict`, `spam-score`, `virus-verdict`,
$SpamScore ...) and the policy's action applies to positive mail: deliver (spam optionally with
a Subject tag), drop, or quarantine.

The clients block on their sockets, so these stages are `blocking`: the queue runs the pipeline
of a message in a worker thread when a scanner is configured, never in its event loop.

Replayed (`filterlang test --services`, a suite case's `scanning`), a scanner is not asked: the
recorded verdict stands for its answer, so the policy's action applies as it would in the
gateway; with no recorded verdict the message is not scanned.

A scanner that does not answer follows `on_filter_error` (reference 4.7): "bypass" goes on
without its verdict (the rules are unavailable, the trace and the tracking lines say why),
"tempfail" keeps the message queued and runs the pipeline again at its next attempt.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from attrs import define, field

from runtime.config.config import MailPolicy
from runtime.config.scanning import PolicyScanning
from runtime.engine.fieldline import field as header_field
from runtime.engine.providers.scanners import (
    ScannerError,
    SpamVerdict,
    VirusVerdict,
    clamd_scan,
    rspamd_check,
)
from runtime.engine.services import Services
from runtime.pipeline.flow import DROP, InFlight, RetryLater
from runtime.pipeline.stages import StageContext

log = logging.getLogger("filterlang.scanning")


@define
class SplinterScan:
    """What the scans left for one splinter when splinters differ (`InFlight.scans`): the
    services its content filters see, its message (a Subject tag), and its quarantine."""

    services: Services | None
    data: bytes
    quarantine: str = ""


def _policies(ctx: StageContext, direction: str) -> dict[str, PolicyScanning]:
    pols: tuple[MailPolicy, ...] = (ctx.config.incoming_policies if direction == "incoming"
                                    else ctx.config.outgoing_policies)
    return {p.name: p.scanning for p in pols}


def _scanning(ctx: StageContext, msg: InFlight, policy: str) -> PolicyScanning:
    found = _policies(ctx, msg.direction).get(policy)
    if found is not None:
        return found
    # The implicit Default policy: AsyncOS's defaults for its direction.
    return PolicyScanning(antispam=msg.direction == "incoming")


def view(msg: InFlight, policy: str, data: bytes, services: Services | None) -> SplinterScan:
    """The splinter's services, message and quarantine after the scans (for the content
    filter stage); as given when the scans changed nothing per splinter."""
    found: dict[str, SplinterScan] | None = msg.scans
    if found is not None and policy in found:
        return found[policy]
    return SplinterScan(services, data, "")


_BLANK = re.compile(rb"\r?\n\r?\n")
_SUBJECT = re.compile(rb"(?im)^subject:[ \t]*")


def tag_subject(data: bytes, tag: str) -> bytes:
    """Prepend `tag` and a space to the Subject (one is added when there is none)."""
    end = _BLANK.search(data)
    found = _SUBJECT.search(data, 0, end.start() if end else len(data))
    if found is None:
        return header_field("Subject", tag) + data
    return data[:found.end()] + tag.encode("utf-8", "replace") + b" " + data[found.end():]


@define
class _Scanner:
    """One of the two scanning stages; `kind` is "spam" or "virus"."""

    ctx: StageContext
    kind: str
    name: str
    _ask: Callable[[InFlight], SpamVerdict | VirusVerdict] | None = field(default=None)

    @property
    def blocking(self) -> bool:
        """The queue runs the pipeline off its event loop when a scanner is configured."""
        return self._ask is not None

    @property
    def label(self) -> str:
        return "anti-spam" if self.kind == "spam" else "anti-virus"

    def _enabled(self, s: PolicyScanning) -> bool:
        return s.antispam if self.kind == "spam" else s.antivirus

    def _action(self, s: PolicyScanning) -> tuple[str, str]:
        return ((s.spam_action, s.spam_quarantine) if self.kind == "spam"
                else (s.virus_action, s.virus_quarantine))

    def _positive(self, found: SpamVerdict | VirusVerdict) -> bool:
        return found.verdict == ("spam" if self.kind == "spam" else "infected")

    def process(self, msg: InFlight) -> None:
        if self._ask is None:
            return
        wanted = [(p, r, self._scanning(msg, p)) for p, r in msg.splinters]
        wanted = [(p, r, s) for p, r, s in wanted if self._enabled(s)]
        if not wanted:
            return
        skip = "skip-spamcheck" if self.kind == "spam" else "skip-viruscheck"
        if skip in msg.flags:
            msg.trace.append(f"{self.label}: not scanned ({skip}() in a message filter)")
            self._record(msg, skipped=skip)
            return
        try:
            found = self._ask(msg)
        except NotScanned as exc:
            msg.trace.append(f"{self.label}: not scanned ({exc})")
            self._record(msg, skipped=str(exc))
            return
        except ScannerError as exc:
            if self.ctx.config.on_filter_error == "tempfail":
                self._record(msg, error=str(exc))
                raise RetryLater(f"{self.label} error: {exc}", stage=self.name) from None
            log.warning("%s: %s error, scan bypassed: %s", msg.envelope.queue_id, self.label, exc)
            msg.trace.append(f"{self.label} error, scan bypassed: {exc}")
            self._record(msg, error=str(exc))
            return
        msg.trace.append(f"{self.label}: {found.describe()}")
        self._apply(msg, found, {p: s for p, _, s in wanted})

    def _scanning(self, msg: InFlight, policy: str) -> PolicyScanning:
        return _scanning(self.ctx, msg, policy)

    def _apply(self, msg: InFlight, found: SpamVerdict | VirusVerdict,
               enabled: dict[str, PolicyScanning]) -> None:
        views: dict[str, SplinterScan] = {}
        base = msg.services if msg.services is not None else self.ctx.services
        kept: list[tuple[str, tuple[str, ...]]] = []
        actions: dict[str, str] = {}
        for policy, rcpts in msg.splinters:
            before = view(msg, policy, msg.data, base)
            s = enabled.get(policy)
            if s is None:  # this policy does not scan: its filters see no verdict
                views[policy] = before
                kept.append((policy, rcpts))
                continue
            old = before.services or Services()
            services = (attrs.evolve(old, spam=found) if isinstance(found, SpamVerdict)
                        else attrs.evolve(old, virus=found))
            action, quarantine = self._action(s) if self._positive(found) else ("deliver", "")
            actions[policy] = action
            if action == "drop":
                for r in rcpts:
                    msg.dispositions[r] = DROP
                msg.trace.append(f"{self.label}: dropped for policy {policy} "
                                 f"({', '.join(rcpts)})")
                continue
            data = before.data
            if (self.kind == "spam" and action == "deliver" and s.spam_subject_tag
                    and self._positive(found)):
                data = tag_subject(data, s.spam_subject_tag)
            views[policy] = SplinterScan(services, data, quarantine or before.quarantine)
            kept.append((policy, rcpts))
        msg.splinters = kept
        self._record(msg, verdict=found, actions=actions)
        if not kept:
            return
        if len(kept) == 1:  # one splinter: the message itself is what the scan left
            v = views[kept[0][0]]
            msg.data, msg.services, msg.scans = v.data, v.services, None
            if v.quarantine:
                msg.quarantine = v.quarantine
            return
        msg.scans = views

    def _record(self, msg: InFlight, *, verdict: SpamVerdict | VirusVerdict | None = None,
                error: str = "", skipped: str = "", actions: dict[str, str] | None = None) -> None:
        if not msg.recording:
            return
        facts: dict[str, Any] = {"error": error, "skipped": skipped}
        if verdict is not None:
            facts["verdict"] = verdict.verdict
            if isinstance(verdict, SpamVerdict):
                facts |= {"score": verdict.score, "action": verdict.action,
                          "symbols": list(verdict.symbols)}
            else:
                facts["virus"] = verdict.name
            facts["policies"] = dict(actions or {})
        msg.record(self.name, f"{self.label} ({'rspamd' if self.kind == 'spam' else 'clamd'})",
                   **facts)


class NotScanned(Exception):
    """The scanner is not asked about this message (the text says why, for the trace)."""


V = TypeVar("V", SpamVerdict, VirusVerdict)


def replayed(msg: InFlight, cls: type[V]) -> V:
    """The recorded verdict that stands for the scanner's answer when the stages replay
    recorded services: nothing is asked."""
    kind = "spam" if cls is SpamVerdict else "virus"
    provider = getattr(msg.services, kind, None)
    found = None if provider is None else getattr(provider, kind)()
    if not isinstance(found, cls):
        raise NotScanned("no recorded verdict")
    return found


def anti_spam(ctx: StageContext) -> _Scanner:
    cfg = ctx.config.antispam

    def ask(msg: InFlight) -> SpamVerdict:
        assert cfg is not None
        if len(msg.data) > cfg.max_size:  # as Rspamd's own MTA integrations skip large mail
            raise NotScanned(f"larger than [antispam] max_size ({cfg.max_size} bytes)")
        if msg.replayed:
            return replayed(msg, SpamVerdict)
        env = msg.envelope
        rcpts = tuple(r for _, rs in msg.splinters for r in rs)
        return rspamd_check(cfg, msg.data, ip=env.peer or "127.0.0.1", helo=env.helo or "",
                            mail_from=env.mail_from, rcpts=rcpts, user=env.auth_user or "",
                            queue_id=env.queue_id or "")

    return _Scanner(ctx, "spam", "anti_spam", ask=ask if cfg is not None else None)


def anti_virus(ctx: StageContext) -> _Scanner:
    cfg = ctx.config.antivirus

    def ask(msg: InFlight) -> VirusVerdict:
        assert cfg is not None
        if msg.replayed and len(msg.data) <= cfg.max_size:  # (larger: unscannable, unasked)
            return replayed(msg, VirusVerdict)
        return clamd_scan(cfg, msg.data)

    return _Scanner(ctx, "virus", "anti_virus", ask=ask if cfg is not None else None)
