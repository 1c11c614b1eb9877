"""`filterlang lsp` end to end: a pytest-lsp client drives the real server over stdio.

One server serves the whole module (a start costs a second or more on a busy machine); each
test opens documents of its own. The workspace has a `gateway.toml` with two quarantines, so
configured names are checked, completed and found as lint --config would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from filterlang import builtins as b
from filterlang import format_source
from tests.lsp.lsp_helpers import (
    GATEWAY,
    accept_registrations,
    open_document,
    replace_text,
    server_command,
    wait_for_diagnostics,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

TWO_MISTAKES = """\
check_smime:
    if smime-gateway-mesage and not smime-gateway-verified {
        quarantin('Policy');
    }
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    (root / "gateway.toml").write_text(GATEWAY, encoding="utf-8")
    (root / "broken").mkdir()
    (root / "broken" / "gateway.toml").write_text(
        GATEWAY + "\n[quarantines.Bad]\nretention_days = 'soon'\n", encoding="utf-8"
    )
    return root


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=server_command()))
async def client(lsp_client: LanguageClient, workspace: Path):  # type: ignore[no-untyped-def]
    params = lsp.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        root_uri=workspace.as_uri(),
        workspace_folders=[lsp.WorkspaceFolder(workspace.as_uri(), "ws")],
    )
    accept_registrations(lsp_client)
    await lsp_client.initialize_session(params)
    yield
    await lsp_client.shutdown_session()


def _at(text: str, needle: str, delta: int = 0) -> lsp.Position:
    offset = text.index(needle) + delta
    line = text.count("\n", 0, offset)
    return lsp.Position(line, offset - (text.rfind("\n", 0, offset) + 1))


async def test_two_mistakes_then_one(client: LanguageClient, workspace: Path) -> None:
    uri = open_document(client, workspace / "two.filter", TWO_MISTAKES)
    found = await wait_for_diagnostics(client, uri, lambda d: len(d) == 2)
    assert [(d.code, d.severity) for d in found] == [
        ("F201", lsp.DiagnosticSeverity.Error),
        ("F204", lsp.DiagnosticSeverity.Error),
    ]
    assert found[0].range == lsp.Range(lsp.Position(1, 7), lsp.Position(1, 27))
    assert found[1].range == lsp.Range(lsp.Position(2, 8), lsp.Position(2, 17))
    assert "hint: did you mean 'quarantine'?" in found[1].message
    assert all(d.source == "filterlang" for d in found)

    fixed = TWO_MISTAKES.replace("quarantin(", "quarantine(")
    replace_text(client, uri, 2, fixed)
    found = await wait_for_diagnostics(client, uri, lambda d: len(d) == 1)
    assert found[0].code == "F201"


async def test_incremental_change_and_related_locations(
    client: LanguageClient, workspace: Path
) -> None:
    text = "a:\n    if true {\n        drop();\n    }\n\nb:\n    if true {\n        drop();\n    }\n"
    uri = open_document(client, workspace / "dup.filter", text)
    await wait_for_diagnostics(client, uri, lambda d: len(d) == 0)
    # Rename b to a, as an editor sends it: one incremental change of two characters.
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            [lsp.TextDocumentContentChangePartial(
                lsp.Range(lsp.Position(5, 0), lsp.Position(5, 1)), "a")],
        )
    )
    [dup] = await wait_for_diagnostics(client, uri, lambda d: len(d) == 1)
    assert dup.code == "F208" and dup.range.start == lsp.Position(5, 0)
    assert dup.related_information is not None
    [first] = dup.related_information
    assert first.location.uri == uri and first.location.range.start == lsp.Position(0, 0)


async def test_configured_names_are_checked(client: LanguageClient, workspace: Path) -> None:
    text = "q:\n    if true {\n        quarantine('Polcy');\n    }\n"
    uri = open_document(client, workspace / "names.filter", text)
    [diag] = await wait_for_diagnostics(client, uri, lambda d: len(d) == 1)
    assert diag.code == "F405" and "did you mean 'Policy'?" in diag.message


