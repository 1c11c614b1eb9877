"""Smart identifiers (reference 5.7): a candidate regex plus a validator."""

from __future__ import annotations

from collections.abc import Callable

from filterlang.regex import smart_identifier
from runtime.engine import rx


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _credit(s: str) -> bool:
    d = "".join(c for c in s if c.isdigit())
    # 14-16 digits, Luhn-valid; a repeated single digit is a placeholder, not a card
    return 14 <= len(d) <= 16 and _luhn(d) and len(set(d)) > 1


def _aba(s: str) -> bool:
    d = [int(c) for c in s]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0 \
        and s[:2] in {f"{n:02d}" for n in (*range(0, 13), *range(21, 33), *range(61, 73), 80)}


def _ssn(s: str) -> bool:
    d = "".join(c for c in s if c.isdigit())
    area, group, serial = d[:3], d[3:5], d[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _cusip(s: str) -> bool:
    s = s.upper()
    total = 0
    for i, ch in enumerate(s[:8]):
        v = int(ch) if ch.isdigit() else ord(ch) - 55 if ch.isalpha() else {"*": 36, "@": 37, "#": 38}[ch]
        if i % 2:
            v *= 2
        total += v // 10 + v % 10
    return (10 - total % 10) % 10 == int(s[8]) if s[8].isdigit() else False


# candidate patterns live with the regex adapter (filterlang.regex); the validators here
VALIDATORS: dict[str, Callable[[str], bool]] = {
    "*credit": _credit, "*aba": _aba, "*ssn": _ssn, "*cusip": _cusip,
}


def count(pattern: rx.Pattern, text: str | bytes) -> tuple[int, list[str]]:
    """Matches of a regex or smart identifier in ``text`` (str, or UTF-8 bytes), per line."""
    if isinstance(text, bytes):
        n, found = rx.count_utf8(pattern, text)
    else:
        n, found = rx.count_lines(pattern, text)
    smart = smart_identifier(rx.source(pattern))
    if smart is None:
        return n, found
    ok = VALIDATORS[smart]
    good = [f for f in found if ok(f)]
    return len(good), good
