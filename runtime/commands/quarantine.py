"""`filterlang quarantine list|show|release|delete -c gateway.toml`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runtime.commands._config import (
    accept_after_action,
    add_config_argument,
    print_json,
    required_config,
)
from runtime.mta.quarantine import QuarantineError
from runtime.mta.stores import quarantines_for, spool_for
from runtime.pipeline.stages.providers import DkimKeyError, load_signer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, " whose quarantines to work on")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list quarantines, or the messages of one")
    lst.add_argument("name", nargs="?")
    for action, text in (("show", "print a message with its envelope"),
                         ("release", "send a message on to delivery"),
                         ("delete", "delete a message for good")):
        p = sub.add_parser(action, help=text)
        p.add_argument("name")
        p.add_argument("queue_id")
    accept_after_action(sub)


def _say(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print_json(data)
    elif text:
        print(text)


def run(args: argparse.Namespace) -> int:
    config = required_config(args, "quarantine")
    if config is None:
        return 2
    q = quarantines_for(config)
    try:
        if args.action == "list" and not args.name:
            counts = {name: len(q.list(name)) for name in sorted(q.names)}
            _say(args, counts, "\n".join(f"{n}\t{c}" for n, c in counts.items()))
        elif args.action == "list":
            rows: list[dict[str, Any]] = []
            for qid in q.list(args.name):
                env, data = q.read(args.name, qid)
                rows.append({"queue_id": qid, "mail_from": env.mail_from,
                             "rcpt_tos": list(env.rcpt_tos), "size": len(data)})
            _say(args, rows, "\n".join(f"{r['queue_id']}\t{r['mail_from'] or '<>'}\t"
                                       f"{','.join(r['rcpt_tos'])}\t{r['size']}" for r in rows))
        elif args.action == "show":
            env, data = q.read(args.name, args.queue_id)
            if args.json:
                print_json({"queue_id": env.queue_id, "mail_from": env.mail_from,
                            "rcpt_tos": list(env.rcpt_tos), "policy": env.policy,
                            "message": data.decode("utf-8", "replace")})
                return 0
            print(f"Queue-ID: {env.queue_id}\nSender: <{env.mail_from}>\n"
                  f"Recipients: {', '.join(env.rcpt_tos)}\nPolicy: {env.policy}\n")
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
        elif args.action == "release":
            # Outgoing mail parked before its DKIM signing leaves signed, as if never held.
            signer = load_signer(config)
            q.release(args.name, args.queue_id, spool_for(config),
                      signer.sign if signer is not None else None)
            _say(args, {"released": args.queue_id}, f"released {args.queue_id} to delivery")
        elif args.action == "delete":
            q.delete(args.name, args.queue_id)
            _say(args, {"deleted": args.queue_id}, f"deleted {args.queue_id}")
    except QuarantineError as exc:
        print(f"filterlang quarantine: {exc}", file=sys.stderr)
        return 1
    except DkimKeyError as exc:  # the message stays in its quarantine
        print(f"filterlang quarantine: cannot DKIM-sign the released message: {exc}",
              file=sys.stderr)
        return 2
    return 0
