"""Copies, notifications and archives (reference 7.4, 7.5): taken of the message as it is now."""

from __future__ import annotations

import email.policy
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from runtime.engine.actions.edits import write_text
from runtime.engine.context import MessageContext
from runtime.engine.fieldline import field
from runtime.engine.plan import ActionPlan, Copy
from runtime.engine.variables import expand

Args = list[Any]


AUTO_SUBMITTED = b"Auto-Submitted: auto-generated\r\n"  # RFC 3834 5: our copies are automatic


def automatic(ctx: MessageContext) -> bool:
    """The message is itself automatic (RFC 3834 2): the null sender, or an Auto-Submitted
    field other than `no`. Notifications and copies of it would answer automatic mail
    automatically, which is how mail loops start, so none are sent."""
    if ctx.envelope.mail_from in ("", "<>"):
        return True
    return any(v.split(";", 1)[0].strip().lower() != "no"
               for v in ctx.header_values("Auto-Submitted"))


def _skipped(plan: ActionPlan, what: str) -> None:
    plan.log.append(f"{what}: not sent, the message is itself automatic (RFC 3834)")


def _marked(data: bytes) -> bytes:
    """`data` with our Auto-Submitted field in place of any it had (at most `no`)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    if b"auto-submitted" in head.lower():
        lines = head.splitlines(keepends=True)
        kept: list[bytes] = []
        dropping = False
        for line in lines:
            if line[:1] in (b" ", b"\t"):
                if not dropping:
                    kept.append(line)
                continue
            dropping = line.lower().startswith(b"auto-submitted:")
            if not dropping:
                kept.append(line)
        head = b"".join(kept).rstrip(b"\r\n")
        data = head + sep + body
    return AUTO_SUBMITTED + data


def bcc(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    to = expand(str(args[0]), ctx)
    subject = expand(str(args[1]) if len(args) > 1 else "$Subject", ctx)
    rpath = expand(str(args[2]) if len(args) > 2 else "$EnvelopeFrom", ctx)
    out = [to, subject, rpath] + [str(a) for a in args[3:4]]
    if automatic(ctx):
        _skipped(plan, f"{plan.pending or 'bcc'} copy to {to}")
        return out
    # kind "bcc-scan" tells the pipeline to inject the copy as a new message, marked so that it
    # cannot trigger another bcc-scan of itself (loop protection, reference 7.4)
    plan.copies.append(Copy(plan.pending or "bcc", to, _marked(ctx.as_bytes()), subject, rpath))
    return out


def notify(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    to = expand(str(args[0]), ctx)
    subject = expand(str(args[1]) if len(args) > 1 else "Message notification: $Subject", ctx)
    rpath = expand(str(args[2]) if len(args) > 2 else "", ctx)
    template = str(args[3]) if len(args) > 3 else ""
    out = [to, subject, rpath] + ([template] if template else [])
    if automatic(ctx):
        _skipped(plan, f"notification to {to}")
        return out
    res = ctx.resources
    if template and res is not None and template in res.texts:
        body = expand(res.texts[template], ctx, multiline=True)
    else:
        body = expand("Filter $FilterName matched a message.\nEnvelope sender: $EnvelopeFrom\n"
                      "Envelope recipients: $EnvelopeRecipients\n\n$AllHeaders\n", ctx,
                      multiline=True)
    # The header fields through the one builder (no line break from a variable's value); the
    # body as MIME text, which may have lines of its own.
    note = EmailMessage(policy=email.policy.compat32)
    write_text(note, body, "plain")
    head = (field("Subject", subject) + field("To", to) + field("From", rpath or "MAILER-DAEMON")
            + AUTO_SUBMITTED)
    body_part = note.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
    plan.copies.append(Copy("notify", to, head + body_part, subject, rpath))
    if plan.pending == "notify-copy":  # plus a scanned copy of the message, as bcc-scan does
        plan.copies.append(Copy("bcc-scan", to, _marked(ctx.as_bytes()), subject, rpath))
    return out


def duplicate_quarantine(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    plan.copies.append(Copy("duplicate-quarantine", str(args[0]), ctx.as_bytes()))
    return args


def archive(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    name = str(args[0])
    data = ctx.as_bytes()
    plan.copies.append(Copy("archive", name, data))
    res = ctx.resources
    directory: Path | None = None if res is None else res.archive_dir
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        sender = ctx.envelope.mail_from or "MAILER-DAEMON"
        # mboxrd: quote every "From " line (and already quoted ones) so messages stay separable
        body = b"\n".join((b">" + line) if line.lstrip(b">").startswith(b"From ") else line
                          for line in data.replace(b"\r\n", b"\n").split(b"\n"))
        with (directory / f"{name}.mbox").open("ab") as fh:
            fh.write(f"From {sender} {time.asctime(time.gmtime())}\n".encode())
            fh.write(body.rstrip(b"\n") + b"\n\n")
    return args


# the -scan / -copy variants differ only in what the pipeline does with the copy
bcc_scan = bcc
notify_copy = notify
