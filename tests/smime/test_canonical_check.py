"""The 7-bit-safety check of canonicalisation (smime.md 2.3) agrees with its line-by-line
definition, for small bodies and for large ones checked piece by piece."""

from __future__ import annotations

import random

import pytest

from smime import mime


def unsafe_by_definition(body: bytes) -> bool:
    return any(b > 127 or b == 0 for b in body) or any(
        len(line) > 76 or line.endswith((b" ", b"\t")) or line.startswith(b"From ")
        for line in body.split(b"\r\n")
    )


def bodies() -> list[bytes]:
    fixed = [b"", b"hello\r\n", b"h\xc3\xa9llo\r\n", b"a" * 76 + b"\r\n", b"a" * 77 + b"\r\n",
             b"a" * 77, b"x\r\nFrom me\r\n", b"From me\r\n", b"xFrom me\r\n", b"trail \r\nok\r\n",
             b"trail\t", b"nul\x00\r\n", b"\r\n\r\n", b"ok\r\nFro m\r\n", b"\r\n" + b"y" * 80]
    rng = random.Random(6)
    pieces = [b"a" * 30, b"From ", b" ", b"\t", b"x", b"\r\n", b"\r\n", b"\r\n", b"\xc3", b"\x00"]
    return fixed + [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
                    for _ in range(500)]


@pytest.mark.parametrize("piece", [100, 1 << 20])
def test_unsafe_matches_the_definition(monkeypatch: pytest.MonkeyPatch, piece: int) -> None:
    monkeypatch.setattr(mime, "_PIECE", piece)  # 100: every body goes through the pieces path
    for body in bodies():
        assert mime._unsafe(body) == unsafe_by_definition(body), body
