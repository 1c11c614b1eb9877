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
_ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"resent-from",
                   b"resent-sender", b"resent-to", b"resent-cc", b"resent-bcc")
# The rest of a field from its colon: its line and every continuation line.
_FIELD_REST = re.compile(rb"[^\n]*(?:\n[ \t][^\n]*)*")
# Searched in a lower-cased copy, with a literal start so the search runs at C speed; the
# boundary itself is then read from the original bytes (boundaries are case-sensitive).
_BOUNDARY = re.compile(rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')
_DELIMITER = re.compile(rb"\n--([^\r\n]{1,202})")
_WINDOW = 1 << 20  # bytes lower-cased at a time when looking for boundary declarations


def check_structure(data: bytes, limits: MailFlowPolicy) -> str | None:
    """The SMTP reply refusing `data`, naming the limit it breaks; None when within all."""
    # Every search here is a C search for a literal: a regex trying each of a million lines
    # of a hostile header took seconds of the listener's time.
    ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    head = data[: min(ends)] if ends else data
    if len(head) > limits.max_header_bytes:
        return (f"552 5.3.4 Message header block exceeds {limits.max_header_bytes} bytes "
                "(max_header_bytes)")
    fields = head.count(b"\n") + 1 - head.count(b"\n ") - head.count(b"\n\t")
    if fields > limits.max_header_fields:
        return (f"554 5.6.0 Message has more than {limits.max_header_fields} header fields "
                "(max_header_fields)")
    lowered = b"\n" + head.lower()
    for name in _ADDRESS_FIELDS:
        at = lowered.find(b"\n" + name)
        while at >= 0:
            colon = at + 1 + len(name)
            while lowered[colon : colon + 1] in (b" ", b"\t"):
                colon += 1
            if lowered[colon : colon + 1] == b":":
                rest = _FIELD_REST.match(lowered, colon + 1)
                if rest is not None and rest.group(0).count(b"@") > limits.max_addresses_per_header:
                    shown = head[at : at + len(name)].decode("ascii", "replace")
                    return (f"554 5.6.0 Message header {shown} lists more than "
                            f"{limits.max_addresses_per_header} addresses "
                            "(max_addresses_per_header)")
            at = lowered.find(b"\n" + name, colon)
    return _check_mime(data, limits)


def _check_mime(data: bytes, limits: MailFlowPolicy) -> str | None:
    """Parts and nesting from the boundary delimiter lines: every multipart declares its
    boundary, and each delimiter line of it opens a part. A delimiter of a boundary not on
    the stack opens a deeper level; one already on it closes the levels inside it."""
    boundaries = _declared_boundaries(data)
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


def _declared_boundaries(data: bytes) -> set[bytes]:
    """Every boundary a Content-Type declares, read from the original bytes.

    The search runs on a lower-cased copy (a literal start: C speed, five times a
    case-insensitive pattern's), made a window at a time so a 50 MB message does not get a
    second 50 MB copy on the listener's DATA path. Windows end at a line end, and a
    declaration never spans one (no pattern part matches LF), so none is cut in two."""
    found: set[bytes] = set()
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + _WINDOW)
        end = len(data) if end < 0 else end + 1
        window = data[start:end]
        for m in _BOUNDARY.finditer(window.lower()):
            group = m.lastindex or 1
            found.add(window[m.start(group) : m.end(group)])
        start = end
    return found
