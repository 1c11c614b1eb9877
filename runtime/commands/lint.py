"""`filterlang lint`: parse and check filter files, report every problem, exit by severity.

Exit status: 0 when no file has an error (warnings allowed unless ``--strict``), 1 when one
does, 2 for a usage error or a file that cannot be read.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from filterlang import check_bytes
from filterlang.diagnostics import Diagnostic, Severity
from filterlang.reporter import format_json, format_text
from runtime.commands._files import read_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command line of `filterlang lint`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="filter file or directory")
    parser.add_argument("--json", action="store_true", help="print diagnostics as JSON")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="gateway configuration whose resource names (quarantines, profiles, ...) to check",
    )


class ConfigError(Exception):
    """The --config file cannot be used."""


def load_names(path: str) -> Any:
    """Resource names from the gateway configuration, or None where no loader exists yet."""
    try:
        config = importlib.import_module("runtime.config")
    except ModuleNotFoundError as exc:
        if exc.name != "runtime.config":
            raise
        print(
            "filterlang lint: note: --config ignored: this build has no configuration loader",
            file=sys.stderr,
        )
        return None
    try:
        loader = getattr(config, "load_names", None)
        if loader is not None:
            return loader(path)
        loaded = config.load(path)
        names = getattr(loaded, "resource_names", None)
        return names() if callable(names) else names
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _failing(diags: list[Diagnostic], strict: bool) -> bool:
    bad = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    return any(d.severity in bad for d in diags)


def run(args: argparse.Namespace) -> int:
    """Lint every file; print diagnostics; return the exit status."""
    names = None
    if args.config:
        try:
            names = load_names(args.config)
        except ConfigError as exc:
            print(f"filterlang lint: {exc}", file=sys.stderr)
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
