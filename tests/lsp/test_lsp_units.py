"""The language server's pieces on their own: the cursor reader, the TOML index, range
formatting and the choice of configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.workspace import PositionCodec

from filterlang import format_source
from filterlang.parse import filter_starts
from runtime.lsp import cursor, formatting
from runtime.lsp.settings import Settings
from runtime.lsp.text import TextIndex
from runtime.lsp.toml_index import index

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "filters").glob("*.filter"))


@pytest.mark.parametrize(
    ("text", "kind", "prefix", "owner", "position"),
    [
        ("f: if (smime-", "rule", "smime-", None, 0),
        ("f: if true and not sig", "rule", "sig", None, 0),
        ("f: if true {\n    drop();\n    quar", "action", "quar", None, 0),
        ("f: if true { drop(); } else { ", "action", "", None, 0),
        ("f: if true { log-entry('x $Env", "variable", "Env", None, 0),
        ("f: if true { quarantine(\"Po", "argument", "Po", "quarantine", 0),
        ("f: if true { notify('a@b', 'x', '', 'tm", "argument", "tm", "notify", 3),
        ("f: if recv-listener == 'In", "argument", "In", "recv-listener", -1),
        ("f: if header('X-A') == 'y' { drop(); }\n", "name", "", None, 0),
    ],
)
def test_cursor_reads_what_is_being_typed(
    text: str, kind: str, prefix: str, owner: str | None, position: int
) -> None:
    found = cursor.at(text, len(text))
    assert (found.kind, found.prefix, found.owner, found.index) == (kind, prefix, owner, position)


def test_cursor_inside_a_finished_string_and_name() -> None:
    text = "f: if true { quarantine('Policy'); }"
    inside = cursor.at(text, text.index("Policy") + 2)
    assert (inside.kind, inside.word, inside.owner, inside.closed) == (
        "argument", "Policy", "quarantine", True
    )
    name = cursor.at(text, text.index("quarantine") + 3)
    assert (name.kind, name.word) == ("action", "quarantine")


def test_toml_index_finds_every_shape() -> None:
    text = (
        '[[listeners]]\nname = "Inbound"\n\n[quarantines.Policy]\nretention_days = 3\n'
        '[profiles."sign-all"]\nmode = "sign"\n[dictionaries]\nBlocked = "b.txt"\n'
        "[text_resources]\nfooter = 'f.txt'\n[storage]\nquarantines.x = 1\n"
        "[encryption_profiles.Secure]\nsending_profile = 'enc'\n"
    )
    found = {key: (p.line, text.split("\n")[p.line][p.start : p.end])
             for key, p in index(text).items()}
    assert found == {
        ("listeners", "Inbound"): (1, "Inbound"),
        ("quarantines", "Policy"): (3, "Policy"),
        ("profiles", "sign-all"): (5, "sign-all"),
        ("dictionaries", "Blocked"): (8, "Blocked"),
        ("text_resources", "footer"): (10, "footer"),
        ("encryption_profiles", "Secure"): (13, "Secure"),
    }


def _apply(text: str, edits: list[lsp.TextEdit] | None) -> str:
    assert edits is not None
    for edit in edits:
        idx = TextIndex(text, PositionCodec())
        text = text[: idx.offset(edit.range.start)] + edit.new_text + text[
            idx.offset(edit.range.end) :]
    return text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_formatting_filter_by_filter_gives_the_fmt_output(path: Path) -> None:
    original = path.read_text(encoding="utf-8")
    # Make a mess that fmt cleans up: upper-case names, three blank lines between filters.
    text = original.replace("if ", "IF ").replace("\n\n", "\n\n\n\n")
    expected, _ = format_source(text)
    assert expected is not None
    count = len(filter_starts(text))
    for k in range(count):
        starts = filter_starts(text)
        idx = TextIndex(text, PositionCodec())
        at = idx.position_at(starts[k])
        text = _apply(text, formatting.range_(idx, "t.filter", lsp.Range(at, at)))
    assert text == expected
    whole = TextIndex(original.replace("if ", "IF "), PositionCodec())
    assert _apply(whole.text, formatting.document(whole, "t.filter")) == format_source(
        whole.text)[0]


def test_positions_count_utf16_units() -> None:
    text = "# \U0001f600 emoji\nf: if subjct == '\U0001f600' { drop(); }\n"
    idx = TextIndex(text, PositionCodec())
    assert idx.position(1, 17) == lsp.Position(1, 17)
    assert idx.position(0, 3) == lsp.Position(0, 4)  # the emoji is two UTF-16 units
    assert idx.offset(lsp.Position(0, 4)) == 3


def test_configuration_is_the_setting_then_upward_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "gateway.toml").write_text("", encoding="utf-8")
    document = tmp_path / "a" / "b" / "x.filter"
    env = tmp_path / "env.toml"
    monkeypatch.setenv("FILTERLANG_CONFIG", str(env))
    settings = Settings()
    assert settings.config_path(document) == tmp_path / "a" / "gateway.toml"
    assert settings.config_path(tmp_path / "x.filter") == env
    settings.root, settings.setting = tmp_path, "conf/gw.toml"
    assert settings.config_path(document) == tmp_path / "conf" / "gw.toml"
