"""Checker behaviour that golden files cannot show: resource names and clean scripts."""

from __future__ import annotations

import pytest

from filterlang import builtins as b
from filterlang import check_source
from filterlang.check import ResourceNames
from filterlang.codes import CODES, Code

NAMES = ResourceNames(quarantines={"Policy"}, profiles={"sign-only"}, dictionaries={"VIPs"})


@pytest.mark.parametrize(
    ("source", "codes"),
    [
        ("q: if true { quarantine('Policy'); }", []),
        ("q: if true { quarantine('Polcy'); }", ["F405"]),
        ("s: if true { smime-gateway('nope'); }", ["F405"]),
        ("d: if rcpt-to-dictionary-match('VIPs') { no-op(); }", []),
        ("d: if rcpt-to-dictionary-match('Other') { no-op(); }", ["F405"]),
    ],
)
def test_unknown_resource_names(source: str, codes: list[str]) -> None:
    assert [d.code for d in check_source(source, "t.filter", names=NAMES)] == codes


def test_resources_are_not_checked_without_names() -> None:
    assert check_source("q: if true { quarantine('Anything'); }", "t.filter") == []


@pytest.mark.parametrize("rule", b.RULES, ids=lambda r: r.name)
def test_every_rule_example_checks_clean(rule: b.RuleSig) -> None:
    source = f"f: if {rule.example} {{ no-op(); }}"
    if rule.dep in ("SPAM", "AV"):  # scan verdicts: content filters only (W506)
        source = (f"content-filter f:\n    direction incoming\n    if {rule.example} {{\n"
                  "        insert-header('X-A', 'b');\n    }\n")
    assert [d.code for d in check_source(source, "t.filter") if d.code != "N601"] == []


@pytest.mark.parametrize("action", b.ACTIONS, ids=lambda a: a.name)
def test_every_action_example_checks_clean(action: b.ActionSig) -> None:
    source = f"f: if true {{ {action.example}; }}"
    assert [d.code for d in check_source(source, "t.filter")] == []


def test_outside_provider_not_configured() -> None:
    """A rule whose provider the configuration lacks is an error (F407), a warning (W504)
    when allow_unavailable names the provider; dnslist needs only the resolver."""
    names = ResourceNames(services=frozenset({"ldap"}), allow_unavailable={"dkim"})
    assert [d.code for d in check_source("f: if spf-passed { no-op(); }", "t", names=names)] == [
        "F407"
    ]
    assert [d.code for d in check_source("f: if dkim-authentication == 'pass' { no-op(); }",
                                         "t", names=names)] == ["W504"]
    assert check_source("f: if rcpt-to-group == 'x' { no-op(); }", "t", names=names) == []
    assert check_source("f: if dnslist('zen.example') { no-op(); }", "t", names=names) == []


@pytest.mark.parametrize("code", [c for c in CODES.values() if c.bad and c.code >= "F2"],
                         ids=lambda c: c.code)
def test_code_examples(code: Code) -> None:
    names = ResourceNames(quarantines={"Policy"}, services=frozenset(), allow_unavailable={"spf"})
    assert code.code in {d.code for d in check_source(code.bad, "bad", names=names)}
    if code.fixed:
        assert check_source(code.fixed, "fixed", names=names) == []
