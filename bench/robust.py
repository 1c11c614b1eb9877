"""Robustness benchmark (issue 2): lint time of huge broken inputs, which must stay a few seconds.

Prints wall and CPU time and the diagnostics for each case (10 MB each, 1M lines for the last).

    python bench/robust.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import time

from compile import generate

from filterlang import check_bytes

MB10 = 10 * 1024 * 1024


def cases(lines: int) -> dict[str, bytes]:
    """The inputs that used to take from 8 to 49 seconds."""
    return {
        "unterminated string on one 10 MB line": b"x: if subject == 'abc" + b"a" * MB10 + b" {\n",
        "a call with 2.6M arguments": b"x: if true { f(" + b"'a'," * (MB10 // 4) + b"'a'); }\n",
        "50k valid filters + one error": (generate(50_000) + "\nbad: if x = 'y' { drop(); }\n").encode(),
        f"{lines} broken one-line filters": b"".join(
            b"f%d: if x = 'y' { drop(); }\n" % i for i in range(lines)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    check_bytes(b"warm: if signed { no-op(); }", "warm")  # build the parser outside the timing
    for name, data in cases(args.lines).items():
        wall, cpu = time.perf_counter(), time.process_time()
        diags = check_bytes(data, "bench.filter")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        codes = sorted({d.code for d in diags})
        print(f"{name}: {len(data) / 1e6:.1f} MB, {wall:.2f}s wall, {cpu:.2f}s cpu, "
              f"{len(diags)} diagnostics {codes}")


if __name__ == "__main__":
    main()
