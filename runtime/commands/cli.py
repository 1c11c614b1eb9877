"""The `filterlang` console script: dispatch to one small module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata

from runtime.commands._config import EXIT_CODES

# Subcommand name -> (module under runtime.commands, one-line help). Explicit table, no scanning:
# a subcommand whose module is not there yet is simply not offered.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("lint", "lint", "parse and check filter files"),
    ("fmt", "fmt", "rewrite filter files in the canonical layout"),
    ("test", "test", "run filters on messages offline and print the trace"),
    ("serve", "serve", "run the SMTP gateway"),
    ("cert", "cert", "create, import, show and check S/MIME certificates"),
    ("smime", "smime", "sign, encrypt, verify or decrypt a message file"),
    ("keys", "keys", "manage public keys and harvested keys"),
    ("profiles", "profiles", "manage S/MIME sending profiles"),
    ("quarantine", "quarantine", "list, show, release and delete quarantined messages"),
    ("queue", "queue", "inspect and flush the spool"),
    ("dkim", "dkim", "make DKIM signing keys and their DNS records"),
    ("users", "users", "add, remove and list the users of a submission listener (SMTP AUTH)"),
    ("routes", "routes", "show which SMTP route, next hops and TLS policy an address gets"),
    ("lsp", "lsp", "run the language server for editors (stdio)"),
)


def _version() -> str:
    try:
        return metadata.version("filterlang")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser(only: str | None = None, *, lazy: bool = False) -> argparse.ArgumentParser:
    """The whole command line; with ``lazy``, only the command ``only`` gets its arguments
    (its module imported): the others are listed by name and help text alone, so that
    `filterlang lint` does not pay for importing the gateway and the S/MIME engine."""
    parser = argparse.ArgumentParser(
        prog="filterlang",
        description="Mail-filter compiler, offline test runner and S/MIME gateway.",
        epilog="The administrative commands take -c gateway.toml (default $FILTERLANG_CONFIG). "
        + EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"filterlang {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        if lazy and name != only:
            sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES)
            continue
        try:
            module = importlib.import_module(f"runtime.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"runtime.commands.{module_name}":
                raise
            continue
        cmd = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    # The command is the first word that is not an option (the top level's options take no value).
    chosen = next((w for w in words if not w.startswith("-")), None)
    parser = _parser(chosen, lazy=True)
    args = parser.parse_args(words)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
