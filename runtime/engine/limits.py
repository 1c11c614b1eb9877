"""Structure limits checked on a message's bytes at DATA time, before it is accepted.

Parsing a message later (header unfolding, the MIME walk, address lists) costs time that grows
with its structure, not only its size: one folded header of megabytes, 50,000 fields or
100,000 MIME parts stalled a queue process. The listener refuses such a message with a reply
that names the limit (552 for sizes, 554 for structure), so nothing accepted with 250 is one
the pipeline cannot process. Each check is one linear pass (searches in C) over the bytes.
"""

from __future__ import annotations

import re

from runtime.config.config import MailFlowPolicy

# Fields whose value is an address list (RFC 5322 3.6.2, 3.6.3, 3.6.6).
_ADDRESS_FIELDS = frozenset({
    b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"resent-from", b"resent-sender",
    b"resent-to", b"resent-cc", b"resent-bcc",
})
_BOUNDARY = re.compile(rb'(?i)boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')
_DELIMITER = re.compile(rb"^--([^\r\n]{1,202})", re.MULTILINE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")


def check_structure(data: bytes, limits: MailFlowPolicy) -> str | None:
    """The SMTP reply refusing `data`, naming the limit it breaks; None when within all."""
    end = _HEAD_END.search(data)
    head = data[: end.start()] if end is not None else data
    if len(head) > limits.max_header_bytes:
        return (f"552 5.3.4 Message header block exceeds {limits.max_header_bytes} bytes "
                "(max_header_bytes)")
    fields = 0
    name = b""
    addresses = 0
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if name in _ADDRESS_FIELDS:
                addresses += line.count(b"@")
        else:
            if addresses > limits.max_addresses_per_header:
                break
            fields += 1
            name = line.partition(b":")[0].strip().lower()
            addresses = line.count(b"@") if name in _ADDRESS_FIELDS else 0
    if addresses > limits.max_addresses_per_header:
        return (f"554 5.6.0 Message header {name.decode('ascii', 'replace')} lists more than "
                f"{limits.max_addresses_per_header} addresses (max_addresses_per_header)")
    if fields > limits.max_header_fields:
        return (f"554 5.6.0 Message has more than {limits.max_header_fields} header fields "
                "(max_header_fields)")
    return _check_mime(data, limits)


def _check_mime(data: bytes, limits: MailFlowPolicy) -> str | None:
    """Parts and nesting from the boundary delimiter lines: every multipart declares its
    boundary, and each delimiter line of it opens a part. A delimiter of a boundary not on
    the stack opens a deeper level; one already on it closes the levels inside it."""
    boundaries = {m.group(1) or m.group(2) for m in _BOUNDARY.finditer(data)}
    if not boundaries:
        return None
    parts = 0
    stack: list[bytes] = []
    for m in _DELIMITER.finditer(data):
        text = m.group(1).rstrip(b" \t\r")
        closing = text.endswith(b"--") and text[:-2] in boundaries
        boundary = text[:-2] if closing else text
        if boundary not in boundaries:
            continue
        if boundary in stack:
            del stack[stack.index(boundary) + 1:]
        else:
            stack.append(boundary)
            if len(stack) + 1 > limits.max_mime_depth:
                return (f"554 5.6.0 Message nests MIME parts deeper than {limits.max_mime_depth} "
                        "levels (max_mime_depth)")
        if closing:
            stack.pop()
            continue
        parts += 1
        if parts > limits.max_mime_parts:
            return (f"554 5.6.0 Message has more than {limits.max_mime_parts} MIME parts "
                    "(max_mime_parts)")
    return None
