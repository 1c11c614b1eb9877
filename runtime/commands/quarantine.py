"""`filterlang quarantine list|show|release|delete -c gateway.toml`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.commands._config import config_or_none
from runtime.mta.quarantine import QuarantineError
from runtime.mta.supervisor import quarantines_for, spool_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, type=Path, help="path to gateway.toml")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list quarantines, or the messages of one")
    lst.add_argument("name", nargs="?")
    for action, text in (("show", "print a message with its envelope"),
                         ("release", "send a message on to delivery"),
                         ("delete", "delete a message for good")):
        p = sub.add_parser(action, help=text)
        p.add_argument("name")
        p.add_argument("queue_id")


def run(args: argparse.Namespace) -> int:
    config = config_or_none(args.config)
    if config is None:
        return 2
    q = quarantines_for(config)
    try:
        if args.action == "list":
            names = [args.name] if args.name else sorted(q.names)
            for name in names:
                ids = q.list(name)
                if not args.name:
                    print(f"{name}\t{len(ids)}")
                    continue
                for qid in ids:
                    env, data = q.read(name, qid)
                    print(f"{qid}\t{env.mail_from or '<>'}\t{','.join(env.rcpt_tos)}\t{len(data)}")
        elif args.action == "show":
            env, data = q.read(args.name, args.queue_id)
            print(f"Queue-ID: {env.queue_id}\nSender: <{env.mail_from}>\n"
                  f"Recipients: {', '.join(env.rcpt_tos)}\nPolicy: {env.policy}\n")
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
        elif args.action == "release":
            q.release(args.name, args.queue_id, spool_for(config))
            print(f"released {args.queue_id} to delivery")
        elif args.action == "delete":
            q.delete(args.name, args.queue_id)
            print(f"deleted {args.queue_id}")
    except QuarantineError as exc:
        print(f"filterlang quarantine: {exc}", file=sys.stderr)
        return 1
    return 0
