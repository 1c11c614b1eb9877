"""`filterlang lint`: parse and check filter files, report every problem, exit by severity.

Exit status: 0 when no file has an error (warnings allowed unless ``--strict``), 1 when one
does, 2 for a usage error, a file that cannot be read or a configuration that cannot be used.

With ``--config gateway.toml`` (or ``$FILTERLANG_CONFIG``) the names filters use for
quarantines, sending and encryption profiles, dictionaries, listeners and text resources are
checked against the ones the configuration defines (F405); with neither, those names are not
checked.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from filterlang import check_bytes
from filterlang.diagnostics import Diagnostic, Severity
from filterlang.reporter import format_json, format_text
from runtime.commands._files import read_all
from runtime.config.names import CONFIG_ENV, config_from_env

if TYPE_CHECKING:
    from filterlang.check import ResourceNames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command line of `filterlang lint`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="filter file or directory")
    parser.add_argument("--json", action="store_true", help="print diagnostics as JSON")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument(
        "-c",
        "--config",
        metavar="GATEWAY_TOML",
        help="gateway configuration whose resource names (quarantines, sending and encryption profiles, "
        f"dictionaries, listeners, text resources) filters may use; default ${CONFIG_ENV}, "
        "and without either names are not checked",
    )


class ConfigError(Exception):
    """The configuration file cannot be used; one line per problem, each with its location."""


def config_path(option: str | None) -> str | None:
    """The configuration to check names against: ``--config``, else ``$FILTERLANG_CONFIG``."""
    return option or config_from_env()


def load_names(path: str) -> ResourceNames:
    """The resource names a gateway configuration defines, for the checker (F405)."""
    from runtime.config.names import load_names as names_of
    from runtime.config.schema import ConfigError as InvalidConfig

    try:
        return names_of(path)
    except InvalidConfig as exc:
        raise ConfigError("\n".join(str(issue) for issue in exc.issues)) from None


def _failing(diags: list[Diagnostic], strict: bool) -> bool:
    bad = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    return any(d.severity in bad for d in diags)


def run(args: argparse.Namespace) -> int:
    """Lint every file; print diagnostics; return the exit status."""
    names = None
    config = config_path(args.config)
    if config is not None:
        try:
            names = load_names(config)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                print(f"filterlang lint: configuration error: {line}", file=sys.stderr)
            return 2
    status = 0
    every: list[Diagnostic] = []
    texts: dict[str, str] = {}
    for source in read_all(args.paths):
        if source.error is not None:
            print(f"filterlang lint: cannot read {source.path}: {source.error}", file=sys.stderr)
            status = 2
            continue
        diags = check_bytes(source.data, source.path, names=names)
        texts[source.path] = source.data.decode("utf-8", "replace")
        every.extend(diags)
        if _failing(diags, args.strict) and status == 0:
            status = 1
    if args.json:
        sys.stdout.write(format_json(every))
    else:
        sys.stdout.write(format_text(every, texts))
        if every:
            counts = {s: sum(d.severity is s for d in every) for s in Severity}
            summary = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
            print(
                f"{summary} in {len(texts)} file{'s' if len(texts) != 1 else ''}", file=sys.stderr
            )
    return status
