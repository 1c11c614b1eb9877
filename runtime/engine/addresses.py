"""Address lists read as the email package's compat32 parser reads them, never raising.

``email.utils.getaddresses`` and ``parseaddr`` recurse once per nested comment: a From of
100,000 ``(`` (which the listener's header limits let through, one field of 100 KB) raised
RecursionError out of a rule, and a rule that raises makes its filter fail, which bypasses
the stage; out of the DMARC check it failed the message's authentication. A list the parser
cannot read is read as naming no address (for DMARC: no From domain, a permerror).
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import getaddresses


def address_list(values: Sequence[str]) -> list[tuple[str, str]]:
    """``getaddresses(values)``: (display name, addr-spec) pairs; [] when unreadable."""
    try:
        return getaddresses(list(values))
    except RecursionError:
        return []


def first_address(value: str) -> str:
    """The first addr-spec of `value` (``parseaddr``'s answer), "" when there is none."""
    found = address_list([value])
    return found[0][1] if found else ""
