"""What leaves the pipeline: per recipient its final disposition, and every message that is
delivered or parked, read from an `InFlight` after the stages ran.

The stages decide; this only reads their decision the way the queue runner acts on it
(`runtime.mta.queue.QueueRunner._pipeline`): bounced and dropped recipients, each copy spooled
or quarantined on its own, the original quarantined or delivered to the recipients left.
`filterlang test` reports it and writes its messages with `-o`.
"""

from __future__ import annotations

from attrs import frozen

from runtime.pipeline.flow import BOUNCE, COPIED, DELIVER, DROP, QUARANTINE, InFlight

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
    """The outcome of the stages' decisions for `msg`, as the queue runner carries it out."""
    env = msg.envelope
    leaving: list[Leaving] = []
    for copy in msg.copies:
        leaving.append(Leaving(copy.rcpts, copy.data,
                               env.mail_from if copy.mail_from is None else copy.mail_from,
                               copy.quarantine, copy.alt_mailhost or msg.alt_mailhost, copy.note))
    waiting = msg.recipients(DELIVER) + msg.recipients(QUARANTINE)
    if msg.quarantine and waiting:
        leaving.append(Leaving(waiting, msg.data, env.mail_from, msg.quarantine))
    elif msg.recipients(DELIVER):
        leaving.append(Leaving(msg.recipients(DELIVER), msg.data, env.mail_from,
                               alt_mailhost=msg.alt_mailhost))
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
