"""A plain header block as the standard feed parser reads it, without the feed parser.

A single-part message needs its header as an ``EmailMessage`` (compat32) before its body can be
scanned; the feed parser's line-by-line machinery costs more than all the header rules of a
filter set together (issue 6). `parse_plain` builds exactly what
``BytesHeaderParser(policy=compat32, _class=EmailMessage).parsebytes(head)`` builds when every
line is a field or a continuation of one. Anything else (an mbox ``From `` line, a line that is
neither, a control character the parser treats as a line break) returns None and the caller
uses the parser, which records its defects.
"""

from __future__ import annotations

import email.policy
import re
from email.message import EmailMessage

_POLICY = email.policy.compat32

# A field line as the parser's headerRE accepts it, less the empty name (a defect).
_FIELD = re.compile(r"[\041-\071\073-\176]+:")


def parse_plain(head: bytes) -> EmailMessage | None:
    """The header block ``head`` parsed as compat32 does, or None when it is not plain."""
    text = head.decode("ascii", "surrogateescape")
    lines = text.splitlines(keepends=True)
    # str.splitlines also breaks at \v, \f and \x1c-\x1e, the parser's universal newlines only
    # at \r\n, \r and \n: the lines must be as many as those (a last line may lack one)
    breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
    if len(lines) != breaks + (not text.endswith(("\r", "\n"))):
        return None
    fields: list[list[str]] = []  # the source lines of each field
    for line in lines:
        if line[0] in " \t":
            if not fields:
                return None  # a continuation before any field: a defect
            fields[-1].append(line)
        elif _FIELD.match(line):
            fields.append([line])
        else:
            return None
    msg = EmailMessage(policy=_POLICY)
    for source in fields:
        msg.set_raw(*_POLICY.header_source_parse(source))
    msg.set_payload("")  # headers only: nothing follows the block
    return msg
