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
# str.splitlines breaks at these too; the parser's universal newlines do not.
_OTHER_BREAKS = re.compile(r"[\v\f\x1c-\x1e]")


def parse_plain(head: bytes) -> EmailMessage | None:
    """The header block ``head`` parsed as compat32 does, or None when it is not plain."""
    text = head.decode("ascii", "surrogateescape")
    if _OTHER_BREAKS.search(text):
        return None
    fields: list[list[str]] = []  # the source lines of each field
    for line in text.splitlines(keepends=True):  # \r\n, \r and \n, as universal newlines
        if line[0] in " \t":
            if not fields:
                return None  # a continuation before any field: a defect
            fields[-1].append(line)
        elif _FIELD.match(line):
            fields.append([line])
        else:
            return None
    msg = EmailMessage(policy=_POLICY)
    for lines in fields:
        msg.set_raw(*_POLICY.header_source_parse(lines))
    msg.set_payload("")  # headers only: nothing follows the block
    return msg
