"""The signature table covers every rule and action the reference lists, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from filterlang import builtins as b

REFERENCE = Path("/work/shared/reference/filter-language.md")


def _table_names(heading: str) -> list[str]:
    """Names in the first backticked column of the table under `heading` in the reference."""
    text = REFERENCE.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| \d+ \| `([^`]+)` \|", section, flags=re.MULTILINE)


# Project extensions the reference names outside its tables (section 12's mapping, [R]).
REFERENCE_EXTENSIONS = ("attachment-filename-dictionary-match",)
# Project extensions of our own (issue 13: unauthenticated decryption, smime.md 9.1).
EXTENSION_RULES = (*REFERENCE_EXTENSIONS, "smime-gateway-unauthenticated",
                   # issue 16: DMARC beside SPF and DKIM.
                   "dmarc-status", "dmarc-policy",
                   # issue 16: the anti-spam and anti-virus verdicts.
                   "spam-verdict", "spam-score", "virus-verdict")
# The reference's section 12 names the project's form of "Bypass DKIM Signing".
EXTENSION_ACTIONS = ("skip-dkim-signing",)


def test_counts() -> None:
    assert len(b.RULES) == 59 + len(EXTENSION_RULES)
    assert len(b.ACTIONS) == 53 + len(EXTENSION_ACTIONS)
    assert [r.number for r in b.RULES] == list(range(1, 60 + len(EXTENSION_RULES)))
    assert [a.number for a in b.ACTIONS] == list(range(1, 54 + len(EXTENSION_ACTIONS)))


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference document not present")
def test_extension_rows_are_the_ones_the_reference_names() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for name in REFERENCE_EXTENSIONS:
        assert f"project: `{name}(" in text
        assert b.lookup_rule(name) is not None
    for name in EXTENSION_ACTIONS:
        assert f"project: `{name}()`" in text
        assert b.lookup_action(name) is not None


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference document not present")
@pytest.mark.parametrize(("heading", "table"), [("### 6.2", b.RULES), ("### 7.1", b.ACTIONS)])
def test_every_reference_name_has_a_row(heading: str, table: tuple[b.RuleSig | b.ActionSig]) -> None:
    names = _table_names(heading)
    assert names == [row.name for row in table
                     if row.name not in EXTENSION_RULES + EXTENSION_ACTIONS]


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("ATTACHMENT_SIZE", "attachment-size"),
        ("duplicate-boundaries", "duplicate_boundaries"),
        ("Subject", "subject"),
    ],
)
def test_rule_lookup_is_case_and_separator_insensitive(spelling: str, canonical: str) -> None:
    row = b.lookup_rule(spelling)
    assert row is not None and row.name == canonical


def test_action_lookup_and_obsolete_spelling() -> None:
    assert b.lookup_action("skip_filters") == b.lookup_action("skip-filters")
    row = b.lookup_action("drop_attachments")
    assert row is not None and row.name == "drop-attachments-by-name"
    assert b.obsolete_replacement("drop_attachments") == "drop-attachments-by-name"
    assert b.obsolete_replacement("drop-attachments-by-name") is None
    assert b.lookup_action("frobnicate") is None


def test_final_actions_and_override_classes() -> None:
    finals = {a.name for a in b.ACTIONS if a.final}
    assert finals == {"skip-filters", "deliver", "drop", "bounce", "encrypt", "smime-gateway"}
    assert all((a.repeat is None) == a.final for a in b.ACTIONS)
    slots = {a.name for a in b.ACTIONS if a.repeat is b.Repeat.SLOT}
    assert {"quarantine", "add-footer", "add-heading", "smime-gateway-deferred"} <= slots


def test_rule_forms_are_consistent() -> None:
    for r in b.RULES:
        if r.form is b.Form.PREDICATE:
            assert r.comparators == () and r.operand is None, r.name
        else:
            assert r.comparators and r.operand is not None, r.name
        required_after_optional = any(
            p.required and any(not q.required for q in r.params[:i]) for i, p in enumerate(r.params)
        )
        assert not required_after_optional, r.name


def test_header_repeats_is_evaluated_last() -> None:
    last = [r.name for r in b.RULES if r.cost is b.Cost.LAST]
    assert last == ["header-repeats"]


@pytest.mark.parametrize("word", ["if", "AND", "subject", "skip_filters", "drop-attachments", "true"])
def test_reserved_words(word: str) -> None:
    assert word.lower() in b.RESERVED_WORDS


def test_variables_table() -> None:
    assert len(b.VARIABLES) >= 29
    assert "certificatesigners" in b.VARIABLES
