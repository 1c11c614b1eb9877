"""What the stage records of `filterlang test` cost, and that the gateway does not pay them.

Runs the example filters (examples/filters) through the pipeline stages over an in-memory
configuration, as `filterlang test` without `-c` does, on a message of about 5 KB: once as the gateway
runs them (no records) and once recorded with every rule's note, as `filterlang test` shows
them. Prints messages per second of each and their ratio, measured in the same run.

    python bench/trace.py [--messages 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and bench/smime.py would shadow the
# smime package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from runtime.engine.context import Connection, SmimeState  # noqa: E402  (after the sys.path set-up)
from runtime.engine.loader import load_program  # noqa: E402
from runtime.pipeline.envelope import Envelope  # noqa: E402
from runtime.pipeline.flow import InFlight, run_pipeline  # noqa: E402
from runtime.pipeline.offline import memory_stages  # noqa: E402

BODY = ("Hello,\r\nthe quarterly numbers are below.\r\n" + "Lorem ipsum dolor sit amet. " * 2 + "\r\n") * 55
MESSAGE = (f"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: numbers\r\n"
           f"Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain\r\n\r\n{BODY}").encode()


def run(messages: int, record: bool) -> float:
    files = sorted((ROOT / "examples" / "filters").glob("*.filter"))
    conn = Connection(listener="Outbound", direction="outgoing")
    stages = memory_stages(load_program(files).filters, conn)
    env = Envelope("alice@example.com", ("bob@example.org",), listener="Outbound")
    start = time.process_time()
    for _ in range(messages):
        run_pipeline(stages, InFlight(env, MESSAGE, records=[] if record else None, smime=SmimeState()))
    return messages / (time.process_time() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"example filters, {len(MESSAGE)}-byte message, {args.messages} messages, best of {args.repeat}")
    plain = max(run(args.messages, False) for _ in range(args.repeat))
    recorded = max(run(args.messages, True) for _ in range(args.repeat))
    print(f"gateway (no records):          {plain:8.0f} msg/s per core")
    print(f"filterlang test (recorded):    {recorded:8.0f} msg/s per core")
    print(f"recorded / gateway:            {recorded / plain:8.2f}")


if __name__ == "__main__":
    main()
