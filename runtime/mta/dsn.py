"""RFC 3464 delivery status notifications (`multipart/report; report-type=delivery-status`).

Rules: never to the null sender (no bounce loops); the returned content is the original's
header block only (`text/rfc822-headers`) whenever the original was encrypted, or when the
sender asked RET=HDRS, so a DSN can never carry content the gateway decrypted.
"""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Sequence

from attrs import frozen

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


def build_dsn(
    envelope: Envelope,
    data: bytes,
    statuses: Sequence[RecipientStatus],
    *,
    reporting_mta: str | None = None,
    headers_only: bool = False,
    now: float | None = None,
) -> bytes | None:
    """The DSN message bytes (CRLF), or None when it must not be sent (null sender)."""
    if not envelope.mail_from or envelope.mail_from == "<>":
        return None
    mta = reporting_mta or socket.getfqdn()
    date = email.utils.formatdate(now if now is not None else time.time())
    boundary = f"=_filterlang_dsn_{envelope.queue_id or int(time.time())}"
    failed = any(s.action == "failed" for s in statuses)
    subject = "Undelivered Mail Returned to Sender" if failed else "Delayed Mail (still being retried)"
    ret_hdrs = any(o.upper() == "RET=HDRS" for o in envelope.mail_options)
    only_headers = headers_only or ret_hdrs or _is_encrypted(data)
    envid = next((o[6:] for o in envelope.mail_options if o.upper().startswith("ENVID=")), "")

    lines = [
        f"From: MAILER-DAEMON@{mta}",
        f"To: <{envelope.mail_from}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: {email.utils.make_msgid(domain=mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {mta}.",
        "",
        "Your message could not be delivered to one or more recipients."
        if failed
        else "Delivery of your message has been delayed; the system will keep trying.",
        "",
    ]
    for s in statuses:
        lines.append(f"<{s.recipient}>: {_clean(s.diagnostic)}")
    lines += ["", f"--{boundary}", "Content-Type: message/delivery-status", ""]
    lines.append(f"Reporting-MTA: dns; {mta}")
    if envid:
        lines.append(f"Original-Envelope-Id: {_clean(envid)}")
    if envelope.queue_id:
        lines.append(f"X-Filterlang-Queue-ID: {envelope.queue_id}")
    lines.append(f"Arrival-Date: {email.utils.formatdate(envelope.received_at or time.time())}")
    for s in statuses:
        lines += ["", f"Final-Recipient: rfc822; {s.recipient}", f"Action: {s.action}", f"Status: {s.status}"]
        if s.remote_mta:
            lines.append(f"Remote-MTA: dns; {s.remote_mta}")
        lines.append(f"Diagnostic-Code: smtp; {_clean(s.diagnostic)}")
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
