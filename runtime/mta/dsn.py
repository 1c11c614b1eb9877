"""RFC 3464 delivery status notifications (`multipart/report; report-type=delivery-status`).

Rules: never to the null sender (no bounce loops); the returned content is the original's
header block only (`text/rfc822-headers`) whenever the original was encrypted when it arrived
(the envelope remembers it across restarts), or when the sender asked RET=HDRS, so a DSN can
never carry content the gateway decrypted. Each recipient's DSN parameters (RFC 3461) decide
whether it is reported at all: NOTIFY=NEVER never, a failure unless NOTIFY leaves FAILURE out,
a delay only when NOTIFY names DELAY; its ORCPT comes back as Original-Recipient. Every header
line goes through `runtime.engine.fieldline`, so no address or reply text can add one.
"""

from __future__ import annotations

import email.utils
import re
import socket
import time
from collections.abc import Sequence

from attrs import frozen

from runtime.engine.fieldline import clean, field_text
from runtime.pipeline.envelope import Envelope


@frozen
class RecipientStatus:
    recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    diagnostic: str
    remote_mta: str = ""


def _header_block(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def _is_encrypted(data: bytes) -> bool:
    head = _header_block(data).lower()
    return b"application/pkcs7-mime" in head or b"application/x-pkcs7-mime" in head


def _clean(text: str) -> str:
    # Diagnostic text comes from remote servers: keep it on one line, ASCII only.
    return " ".join(text.encode("ascii", "replace").decode("ascii").split())[:900]


def _param(options: Sequence[str], key: str) -> str | None:
    """The value of ESMTP parameter `key` (upper case, with its "="), or None."""
    for opt in options:
        if opt[: len(key)].upper() == key:
            return opt[len(key):]
    return None


def notify_wants(options: Sequence[str], action: str) -> bool:
    """Whether a recipient with these RCPT parameters is to be told of `action` (RFC 3461
    4.1): without NOTIFY, failures only; NOTIFY=NEVER, nothing; else what the list names."""
    notify = _param(options, "NOTIFY=")
    if notify is None:
        return action == "failed"
    wanted = {w.strip().upper() for w in notify.split(",")}
    if "NEVER" in wanted:
        return False
    return {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS",
            "relayed": "SUCCESS"}.get(action, "") in wanted


_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")


def original_recipient(options: Sequence[str]) -> str:
    """ORCPT=addr-type;xtext as `addr-type; address` for Original-Recipient (RFC 3464
    2.3.1), decoded; "" without one. The decoded text may hold anything (+0D+0A is valid
    xtext): it only ever reaches a header through the field builder."""
    orcpt = _param(options, "ORCPT=")
    if not orcpt or ";" not in orcpt:
        return ""
    kind, _, xtext = orcpt.partition(";")
    return f"{kind.strip()}; {_XTEXT.sub(lambda m: chr(int(m[1], 16)), xtext)}"


def build_dsn(
    envelope: Envelope,
    data: bytes,
    statuses: Sequence[RecipientStatus],
    *,
    reporting_mta: str | None = None,
    headers_only: bool = False,
    now: float | None = None,
    postmaster: str | None = None,
) -> bytes | None:
    """The DSN message bytes (CRLF), or None when it must not be sent: to the null sender, or
    when no recipient in `statuses` asked to be told (NOTIFY)."""
    if not envelope.mail_from or envelope.mail_from == "<>":
        return None
    options = dict(zip(envelope.rcpt_tos, envelope.rcpt_options, strict=False))
    statuses = [s for s in statuses if notify_wants(options.get(s.recipient, ()), s.action)]
    if not statuses:
        return None
    mta = reporting_mta or socket.getfqdn()
    date = email.utils.formatdate(now if now is not None else time.time())
    boundary = f"=_filterlang_dsn_{envelope.queue_id or int(time.time())}"
    failed = any(s.action == "failed" for s in statuses)
    subject = "Undelivered Mail Returned to Sender" if failed else "Delayed Mail (still being retried)"
    ret_hdrs = any(o.upper() == "RET=HDRS" for o in envelope.mail_options)
    only_headers = (headers_only or envelope.headers_only_dsn or ret_hdrs
                    or _is_encrypted(data))
    envid = _param(envelope.mail_options, "ENVID=") or ""

    lines = [
        field_text("From", f"MAILER-DAEMON@{mta}"),
        field_text("To", f"<{envelope.mail_from}>"),
        field_text("Subject", subject),
        field_text("Date", date),
        field_text("Message-ID", email.utils.make_msgid(domain=mta)),
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {clean(mta)}.",
        "",
        "Your message could not be delivered to one or more recipients."
        if failed
        else "Delivery of your message has been delayed; the system will keep trying.",
        "",
        *([clean(f"For help, write to <{postmaster}>."), ""] if postmaster else []),
    ]
    for s in statuses:
        lines.append(clean(f"<{s.recipient}>: {_clean(s.diagnostic)}"))
    lines += ["", f"--{boundary}", "Content-Type: message/delivery-status", ""]
    lines.append(field_text("Reporting-MTA", f"dns; {mta}"))
    if envid:
        lines.append(field_text("Original-Envelope-Id", _clean(envid)))
    if envelope.queue_id:
        lines.append(field_text("X-Filterlang-Queue-ID", envelope.queue_id))
    lines.append(field_text("Arrival-Date",
                            email.utils.formatdate(envelope.received_at or time.time())))
    for s in statuses:
        lines.append("")
        original = original_recipient(options.get(s.recipient, ()))
        if original:
            lines.append(field_text("Original-Recipient", original))
        lines += [field_text("Final-Recipient", f"rfc822; {s.recipient}"),
                  field_text("Action", s.action), field_text("Status", s.status)]
        if s.remote_mta:
            lines.append(field_text("Remote-MTA", f"dns; {s.remote_mta}"))
        lines.append(field_text("Diagnostic-Code", f"smtp; {_clean(s.diagnostic)}"))
    lines += ["", f"--{boundary}"]
    if only_headers:
        lines += ["Content-Type: text/rfc822-headers", "", ""]
        body = _header_block(data)
    else:
        lines += ["Content-Type: message/rfc822", "", ""]
        body = data
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return "\r\n".join(lines).encode("ascii", "replace") + body + tail


def status_from_code(code: int, text: str) -> str:
    """The enhanced status code from a reply text, else a generic one from the basic code."""
    first = text.split(" ", 1)[0]
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] in ("2", "4", "5"):
        return first
    return {2: "2.0.0", 4: "4.0.0"}.get(code // 100, "5.0.0")
