"""`filterlang lsp`: the protocol wiring (pygls over stdio) around the feature modules.

Checking runs in one worker thread, so that the server keeps answering hover and completion
while a large file is checked, and so that checks of one document never overlap. Changes are
debounced: a check starts once the client has been quiet for ``DEBOUNCE`` seconds, and its
result is published only if the document did not change meanwhile. Each document has its own
``IncrementalChecker``, so a check after an edit re-parses only the filters that changed, and
only the changed document is checked.

No request or notification can take the server down: every handler reports an exception to
the client's log and answers as if there were nothing to say.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from filterlang.diagnostics import Diagnostic
from filterlang.incremental import IncrementalChecker
from runtime.lsp import actions, completion, cursor, formatting, hover, symbols
from runtime.lsp.diagnostics import config_problem, convert
from runtime.lsp.settings import Config, Settings
from runtime.lsp.text import TextIndex

#: Seconds of quiet after a change before the document is checked again.
DEBOUNCE = 0.15
#: How long the first checks wait for the client's answer about settings.
SETTINGS_WAIT = 2.0
SECTION = "filterlang"

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def _version() -> str:
    try:
        return version("filterlang")
    except PackageNotFoundError:
        return "0"


class Document:
    """What the server keeps for one open filter file."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        fs_path = to_fs_path(uri) if uri.startswith("file:") else None
        self.file: Path | None = Path(fs_path) if fs_path else None
        self.path = fs_path or uri
        self.checker = IncrementalChecker(self.path)
        self.pending: asyncio.Task[None] | None = None
        #: The last checked text's index and diagnostics (for code actions).
        self.index: TextIndex | None = None
        self.diags: list[Diagnostic] = []


class FilterServer(LanguageServer):
    """The language server for `.filter` files."""

    def __init__(self) -> None:
        super().__init__("filterlang", _version())
        self.settings = Settings()
        self.documents: dict[str, Document] = {}
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="filterlang-check")
        self.debounce = DEBOUNCE
        self.settings_known: asyncio.Event | None = None
        #: Configuration files on which problems are shown now.
        self.config_problems: set[str] = set()
        self._indexes: dict[str, tuple[int | None, TextIndex]] = {}
        #: Counts settings pushed by the client, so that an answer to an earlier question
        #: about settings never overrides a newer push.
        self.settings_pushed = 0

    # --- documents ----------------------------------------------------------------------
    def text_index(self, uri: str) -> tuple[TextIndex, Document]:
        """The current text of an open document, indexed (cached per version)."""
        doc = self.workspace.get_text_document(uri)
        state = self.documents.get(uri) or Document(uri)
        cached = self._indexes.get(uri)
        if cached is not None and cached[0] == doc.version and cached[1].text == doc.source:
            return cached[1], state
        index = TextIndex(doc.source, self.workspace.position_codec)
        self._indexes[uri] = (doc.version, index)
        return index, state

    def config_for(self, state: Document) -> Config | None:
        try:
            return self.settings.for_document(state.file)
        except Exception:  # a configuration must never take the server down
            log.exception("cannot load the configuration for %s", state.uri)
            return None

    def schedule(self, uri: str, delay: float) -> None:
        """Check a document after ``delay`` seconds, replacing a check not yet started."""
        state = self.documents.get(uri)
        if state is None:
            return
        if state.pending is not None and not state.pending.done():
            state.pending.cancel()
        state.pending = asyncio.ensure_future(self._check_later(state, delay))

    def recheck_all(self) -> None:
        for uri in list(self.documents):
            self.schedule(uri, 0)

    async def _check_later(self, state: Document, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            if self.settings_known is not None:
                try:
                    await asyncio.wait_for(self.settings_known.wait(), SETTINGS_WAIT)
                except TimeoutError:
                    self.settings_known.set()
            doc = self.workspace.get_text_document(state.uri)
            text, doc_version = doc.source, doc.version
            config = self.config_for(state)
            loop = asyncio.get_running_loop()
            codec = self.workspace.position_codec
            index, diags, shown = await loop.run_in_executor(
                self.worker, _check, state, text, config, codec
            )
            if state.uri not in self.documents or doc.version != doc_version:
                return  # changed meanwhile: the check scheduled by that change publishes
            state.index, state.diags = index, diags
            self.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(state.uri, shown, version=doc_version)
            )
            self.publish_config(config)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("checking %s failed", state.uri)

    def publish_config(self, config: Config | None) -> None:
        """Show the problems of a configuration on its file (and clear them once fixed)."""
        if config is None:
            return
        uri = from_fs_path(str(config.path)) or str(config.path)
        if not config.problems and uri not in self.config_problems:
            return
        try:
            text = config.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        index = TextIndex(text, self.workspace.position_codec)
        shown = [config_problem(p, index) for p in config.problems]
        if shown:
            self.config_problems.add(uri)
        else:
            self.config_problems.discard(uri)
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, shown))

    # --- settings -----------------------------------------------------------------------
    def take_settings(self, value: Any) -> None:
        """Read ``{"config": path}`` (the ``filterlang`` section) from whatever the client sent."""
        if isinstance(value, dict) and SECTION in value:
            value = value[SECTION]
        if isinstance(value, dict):
            chosen = value.get("config")
            self.settings.setting = chosen if isinstance(chosen, str) and chosen else None

    async def watch_configurations(self) -> None:
        """Ask the client to tell us when a `.toml` file changes on disk (a configuration edited
        outside the editor, or saved from it), so that names are checked against it at once."""
        try:
            caps = self.client_capabilities.workspace
            watched = caps.did_change_watched_files if caps is not None else None
            if watched is None or not watched.dynamic_registration:
                return
            options = lsp.DidChangeWatchedFilesRegistrationOptions(
                watchers=[lsp.FileSystemWatcher(glob_pattern="**/*.toml")]
            )
            registration = lsp.Registration(
                id="filterlang-configurations",
                method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                register_options=options,
            )
            await asyncio.wait_for(
                self.client_register_capability_async(lsp.RegistrationParams([registration])),
                SETTINGS_WAIT,
            )
        except Exception:  # a client without it still gets names reloaded at the next check
            log.info("the client does not watch configuration files for us", exc_info=True)

    async def fetch_settings(self) -> None:
        try:
            caps = self.client_capabilities.workspace
            if caps is not None and caps.configuration:
                params = lsp.ConfigurationParams([lsp.ConfigurationItem(section=SECTION)])
                pushed = self.settings_pushed
                answer = await asyncio.wait_for(
                    self.workspace_configuration_async(params), SETTINGS_WAIT
                )
                if answer and pushed == self.settings_pushed:
                    self.take_settings(answer[0])
        except Exception:
            log.exception("cannot read the client's settings")
        finally:
            if self.settings_known is not None:
                self.settings_known.set()


