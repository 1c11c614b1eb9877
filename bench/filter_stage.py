"""CPU per message of the gateway's message-filter stage alone (issue 6 "Speed").

The stage as `filterlang serve` builds it from bench/gateway.py's REAL configuration (the 50
filters of bench/evaluate.py plus the signing filter), run in-process on the smtp-source-shaped
4 KB message of the gateway benchmark: no SMTP, no spool, no signing. Prints the best of three
runs in process CPU time (the machine is shared; wall time says little).

    python bench/filter_stage.py [--messages 3000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import REAL, write_real_setup  # noqa: E402  (bench/gateway.py)

from runtime.config.config import load_config  # noqa: E402
from runtime.mta.spool import Envelope  # noqa: E402
from runtime.pipeline.flow import InFlight, Stage, build_pipeline  # noqa: E402
from runtime.pipeline.stages import build_stages  # noqa: E402

BODY = b"".join(b"%dX" % i + b"X" * (77 - len(str(i))) + b"\r\n" for i in range(1, 52))
MESSAGE = (b"Received: from vm ([127.0.0.1])\r\n\tby gw (filterlang) with ESMTP id 1;\r\n"
           b"\tSun, 29 Nov 2026 08:43:12 +0000\r\nFrom: <a@example.com>\r\nTo: <b@example.org>\r\n"
           b"Date: Sun, 29 Nov 2026 08:43:12 +0000 (UTC)\r\nMessage-Id: <7074.0003.0000@vm>\r\n\r\n"
           + BODY)


def message_filter_stage(folder: Path) -> Stage:
    write_real_setup(folder)
    (folder / "gateway.toml").write_text(REAL.format(port=2525, sink=2526, workers=1))
    stages = build_pipeline(build_stages(load_config(folder / "gateway.toml"),
                                         alert=lambda kind, text: None))
    return next(s for s in stages if s.name == "message_filters")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3000)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fl-filter-stage-"))
    try:
        stage = message_filter_stage(folder)
        env = Envelope(mail_from="a@example.com", rcpt_tos=("b@example.org",), peer="127.0.0.1",
                       policy="relay", listener="Inbound", helo="vm", queue_id="bench")
        for _ in range(200):  # warm caches (compiled patterns, predicates)
            stage.process(InFlight(env, MESSAGE))
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for _ in range(args.messages):
                stage.process(InFlight(env, MESSAGE))
            best = min(best, time.process_time() - start)
        print(f"message-filter stage: {best * 1e6 / args.messages:7.1f} us CPU per message "
              f"(best of 3 x {args.messages}, 51 filters, 4 KB single-part message)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
