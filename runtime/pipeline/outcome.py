"""What leaves the pipeline: per recipient its final disposition, and every message that is
delivered or parked, read from an `InFlight` after the stages ran.

The stages decide; this reads their decision once, for both that act on it: the queue runner
(`runtime.mta.queue.QueueRunner._pipeline`: bounced and dropped recipients, each copy spooled
or quarantined on its own, the original quarantined or delivered to the recipients left) and
`filterlang test`, which reports it and writes its messages with `-o`. One reading, so the
prediction and the gateway cannot part (issue 12).
"""

from __future__ import annotations

from attrs import frozen

from runtime.pipeline.flow import (
    BOUNCE,
    COPIED,
    DELIVER,
    DROP,
    QUARANTINE,
    EncryptRequest,
    InFlight,
)

# Copies that serve other addresses or duplicate the message: they never stand for a
# recipient's own delivery (which a splinter or a sending profile's copy does).
AUXILIARY_COPIES = frozenset({"bcc copy", "bcc-scan copy", "notification", "duplicate"})


@frozen
class Leaving:
    """One message that leaves the pipeline: delivered to `rcpts`, or parked in `quarantine`."""

    rcpts: tuple[str, ...]
    data: bytes
    mail_from: str
    quarantine: str = ""
    alt_mailhost: str = ""
    note: str = ""  # "" for the original message; a copy says what it is
    original: bool = False  # the message itself (what is left of it), not one of its copies
    # encrypt rule 1: clear only over TLS that meets the policy, else encrypted at delivery
    tls_first: EncryptRequest | None = None

    @property
    def disposition(self) -> str:
        return f"quarantine({self.quarantine})" if self.quarantine else "deliver"


@frozen
class Outcome:
    recipients: dict[str, str]  # envelope recipient -> deliver | drop | bounce | quarantine(Q)
    leaving: tuple[Leaving, ...]
    bounce_reasons: dict[str, str]
    headers_only_dsn: bool = False  # a DSN returns headers only (the content was protected)


def settle(msg: InFlight) -> Outcome:
    """The outcome of the stages' decisions for `msg`: what the queue runner carries out
    (`QueueRunner._pipeline` acts on exactly this) and what `filterlang test` reports.

    `leaving` holds the copies first, in the order of `msg.copies`, then the original, if
    anything is left of it: quarantined for the recipients still waiting, or delivered to the
    recipients left to deliver."""
    env = msg.envelope
    leaving: list[Leaving] = []
    for copy in msg.copies:
        leaving.append(Leaving(copy.rcpts, copy.data,
                               env.mail_from if copy.mail_from is None else copy.mail_from,
                               copy.quarantine, copy.alt_mailhost or msg.alt_mailhost, copy.note,
                               tls_first=copy.tls_first))
    waiting = msg.recipients(DELIVER) + msg.recipients(QUARANTINE)
    if msg.quarantine and waiting:
        leaving.append(Leaving(waiting, msg.data, env.mail_from, msg.quarantine, original=True,
                               tls_first=msg.tls_first))
    elif msg.recipients(DELIVER):
        leaving.append(Leaving(msg.recipients(DELIVER), msg.data, env.mail_from,
                               alt_mailhost=msg.alt_mailhost, original=True,
                               tls_first=msg.tls_first))
    recipients: dict[str, str] = {}
    for rcpt, disp in msg.dispositions.items():
        if disp == BOUNCE:
            recipients[rcpt] = "bounce"
        elif disp == DROP:
            recipients[rcpt] = "drop"
        elif disp == COPIED:
            own = [c for c in leaving if rcpt in c.rcpts and c.note not in AUXILIARY_COPIES]
            recipients[rcpt] = own[-1].disposition if own else "deliver"
        elif msg.quarantine:
            recipients[rcpt] = f"quarantine({msg.quarantine})"
        else:
            recipients[rcpt] = "deliver"
    bounced = {r: msg.bounce_reasons.get(r, "550 5.7.1 message refused by policy")
               for r, d in msg.dispositions.items() if d == BOUNCE}
    return Outcome(recipients, tuple(leaving), bounced, msg.headers_only_dsn)
