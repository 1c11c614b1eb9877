"""check_der keeps, beside each open value, the nearest definite end (it used to look it up
for every value, about half its time on each signed message). The walk before that change is
kept here as the reference: on well-formed CMS (DER and BER) and on every kind of damage the
two agree on the outcome and on the very message, so the offsets an operator reads are the
same."""

from __future__ import annotations

import random
from pathlib import Path

from pki import NOW, make_pki

from smime import sign_content
from smime._cms_signed import INDEF, MAX_DEPTH, check_der
from smime.errors import MalformedError

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"


def reference(data: bytes) -> None:
    """check_der as it was (commit 502652c), verbatim but for its name."""
    if not data:
        raise MalformedError("CMS: empty input")
    stack: list[int] = [len(data)]
    limit = len(data)
    pos = 0
    while pos < len(data):
        while stack and stack[-1] != INDEF and pos == stack[-1]:
            stack.pop()
        if not stack:
            raise MalformedError(f"CMS: trailing data at byte {pos}")
        start = pos
        if data[pos : pos + 2] == b"\x00\x00" and stack[-1] == INDEF:
            stack.pop()
            pos += 2
            continue
        tag = data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:
            while pos < len(data) and data[pos] & 0x80:
                pos += 1
            pos += 1
        if pos >= len(data):
            raise MalformedError(f"CMS: truncated header at byte {start}")
        first = data[pos]
        pos += 1
        if first == 0x80:
            if not tag & 0x20:
                raise MalformedError(f"CMS: indefinite length on a primitive at byte {start}")
            if len(stack) > MAX_DEPTH:
                raise MalformedError(f"CMS: nesting deeper than {MAX_DEPTH} at byte {start}")
            stack.append(INDEF)
            continue
        if first & 0x80:
            count = first & 0x7F
            if count > 8 or pos + count > len(data):
                raise MalformedError(f"CMS: bad length field at byte {start}")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        else:
            length = first
        end = pos + length
        bound = next((e for e in reversed(stack) if e != INDEF), limit)
        if end > bound:
            raise MalformedError(
                f"CMS: value at byte {start} claims {length} bytes but only "
                f"{bound - pos} remain"
            )
        if tag & 0x20:
            if len(stack) > MAX_DEPTH:
                raise MalformedError(f"CMS: nesting deeper than {MAX_DEPTH} at byte {start}")
            stack.append(end)
        else:
            pos = end
    while stack and stack[-1] != INDEF and pos == stack[-1]:
        stack.pop()
    if stack:
        raise MalformedError("CMS: truncated input")


def outcome(walk: object, data: bytes) -> str | None:
    try:
        walk(data)  # type: ignore[operator]
    except MalformedError as exc:
        return str(exc)
    return None


def ber(der: bytes) -> bytes:
    """`der` with its outer SEQUENCE re-encoded with an indefinite length, as BER senders do."""
    assert der[0] == 0x30 and der[1] & 0x80
    header = 2 + (der[1] & 0x7F)
    return b"\x30\x80" + der[header:] + b"\x00\x00"


def seeds() -> list[bytes]:
    pki = make_pki()
    users = [pki.user(kind=kind) for kind in ("rsa", "p256")]
    found = [
        sign_content(b"Content-Type: text/plain\r\n\r\nhi\r\n", user.key, user.asn1, now=NOW,
                     detached=detached)
        for user in users for detached in (True, False)
    ]
    found += [ber(d) for d in found]
    if VECTORS.is_dir():  # the CMS vectors in DER or BER (RFC 4134, RFC 9216 ...), at hand
        files = [p for suffix in ("*.der", "*.p7m", "*.p7s", "*.bin")
                 for p in sorted(VECTORS.rglob(suffix))]
        found += [d for d in (p.read_bytes() for p in files) if d[:1] == b"\x30"][:80]
    found += [b"", b"\x30\x80" * 100, b"\x30\x80\x00\x00", b"\x1f\x81\x80\x01\x00",
              b"\x30\x89" + b"\xff" * 9, b"\x04\x80ab\x00\x00", b"\x30\x00\x00\x00"]
    return found


def damaged(data: bytes, rnd: random.Random) -> bytes:
    d = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        pos = rnd.randrange(len(d) + 1)
        op = rnd.random()
        if op < 0.3 and d:
            d[min(pos, len(d) - 1)] = rnd.randrange(256)
        elif op < 0.5:
            del d[pos:pos + rnd.randint(1, 16)]
        elif op < 0.7:
            d[pos:pos] = rnd.choice([b"\x00\x00", b"\x30\x80", b"\x80", b"\x84\xff", b"\x1f"])
        else:
            d = d[:pos]
    return bytes(d)


def test_the_walk_agrees_with_the_one_it_replaced() -> None:
    rnd = random.Random(4134)
    cases = 0
    for seed in seeds():
        inputs = [seed] + [seed[:cut] for cut in range(0, len(seed), max(1, len(seed) // 50))]
        inputs += [damaged(seed, rnd) for _ in range(200)] if seed else []
        for data in inputs:
            assert outcome(check_der, data) == outcome(reference, data), data[:64].hex()
            cases += 1
    assert cases > 2000