def _check(
    state: Document, text: str, config: Config | None, codec: Any
) -> tuple[TextIndex, list[Diagnostic], list[lsp.Diagnostic]]:
    """In the worker thread: check the text and convert what was found."""
    names = config.names if config is not None else None
    diags = state.checker.check(text, names)
    index = TextIndex(text, codec)
    return index, diags, [convert(d, index, state.uri) for d in diags]


def _guarded(default: Any = None) -> Callable[[F], F]:
    """Answer ``default`` (and log the exception) instead of failing a request."""

    def wrap(handler: F) -> F:
        @functools.wraps(handler)
        def safe(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except Exception:
                log.exception("%s failed", handler.__name__)
                return default

        return safe  # type: ignore[return-value]

    return wrap


def _is_filter(uri: str) -> bool:
    return not uri.lower().endswith(".toml")


def build() -> FilterServer:
    """The server with every feature registered."""
    server = FilterServer()

    @server.feature(lsp.INITIALIZE)
    @_guarded()
    def initialize(ls: FilterServer, params: lsp.InitializeParams) -> None:
        folders = params.workspace_folders or []
        root = folders[0].uri if folders else params.root_uri
        if root:
            fs_root = to_fs_path(root)
            ls.settings.root = Path(fs_root) if fs_root else None
        ls.take_settings(params.initialization_options)
        ls.settings_known = asyncio.Event()

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: FilterServer, params: lsp.InitializedParams) -> None:
        await ls.fetch_settings()
        await ls.watch_configurations()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    @_guarded()
    def watched_files(ls: FilterServer, params: lsp.DidChangeWatchedFilesParams) -> None:
        if any(change.uri.lower().endswith(".toml") for change in params.changes):
            ls.recheck_all()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def changed_configuration(
        ls: FilterServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        settings = params.settings
        if isinstance(settings, dict) and settings.get(SECTION) is not None:
            ls.settings_pushed += 1
            ls.take_settings(settings)
        else:
            await ls.fetch_settings()
        ls.recheck_all()

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    @_guarded()
    def did_open(ls: FilterServer, params: lsp.DidOpenTextDocumentParams) -> None:
        uri = params.text_document.uri
        if _is_filter(uri):
            ls.documents[uri] = Document(uri)
            ls.schedule(uri, 0)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    @_guarded()
    def did_change(ls: FilterServer, params: lsp.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, ls.debounce)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    @_guarded()
    def did_save(ls: FilterServer, params: lsp.DidSaveTextDocumentParams) -> None:
        if not _is_filter(params.text_document.uri):
            ls.recheck_all()  # a configuration changed on disk: names may have come or gone

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    @_guarded()
    def did_close(ls: FilterServer, params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        state = ls.documents.pop(uri, None)
        ls._indexes.pop(uri, None)
        if state is not None:
            if state.pending is not None:
                state.pending.cancel()
            ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, []))

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    @_guarded()
    def on_hover(ls: FilterServer, params: lsp.HoverParams) -> lsp.Hover | None:
        index, state = ls.text_index(params.text_document.uri)
        found = cursor.at(index.text, index.offset(params.position))
        text = hover.text(found, ls.config_for(state))
        if text is None:
            return None
        return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text),
                         index.range(found.start, found.end))

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    @_guarded()
    def on_definition(ls: FilterServer, params: lsp.DefinitionParams) -> lsp.Location | None:
        index, state = ls.text_index(params.text_document.uri)
        config = ls.config_for(state)
        found = hover.resource(cursor.at(index.text, index.offset(params.position)), config)
        if found is None or found.place is None or config is None:
            return None
        place = found.place
        return lsp.Location(
            from_fs_path(str(config.path)) or str(config.path),
            lsp.Range(lsp.Position(place.line, place.start), lsp.Position(place.line, place.end)),
        )

    @server.feature(
        lsp.TEXT_DOCUMENT_COMPLETION,
        lsp.CompletionOptions(trigger_characters=["$", "'", '"', "(", " ", "-"]),
    )
    @_guarded()
    def on_completion(ls: FilterServer, params: lsp.CompletionParams) -> lsp.CompletionList:
        index, state = ls.text_index(params.text_document.uri)
        found = cursor.at(index.text, index.offset(params.position))
        caps = ls.client_capabilities.text_document
        item_caps = caps.completion.completion_item if caps and caps.completion else None
        snippets = bool(item_caps and item_caps.snippet_support)
        found_items = completion.items(found, ls.config_for(state), index, snippets)
        return lsp.CompletionList(is_incomplete=False, items=found_items)

    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    @_guarded()
    def on_format(
        ls: FilterServer, params: lsp.DocumentFormattingParams
    ) -> list[lsp.TextEdit] | None:
        index, state = ls.text_index(params.text_document.uri)
        return formatting.document(index, state.path)

    @server.feature(lsp.TEXT_DOCUMENT_RANGE_FORMATTING)
    @_guarded()
    def on_format_range(
        ls: FilterServer, params: lsp.DocumentRangeFormattingParams
    ) -> list[lsp.TextEdit] | None:
        index, state = ls.text_index(params.text_document.uri)
        return formatting.range_(index, state.path, params.range)

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guarded()
    def on_symbols(
        ls: FilterServer, params: lsp.DocumentSymbolParams
    ) -> list[lsp.DocumentSymbol]:
        index, state = ls.text_index(params.text_document.uri)
        return symbols.symbols(index, state.path)

    @server.feature(
        lsp.TEXT_DOCUMENT_CODE_ACTION,
        lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]),
    )
    @_guarded(default=[])
    def on_code_action(ls: FilterServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        state = ls.documents.get(params.text_document.uri)
        if state is None or state.index is None:
            return []
        current, _ = ls.text_index(params.text_document.uri)
        if current.text != state.index.text:
            return []  # the fixes are for a text the client no longer has
        return actions.quick_fixes(state.diags, state.index, state.uri, params.range)

    return server


def serve() -> int:
    """Run the server on stdin and stdout until the client says exit."""
    logging.basicConfig(level=logging.WARNING, format="filterlang lsp: %(message)s")
    server = build()
    try:
        server.start_io()
    finally:
        server.worker.shutdown(wait=False, cancel_futures=True)
    return 0