async def test_hover_shows_the_signature_table(client: LanguageClient, workspace: Path) -> None:
    text = "s:\n    if smime-gateway-verified {\n        drop();\n    }\n"
    uri = open_document(client, workspace / "hover.filter", text)
    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), _at(text, "gateway-verified"))
    )
    assert hover is not None
    assert isinstance(hover.contents, lsp.MarkupContent)
    row = b.lookup_rule("smime-gateway-verified")
    assert row is not None
    assert row.description in hover.contents.value
    assert "smime-gateway-verified" in hover.contents.value
    action = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), _at(text, "drop", 1))
    )
    assert action is not None and isinstance(action.contents, lsp.MarkupContent)
    assert "discard silently" in action.contents.value


async def test_hover_and_definition_of_a_configured_name(
    client: LanguageClient, workspace: Path
) -> None:
    text = "q:\n    if true {\n        quarantine('Spam');\n    }\n"
    uri = open_document(client, workspace / "define.filter", text)
    where = _at(text, "Spam", 1)
    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), where)
    )
    assert hover is not None and isinstance(hover.contents, lsp.MarkupContent)
    assert "quarantine **Spam**" in hover.contents.value and "line 8" in hover.contents.value
    found = await client.text_document_definition_async(
        lsp.DefinitionParams(lsp.TextDocumentIdentifier(uri), where)
    )
    assert isinstance(found, lsp.Location)
    assert found.uri == (workspace / "gateway.toml").as_uri()
    assert found.range == lsp.Range(lsp.Position(7, 13), lsp.Position(7, 17))


async def _labels(client: LanguageClient, uri: str, text: str) -> list[str]:
    result = await client.text_document_completion_async(
        lsp.CompletionParams(lsp.TextDocumentIdentifier(uri), _at(text, "", len(text)))
    )
    assert isinstance(result, lsp.CompletionList)
    return [item.label for item in result.items]


async def test_completion_of_rules_after_a_prefix(client: LanguageClient, workspace: Path) -> None:
    text = "s:\n    if (smime-"
    uri = open_document(client, workspace / "complete.filter", text)
    labels = await _labels(client, uri, text)
    assert {"smime-gateway-message", "smime-gateway-verified"} <= set(labels)
    assert "quarantine" not in labels  # an action does not go in a condition


async def test_completion_of_actions_with_snippets(client: LanguageClient, workspace: Path) -> None:
    text = "s:\n    if true {\n        quar"
    uri = open_document(client, workspace / "snippet.filter", text)
    result = await client.text_document_completion_async(
        lsp.CompletionParams(lsp.TextDocumentIdentifier(uri), _at(text, "", len(text)))
    )
    assert isinstance(result, lsp.CompletionList)
    [item] = [i for i in result.items if i.label == "quarantine"]
    assert item.insert_text_format == lsp.InsertTextFormat.Snippet
    assert isinstance(item.text_edit, lsp.TextEdit)
    assert item.text_edit.new_text == "quarantine('${1:quarantine}');"
    assert item.text_edit.range.start == lsp.Position(2, 8)


async def test_completion_of_configured_quarantines(
    client: LanguageClient, workspace: Path
) -> None:
    text = 's:\n    if true {\n        quarantine("'
    uri = open_document(client, workspace / "quarantines.filter", text)
    assert await _labels(client, uri, text) == ["Policy", "Spam"]


async def test_encryption_profiles_are_completed_and_found(
    client: LanguageClient, workspace: Path
) -> None:
    text = 's:\n    if true {\n        encrypt("'
    uri = open_document(client, workspace / "encrypt.filter", text)
    assert await _labels(client, uri, text) == ["Secure"]  # not the sending profile 'enc'
    done = "s:\n    if true {\n        encrypt('Secure', '$Subject', 1);\n    }\n"
    uri = open_document(client, workspace / "encrypt-defined.filter", done)
    found = await client.text_document_definition_async(
        lsp.DefinitionParams(lsp.TextDocumentIdentifier(uri), _at(done, "Secure", 1))
    )
    assert isinstance(found, lsp.Location)
    assert found.uri == (workspace / "gateway.toml").as_uri()
    assert found.range.start.line == GATEWAY.splitlines().index("[encryption_profiles.Secure]")


