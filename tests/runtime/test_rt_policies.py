"""Mail policies: membership forms and first-match-wins splintering (reference 10.3, 10.4)."""

from __future__ import annotations

import pytest
from rt_helpers import msg, run

from runtime.pipeline.policies import Membership, PolicyError, load_policies

WORKED = load_policies({"incoming": [
    {"name": "special_people", "recipients": ["joe@example.com", "ann@example.com"]},
    {"name": "from_lawyers", "senders": ["@lawfirm.com"]},
    {"name": "acquired_domains", "recipients": ["@newdomain.com", "@anotherexample.com"]},
    {"name": "engineering", "recipients": ["ldap.ldapgroup: engineers"]},
    {"name": "sales_team", "recipients": ["jim@", "john@", "larry@"]},
]})


@pytest.mark.parametrize("sender,rcpts,expected", [
    ("bill@lawfirm.com", ["jim@example.com"], {"from_lawyers": ["jim@example.com"]}),
    ("joe@yahoo.com", ["john@example.com", "jane@newdomain.com", "bill@example.com"],
     {"sales_team": ["john@example.com"], "acquired_domains": ["jane@newdomain.com"],
      "Default": ["bill@example.com"]}),
    ("bill@lawfirm.com", ["ann@example.com", "larry@example.com"],
     {"special_people": ["ann@example.com"], "from_lawyers": ["larry@example.com"]}),
])
def test_worked_example_10_4(sender: str, rcpts: list[str], expected: dict[str, list[str]]) -> None:
    assert WORKED.incoming.splinter(sender, rcpts) == expected


@pytest.mark.parametrize("entry,address,hit", [
    ("joe@example.com", "Joe@Example.com", True), ("jim@", "jim@any.example", True),
    ("jim@", "jimmy@any.example", False), ("@example.com", "a@example.com", True),
    ("@example.com", "a@sub.example.com", False), ("@.example.com", "a@sub.example.com", True),
    ("@.example.com", "a@example.com", True), ("@.example.com", "a@badexample.com", False),
])
def test_membership_entries(entry: str, address: str, hit: bool) -> None:
    assert Membership((entry,)).matches(address) is hit


def test_include_and_exclude_must_both_hold() -> None:
    m = Membership(("@example.com",), ("ceo@example.com",))
    assert m.matches("a@example.com") and not m.matches("ceo@example.com")


def test_each_splinter_runs_its_policys_content_filters_and_ends_differently() -> None:
    pol = load_policies({"incoming": [
        {"name": "strict", "recipients": ["@strict.example"], "content_filters": ["cf_hold"]},
        {"name": "Default", "content_filters": []}]})
    src = ("content-filter cf_hold:\n  direction incoming\n"
           "  if rcpt-to == '@strict' { quarantine('Hold'); }\n")
    t = run(src, msg(), rcpt=("a@strict.example", "b@open.example"), policies=pol)
    assert t.recipients == {"a@strict.example": "quarantine(Hold)", "b@open.example": "deliver"}


def test_content_filter_final_ends_only_the_content_stage_for_that_splinter() -> None:
    src = ("content-filter a:\n  direction incoming\n  if true { skip-filters(); }\n"
           "content-filter b:\n  direction incoming\n  if true { drop(); }\n")
    t = run(src, msg())
    assert t.recipients == {"rcpt@example.com": "deliver"}
    assert t.splinters[0].stage is not None
    assert t.splinters[0].stage.filters[1].skipped == "after a final action"


def test_message_filter_drop_skips_content_filters() -> None:
    src = ("m: if true { drop(); }\ncontent-filter c:\n  direction incoming\n"
           "  if true { insert-header('X', '1'); }\n")
    t = run(src, msg())
    assert t.recipients == {"rcpt@example.com": "drop"} and t.splinters[0].stage is None


def test_outgoing_direction_uses_outgoing_filters_only() -> None:
    src = ("content-filter inc:\n  direction incoming\n  if true { tag-message('in'); }\n"
           "content-filter out:\n  direction outgoing\n  if true { tag-message('out'); }\n")
    t = run(src, msg(), direction="outgoing")
    stage = t.splinters[0].stage
    assert stage is not None and stage.plan.tags == ["out"]


def test_bad_policy_table_is_one_clear_error() -> None:
    with pytest.raises(PolicyError, match="incoming\\[0\\]: every policy needs a name"):
        load_policies({"incoming": [{"recipients": ["a@"]}]})
