"""Hostile message structure (issue 13 item 10): header unfolding and the DATA-time checks.

Prints, for growing inputs, the wall time of reading one folded header through the message
context (`header_values`, what every header rule does) and of `check_structure` (what the
listener runs before its 250), with the ratio to the previous size: linear work gives about
the size ratio (4x), quadratic work its square (16x). Run on an idle machine for absolute
figures; the ratios within one run hold under load too.

    python bench/structure.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from runtime.config.config import MailFlowPolicy
from runtime.engine.context import Envelope, MessageContext
from runtime.engine.limits import check_structure

# Limits high enough that every input is checked to its end (nothing is refused early).
OPEN = MailFlowPolicy(name="bench", max_header_bytes=1 << 40, max_header_fields=1 << 40,
                      max_addresses_per_header=1 << 40, max_mime_parts=1 << 40,
                      max_mime_depth=1 << 40)


def folded(size: int) -> bytes:
    return b"Subject: x\r\nX-Folded: start\r\n" + b" w\r\n" * (size // 4) + b"\r\nbody\r\n"


def fields(count: int) -> bytes:
    return b"".join(b"X-%d: v\r\n" % i for i in range(count)) + b"\r\nbody\r\n"


def parts(count: int) -> bytes:
    kids = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(count))
    return b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + kids + b"--B--\r\n"


def best(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def unfold(data: bytes) -> None:
    MessageContext(data, Envelope.simple("a@x", ["b@y"])).header_values("X-Folded")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    repeat = ap.parse_args().repeat
    rows = [
        ("header_values, one folded header", [folded(n) for n in (312_500, 1_250_000, 5_000_000)],
         unfold),
        ("check_structure, folded header", [folded(n) for n in (312_500, 1_250_000, 5_000_000)],
         lambda d: check_structure(d, OPEN)),
        ("check_structure, header fields", [fields(n) for n in (12_500, 50_000, 200_000)],
         lambda d: check_structure(d, OPEN)),
        ("check_structure, MIME parts", [parts(n) for n in (25_000, 100_000, 400_000)],
         lambda d: check_structure(d, OPEN)),
    ]
    for title, inputs, fn in rows:
        print(title)
        previous = None
        for data in inputs:
            t = best(lambda data=data, fn=fn: fn(data), repeat)  # type: ignore[misc]
            ratio = f"  x{t / previous:.1f} for x4 input" if previous else ""
            print(f"  {len(data) / 1e6:6.2f} MB  {t * 1000:9.1f} ms{ratio}")
            previous = t


if __name__ == "__main__":
    main()
