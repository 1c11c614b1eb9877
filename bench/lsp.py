"""Language-server benchmark: from a change in a large file to its diagnostics, over stdio.

Starts `filterlang lsp` as an editor would, opens a file of N mixed filters (the templates of
bench/compile.py), then makes edits as a person typing does and times each from sending the
change to receiving the diagnostics for that version. The time includes the server's debounce
(the quiet time it waits before checking). Edits alternate between a typo in one action name
(an error appears) and its correction (it goes), then new lines at the top of the file (every
filter moves).

Prints the time to the first diagnostics after opening and the best, median and worst latency
per kind of edit. Target (issue 18): under one second for 10,000 filters on this machine.

    python bench/lsp.py [--filters 10000] [--rounds 10]
    python bench/lsp.py --quick        # 1,000 filters, 3 rounds: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import BaseLanguageClient

HERE = Path(__file__).resolve().parent


def _generate(count: int) -> str:
    spec = importlib.util.spec_from_file_location("bench_compile", HERE / "compile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.generate(count)
    return text


def _server() -> list[str]:
    script = Path(sys.executable).with_name("filterlang")
    if script.exists():
        return [str(script), "lsp"]
    return [sys.executable, "-c", "from runtime.commands.cli import main; main(['lsp'])"]


class Client(BaseLanguageClient):
    def __init__(self) -> None:
        super().__init__("bench", "1")
        self.published: dict[int, tuple[float, int]] = {}  # version -> (when, how many)
        self.arrived = asyncio.Event()


async def _wait(client: Client, version: int, timeout: float = 300.0) -> tuple[float, int]:
    end = time.perf_counter() + timeout
    while version not in client.published:
        client.arrived.clear()
        remaining = end - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError(f"no diagnostics for version {version}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.arrived.wait(), remaining)
    return client.published[version]


def _change(uri: str, version: int, start: lsp.Position, end: lsp.Position, text: str
            ) -> lsp.DidChangeTextDocumentParams:
    return lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [lsp.TextDocumentContentChangePartial(lsp.Range(start, end), text)],
    )


async def run(filters: int, rounds: int) -> None:
    text = _generate(filters)
    client = Client()

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: lsp.PublishDiagnosticsParams) -> None:
        if params.version is not None:
            client.published[params.version] = (time.perf_counter(), len(params.diagnostics))
            client.arrived.set()

    await client.start_io(*_server())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.filter"
        path.write_text(text, encoding="utf-8")
        uri = path.as_uri()
        await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities()))
        client.initialized(lsp.InitializedParams())

        sent = time.perf_counter()
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=uri, language_id="filterlang", version=1, text=text)))
        when, count = await _wait(client, 1)
        print(f"filters: {filters:,}   size: {len(text) / 1e6:.1f} MB")
        print(f"open -> first diagnostics: {when - sent:.2f} s ({count} diagnostics)")

        # A typo in an action name in the middle of the file, then its correction.
        lines = text.split("\n")
        target = next(i for i in range(len(lines) // 2, len(lines)) if "drop();" in lines[i])
        col = lines[target].index("drop();")
        word = (lsp.Position(target, col), lsp.Position(target, col + 4))
        version = 1
        typo: list[float] = []
        fix: list[float] = []
        moved: list[float] = []
        for _ in range(rounds):
            for new, times, want in (("drap", typo, 1), ("drop", fix, 0)):
                version += 1
                sent = time.perf_counter()
                client.text_document_did_change(_change(uri, version, *word, new))
                when, count = await _wait(client, version)
                assert count == want, f"expected {want} diagnostics, got {count}"
                times.append(when - sent)
            version += 1
            top = lsp.Position(0, 0)
            sent = time.perf_counter()
            client.text_document_did_change(_change(uri, version, top, top, "\n"))
            when, _ = await _wait(client, version)
            moved.append(when - sent)
            word = (lsp.Position(word[0].line + 1, col), lsp.Position(word[1].line + 1, col + 4))

        print("change -> diagnostics (includes the debounce):")
        for label, times in (("typo in one filter", typo), ("its correction", fix),
                             ("new line at the top", moved)):
            print(f"  {label:22} best {min(times):.3f} s   median "
                  f"{statistics.median(times):.3f} s   worst {max(times):.3f} s   "
                  f"({len(times)} edits)")
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--filters", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="1,000 filters, 3 rounds")
    args = ap.parse_args()
    if args.quick:
        args.filters, args.rounds = 1000, 3
    asyncio.run(run(args.filters, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
