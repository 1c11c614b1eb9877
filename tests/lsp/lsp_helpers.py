"""Helpers for driving `filterlang lsp` over stdio with pytest-lsp."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

GATEWAY = """\
[[listeners]]
name = "Outbound"
address = "127.0.0.1"
port = 2525

[quarantines.Policy]

[quarantines.Spam]
retention_days = 7

[dictionaries]
Blocked = "blocked.txt"

[delivery]
maildir = "maildir"

[profiles.enc]
mode = "encrypt"

[encryption_profiles.Secure]
sending_profile = "enc"
"""

# Generous: the machine is shared, and a deadline only bounds how long a failure takes.
DEADLINE = 60.0


def server_command() -> list[str]:
    """`filterlang lsp`, from the console script installed beside this Python."""
    script = Path(sys.executable).with_name("filterlang")
    found = str(script) if script.exists() else shutil.which("filterlang")
    assert found, "the filterlang console script is not installed"
    return [found, "lsp"]


async def wait_for_diagnostics(
    client: LanguageClient,
    uri: str,
    wanted: Callable[[Sequence[lsp.Diagnostic]], bool],
    deadline: float = DEADLINE,
) -> Sequence[lsp.Diagnostic]:
    """The diagnostics of ``uri`` once they satisfy ``wanted``; fails after ``deadline`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        found = client.diagnostics.get(uri)
        if found is not None and wanted(found):
            return found
        if loop.time() > end:
            raise AssertionError(f"no such diagnostics for {uri}; last: {found!r}")
        await asyncio.sleep(0.02)


def open_document(client: LanguageClient, path: Path, text: str) -> str:
    """Tell the server a document is open with ``text``; its URI."""
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, "filterlang", 1, text))
    )
    return uri


def replace_text(client: LanguageClient, uri: str, version: int, text: str) -> None:
    """Send the whole new text of a document as one change."""
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [lsp.TextDocumentContentChangeWholeDocument(text)],
        )
    )


def accept_registrations(client: LanguageClient) -> None:
    """Answer the server's client/registerCapability as an editor does (pytest-lsp's client
    has no handler of its own for it)."""

    @client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
    def accept(params: lsp.RegistrationParams) -> None:
        client.registrations = [*getattr(client, "registrations", []), *params.registrations]
