"""Hostile message shapes (issue 13, item 10): CPU time grows linearly with the input.

For each shape (one folded header, many header fields, many MIME parts, many addresses in one
header) the message is made at size N, 2N and 4N and run through every example filter by
`filterlang test` (the engine the queue process runs: header unfolding, the MIME walker,
address parsing, every rule). The figure to read is the growth per doubling: about 2 is
linear; the quadratic unfolding this replaced gave about 4 (1.2 MB: 13.8 s, 5 MB: 190 s).

    python bench/hostile.py [--scale 1.0]

The gateway refuses most of these at DATA long before this size (`max_header_bytes`,
`max_header_fields`, `max_mime_parts`, `max_addresses_per_header`); this measures what a
policy that raises those limits costs.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILTERLANG = Path(sys.executable).parent / "filterlang"
HEAD = "From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def folded_header(n: int) -> bytes:
    """One X- header of n bytes, folded every 70 characters."""
    lines = "\r\n ".join("x" * 68 for _ in range(max(1, n // 71)))
    return (HEAD + f"X-Long: {lines}\r\n\r\nbody\r\n").encode()


def header_fields(n: int) -> bytes:
    return (HEAD + "".join(f"X-F{i}: value {i}\r\n" for i in range(n)) + "\r\nbody\r\n").encode()


def mime_parts(n: int) -> bytes:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(n))
    return (HEAD + "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + "--b--\r\n").encode()


def addresses(n: int) -> bytes:
    to = ",\r\n ".join(f"user{i} <u{i}@example.com>" for i in range(n))
    return (HEAD.replace("To: b@example.org", f"To: {to}") + "\r\nbody\r\n").encode()


SHAPES: dict[str, tuple[Callable[[int], bytes], int, str]] = {
    "one folded header": (folded_header, 1_250_000, "bytes"),
    "header fields": (header_fields, 12_500, "fields"),
    "MIME parts": (mime_parts, 25_000, "parts"),
    "addresses in To": (addresses, 12_500, "addresses"),
}


def cpu_of_test(message: Path) -> float:
    """CPU seconds (user + system) of one `filterlang test` run over the example filters."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    filters = sorted(str(p) for p in (ROOT / "examples" / "filters").glob("*.filter"))
    subprocess.run([str(FILTERLANG), "test", *filters, str(message)], check=True,
                   stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every base size")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.eml"
        empty.write_bytes(HEAD.encode() + b"\r\nbody\r\n")
        floor = min(cpu_of_test(empty) for _ in range(2))
        print(f"floor (start-up, compile, a small message): {floor:.2f} s CPU")
        print(f"{'shape':<20} {'size':>22} {'CPU s':>7} {'over floor':>10}  growth per doubling")
        for name, (make, base, unit) in SHAPES.items():
            previous = None
            for k in (1, 2, 4):
                n = int(base * args.scale * k)
                path = Path(tmp) / "m.eml"
                path.write_bytes(make(n))
                cpu = cpu_of_test(path)
                over = max(cpu - floor, 0.01)
                growth = f"{over / previous:.1f}x" if previous else ""
                print(f"{name:<20} {n:>12,} {unit:<9} {cpu:>7.2f} {over:>10.2f}  {growth}")
                previous = over


if __name__ == "__main__":
    main()
