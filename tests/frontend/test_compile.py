"""Compiled objects: typed arguments, cost order, content-filter view."""

from __future__ import annotations

import datetime as dt
import ipaddress

from filterlang import compile_source
from filterlang.compile import CBool, CFilter, CompiledRegex, CompiledScript, CRule


def _compile(source: str) -> CompiledScript:
    compiled, diags = compile_source(source, "t.filter")
    assert compiled is not None, diags
    return compiled


def _first(source: str) -> CFilter:
    return _compile(source).filters[0]


def test_typed_values() -> None:
    f = _first("f: if body-size >= 5M and remote-ip == '10.0.0.0/8' and date > '07/28/2003' "
               "{ drop-attachments-by-size(10k); }")
    cond = f.body.condition
    assert isinstance(cond, CBool)
    values = {r.sig.name: r.operand for r in cond.operands if isinstance(r, CRule)}
    assert values["body-size"] == 5 * 1024 * 1024
    assert values["remote-ip"] == (ipaddress.ip_network("10.0.0.0/8"),)
    assert values["date"] == dt.datetime(2003, 7, 28)
    assert f.actions[0].args == (10 * 1024,)


def test_regex_case_rules() -> None:
    f = _first("f: if mail-from == 'BOSS@' and subject == 'URGENT' { no-op(); }")
    assert isinstance(f.body.condition, CBool)
    rules = {r.sig.name: r.operand for r in f.body.condition.operands if isinstance(r, CRule)}
    assert isinstance(rules["mail-from"], CompiledRegex)
    assert rules["mail-from"].search("boss@example.com")
    assert not rules["subject"].search("urgent")


def test_cost_order_puts_header_repeats_last_and_scans_after_headers() -> None:
    f = _first("f: if header-repeats('subject', 5) or body-contains('x') or subject == 'a' "
               "or rcpt-count > 3 { no-op(); }")
    cond = f.body.condition
    assert isinstance(cond, CBool)
    order = [r.sig.name for r in cond.operands if isinstance(r, CRule)]
    assert order == ["rcpt-count", "subject", "body-contains", "header-repeats"]


def test_compiled_objects_are_frozen_and_keep_spans() -> None:
    f = _first("f: if true {\n    drop();\n}")
    assert f.actions[0].span.line == 2
    assert f.actions[0].sig.final
