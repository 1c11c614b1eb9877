"""Copies, notifications and archives (reference 7.4, 7.5): taken of the message as it is now."""

from __future__ import annotations

import email.policy
import time
from email.contentmanager import raw_data_manager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from runtime.engine.context import MessageContext
from runtime.engine.plan import ActionPlan, Copy
from runtime.engine.variables import expand

Args = list[Any]


def bcc(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    to = expand(str(args[0]), ctx)
    subject = expand(str(args[1]) if len(args) > 1 else "$Subject", ctx)
    rpath = expand(str(args[2]) if len(args) > 2 else "$EnvelopeFrom", ctx)
    out = [to, subject, rpath] + [str(a) for a in args[3:4]]
    # kind "bcc-scan" tells the pipeline to inject the copy as a new message, marked so that it
    # cannot trigger another bcc-scan of itself (loop protection, reference 7.4)
    plan.copies.append(Copy(plan.pending or "bcc", to, ctx.as_bytes(), subject, rpath))
    return out


def notify(ctx: MessageContext, plan: ActionPlan, args: Args) -> Args:
    to = expand(str(args[0]), ctx)
    subject = expand(str(args[1]) if len(args) > 1 else "Message notification: $Subject", ctx)
    rpath = expand(str(args[2]) if len(args) > 2 else "", ctx)
    template = str(args[3]) if len(args) > 3 else ""
    res = ctx.resources
    if template and res is not None and template in res.texts:
        body = expand(res.texts[template], ctx, multiline=True)
    else:
        body = expand("Filter $FilterName matched a message.\nEnvelope sender: $EnvelopeFrom\n"
                      "Envelope recipients: $EnvelopeRecipients\n\n$AllHeaders\n", ctx,
                      multiline=True)
    # compat32 writes values as given; email.policy.default would decode an encoded word
    # such as =?utf-8?Q?=0D=0ABcc:...?= found in a variable and emit a raw line break
    note = EmailMessage(policy=email.policy.compat32)
    note["Subject"] = subject
    note["To"] = to
    note["From"] = rpath or "MAILER-DAEMON"
    note.set_content(body, charset="utf-8", content_manager=raw_data_manager)
    plan.copies.append(Copy("notify", to, note.as_bytes(), subject, rpath))
    if plan.pending == "notify-copy":  # plus a scanned copy of the message, as bcc-scan does
        plan.copies.append(Copy("bcc-scan", to, ctx.as_bytes(), subject, rpath))
    out = [to, subject, rpath] + ([template] if template else [])
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
