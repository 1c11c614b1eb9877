"""The `filterlang.config` setting chooses the configuration, over a `gateway.toml` nearby,
and a change of the setting is taken at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.lsp.lsp_helpers import (
    GATEWAY,
    accept_registrations,
    open_document,
    server_command,
    wait_for_diagnostics,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("settings")
    (root / "gateway.toml").write_text(GATEWAY, encoding="utf-8")
    (root / "conf").mkdir()
    (root / "conf" / "other.toml").write_text(
        GATEWAY.replace("[quarantines.Spam]", "[quarantines.Legal]"), encoding="utf-8"
    )
    return root


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=server_command()))
async def client(lsp_client: LanguageClient, workspace: Path):  # type: ignore[no-untyped-def]
    lsp_client.set_configuration({"config": "conf/other.toml"}, section="filterlang")
    params = lsp.InitializeParams(
        capabilities=client_capabilities("neovim"),
        root_uri=workspace.as_uri(),
    )
    accept_registrations(lsp_client)
    await lsp_client.initialize_session(params)
    yield
    await lsp_client.shutdown_session()


async def test_the_setting_wins_and_can_change(client: LanguageClient, workspace: Path) -> None:
    text = "q:\n    if true {\n        quarantine('Legal');\n    }\n"
    uri = open_document(client, workspace / "legal.filter", text)
    assert len(await wait_for_diagnostics(client, uri, lambda d: True)) == 0
    result = await client.text_document_completion_async(
        lsp.CompletionParams(lsp.TextDocumentIdentifier(uri), lsp.Position(2, 20))
    )
    assert isinstance(result, lsp.CompletionList)
    assert [i.label for i in result.items] == ["Legal", "Policy"]

    # Back to the gateway.toml beside the file: 'Legal' is unknown there.
    client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"filterlang": {"config": ""}})
    )
    [diag] = await wait_for_diagnostics(client, uri, lambda d: len(d) == 1)
    assert diag.code == "F405"


async def test_a_configuration_changed_on_disk_is_read_again(
    client: LanguageClient, workspace: Path
) -> None:
    client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"filterlang": {"config": "gateway.toml"}})
    )
    text = "q:\n    if true {\n        quarantine('Later');\n    }\n"
    uri = open_document(client, workspace / "later.filter", text)
    [diag] = await wait_for_diagnostics(client, uri, lambda d: len(d) == 1)
    assert diag.code == "F405"
    config = workspace / "gateway.toml"
    config.write_text(GATEWAY + "\n[quarantines.Later]\n", encoding="utf-8")
    client.workspace_did_change_watched_files(
        lsp.DidChangeWatchedFilesParams(
            [lsp.FileEvent(config.as_uri(), lsp.FileChangeType.Changed)]
        )
    )
    await wait_for_diagnostics(client, uri, lambda d: len(d) == 0)


async def test_hover_on_a_variable(client: LanguageClient, workspace: Path) -> None:
    text = "v:\n    if true {\n        log-entry('from $EnvelopeFrom');\n    }\n"
    uri = open_document(client, workspace / "variable.filter", text)
    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), lsp.Position(2, 27))
    )
    assert hover is not None and isinstance(hover.contents, lsp.MarkupContent)
    assert hover.contents.value == "`$EnvelopeFrom`: envelope sender"
