"""What the administrative commands share: which gateway configuration they work on, the exit
codes, ISO 8601 times and JSON output.

Every command that reads the gateway's state (key store, spool, quarantines, profiles, names)
takes ``-c gateway.toml``, with ``$FILTERLANG_CONFIG`` as the default, so that all of them look
at the same gateway as ``filterlang serve -c`` does. Without either they refuse, naming ``-c``,
instead of guessing a path (an empty store created on a read answered every lookup "(none)").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from runtime.config.config import ConfigError, GatewayConfig, load_config
from runtime.config.names import CONFIG_ENV, config_from_env

# The same exit codes for every command (issue 15 item 14), printed at the end of --help.
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
EXIT_CODES = (
    "exit status: 0 done; 1 problems found or not verified (lint errors, failed suite cases, "
    "a check that failed, a lookup that found nothing); 2 usage or configuration error (a bad "
    "flag, an unreadable file, an invalid gateway.toml)"
)


def add_config_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``-c/--config FILE``, the same on every command; the default is ``$FILTERLANG_CONFIG``."""
    parser.add_argument(
        "-c", "--config", type=Path, metavar="GATEWAY_TOML", default=None,
        help=f"the gateway configuration{what} (default ${CONFIG_ENV})",
    )


def config_path(args: argparse.Namespace) -> Path | None:
    """``-c`` if given, else ``$FILTERLANG_CONFIG``, else None."""
    given = getattr(args, "config", None)
    if given is not None:
        return Path(given)
    env = config_from_env()
    return Path(env) if env else None


def no_config_message(command: str) -> str:
    return (f"filterlang {command}: which gateway? give -c gateway.toml (the file "
            f"`filterlang serve -c` runs) or set ${CONFIG_ENV}")


def config_or_none(path: Path) -> GatewayConfig | None:
    """Load `path`; on any mistake print every problem and return None (the caller exits 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def required_config(args: argparse.Namespace, command: str) -> GatewayConfig | None:
    """The configuration ``-c``/``$FILTERLANG_CONFIG`` names, loaded; None (after saying why
    on stderr) when there is none or it is invalid: the caller exits 2."""
    path = config_path(args)
    if path is None:
        print(no_config_message(command), file=sys.stderr)
        return None
    return config_or_none(path)


def iso(epoch: float | int | None) -> str | None:
    """A time as ISO 8601 in UTC (``2026-01-31T12:00:00Z``); None stays None."""
    if epoch is None:
        return None
    when = dt.datetime.fromtimestamp(float(epoch), dt.UTC)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> int:
    """A time given on the command line: ISO 8601 (a date or a date and time, UTC unless
    it says otherwise); for argparse ``type=``."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2027-01-31 or 2027-01-31T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def accept_after_action(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                        *, store: bool = False) -> None:
    """Let ``-c``, ``--json`` (and ``--store``) come after the action too, as people type
    them (``filterlang queue list -c gateway.toml``); given there, they win."""
    for parser in sub.choices.values():
        parser.add_argument("-c", "--config", type=Path, metavar="GATEWAY_TOML",
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS)
        if store:
            parser.add_argument("--store", metavar="URL", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