async def test_completion_of_variables(client: LanguageClient, workspace: Path) -> None:
    text = "s:\n    if true {\n        log-entry('from $Env"
    uri = open_document(client, workspace / "variables.filter", text)
    labels = await _labels(client, uri, text)
    assert "$envelopefrom" in labels and "$subject" in labels


async def test_formatting_is_the_fmt_output(client: LanguageClient, workspace: Path) -> None:
    text = "T:IF SUBJECT=='x'{DROP();}\n\n\n\nu! if true { quarantine(\"Spam\"); }\n"
    uri = open_document(client, workspace / "fmt.filter", text)
    edits = await client.text_document_formatting_async(
        lsp.DocumentFormattingParams(lsp.TextDocumentIdentifier(uri),
                                     lsp.FormattingOptions(4, True))
    )
    expected, _ = format_source(text)
    assert expected is not None
    assert edits is not None and len(edits) == 1
    assert edits[0].new_text == expected
    assert edits[0].range == lsp.Range(lsp.Position(0, 0), lsp.Position(5, 0))
    # The range of the second filter only: the first is left as it is.
    edits = await client.text_document_range_formatting_async(
        lsp.DocumentRangeFormattingParams(
            lsp.TextDocumentIdentifier(uri), lsp.Range(lsp.Position(4, 0), lsp.Position(4, 3)),
            lsp.FormattingOptions(4, True),
        )
    )
    assert edits is not None and len(edits) == 1
    assert edits[0].range.start == lsp.Position(4, 0)
    assert edits[0].new_text == expected[expected.index("u!") :]


async def test_document_symbols(client: LanguageClient, workspace: Path) -> None:
    text = "first:\n    if true {\n        drop();\n    }\n\nsecond!\n    if true {\n" \
        "        drop();\n    }\n"
    uri = open_document(client, workspace / "symbols.filter", text)
    found = await client.text_document_document_symbol_async(
        lsp.DocumentSymbolParams(lsp.TextDocumentIdentifier(uri))
    )
    assert found is not None
    assert [(s.name, s.range.start.line, s.range.end.line) for s in found] == [  # type: ignore[union-attr]
        ("first", 0, 3), ("second", 5, 8)
    ]


async def test_code_action_fixes_an_unknown_rule(client: LanguageClient, workspace: Path) -> None:
    text = "s:\n    if subjct == 'x' {\n        drop();\n    }\n"
    uri = open_document(client, workspace / "action.filter", text)
    [diag] = await wait_for_diagnostics(client, uri, lambda d: len(d) == 1)
    actions = await client.text_document_code_action_async(
        lsp.CodeActionParams(lsp.TextDocumentIdentifier(uri), diag.range,
                             lsp.CodeActionContext([diag]))
    )
    assert actions is not None
    [action] = actions
    assert isinstance(action, lsp.CodeAction)
    assert action.kind == lsp.CodeActionKind.QuickFix and action.edit is not None
    assert action.edit.changes is not None
    assert list(action.edit.changes[uri]) == [
        lsp.TextEdit(lsp.Range(lsp.Position(1, 7), lsp.Position(1, 13)), "subject")
    ]


async def test_code_actions_quote_and_straighten(client: LanguageClient, workspace: Path) -> None:
    text = "s:\n    if true {\n        quarantine(\u2018Policy\u2019);\n    }\n"
    uri = open_document(client, workspace / "quotes.filter", text)
    [diag] = await wait_for_diagnostics(client, uri, lambda d: len(d) == 1)
    assert diag.code == "F115"
    actions = await client.text_document_code_action_async(
        lsp.CodeActionParams(lsp.TextDocumentIdentifier(uri), diag.range,
                             lsp.CodeActionContext([diag]))
    )
    assert actions is not None and len(actions) == 1
    action = actions[0]
    assert isinstance(action, lsp.CodeAction) and action.edit is not None
    assert action.edit.changes is not None
    assert [e.new_text for e in action.edit.changes[uri]] == ["'Policy'"]


