"""`filterlang fmt`: rewrite filter files in the one canonical layout.

With ``--check`` nothing is written: the command names each file that would change and exits
1. ``--fix`` also repairs pasted-text damage (F115: typographic quotes, dashes, no-break spaces). A file with syntax errors is left alone and its errors are printed (exit 1); a file that
cannot be read gives exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from filterlang import parse_bytes
from filterlang.diagnostics import Severity
from filterlang.fmt import format_script
from filterlang.reporter import format_text
from runtime.commands._files import read_all

# Errors that the formatter's output repairs, so --fix may write over them.
FIXABLE = frozenset({"F115"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command line of `filterlang fmt`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="filter file or directory")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file would change"
    )
    parser.add_argument(
        "--fix",
        action="store_true",
        help="also replace typographic quotes, dashes and no-break spaces from pasted text (F115)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print {changed, unchanged, errors} as JSON instead of one line per file",
    )


def _write(path: str, text: str) -> None:
    # Write beside the file and rename over it, so a crash never leaves half a filter file.
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    """Format every file; return the exit status."""
    status = 0
    report: dict[str, list[str]] = {"changed": [], "unchanged": [], "errors": []}
    for source in read_all(args.paths):
        if source.error is not None:
            print(f"filterlang fmt: cannot read {source.path}: {source.error}", file=sys.stderr)
            report["errors"].append(source.path)
            status = 2
            continue
        script, diags = parse_bytes(source.data, source.path)
        # The parser reads pasted-text damage as its ASCII replacement; with --fix the layout
        # printed from that reading is the repaired file.
        fixable = FIXABLE if args.fix else frozenset()
        if script is None or any(
            d.severity is Severity.ERROR and d.code not in fixable for d in diags
        ):
            text = source.data.decode("utf-8", "replace")
            sys.stderr.write(format_text(diags, {source.path: text}))
            report["errors"].append(source.path)
            status = max(status, 1)
            continue
        formatted = format_script(script)
        if formatted.encode("utf-8") == source.data:
            report["unchanged"].append(source.path)
            continue
        report["changed"].append(source.path)
        if args.check:
            if not args.json:
                print(f"would reformat {source.path}")
            status = max(status, 1)
        else:
            try:
                _write(source.path, formatted)
            except OSError as exc:
                print(f"filterlang fmt: cannot write {source.path}: {exc}", file=sys.stderr)
                status = 2
                continue
            print(f"reformatted {source.path}", file=sys.stderr)
    if args.json:
        print(json.dumps({**report, "written": not args.check}, indent=2))
    return status
