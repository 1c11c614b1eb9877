"""`filterlang lsp`: the language server for `.filter` files, on stdin and stdout.

Editors start it themselves (see docs/editors.md); it speaks the Language Server Protocol and
writes nothing else to stdout. Problems of its own go to stderr.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command line of `filterlang lsp` (stdio is the only transport)."""
    parser.add_argument(
        "--stdio", action="store_true", help="talk over stdin and stdout (the default and only way)"
    )


def run(args: argparse.Namespace) -> int:
    """Serve until the client exits."""
    from runtime.lsp.server import serve

    return serve()
