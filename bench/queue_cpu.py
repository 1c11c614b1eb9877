"""CPU per message of one gateway queue process, in process: no listener, no smtp-source.

    python bench/queue_cpu.py [--messages 2000] [--rounds 3] [--bare | --inbound] [--profile]

Spools N smtp-source-shaped 4 KB messages (51 body lines of 78 characters), then lets a
QueueRunner work them exactly as a queue process of `filterlang serve` does (run_async in an
event loop, the doorbell's offers, multiprocess metrics, message tracking, AsyncSMTPTransport
to Postfix's `smtp-sink`), and prints the process's CPU (user + system) per message, and the
part spent in the pipeline's stages. By default the stages are bench/gateway.py's REAL
config (50 message filters and an RSA-2048 "sign" sending profile); --bare runs no stages, so
what is left is the queue's own work: claim, read, tracking, metrics, SMTP, settle.
--inbound runs bench/gateway.py's INBOUND config instead: the partners' signed 4 KB messages
(bench/_partners.py), each verified with path validation and CRLs, then the 50 filters.

Why in process: on a shared 2-core machine the whole gateway's per-role CPU moves by a tenth
with the neighbours' load; this figure moves far less. Compare the best of several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# As in bench/gateway.py: the project first (bench/smime.py would shadow the smime package).
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.append(str(ROOT / "bench"))

import gateway as bench_gateway  # noqa: E402  (bench/gateway.py: the REAL config)

import runtime.mta.queue as delivery  # noqa: E402
from runtime.config.config import load_config  # noqa: E402
from runtime.mta.doorbell import Doorbell  # noqa: E402
from runtime.mta.metrics import Metrics, enable_multiprocess  # noqa: E402
from runtime.mta.spool import Envelope, Spool  # noqa: E402
from runtime.mta.supervisor import GC_YOUNG_THRESHOLD, _serve_queue, make_runner  # noqa: E402
from runtime.pipeline.stages import build_stages  # noqa: E402

BODY = b"".join(b"%dX" % i + b"X" * (77 - len(str(i))) + b"\r\n" for i in range(1, 52))
MESSAGE = (b"Received: from vm ([127.0.0.1])\r\n\tby gw (filterlang) with ESMTP id 1;\r\n"
           b"\tSun, 29 Nov 2026 08:43:12 +0000\r\nFrom: <a@example.com>\r\nTo: <b@example.org>\r\n"
           b"Date: Sun, 29 Nov 2026 08:43:12 +0000 (UTC)\r\nSubject: test\r\n"
           b"Message-Id: <7074.0003.0000@vm>\r\n\r\n" + BODY)
WARM_UP = 200


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bare", action="store_true", help="no pipeline stages")
    ap.add_argument("--inbound", action="store_true",
                    help="the inbound config: signed messages from partners, verified")
    ap.add_argument("--profile", action="store_true", help="cProfile the last round")
    ap.add_argument("--sort", default="tottime", help="pstats order of --profile (cumulative ...)")
    ap.add_argument("--profile-out", type=Path, help="with --profile: also save the stats here")
    args = ap.parse_args()
    if shutil.which("smtp-sink") is None:
        print("smtp-sink (Postfix) is not installed", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="fl-queue-cpu-"))
    sink_port = bench_gateway.free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1000"])
    try:
        bench_gateway.write_real_setup(tmp)
        template = bench_gateway.INBOUND if args.inbound else bench_gateway.REAL
        (tmp / "gateway.toml").write_text(
            template.format(port=bench_gateway.free_port(), sink=sink_port, workers=1))
        messages = [(Envelope(mail_from="a@example.com", rcpt_tos=("b@example.org",),
                              peer="127.0.0.1", policy="relay", listener="Inbound", helo="vm"),
                     MESSAGE)]
        if args.inbound:
            from _partners import write_partners  # bench/_partners.py

            messages = [(Envelope(mail_from=f"sales@{f.stem}", rcpt_tos=("b@example.org",),
                                  peer="127.0.0.1", policy="partners", listener="Inbound",
                                  helo="vm"), f.read_bytes().replace(b"\n", b"\r\n"))
                        for f in write_partners(tmp / "partners")]
        os.chdir(tmp)
        config = load_config(tmp / "gateway.toml")
        bench_gateway.wait_port(sink_port)
        data_dir = config.storage.data_dir
        spool = Spool(data_dir / "spool", owner=str(os.getpid()))
        spool.reserve_free()
        enable_multiprocess(data_dir / "metrics")
        metrics = Metrics(spool, data_dir / "metrics")
        stages = None if args.bare else build_stages(config, alert=lambda kind, text: None)
        runner = make_runner(config, spool, metrics=metrics, stages=stages)

        in_stages = [0.0]
        run_pipeline = delivery.run_pipeline

        def timed(*a: object) -> object:
            t0 = time.thread_time()
            try:
                return run_pipeline(*a)  # type: ignore[arg-type]
            finally:
                in_stages[0] += time.thread_time() - t0

        delivery.run_pipeline = timed  # type: ignore[assignment]
        # As a queue process of `serve` does after its start-up (runtime/gateway.py).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
        # CPU time, not wall time: on a shared machine a wall clock charges the neighbours.
        profile = cProfile.Profile(time.process_time) if args.profile else None
        results = []
        for r in range(args.rounds + 1):  # round 0 warms up
            n = args.messages if r else WARM_UP
            ids = [spool.store(*messages[i % len(messages)]) for i in range(n)]
            in_stages[0] = 0.0
            last = r == args.rounds
            cpu = asyncio.run(_work(config, runner, spool, ids, profile if last else None))
            if r:
                results.append((cpu / n, in_stages[0] / n))
                print(f"round {r}: {cpu * 1e6 / n:.0f} us CPU per message, of which "
                      f"{in_stages[0] * 1e6 / n:.0f} us in the pipeline's stages", flush=True)
        best = min(results)
        kind = "bare" if args.bare else "INBOUND stages" if args.inbound else "REAL stages"
        print(f"{kind}: best {best[0] * 1e6:.0f} us CPU per "
              f"message ({best[1] * 1e6:.0f} us in stages, {(best[0] - best[1]) * 1e6:.0f} us "
              f"the queue's own), {args.messages} messages x {args.rounds} rounds")
        if profile is not None:
            pstats.Stats(profile).sort_stats(args.sort).print_stats(40)
            if args.profile_out:
                profile.dump_stats(args.profile_out)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


async def _work(config: object, runner: delivery.QueueRunner, spool: Spool, ids: list[str],
                profile: cProfile.Profile | None) -> float:
    """Offer `ids` as the doorbell would and wait until all are delivered; the CPU seconds."""
    bell = Doorbell()
    stop = asyncio.Event()
    queue = asyncio.create_task(_serve_queue(config, runner, stop, bell))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    before = os.times()
    if profile is not None:
        profile.enable()
    for qid in ids:
        runner.offer(qid)
    active = spool.dir("active")
    while runner._backlog or os.listdir(active):
        await asyncio.sleep(0.002)
    if profile is not None:
        profile.disable()
    after = os.times()
    stop.set()
    await queue
    bell.close()
    return (after.user - before.user) + (after.system - before.system)


if __name__ == "__main__":
    sys.exit(main())
