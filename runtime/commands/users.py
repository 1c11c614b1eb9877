"""`filterlang users -f FILE add|remove|list`: the users file of a submission listener.

The password is read from standard input (one line) or, on a terminal, asked for twice without
echo: never from the command line, where `ps` and the shell's history would show it.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from runtime.commands._config import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from runtime.config import users


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", type=Path, required=True, metavar="USERS_FILE",
                        help="the users file (a listener's users_file in gateway.toml)")
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a user, or set a new password for one (password on "
                         "standard input, or asked for on a terminal)")
    add.add_argument("name", help="the user name clients authenticate with, e.g. alice@example.org")
    rm = sub.add_parser("remove", help="remove a user")
    rm.add_argument("name")
    sub.add_parser("list", help="the user names, one a line")


def _fail(text: str, code: int) -> int:
    print(f"filterlang users: {text}", file=sys.stderr)
    return code


def _password() -> str | None:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            print("filterlang users: the two passwords differ; nothing changed", file=sys.stderr)
            return None
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    exists = path.exists()
    if not exists and args.users_command != "add":
        return _fail(f"{path} does not exist; `filterlang users -f {path} add NAME` creates it",
                     EXIT_USAGE)
    try:
        found = users.read(path) if exists else []
    except users.UsersFileError as exc:
        # Never rewrite a file with lines we cannot read: they would be lost.
        return _fail(f"{exc}\nfix these lines first (nothing changed)", EXIT_USAGE)
    if args.users_command == "list":
        for u in found:
            print(u.name)
        return EXIT_OK
    name = args.name.strip().lower()
    problem = users.name_problem(name)
    if problem:
        return _fail(f"the user name {args.name!r} {problem}", EXIT_USAGE)
    known = any(u.name == name for u in found)
    if args.users_command == "remove":
        if not known:
            return _fail(f"no user {name!r} in {path}", EXIT_PROBLEMS)
        users.write(path, [u for u in found if u.name != name])
        print(f"removed {name}", file=sys.stderr)
        return EXIT_OK
    password = _password()
    if password is None:
        return EXIT_USAGE
    if not password:
        return _fail("empty password; give one on standard input (or at the prompt)", EXIT_USAGE)
    if "\r" in password or "\0" in password:
        return _fail("the password holds a CR or NUL, which no SMTP client can send", EXIT_USAGE)
    line = users.UserLine(0, name, users.hash_password(password))
    updated = [line if u.name == name else u for u in found] if known else [*found, line]
    try:
        users.write(path, updated)
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror}", EXIT_USAGE)
    print(f"{'password changed for' if known else 'added'} {name}", file=sys.stderr)
    return EXIT_OK
