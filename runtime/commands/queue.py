"""`filterlang queue list|show|flush|retry -c gateway.toml`: inspect and push the spool.

`flush` makes every deferred message due now; `retry ID` does it for one message, or moves a
held message back to `incoming`. A running gateway picks them up on its
next pass (within a second).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import attrs

from runtime.commands._config import config_or_none
from runtime.mta.spool import STATES, CorruptEntry, Spool, SpoolError
from runtime.mta.supervisor import spool_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, type=Path, help="path to gateway.toml")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list spooled messages (all states or one)")
    lst.add_argument("--state", choices=STATES)
    show = sub.add_parser("show", help="print one spooled message with its envelope")
    show.add_argument("queue_id")
    sub.add_parser("flush", help="make every deferred message due now")
    retry = sub.add_parser("retry", help="retry one deferred or held message now")
    retry.add_argument("queue_id")


def _due_now(spool: Spool, state: str, qid: str) -> bool:
    try:
        env, data = spool.read(state, qid)
    except CorruptEntry as exc:
        print(f"filterlang queue: {state}/{qid} is unreadable: {exc}", file=sys.stderr)
        return False
    try:
        spool.rewrite(state, attrs.evolve(env, next_attempt=0.0), data)
    except SpoolError as exc:  # a full disk: the message stays as it was, waiting its turn
        print(f"filterlang queue: cannot make {state}/{qid} due now: {exc}", file=sys.stderr)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    config = config_or_none(args.config)
    if config is None:
        return 2
    spool = spool_for(config)
    if args.action == "list":
        for state in [args.state] if args.state else STATES:
            for qid in spool.list_all(state):
                found = spool.find(qid)
                try:
                    if found is None:
                        continue  # it moved on while we were listing
                    env, data = found[1].read(found[0], qid)
                except CorruptEntry as exc:
                    print(f"{qid}\t{state}\t(unreadable: {exc})")
                    continue
                # A message a full disk held back waits past its header's time (Spool.hold_back).
                at = max(env.next_attempt, spool.held_until(qid)) if state == "deferred" else 0
                due = "" if state != "deferred" else f"\tnext={time.strftime('%H:%M:%S', time.localtime(at))}"
                print(f"{qid}\t{state}\t{env.mail_from or '<>'}\t{','.join(env.rcpt_tos)}\t"
                      f"{len(data)}\tattempts={env.attempts}{due}\t{env.last_error}")
        return 0
    if args.action == "show":
        found = spool.find(args.queue_id) if "/" not in args.queue_id else None
        if found is None:
            print(f"filterlang queue: no message {args.queue_id!r} in the spool", file=sys.stderr)
            return 1
        state = found[0]
        try:
            env, data = found[1].read(state, args.queue_id)
        except CorruptEntry as exc:
            print(f"filterlang queue: {state}/{args.queue_id} is unreadable: {exc}", file=sys.stderr)
            return 1
        print(f"Queue-ID: {env.queue_id}\nState: {state}\nSender: <{env.mail_from}>\n"
              f"Recipients: {', '.join(env.rcpt_tos)}\nAttempts: {env.attempts}\n"
              f"Last-Error: {env.last_error}\n")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        return 0
    if args.action == "flush":
        waiting = spool.list("deferred")
        n = sum(_due_now(spool, "deferred", qid) for qid in waiting)
        print(f"{n} deferred message(s) due now")
        return 0 if n == len(waiting) else 1
    found = spool.find(args.queue_id) if "/" not in args.queue_id else None
    state = found[0] if found else None
    if state == "deferred":
        ok = _due_now(spool, "deferred", args.queue_id)
    elif state == "hold":
        ok = spool.move(args.queue_id, "hold", "incoming")
    else:
        print(f"filterlang queue: {args.queue_id!r} is not deferred or on hold"
              f" ({state or 'not in the spool'})", file=sys.stderr)
        return 1
    print(f"{args.queue_id} due now" if ok else f"{args.queue_id} could not be retried")
    return 0 if ok else 1