async def _still_answers(client: LanguageClient, workspace: Path) -> None:
    text = "s:\n    if signed {\n        drop();\n    }\n"
    uri = open_document(client, workspace / "alive.filter", text)
    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), _at(text, "signed", 1))
    )
    assert hover is not None


@pytest.mark.parametrize(
    "text",
    [
        "}}}} if if ((( ;;; '\n\x7f",  # does not parse (and has a control character)
        "s:\n    if subject == 'half typed",  # a half-typed string
        "s:\n    if true {\n        quarantine(\"",  # a string opened at the end of the file
        "\u2018" * 1000 + "\n" * 1000,
        "",
    ],
    ids=["garbage", "half-string", "open-string", "quotes", "empty"],
)
async def test_bad_documents(client: LanguageClient, workspace: Path, text: str) -> None:
    uri = open_document(client, workspace / f"bad-{len(text)}.filter", text)
    await wait_for_diagnostics(client, uri, lambda d: True)
    for line in range(3):
        position = lsp.Position(line, 5)
        ident = lsp.TextDocumentIdentifier(uri)
        await client.text_document_hover_async(lsp.HoverParams(ident, position))
        await client.text_document_completion_async(lsp.CompletionParams(ident, position))
        await client.text_document_definition_async(lsp.DefinitionParams(ident, position))
    await client.text_document_formatting_async(
        lsp.DocumentFormattingParams(lsp.TextDocumentIdentifier(uri),
                                     lsp.FormattingOptions(4, True))
    )
    await _still_answers(client, workspace)


async def test_a_10_mb_paste(client: LanguageClient, workspace: Path) -> None:
    uri = open_document(client, workspace / "paste.filter", "")
    await wait_for_diagnostics(client, uri, lambda d: len(d) == 0)
    line = "Dec  7 00:00:00 mx1 postfix/smtpd[4242]: connect from unknown[192.0.2.1] 'x\n"
    paste = line * (10 * 1024 * 1024 // len(line) + 1)
    replace_text(client, uri, 2, paste)
    ident = lsp.TextDocumentIdentifier(uri)
    await client.text_document_completion_async(
        lsp.CompletionParams(ident, lsp.Position(100_000, 20))
    )
    found = await wait_for_diagnostics(client, uri, lambda d: len(d) >= 1)
    assert found[0].severity == lsp.DiagnosticSeverity.Error
    await _still_answers(client, workspace)


async def test_a_broken_configuration_is_reported_on_its_file(
    client: LanguageClient, workspace: Path
) -> None:
    text = "q:\n    if true {\n        quarantine('Nowhere');\n    }\n"
    uri = open_document(client, workspace / "broken" / "uses.filter", text)
    config_uri = (workspace / "broken" / "gateway.toml").as_uri()
    problems = await wait_for_diagnostics(client, config_uri, lambda d: len(d) >= 1)
    assert any("retention_days" in p.message for p in problems)
    broken = (workspace / "broken" / "gateway.toml").read_text(encoding="utf-8")
    assert problems[0].range.start.line == broken.splitlines().index("retention_days = 'soon'")
    # Without a usable configuration, names are not checked (as lint without --config).
    assert len(await wait_for_diagnostics(client, uri, lambda d: True)) == 0
    await _still_answers(client, workspace)


async def test_an_unknown_request_gets_an_error_not_a_crash(
    client: LanguageClient, workspace: Path
) -> None:
    with pytest.raises(Exception, match="(?i)method"):
        await client.protocol.send_request_async("filterlang/noSuchThing", {"x": 1})
    await _still_answers(client, workspace)
