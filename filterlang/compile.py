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
    Condition,
    ContentMeta,
    Filter,
    Group,
    If,
    ListLit,
    Not,
    RuleTest,
    Script,
    Span,
    String,
    slot_maker,
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


# The compiled objects as the compiler makes them: every field in order (see slot_maker).
_crule = slot_maker(CRule)
_cnot = slot_maker(CNot)
_cbool = slot_maker(CBool)
_caction = slot_maker(CAction)
_cif = slot_maker(CIf)
_cfilter = slot_maker(CFilter)
_compiled_regex = slot_maker(CompiledRegex)

# Argument types whose value is the string as written (the rest are converted in `value`).
_AS_WRITTEN = frozenset(b.T) - {b.T.REGEX, b.T.SIZE, b.T.DATE, b.T.IP_SPEC, b.T.LIST}
_REGEX, _SIZE, _DATE, _IP_SPEC = b.T.REGEX, b.T.SIZE, b.T.DATE, b.T.IP_SPEC
_IP_SEPARATORS = re.compile(r"[,\s]+")


def _cost(cond: CCondition) -> int:
    if isinstance(cond, CRule):
        return int(cond.sig.cost)
    if isinstance(cond, CNot):
        return _cost(cond.operand)
    return max(_cost(c) for c in cond.operands)


class _Compiler:
    def __init__(self, engine: str) -> None:
        self.engine = engine
        # Files repeat patterns; a compiled regex is immutable, so each (pattern, case folding)
        # is compiled and wrapped once per file.
        self.regexes: dict[tuple[str, bool], CompiledRegex] = {}

    def value(self, typ: b.T, arg: Arg | None, ignore_case: bool = False) -> Value:
        if arg is None:
            return None
        if not isinstance(arg, String):
            if isinstance(arg, ListLit):
                return tuple([s.value for s in arg.items])
            return arg.value  # Number or Size
        text = arg.value
        if typ in _AS_WRITTEN:
            return text
        if typ is _REGEX:
            found = self.regexes.get((text, ignore_case))
            if found is None:
                search = rx.compile_pattern(text, ignore_case=ignore_case, engine=self.engine)
                found = self.regexes[text, ignore_case] = _compiled_regex(text, search)
            return found
        if typ is _SIZE:
            return int(text)
        if typ is _DATE:
            for fmt in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y"):
                try:
                    return dt.datetime.strptime(text, fmt)
                except ValueError:
                    continue
        if typ is _IP_SPEC:
            return tuple(_ip(part) for part in _IP_SEPARATORS.split(text.strip()) if part)
        if typ is b.T.LIST:
            return tuple(p.strip() for p in text.split(","))
        return text

    def condition(self, cond: Condition) -> CCondition:
        if isinstance(cond, RuleTest):
            return self.rule(cond)
        if isinstance(cond, Group):
            return self.condition(cond.inner)
        if isinstance(cond, Not):
            return _cnot(self.condition(cond.operand), cond.span)
        operands: list[CCondition] = []
        for side in (cond.left, cond.right):
            inner = side.inner if isinstance(side, Group) else side
            c = self.condition(inner)
            # Flatten same-operator chains so the cost order applies across the whole chain.
            operands.extend(c.operands if isinstance(c, CBool) and c.op == cond.op else (c,))
        return _cbool(cond.op, tuple(sorted(operands, key=_cost)), cond.span)

    def rule(self, rt: RuleTest) -> CRule:
        sig = b.lookup_rule(rt.name)
        assert sig is not None, "compile_script needs checked input"
        args = ()
        if rt.args:
            args = tuple(map(self.value, b.param_types(sig.params), rt.args))
        operand = None
        if rt.operand is not None:
            fold = sig.name in _CASE_INSENSITIVE
            operand = self.value(sig.operand or b.T.STRING, rt.operand, fold)
        return _crule(sig, args, rt.comparator, operand, rt.span)

    def action(self, call: ActionCall) -> CAction:
        sig = b.lookup_action(call.name)
        assert sig is not None, "compile_script needs checked input"
        # map stops at the shorter of the two, as zip does (checked input has no extra args).
        args = tuple(map(self.value, b.param_types(sig.params), call.args)) if call.args else ()
        return _caction(sig, args, call.span)

    def block(self, stmts: tuple[ActionCall | If, ...] | None) -> tuple[CStatement, ...]:
        if not stmts:
            return ()
        return tuple([self.if_(s) if isinstance(s, If) else self.action(s) for s in stmts])

    def if_(self, node: If) -> CIf:
        return _cif(self.condition(node.condition), self.block(node.then), self.block(node.else_),
                    node.span)

    def filter(self, flt: Filter) -> CFilter:
        return _cfilter(flt.name, flt.active, self.if_(flt.body), flt.description, flt.content,
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
    filters = tuple([compiler.filter(f) for f in script.filters])
    return CompiledScript(script.path, filters, regex_engine)


