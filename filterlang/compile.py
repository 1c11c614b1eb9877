"""AST -> frozen compiled objects the runtime evaluates (issue 3 reads these).

Arguments become typed values (compiled regexes, sizes in bytes, datetimes, IP networks), each
rule and action carries its signature row, and `and`/`or` operands are ordered by the static
cost of reference 3.4 so cheap tests run first and `header-repeats` runs last. Spans are kept so
runtime errors point at filter lines. Input must have passed `check` without errors.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from typing import Any, Literal

from attrs import frozen

from filterlang import builtins as b
from filterlang import regex as rx
from filterlang.ast import (
    ActionCall,
    Arg,
    BoolOp,
    Condition,
    ContentMeta,
    Filter,
    Group,
    If,
    ListLit,
    Not,
    Number,
    RuleTest,
    Script,
    Size,
    Span,
)

# Rules whose regex is case-insensitive by default (reference 5.3): addresses and names.
_CASE_INSENSITIVE = frozenset({"mail-from", "rcpt-to"})

Value = Any  # str | int | float | datetime | networks | tuple[str, ...] | CompiledRegex


@frozen
class CompiledRegex:
    """A pattern with its source text and a `search` function for the chosen engine."""

    source: str
    search: Callable[[str], Any]


@frozen
class CRule:
    """One rule test: its row, typed arguments, comparator and typed operand."""

    sig: b.RuleSig
    args: tuple[Value, ...]
    comparator: str | None
    operand: Value
    span: Span


@frozen
class CNot:
    operand: CCondition
    span: Span


@frozen
class CBool:
    """`and`/`or` with operands in evaluation order (cheapest first)."""

    op: Literal["and", "or"]
    operands: tuple[CCondition, ...]
    span: Span


CCondition = CRule | CNot | CBool


@frozen
class CAction:
    sig: b.ActionSig
    args: tuple[Value, ...]
    span: Span


@frozen
class CIf:
    condition: CCondition
    then: tuple[CStatement, ...]
    else_: tuple[CStatement, ...]
    span: Span


CStatement = CAction | CIf


@frozen
class CFilter:
    """A compiled filter; content filters also have a flat (conditions, apply, actions) view."""

    name: str
    active: bool
    body: CIf
    description: str | None
    content: ContentMeta | None
    span: Span

    @property
    def conditions(self) -> tuple[CCondition, ...]:
        cond = self.body.condition
        return cond.operands if isinstance(cond, CBool) else (cond,)

    @property
    def actions(self) -> tuple[CAction, ...]:
        return tuple(s for s in self.body.then if isinstance(s, CAction))


@frozen
class CompiledScript:
    path: str
    filters: tuple[CFilter, ...]
    regex_engine: str


def _cost(cond: CCondition) -> int:
    if isinstance(cond, CRule):
        return int(cond.sig.cost)
    if isinstance(cond, CNot):
        return _cost(cond.operand)
    return max(_cost(c) for c in cond.operands)


class _Compiler:
    def __init__(self, engine: str) -> None:
        self.engine = engine

    def value(self, typ: b.T, arg: Arg | None, *, ignore_case: bool = False) -> Value:
        if arg is None:
            return None
        if isinstance(arg, ListLit):
            return tuple(s.value for s in arg.items)
        if isinstance(arg, Number | Size):
            return arg.value
        text = arg.value
        if typ is b.T.REGEX:
            search = rx.compile_pattern(text, ignore_case=ignore_case, engine=self.engine)
            return CompiledRegex(text, search)
        if typ is b.T.SIZE:
            return int(text)
        if typ is b.T.DATE:
            for fmt in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y"):
                try:
                    return dt.datetime.strptime(text, fmt)
                except ValueError:
                    continue
        if typ is b.T.IP_SPEC:
            return tuple(_ip(part) for part in re.split(r"[,\s]+", text.strip()) if part)
        if typ is b.T.LIST:
            return tuple(p.strip() for p in text.split(","))
        return text

    def condition(self, cond: Condition) -> CCondition:
        if isinstance(cond, Group):
            return self.condition(cond.inner)
        if isinstance(cond, Not):
            return CNot(self.condition(cond.operand), cond.span)
        if isinstance(cond, BoolOp):
            operands: list[CCondition] = []
            for side in (cond.left, cond.right):
                inner = side.inner if isinstance(side, Group) else side
                c = self.condition(inner)
                # Flatten same-operator chains so the cost order applies across the whole chain.
                operands.extend(c.operands if isinstance(c, CBool) and c.op == cond.op else (c,))
            return CBool(cond.op, tuple(sorted(operands, key=_cost)), cond.span)
        return self.rule(cond)

    def rule(self, rt: RuleTest) -> CRule:
        sig = b.lookup_rule(rt.name)
        assert sig is not None, "compile_script needs checked input"
        fold = sig.name in _CASE_INSENSITIVE
        args = tuple(self.value(p.type, a) for p, a in zip(sig.params, rt.args or (), strict=False))
        operand = self.value(sig.operand or b.T.STRING, rt.operand, ignore_case=fold)
        return CRule(sig, args, rt.comparator, operand, rt.span)

    def action(self, call: ActionCall) -> CAction:
        sig = b.lookup_action(call.name)
        assert sig is not None, "compile_script needs checked input"
        args = tuple(self.value(p.type, a) for p, a in zip(sig.params, call.args, strict=False))
        return CAction(sig, args, call.span)

    def block(self, stmts: tuple[ActionCall | If, ...] | None) -> tuple[CStatement, ...]:
        return tuple(self.if_(s) if isinstance(s, If) else self.action(s) for s in stmts or ())

    def if_(self, node: If) -> CIf:
        return CIf(self.condition(node.condition), self.block(node.then), self.block(node.else_),
                   node.span)

    def filter(self, flt: Filter) -> CFilter:
        return CFilter(flt.name, flt.active, self.if_(flt.body), flt.description, flt.content,
                       flt.span)


def _ip(part: str) -> Any:
    try:
        return ipaddress.ip_network(part, strict=False)
    except ValueError:
        return part  # host names and ranges are matched by the runtime as text


def compile_script(script: Script, *, regex_engine: str | None = None) -> CompiledScript:
    """Compile a checked script; the regex engine defaults to the file's pragma (or RE2)."""
    if regex_engine is None:
        regex_engine = "re2"
        for comment in script.comments:
            m = rx.PRAGMA.match("#" + comment.text)
            if m:
                regex_engine = m.group(1).lower()
    compiler = _Compiler(regex_engine)
    return CompiledScript(script.path, tuple(compiler.filter(f) for f in script.filters),
                          regex_engine)


