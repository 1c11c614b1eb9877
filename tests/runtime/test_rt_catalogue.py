"""Every row of the signature table runs: message in, trace out (issue 3 "How it is checked").

Each rule and action is run from its own documented example (builtins.py) on a message with a
body, attachments and an archive, so no row can exist that the runtime cannot evaluate. The
value semantics of each rule are pinned in test_rt_rules.py; the action effects in
test_rt_actions.py. Here: rules needing an outside service evaluate false with "service
unavailable" in the trace when no provider is configured, and use the provider's answer when
one is.
"""

from __future__ import annotations

from typing import Any

import pytest
from rt_helpers import run
from test_rt_rules import ATTACHED

from filterlang import builtins as b
from runtime.engine.providers.scanners import SpamVerdict, VirusVerdict
from runtime.engine.resources import Dictionary, Resources
from runtime.engine.services import Services
from runtime.pipeline.trace import to_json, to_text

RES = Resources(
    dictionaries={name: Dictionary(name, (("secret", 1), ("@example.com", 1)))
                  for name in ("Blocked", "VIPs", "Confidential", "Secrets", "Words")},
    texts={"disclaimer": "-- sent from example", "external-warning": "[external]"},
)
OUTSIDE = {"LDAP", "DNS", "REP", "SPF", "DKIM", "IMG", "URL", "FED", "LANG", "CNT"}


def _needs_service(sig: b.RuleSig) -> bool:
    return any(code in OUTSIDE for code in (sig.dep or "").split("+"))


class FakeProviders:
    """One object answering for every provider interface (runtime.engine.services)."""

    def in_group(self, address: str, group: str) -> bool:
        return True

    def lookup(self, zone: str, ip: str) -> str | None:
        return "127.0.0.2"

    def score(self, ip: str) -> float | None:
        return -8.0

    def spf(self, identity: str) -> str:
        return "Pass"

    def dkim(self) -> str:
        return "hardfail"

    def dmarc(self) -> str:
        return "Fail"

    def dmarc_policy(self) -> str:
        return "reject"

    def verdict(self, rule: str, args: tuple[object, ...], raw: bytes) -> object:
        return "suspect"

    def spam(self) -> SpamVerdict:
        return SpamVerdict("spam", 12.5, "test")

    def virus(self) -> VirusVerdict:
        return VirusVerdict("infected", "Eicar-Test")


def _services() -> Services:
    p: Any = FakeProviders()
    return Services(ldap=p, dnslist=p, reputation=p, auth=p, url=p, image=p, language=p,
                    forged=p, counters={}, spam=p, virus=p)


@pytest.mark.parametrize("sig", b.RULES, ids=lambda s: s.name)
def test_every_rule_runs_from_its_example(sig: b.RuleSig) -> None:
    t = run(f"f: if {sig.example} {{ tag-message('hit'); }}", ATTACHED, resources=RES,
            services=_services(), remote_ip="10.0.0.1", listener="InboundMail", interface="Data1",
            sender_group="TRUSTED")
    tr = t.message_filters.filters[0]
    assert tr.error is None, tr.error
    assert [r.rule.split("(")[0].split(" ")[0] for r in tr.rules] == [sig.name]
    assert sig.name in to_text(t)
    assert "unavailable" not in tr.rules[0].note


@pytest.mark.parametrize("sig", [s for s in b.RULES if _needs_service(s)], ids=lambda s: s.name)
def test_rules_without_their_service_evaluate_false_and_say_so(sig: b.RuleSig) -> None:
    t = run(f"f: if {sig.example} {{ tag-message('hit'); }}", ATTACHED, resources=RES)
    tr = t.message_filters.filters[0]
    assert tr.error is None and tr.matched is False
    assert "service unavailable" in tr.rules[0].note
    assert "service unavailable" in to_text(t)


@pytest.mark.parametrize("sig", b.ACTIONS, ids=lambda s: s.name)
def test_every_action_runs_from_its_example(sig: b.ActionSig) -> None:
    t = run(f"f: if true {{ {sig.example}; }}\ng: if true {{ tag-message('after'); }}", ATTACHED,
            resources=RES)
    tr = t.message_filters.filters[0]
    assert tr.error is None, tr.error
    assert [a.name for a in tr.actions] == [sig.name]
    js = to_json(t)
    assert js["filters"][0]["actions"][0].startswith(sig.name + "(")
    assert (t.final is not None and t.final.startswith(sig.name)) is sig.final
    # a final action ends the message-filter stage (reference 4.4)
    assert (t.message_filters.filters[1].skipped == "after a final action") is sig.final


def test_actions_expand_variables_where_the_table_says() -> None:
    t = run("f: if true { bcc('audit@example.com', '[copy] $Subject'); log-entry('in $FilterName'); }",
            ATTACHED)
    bcc, log = t.message_filters.filters[0].actions
    assert bcc.args[:2] == ("audit@example.com", "[copy] mime") and log.args == ("in f",)


def test_drop_attachments_where_dictionary_match_replaces_the_part() -> None:
    t = run("f: if true { drop-attachments-where-dictionary-match('Secrets', 2, 'gone: $dropped_filename'); }",
            ATTACHED, resources=RES)
    assert b"gone: notes.txt" in t.result and b"secret plan" not in t.result
    assert b"run.exe" in t.result  # parts below the threshold stay


def test_service_backed_actions_are_recorded_in_the_plan_for_the_provider() -> None:
    t = run("f: if true { url-category-defang(['Gambling'], ''); "
            "drop-attachments-where-image-verdict('suspect'); }", ATTACHED)
    assert [a.render() for a in t.message_filters.plan.actions] == [
        "url-category-defang('Gambling', '')", "drop-attachments-where-image-verdict('suspect')"]
    assert t.result == ATTACHED  # the provider acts on the plan; the message is untouched here


def test_only_plan_actions_are_record_only() -> None:
    """Dispatch is by name: a misspelt implementation would silently become record-only."""
    from runtime.engine import actions

    record_only = {n for n, f in actions.IMPLEMENTATIONS.items() if f is actions._record_only}
    finals = {s.name for s in b.ACTIONS if s.final and s.name != "encrypt"}
    flags = {s.name for s in b.ACTIONS if s.repeat is b.Repeat.FLAG}  # html-convert, skip-*
    routing = {"alt-rcpt-to", "alt-mailhost", "alt-src-host", "bounce-profile", "quarantine",
               "smime-gateway-deferred", "add-footer", "add-heading"}  # add-*: applied at stage end
    service = {s.name for s in b.ACTIONS if s.name.startswith("url-")} | {
        "drop-attachments-where-image-verdict"}
    assert record_only == finals | flags | routing | service | {"no-op"}
