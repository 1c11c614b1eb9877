"""Keep very large encoded bodies out of the MIME parser so memory stays near the message size.

The standard parser holds several copies of every line (about 8x the message in total). Before
parsing a large message, each long run of base64 lines is replaced by a short placeholder and
remembered as an offset range into the original bytes; parts read their payload from there on
demand, and serialisation puts the original bytes back.
"""

from __future__ import annotations

import base64
import re

from attrs import frozen

ELIDE_OVER = 4 * 1024 * 1024  # messages smaller than this are parsed as they are
MIN_RUN = 256 * 1024  # only runs of base64 at least this long are elided
_B64_LINE = re.compile(rb"[A-Za-z0-9+/=]{1,998}\r?")
PREFIX = "FILTERLANGELIDED"


@frozen
class Elided:
    raw: bytes
    ranges: dict[str, tuple[int, int]]  # placeholder -> (start, end) in raw

    def payload(self, key: str, limit: int | None = None) -> bytes:
        start, end = self.ranges[key]
        if limit is not None:
            # decode only a prefix: whole 4-character groups of the first lines
            chunk = self.raw[start:min(end, start + limit * 2)]
            data = b"".join(chunk.split())
            return base64.b64decode(data[: len(data) // 4 * 4])[:limit]
        return base64.b64decode(self.raw[start:end])

    def size(self, key: str) -> int:
        start, end = self.ranges[key]
        return end - start

    def restore(self, data: bytes) -> bytes:
        for key, (start, end) in self.ranges.items():
            pos = data.find(key.encode())
            if pos < 0:
                continue  # the part was dropped by an action
            stop = data.find(b"\n", pos) + 1 or len(data)
            data = data[:pos] + self.raw[start:end] + data[stop:]
        return data


def elide(raw: bytes) -> tuple[bytes, Elided | None]:
    if len(raw) <= ELIDE_OVER:
        return raw, None
    pieces: list[bytes] = []
    ranges: dict[str, tuple[int, int]] = {}
    pos = 0
    run_start = -1
    last = 0
    n = len(raw)
    while pos < n:
        nl = raw.find(b"\n", pos)
        end = n if nl < 0 else nl + 1
        is_b64 = end - pos > 1 and _B64_LINE.fullmatch(raw, pos, end - 1 if nl >= 0 else end) is not None
        if is_b64:
            if run_start < 0:
                run_start = pos
        else:
            if run_start >= 0 and pos - run_start >= MIN_RUN:
                key = f"{PREFIX}{len(ranges):010d}"
                pieces += [raw[last:run_start], key.encode() + b"\n"]
                ranges[key] = (run_start, pos)
                last = pos
            run_start = -1
        pos = end
    if run_start >= 0 and n - run_start >= MIN_RUN:
        key = f"{PREFIX}{len(ranges):010d}"
        pieces += [raw[last:run_start], key.encode() + b"\n"]
        ranges[key] = (run_start, n)
        last = n
    if not ranges:
        return raw, None
    pieces.append(raw[last:])
    return b"".join(pieces), Elided(raw, ranges)
