"""`filterlang queue list|show|flush|retry -c gateway.toml`: inspect and push the spool.

`flush` makes every deferred message due now; `retry ID` does it for one message, or moves a
held message back to `incoming`. A running gateway picks them up on its
next pass (within a second).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import attrs

from runtime.commands._config import (
    accept_after_action,
    add_config_argument,
    iso,
    print_json,
    required_config,
)
from runtime.mta.spool import STATES, CorruptEntry, Spool, SpoolError
from runtime.mta.stores import spool_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, " whose spool to work on")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list spooled messages (all states or one)")
    lst.add_argument("--state", choices=STATES)
    show = sub.add_parser("show", help="print one spooled message with its envelope")
    show.add_argument("queue_id")
    sub.add_parser("flush", help="make every deferred message due now")
    retry = sub.add_parser("retry", help="retry one deferred or held message now")
    retry.add_argument("queue_id")
    accept_after_action(sub)


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


def _row(qid: str, state: str, env: Any, size: int, next_at: float | None) -> dict[str, Any]:
    return {"queue_id": qid, "state": state, "mail_from": env.mail_from,
            "rcpt_tos": list(env.rcpt_tos), "size": size, "attempts": env.attempts,
            "next_attempt": iso(next_at), "last_error": env.last_error}


def _list(spool: Spool | None, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for state in [args.state] if args.state and spool else STATES if spool else []:
        assert spool is not None
        for qid in spool.list_all(state):
            found = spool.find(qid)
            try:
                if found is None:
                    continue  # it moved on while we were listing
                env, data = found[1].read(found[0], qid)
            except CorruptEntry as exc:
                rows.append({"queue_id": qid, "state": state, "error": f"unreadable: {exc}"})
                continue
            # A message a full disk held back waits past its header's time (Spool.hold_back).
            # One already due shows as now.
            at = (max(env.next_attempt, spool.held_until(qid), time.time())
                  if state == "deferred" else None)
            rows.append(_row(qid, state, env, len(data), at))
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        if "error" in r:
            print(f"{r['queue_id']}\t{r['state']}\t({r['error']})")
            continue
        due = f"\tnext={r['next_attempt']}" if r["next_attempt"] else ""
        print(f"{r['queue_id']}\t{r['state']}\t{r['mail_from'] or '<>'}\t{','.join(r['rcpt_tos'])}\t"
              f"{r['size']}\tattempts={r['attempts']}{due}\t{r['last_error']}")
    return 0


def _say(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        print_json(data)
    elif text:
        print(text)


def run(args: argparse.Namespace) -> int:
    config = required_config(args, "queue")
    if config is None:
        return 2
    # Reading never creates a spool: a gateway that has not run yet has an empty queue.
    root = config.storage.data_dir / "spool"
    spool = spool_for(config) if root.is_dir() else None
    if args.action == "list":
        return _list(spool, args)
    if args.action == "show":
        found = spool.find(args.queue_id) if spool and "/" not in args.queue_id else None
        if found is None:
            print(f"filterlang queue: no message {args.queue_id!r} in the spool {root}", file=sys.stderr)
            return 1
        state = found[0]
        try:
            env, data = found[1].read(state, args.queue_id)
        except CorruptEntry as exc:
            print(f"filterlang queue: {state}/{args.queue_id} is unreadable: {exc}", file=sys.stderr)
            return 1
        if args.json:
            row = _row(args.queue_id, state, env, len(data),
                       max(env.next_attempt, time.time()) if state == "deferred" else None)
            print_json({**row, "message": data.decode("utf-8", "replace")})
            return 0
        print(f"Queue-ID: {env.queue_id}\nState: {state}\nSender: <{env.mail_from}>\n"
              f"Recipients: {', '.join(env.rcpt_tos)}\nAttempts: {env.attempts}\n"
              f"Last-Error: {env.last_error}\n")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        return 0
    if args.action == "flush":
        waiting = spool.list("deferred") if spool else []
        n = sum(_due_now(spool, "deferred", qid) for qid in waiting) if spool else 0
        _say(args, {"due_now": n, "deferred": len(waiting)}, f"{n} deferred message(s) due now")
        return 0 if n == len(waiting) else 1
    found = spool.find(args.queue_id) if spool and "/" not in args.queue_id else None
    held_in: str | None = found[0] if found else None
    if spool is not None and held_in == "deferred":
        ok = _due_now(spool, "deferred", args.queue_id)
    elif spool is not None and held_in == "hold":
        ok = spool.move(args.queue_id, "hold", "incoming")
    else:
        print(f"filterlang queue: {args.queue_id!r} is not deferred or on hold"
              f" ({held_in or 'not in the spool'})", file=sys.stderr)
        return 1
    _say(args, {"queue_id": args.queue_id, "due_now": ok},
         f"{args.queue_id} due now" if ok else f"{args.queue_id} could not be retried")
    return 0 if ok else 1
