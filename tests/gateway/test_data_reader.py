"""The listener's DATA reader: the same message and the same end as a line-by-line reading
(RFC 5321 4.5.2), however the bytes arrive; a dot after a bare CR or LF never ends it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.mta import listener as smtp
from runtime.mta.listener import DATA_TOO_BIG, LINE_TOO_LONG, read_data

NEXT = b"QUIT\r\n"


def reference(stream: bytes, line_limit: int = 1001) -> tuple[bytes, str | None, bytes]:
    """Line by line, as RFC 5321 reads it: (content, problem, what is left after the end)."""
    lines, pos = [], 0
    while True:
        end = stream.find(b"\r\n", pos)
        assert end >= 0, "test streams always hold an end"
        line = stream[pos:end + 2]
        pos = end + 2
        if line == b".\r\n":
            break
        lines.append(line)
    if any(len(line) > line_limit for line in lines):
        # A "line" that is really lines ending in bare CR or LF is refused as that (the
        # sender's fix), not as too long.
        return b"", smtp.check_line_endings(b"".join(lines)) or LINE_TOO_LONG, stream[pos:]
    return b"".join(line[1:] if line[:1] == b"." else line for line in lines), None, stream[pos:]


def run(stream: bytes, *, piece: int = 0, size_limit: int | None = None,
        line_limit: int = 1001) -> tuple[bytes, str | None, bytes]:
    async def go() -> tuple[bytes, str | None, bytes]:
        reader = asyncio.StreamReader(limit=1001)
        if piece:
            async def feed() -> None:
                for i in range(0, len(stream), piece):
                    reader.feed_data(stream[i:i + piece])
                    await asyncio.sleep(0)
                reader.feed_eof()
            feeding = asyncio.ensure_future(feed())
        else:
            reader.feed_data(stream)
            reader.feed_eof()
        data, problem = await read_data(reader, size_limit, line_limit)
        left = await reader.read()
        if piece:
            await feeding
        return data, problem, left

    return asyncio.run(go())


CASES = {
    "empty message": b".\r\n",
    "one line": b"Subject: x\r\n.\r\n",
    "one empty line": b"\r\n.\r\n",
    "lines ending with a dot": b"Subject: x\r\n\r\nThe end.\r\nReally.\r\n.\r\n",
    "dot-stuffed lines": b"..first\r\nmiddle\r\n..\r\n...x\r\n.\r\n",
    "bare LF before a dot": b"a\n.\r\nMAIL FROM:<evil@example.com>\r\n.\r\n",
    "bare CR before a dot": b"a\r.\r\nRCPT TO:<evil@example.com>\r\n.\r\n",
    "dot-LF end": b"a\r\n.\nstill data\r\n.\r\n",
    "long message": b"Subject: big\r\n\r\n" + (b"y" * 900 + b"\r\n") * 60 + b".\r\n",
}


@pytest.mark.parametrize("piece", [0, 1, 7, 1000, 4096])
@pytest.mark.parametrize("name", sorted(CASES))
def test_reads_like_line_by_line(name: str, piece: int) -> None:
    stream = CASES[name] + NEXT
    assert run(stream, piece=piece) == reference(stream)


def test_too_long_line_is_500_and_the_session_goes_on() -> None:
    stream = b"Subject: x\r\n\r\n" + b"z" * 1200 + b"\r\n.\r\n" + NEXT
    assert run(stream) == (b"", LINE_TOO_LONG, NEXT)
    assert run(stream, line_limit=2000)[1] is None  # a listener configured for longer lines


def test_too_much_data_is_552_and_the_session_goes_on() -> None:
    stream = b"Subject: x\r\n\r\n" + (b"z" * 98 + b"\r\n") * 100 + b".\r\n" + NEXT
    assert run(stream, size_limit=5000) == (b"", DATA_TOO_BIG, NEXT)
    assert run(stream, size_limit=100_000)[1] is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b".\r\n", b"..", b"x" * 300]),
                max_size=40),
       st.sampled_from([0, 1, 3, 64]))
def test_any_byte_soup_reads_like_line_by_line(parts: list[bytes], piece: int) -> None:
    stream = b"".join(parts) + b"\r\n.\r\n" + NEXT
    assert run(stream, piece=piece) == reference(stream)


@pytest.mark.parametrize("data", [b"", b"\r\n", b"abc\r\n", b"a\r\nbbbb\r\ncc", b"a\nb\r\n", b"x" * 10])
@pytest.mark.parametrize("big", [False, True])
def test_longest_line_counts_the_crlf(data: bytes, big: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if big:  # the one-line-at-a-time path for large messages
        monkeypatch.setattr(smtp, "SPLIT_LINES_UP_TO", -1)
    lines = data.split(b"\r\n")
    expected = max([len(x) + 2 for x in lines[:-1]] + [len(lines[-1])])
    assert smtp.longest_line(data) == expected
