"""Semantic checks over a parsed script: names, signatures, values, structure (F2xx-F4xx, W/N).

`check` collects every problem rather than stopping at the first, and returns them sorted.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Iterator

from attrs import field, frozen

from filterlang import builtins as b
from filterlang import regex as rx
from filterlang.ast import (
    ActionCall,
    Arg,
    BoolOp,
    Condition,
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
    Statement,
    String,
)
from filterlang.codes import CODES
from filterlang.diagnostics import Diagnostic, Fix, Related
from filterlang.fmt import quote
from filterlang.services import PROVIDER_SETUP, provider_of

MAX_DEPTH = 64
# Caps on what one filter may ask of the runtime (issue 13): each rule and each regex is work
# for every message, and lists this long belong in a dictionary (reference 6.11).
MAX_REGEX_LENGTH = 4096
MAX_ALTERNATIVES = 1000
MAX_RULES_PER_FILTER = 500
# RFC 5322 2.2: a field name is printable ASCII except the colon, and no space.
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_DATE_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y")


def _names(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@frozen
class ResourceNames:
    """Names configured on the system; when given, references to others are F405."""

    quarantines: frozenset[str] = field(factory=frozenset, converter=_names)
    profiles: frozenset[str] = field(factory=frozenset, converter=_names)
    encryption_profiles: frozenset[str] = field(factory=frozenset, converter=_names)
    dictionaries: frozenset[str] = field(factory=frozenset, converter=_names)
    listeners: frozenset[str] = field(factory=frozenset, converter=_names)
    text_resources: frozenset[str] = field(factory=frozenset, converter=_names)
    #: Outside providers configured (names of filterlang.services: ldap, spf, reputation ...).
    #: None means "not known": nothing is said about rules that need one.
    services: frozenset[str] | None = None
    #: Providers the configuration may lack (its `allow_unavailable`): a rule that needs one
    #: is a warning (W504, the rule is always false) instead of an error (F407).
    allow_unavailable: frozenset[str] = field(factory=frozenset, converter=_names)
    #: The kinds (field names above) to check; None: all of them. The gateway checks only
    #: encryption profiles when it loads filters (a name it cannot carry out at all).
    checked: frozenset[str] | None = None


_SCANNED = frozenset({"SPAM", "AV"})  # verdicts of the anti-spam and anti-virus stages
_EMAILS = re.compile(r"[^@\s,]+(@[^@\s,]+)?(\s*,\s*[^@\s,]+(@[^@\s,]+)?)*")
_EMAIL = re.compile(r"[^@\s,]+(@[^@\s,]+)?")

# Argument types that only need to be a quoted string (the rest are checked further in `value`).
_ANY_STRING = frozenset(b.T) - {
    b.T.LIST, b.T.SIZE, b.T.INT, b.T.DECIMAL, b.T.FLAG01, b.T.REGEX, b.T.EMAIL, b.T.IP_SPEC,
    b.T.RETURN_PATH, b.T.DATE, b.T.QUARANTINE, b.T.PROFILE, b.T.ENCRYPTION_PROFILE, b.T.DICTIONARY, b.T.LISTENER,
    b.T.TEXT_RESOURCE, b.T.HEADER_NAME,
}
_NUMERIC = frozenset({b.T.INT, b.T.DECIMAL, b.T.FLAG01})
# A single backslash before a regex metacharacter (W502), unless the pattern doubles them.
_SINGLE_BACKSLASH = re.compile(r"(?<!\\)\\[.$^()\[\]|*+?{}]")

_RESOURCE_FIELD = {
    b.T.QUARANTINE: ("quarantines", "quarantine"),
    b.T.PROFILE: ("profiles", "sending profile"),
    b.T.ENCRYPTION_PROFILE: ("encryption_profiles", "encryption profile"),
    b.T.DICTIONARY: ("dictionaries", "dictionary"),
    b.T.LISTENER: ("listeners", "listener"),
    b.T.TEXT_RESOURCE: ("text_resources", "text resource"),
}


# How many parameters each signature row requires, keyed by the id of its (immortal, module
# level) params tuple: asked once per rule and action in a file, hashing the rows costs more.
_REQUIRED: dict[int, int] = {
    id(params): sum(p.required for p in params)
    for params in (*(r.params for r in b.RULES), *(a.params for a in b.ACTIONS))
}


def _required(params: tuple[b.Param, ...]) -> int:
    need = _REQUIRED.get(id(params))
    return sum(p.required for p in params) if need is None else need


def _diag(code: str, message: str, span: Span, hint: str | None = None,
          notes: tuple[Related, ...] = (), fix: Fix | None = None) -> Diagnostic:
    return Diagnostic(code, CODES[code].severity, message, span, hint, notes, fix)


def _closest(name: str, known: list[str]) -> str | None:
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    return close[0] if close else None


def _suggest(name: str, known: list[str]) -> str | None:
    close = _closest(name, known)
    return f"did you mean '{close}'?" if close else None


def _did_you_mean(name: str, known: list[str], span: Span, *, quoted: bool = False
                  ) -> dict[str, object]:
    """The hint and the fix of an unknown name: the closest known one, when one is close."""
    close = _closest(name, known)
    if close is None:
        return {}
    text = quote(close) if quoted else close
    return {"hint": f"did you mean '{close}'?", "fix": Fix(f"change to {text}", span, text)}


class _Checker:
    def __init__(self, names: ResourceNames | None, regex_engine: str) -> None:
        self.names = names
        self.regex_engine = regex_engine
        self.out: list[Diagnostic] = []

    def emit(self, *args: object, **kw: object) -> None:
        self.out.append(_diag(*args, **kw))  # type: ignore[arg-type]

    # --- filters -----------------------------------------------------------------------
    def script(self, script: Script) -> None:
        for flt in script.filters:
            # Only the exact (lower-case) spelling is reserved: Cisco's own guides name filters
            # `Signed` and `Tag_Message`, which the appliance accepts (issue 15 follows the guide
            # over reference 2.5's case-insensitive reading).
            if flt.name in b.RESERVED_WORDS:
                self.emit("F210", f"filter name '{flt.name}' is a reserved word", flt.name_span,
                          hint="rename the filter, e.g. add a prefix or suffix")
            self.filter(flt)
        self.out += duplicate_names((f.name, f.name_span) for f in script.filters)

    def filter(self, flt: Filter) -> None:
        content = flt.content is not None
        rules = _count_rules(flt.body)
        if rules > MAX_RULES_PER_FILTER:
            self.emit("F406", f"filter '{flt.name}' has {rules} rules, over the cap of "
                      f"{MAX_RULES_PER_FILTER}", flt.name_span,
                      hint="split it into several filters, or match a dictionary")
        self.block_if(flt.body, flt, 1)
        if content:
            self.content_structure(flt)

    def block_if(self, node: If, flt: Filter, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.emit("F108", "nesting deeper than 64 levels", node.span)
            return
        self.condition(node.condition, flt)
        self.block(node.then, flt, depth)
        if node.else_:
            self.block(node.else_, flt, depth)

    def block(self, stmts: tuple[Statement, ...], flt: Filter, depth: int) -> None:
        final_at: ActionCall | None = None
        for stmt in stmts:
            if final_at is not None and flt.content is None:
                self.emit("F401", f"'{stmt_name(stmt)}' is never reached", stmt.span,
                          hint=f"'{final_at.name}()' is final and ends the filter",
                          notes=(Related("the final action", final_at.span),))
                final_at = None  # report once per block
            if isinstance(stmt, If):
                self.block_if(stmt, flt, depth + 1)
                continue
            sig = self.action(stmt, flt)
            if sig is not None and sig.final and flt.content is None:
                final_at = stmt

    def content_structure(self, flt: Filter) -> None:
        body = flt.body
        if body.else_ is not None or any(isinstance(s, If) for s in body.then):
            self.emit("F404", "content filters cannot nest 'if' or use 'else'", body.span)
        assert flt.content is not None
        op = "and" if flt.content.apply == "all" else "or"
        if not _flat(body.condition, op):
            self.emit("F404", "content filter conditions must be a flat list", body.span,
                      hint=f"with 'apply {flt.content.apply}' join single rules with '{op}'")
        actions = [s for s in body.then if isinstance(s, ActionCall)]
        finals = [a for a in actions if (sig := b.lookup_action(a.name)) and sig.final]
        if len(finals) > 1:
            self.emit("F402", "more than one final action in a content filter", finals[1].span,
                      notes=(Related("the first final action", finals[0].span),))
        elif finals and actions[-1] is not finals[0]:
            self.emit("F403", f"final action '{finals[0].name}()' must be last", finals[0].span)

    # --- conditions ----------------------------------------------------------------------
    def condition(self, cond: Condition, flt: Filter) -> None:
        if isinstance(cond, RuleTest):
            self.rule(cond, flt)
        elif isinstance(cond, Not):
            self.condition(cond.operand, flt)
        elif isinstance(cond, Group):
            self.condition(cond.inner, flt)
        else:
            for side in (cond.left, cond.right):
                if isinstance(side, BoolOp) and side.op != cond.op:
                    self.emit("W501", f"'{side.op}' inside '{cond.op}' without parentheses",
                              side.span, hint="add parentheses to make the grouping explicit")
                self.condition(side, flt)

    def rule(self, rt: RuleTest, flt: Filter) -> None:
        sig = b.lookup_rule(rt.name)
        if sig is None:
            self.emit("F201", f"unknown rule '{rt.name}'", rt.name_span,
                      **_did_you_mean(rt.name, [r.name for r in b.RULES], rt.name_span))
            return
        self.older_spelling(rt.name, rt.name_span)
        if flt.content is not None and sig.cf is None:
            self.emit("F207", f"rule '{sig.name}' is only allowed in message filters",
                      rt.name_span)
        if flt.content is None and sig.dep in _SCANNED:
            # The scanners run after the message filters (reference 11, steps 11-12).
            self.emit("W506", f"'{sig.name}' is never available in a message filter: the "
                      "scanners run after the message filters", rt.name_span,
                      hint="test the verdict in a content filter")
        if rt.args or sig.params:
            self.args(sig.name, sig.params, rt.args or (), rt.name_span, rt.span)
        if self.names is not None:
            self.service(sig, rt)
        if rt.comparator is None:
            if sig.form is b.Form.COMPARISON:
                self.emit("F206", f"rule '{sig.name}' needs a comparison", rt.span,
                          hint=f"for example: {sig.example}")
            return
        if sig.form is b.Form.PREDICATE or rt.comparator not in sig.comparators:
            allowed = " ".join(sig.comparators) or "none: it is a predicate"
            self.emit("F205", f"comparator '{rt.comparator}' not allowed for '{sig.name}'",
                      rt.span, hint=f"allowed: {allowed}")
            return
        if rt.operand is not None and sig.operand is not None:
            self.value(sig.operand, rt.operand, sig.name)
        if rt.comparator == "!=" and sig.multi_valued:
            self.emit("N601", f"'!=' on '{sig.name}' is true if any one value does not match",
                      rt.span, hint=f"to mean 'none matches' write not ({sig.name} == ...)")

    def older_spelling(self, name: str, span: Span) -> None:
        """W503: a rule or action spelt as an older guide spells it; name the current one."""
        new = b.obsolete_replacement(name)
        if new is not None:
            self.emit("W503", f"'{name}' is an older spelling of '{new}'", span,
                      hint=f"write '{new}'; the old name may go in a later release",
                      fix=Fix(f"change to {new}", span, new))

    def service(self, sig: b.RuleSig, rt: RuleTest) -> None:
        """F407 (W504 when allowed): the rule's provider is not in the configuration, so in
        the gateway the rule could only ever be false (reference 6.1)."""
        services = self.names.services if self.names is not None else None
        provider = provider_of(sig.name)
        if services is None or provider is None or provider in services:
            return
        assert self.names is not None
        setup = PROVIDER_SETUP.get(provider, "its section")
        if provider in self.names.allow_unavailable:
            self.emit("W504", f"'{sig.name}' needs the {provider} provider, which is not "
                      "configured (allow_unavailable lists it)", rt.name_span,
                      hint="the rule is always false in this gateway")
        else:
            self.emit("F407", f"'{sig.name}' needs the {provider} provider, which the "
                      "configuration does not define", rt.name_span,
                      hint=f"configure it ({setup}), or add \"{provider}\" to the top-level "
                      "allow_unavailable list to accept that the rule is always false")

    # --- actions -------------------------------------------------------------------------
    def action(self, call: ActionCall, flt: Filter) -> b.ActionSig | None:
        sig = b.lookup_action(call.name)
        if sig is None:
            self.emit("F204", f"unknown action '{call.name}'", call.name_span,
                      **_did_you_mean(call.name, [a.name for a in b.ACTIONS], call.name_span))
            return None
        self.older_spelling(call.name, call.name_span)
        if flt.content is not None and sig.cf is None:
            self.emit("F207", f"action '{sig.name}' is only allowed in message filters",
                      call.name_span)
        args = call.args
        if args or sig.params:
            self.args(sig.name, sig.params, args, call.name_span, call.span)
            for param, arg in zip(sig.params, args, strict=False):
                if param.expands_vars and isinstance(arg, String) and "$" in arg.value:
                    self.variables(arg)
        return sig

    def variables(self, arg: String) -> None:
        for m in _VAR.finditer(arg.value):
            if m.group(1).lower() not in b.VARIABLES:
                self.emit("F209", f"unknown action variable '${m.group(1)}'", arg.span,
                          hint=_suggest(m.group(1).lower(), list(b.VARIABLES)))

    # --- arguments and values ------------------------------------------------------------
    def args(self, name: str, params: tuple[b.Param, ...], args: tuple[Arg, ...],
             name_span: Span, span: Span) -> None:
        need = _required(params)
        if not need <= len(args) <= len(params):
            want = str(need) if need == len(params) else f"{need} to {len(params)}"
            self.emit("F202", f"'{name}' takes {want} argument(s), {len(args)} given", span)
        value = self.value
        for typ, arg in zip(b.param_types(params), args, strict=False):
            value(typ, arg, name)

    def value(self, typ: b.T, arg: Arg, owner: str) -> None:
        if typ in _ANY_STRING:  # the most common case, decided first
            if not isinstance(arg, String):
                self.emit("F203", f"'{owner}' expects a quoted string here", arg.span)
            return
        numeric = typ in _NUMERIC
        if typ is b.T.LIST:
            if not isinstance(arg, ListLit | String):
                self.emit("F203", f"'{owner}' expects a list here", arg.span)
            return
        if typ is b.T.SIZE:
            if not isinstance(arg, Size | Number) or not isinstance(arg.value, int):
                self.emit("F303", f"'{owner}' expects a size such as 10M", arg.span)
            return
        if numeric:
            if not isinstance(arg, Number) or (typ is not b.T.DECIMAL
                                                and not isinstance(arg.value, int)):
                self.emit("F203", f"'{owner}' expects a number here", arg.span)
            elif typ is b.T.FLAG01 and arg.value not in (0, 1):
                self.emit("F306", f"'{owner}' expects 0 or 1", arg.span)
            return
        if not isinstance(arg, String):
            self.emit("F203", f"'{owner}' expects a quoted string here", arg.span)
            return
        if typ is b.T.REGEX:
            self.regex(arg)
        elif typ is b.T.HEADER_NAME:
            if not _HEADER_NAME.fullmatch(arg.value):
                self.emit("F308", f"invalid header name '{arg.value}'", arg.span,
                          hint="a header name is printable ASCII without spaces or ':', "
                          "e.g. 'X-Scanned'")
        elif typ is b.T.EMAIL:
            if "$" not in arg.value and not _EMAILS.fullmatch(arg.value.strip()):
                self.emit("F307", f"invalid e-mail address '{arg.value}'", arg.span)
        elif typ is b.T.RETURN_PATH:
            # '' is the null sender (<>), what automatic notices are best sent with (RFC 3834)
            value = arg.value.strip()
            if value and "$" not in value and not _EMAIL.fullmatch(value):
                self.emit("F307", f"invalid return path '{arg.value}'", arg.span,
                          hint="one address, $EnvelopeFrom, or '' for the null sender")
        elif typ is b.T.IP_SPEC:
            self.ip_spec(arg)
        elif typ is b.T.DATE:
            self.date(arg)
        elif typ in _RESOURCE_FIELD and self.names is not None:
            attr, kind = _RESOURCE_FIELD[typ]
            known: frozenset[str] = getattr(self.names, attr)
            checked = self.names.checked
            if arg.value not in known and (checked is None or attr in checked):
                self.emit("F405", f"unknown {kind} '{arg.value}'", arg.span,
                          **_did_you_mean(arg.value, sorted(known), arg.span, quoted=True))

    def regex(self, arg: String) -> None:
        alternatives = arg.value.count("|") - arg.value.count("\\|")
        if len(arg.value) > MAX_REGEX_LENGTH:
            self.emit("F309", f"regular expression of {len(arg.value)} characters is over the "
                      f"cap of {MAX_REGEX_LENGTH}", arg.span,
                      hint="match a dictionary (e.g. subject-dictionary-match) instead")
            return
        if alternatives + 1 > MAX_ALTERNATIVES:
            self.emit("F309", f"regular expression with {alternatives + 1} alternatives is over "
                      f"the cap of {MAX_ALTERNATIVES}", arg.span,
                      hint="match a dictionary (e.g. subject-dictionary-match) instead")
            return
        for problem in rx.problems(arg.value, engine=self.regex_engine):
            self.emit(problem.code, problem.message, arg.span, hint=problem.hint)
        if "\\" in arg.raw and _SINGLE_BACKSLASH.search(arg.raw) and "\\\\" not in arg.raw:
            self.emit("W502", "single backslash in a regular expression", arg.span,
                      hint="the filter parser removes one backslash: write \\\\ for a literal")

    def ip_spec(self, arg: String) -> None:
        for part in re.split(r"[,\s]+", arg.value.strip()):
            if part and not _valid_ip_part(part):
                named = not part[0].isdigit() and ":" not in part
                self.emit("F305", f"invalid IP address specification '{part}'", arg.span,
                          hint="remote-ip takes numeric forms only (reference 6.3): an address, "
                               "a partial IPv4 address ending in a dot, a last-octet range or "
                               "CIDR; not host names" if named else None)

    def date(self, arg: String) -> None:
        import datetime as dt

        for fmt in _DATE_FORMATS:
            try:
                dt.datetime.strptime(arg.value, fmt)
                return
            except ValueError:
                continue
        self.emit("F304", f"invalid date '{arg.value}'", arg.span,
                  hint="write MM/DD/YYYY or 'MM/DD/YYYY HH:MM:SS'")


def _valid_ip_part(part: str) -> bool:
    """One numeric address spec of reference 6.3: a full IPv4 or IPv6 address, a partial IPv4
    address ending in a dot, a range in the last octet (`10.1.1.50-55`) or CIDR. Host names,
    partial host names, SBRS, dnslist and ALL are not allowed there."""
    if re.fullmatch(r"(\d{1,3}\.){1,3}", part):  # partial IPv4 address ending in a dot
        return all(int(o) <= 255 for o in part.split(".")[:-1])
    if "-" in part and "/" not in part:
        lo, _, hi = part.rpartition("-")
        try:
            first = ipaddress.IPv4Address(lo)
        except ValueError:
            return False
        return hi.isdigit() and int(str(first).rsplit(".", 1)[1]) <= int(hi) <= 255
    try:
        ipaddress.ip_network(part, strict=False)
        return True
    except ValueError:
        return False


def _flat(cond: Condition, op: str) -> bool:
    """True when `cond` is a chain of single (possibly negated) rules joined by `op`."""
    if isinstance(cond, BoolOp):
        return cond.op == op and _flat(cond.left, op) and _flat(cond.right, op)
    if isinstance(cond, Group):
        return _flat(cond.inner, op) if isinstance(cond.inner, BoolOp) else _flat(cond.inner, "")
    if isinstance(cond, Not):
        return isinstance(cond.operand, RuleTest | Group) and _flat(cond.operand, "")
    return True


def stmt_name(stmt: Statement) -> str:
    return stmt.name if isinstance(stmt, ActionCall) else "if"


def walk_rules(cond: Condition) -> Iterator[RuleTest]:
    """Every rule test inside a condition, left to right."""
    if isinstance(cond, RuleTest):
        yield cond
    elif isinstance(cond, Not):
        yield from walk_rules(cond.operand)
    elif isinstance(cond, Group):
        yield from walk_rules(cond.inner)
    else:
        yield from walk_rules(cond.left)
        yield from walk_rules(cond.right)


def duplicate_names(named: Iterable[tuple[str, Span]]) -> list[Diagnostic]:
    """F208 for every filter name (with its span, in file order) used before in the file.

    A function of its own because it is the one check that spans filters: an incremental
    re-check (``filterlang.incremental``) checks filters one by one and then runs this.
    """
    out = []
    seen: dict[str, tuple[str, Span]] = {}
    for name, span in named:
        key = name.lower()
        if key not in seen:
            seen[key] = (name, span)
            continue
        first, where = seen[key]
        out.append(_diag("F208", f"duplicate filter name '{name}'", span,
                         notes=(Related(f"'{first}' is first defined here", where),)))
    return out


def check(script: Script, *, names: ResourceNames | None = None,
          regex_engine: str = "re2") -> list[Diagnostic]:
    """Every semantic problem in `script`, sorted by position."""
    checker = _Checker(names, regex_engine)
    for comment in script.comments:
        m = rx.PRAGMA.match("#" + comment.text)
        if m and m.group(1).lower() == "backtracking":
            checker.regex_engine = "backtracking"
            checker.emit("W505", "backtracking regular-expression engine enabled for this file",
                         comment.span, hint="only for trusted files: a pattern can run for ever")
    checker.script(script)
    return sorted(checker.out, key=Diagnostic.sort_key)


def _count_rules(node: If) -> int:
    """Rule tests in an if and every if inside it (iterative: nesting is checked elsewhere)."""
    count, todo = 0, [node]
    while todo:
        current = todo.pop()
        conds: list[Condition] = [current.condition]
        while conds:
            cond = conds.pop()
            if isinstance(cond, RuleTest):
                count += 1
            elif isinstance(cond, Not):
                conds.append(cond.operand)
            elif isinstance(cond, Group):
                conds.append(cond.inner)
            else:
                conds += [cond.left, cond.right]
        for stmt in (*current.then, *(current.else_ or ())):
            if isinstance(stmt, If):
                todo.append(stmt)
    return count
