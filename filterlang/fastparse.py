"""A lean driver for Lark's own LALR table: the fast path for files without syntax errors.

Lark's generic lexer and parser loop cost about three quarters of the parse time (token
objects built through a compatibility shim, a line counter per token, a method call per
shift). This module reuses everything Lark computed from ``grammar.lark`` — the terminals in
Lark's own matching order, the keyword table, the LALR states and the rule callbacks (which
call ``Builder``) — and only replaces the two inner loops. It also counts brackets and
arguments, and stops at the limits (``TooDeepError``) before the stack can grow.

On the first problem it raises the exception Lark would raise (``UnexpectedCharacters`` or
``UnexpectedToken`` with the same expected set, read from the same table), so the one
translator in ``syntax_errors`` explains both. A test checks that both drivers build the same
tree for every input; tests/dependencies/test_lark_internals.py says which of Lark's internals
moved when a new release breaks this (Lark is pinned below 1.4 for it). Worth it: bench/compile.py
at 10,000 filters spends 2.8x the CPU with Lark's own lexer and parser loop (1.47 -> 4.07 s).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lexer import PatternStr
from lark.parse_tree_builder import ChildFilterLALR_NoPlaceholders, ExpandSingleChild

from filterlang.build import MAX_ARGS, MAX_DEPTH, Tok, TooDeepError, lark_token

# Shift entries carry the next state; reduce entries carry (size, goto symbol, callback),
# the callback None for a rule whose value is its only child.
_Reduce = tuple[int, str, Callable[[list[Any]], Any] | None]


# What an inlined rule (`_args`, `__block_plus_1`) reduces to: the list of its children, which
# the parent rule splices into its own (where Lark makes a Tree to read ``children`` from).
# ``list`` copies them in one C call, cheaper than any Python function.
_holder = list


_WHITESPACE = " \t\f\r\n"


def _expected(row: dict[str, Any]) -> set[str]:
    return {symbol for symbol in row if symbol.isupper()}


def _master_pattern(lark: Lark) -> tuple[re.Pattern[str], dict[str, str]]:
    """One regex of all terminals in Lark's order, and keywords carved out of NAME.

    This mirrors ``lark.lexer.BasicLexer`` and ``_create_unless``: terminals sorted by
    priority, width and length; a string terminal that NAME matches in full (a keyword) is
    not a pattern of its own but a retyping of NAME.
    """
    terminals = sorted(
        lark.terminals,
        key=lambda t: (-t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name),
    )
    name = next(t for t in terminals if t.name == "NAME")
    name_re = re.compile(name.pattern.to_regexp())
    keywords: dict[str, str] = {}
    parts = []
    ws = next(t for t in terminals if t.name == "WS")
    for t in terminals:
        if t is ws:
            continue
        if (
            isinstance(t.pattern, PatternStr)
            and t.priority == name.priority
            and name_re.fullmatch(t.pattern.value)
        ):
            keywords[t.pattern.value.lower()] = t.name
            continue
        parts.append(f"(?P<{t.name}>{t.pattern.to_regexp()})")
    # Whitespace is matched atomically: no token starts with it, so giving some back can never
    # help, and backtracking through a long run of it would cost time per character.
    return re.compile(f"(?>(?:{ws.pattern.to_regexp()})?)(?:{'|'.join(parts)})"), keywords


def _unwrap(callback: Any) -> tuple[list[tuple[int, bool]] | None, bool, Any]:
    """Lark's callback as (child filter, expand-single-child, node builder)."""
    include = None
    if isinstance(callback, ChildFilterLALR_NoPlaceholders):
        include, callback = list(callback.to_include), callback.node_builder
    expand1 = isinstance(callback, ExpandSingleChild)
    if expand1:
        callback = callback.node_builder
    return include, expand1, callback


def _direct_callbacks(callbacks: dict[Any, Any], builder: object) -> dict[Any, Any]:
    """A cheaper callback per rule, with the result Lark's callback would give the builder.

    Lark wraps each builder method in a child filter (drop ``_TOKENS``, splice inlined
    ``_rules``) and an expand-single-child wrapper for ``?rules``. Most reductions in a real
    file are single-child ones (``_name: NAME``, ``?not_test: rule_test``, ...) whose value is
    just their child: those get None, and the driver leaves the value stack alone. Inlined
    rules whose every form has one child ("unit" rules) are then not spliced by their parent.
    The rest get a filter specialised to their shape; a wrapper not recognised here is an
    error (the grammar changed in a way this module must learn).
    """
    shapes: dict[Any, tuple[list[tuple[int, bool]], bool, Any]] = {}
    unknown = set()
    for rule, callback in callbacks.items():
        include, expand1, node = _unwrap(callback)
        if not (isinstance(node, functools.partial) or getattr(node, "__self__", None) is builder):
            unknown.add(rule)
        if include is None:
            include = [(i, False) for i in range(len(rule.expansion))]
        shapes[rule] = (include, expand1, node)

    def inlined(origin: str) -> bool:
        # A rule that its parents splice and that has no builder method: a bare holder.
        return origin.startswith("_") and not hasattr(builder, origin)

    by_origin: dict[str, list[Any]] = {}
    for rule in callbacks:
        by_origin.setdefault(str(rule.origin.name), []).append(rule)
    unit: set[str] = set()
    changed = True
    while changed:
        changed = False
        for origin, rules in by_origin.items():
            if origin in unit or not inlined(origin) or origin.startswith("__"):
                continue
            if all(
                rule not in unknown
                and len(shapes[rule][0]) == 1
                and (not shapes[rule][0][0][1] or str(rule.expansion[shapes[rule][0][0][0]].name) in unit)
                for rule in rules
            ):
                unit.add(origin)
                changed = True

    if unknown:
        raise ValueError(f"no fast callback for the rules {sorted(map(str, unknown))}")
    out: dict[Any, Any] = {}
    for rule in callbacks:
        include, expand1, node = shapes[rule]
        include = [(i, e and str(rule.expansion[i].name) not in unit) for i, e in include]
        origin = str(rule.origin.name)
        size = len(rule.expansion)
        if (origin in unit or expand1) and include == [(0, False)] and size == 1:
            out[rule] = None
            continue
        if isinstance(node, functools.partial) and inlined(origin):
            node = _holder
        out[rule] = _reducer(include, expand1, node, size, rule.expansion[:1] == [rule.origin])
    return out


def _reducer(
    include: list[tuple[int, bool]],
    expand1: bool,
    node: Callable[[list[Any]], Any],
    size: int,
    left_recursive: bool,
) -> Callable[[list[Any]], Any]:
    """One rule's child filter, specialised to the few shapes the grammar has."""
    keep = [i for i, expand in include if not expand]
    if len(keep) == len(include):
        if keep == list(range(size)) and not (expand1 and size == 1):
            return node
        if expand1 and len(keep) == 1:
            return operator.itemgetter(keep[0])
        if node is _holder and len(keep) == 1:  # `__x_star: _SEP item`
            only = keep[0]
            return lambda c: [c[only]]
        return lambda c: node([c[i] for i in keep])
    if node is _holder and left_recursive and len(include) == 2 and include[0] == (0, True):
        # `__x_star: __x_star _SEP item`: extend the holder in place (LALR never shares it).
        last = keep[0]

        def extend(c: list[Any]) -> Any:
            held = c[0]
            held.append(c[last])
            return held

        return extend

    expanded = [i for i, expand in include if expand]
    if len(expanded) == 1 and [i for i, _ in include] == list(range(size)) and not expand1:
        # Nothing dropped, one inlined list spliced in (`block`, `action`, `and_test`): slices.
        at = expanded[0]

        def splice(c: list[Any]) -> Any:
            return node(c[:at] + c[at] + c[at + 1 :])

        return splice

    def generic(c: list[Any]) -> Any:
        filtered: list[Any] = []
        for i, expand in include:
            if expand:
                if filtered:
                    filtered += c[i]
                else:
                    filtered = c[i]
            else:
                filtered.append(c[i])
        if expand1 and len(filtered) == 1:
            return filtered[0]
        return node(filtered)

    return generic


# The tokens the driver counts, and the mark of a token with a lexer callback.
_LPAR, _RPAR, _LBRACE, _RBRACE, _COMMA, _HOOK = 1, 2, 3, 4, 5, 6
_BRACKETS = {"LPAR": _LPAR, "RPAR": _RPAR, "LBRACE": _LBRACE, "RBRACE": _RBRACE, "_COMMA": _COMMA}


class _Accept:
    """The action of the end state on ``$END``: the parse is complete."""


# A row maps each symbol to its action, by the action's class: a dict is a shift (or the goto of
# a nonterminal) to that row, a str a single-child reduction to that nonterminal (the value
# stays), a tuple any other reduction (see _Reduce), _ACCEPT the end. Rows stand for states on
# the stack, so neither a shift nor a goto needs a second lookup to find its row.
_Row = dict[str, Any]
_ACCEPT = _Accept()


class FastParser:
    """Tokenize with one regex and run the LALR table directly."""

    def __init__(
        self,
        lark: Lark,
        lexer_callbacks: dict[str, Callable[[Tok], Tok]],
        builder: object,
    ) -> None:
        self.master, self.keywords = _master_pattern(lark)
        if self.master.groups != len(self.master.groupindex):
            raise ValueError("terminal patterns in grammar.lark must not use capturing groups")
        self.kinds = [""] * (self.master.groups + 1)
        for name, index in self.master.groupindex.items():
            self.kinds[index] = name
        # What to do on each token besides parsing it, by group index (a list lookup per token):
        # count brackets and arguments, or call the lexer callback (for comments).
        self.lexer_callbacks = lexer_callbacks
        self.hooks = {
            index: lexer_callbacks[kind]
            for index, kind in enumerate(self.kinds)
            if kind in lexer_callbacks
        }
        self.specials = [
            _HOOK if index in self.hooks else _BRACKETS.get(kind, 0)
            for index, kind in enumerate(self.kinds)
        ]
        self.comment = self.master.groupindex["COMMENT"]
        inner = lark.parser.parser.parser  # ParsingFrontend -> LALR_Parser -> _Parser
        table = inner.parse_table
        callbacks = _direct_callbacks(inner.callbacks, builder)
        reduces: dict[Any, _Reduce] = {}
        rows: dict[int, _Row] = {state: {} for state in table.states}
        for state, actions in table.states.items():
            row = rows[state]
            # Plain str keys: Lark's symbols are Token objects, whose __eq__ is slow.
            for symbol, (action, arg) in actions.items():
                if action.name == "Shift":
                    row[str(symbol)] = rows[arg]
                    continue
                if arg not in reduces:
                    reduces[arg] = (len(arg.expansion), str(arg.origin.name), callbacks[arg])
                _, origin, callback = reduces[arg]
                row[str(symbol)] = origin if callback is None else reduces[arg]
        self.start = rows[table.start_states["start"]]
        end = rows[table.end_states["start"]]
        if end:
            raise ValueError("the LALR end state is expected to have no actions")
        end["$END"] = _ACCEPT

    def parse(self, text: str) -> Any:
        """The value of the start rule (the builder's filter list).

        Lexer and parser share one loop. Whitespace is matched as the prefix of the next
        token, so there is one regex call per token and the line counter only looks at that
        prefix. The table walk is Lark's ``ParserState.feed_token`` without the generality.
        """
        match = self.master.match
        keywords = self.keywords
        kinds = self.kinds
        hooks = self.hooks
        specials = self.specials
        comment = self.comment
        # Open brackets, and arguments since the last '(': stopped at the limits as they are
        # read, before the stack can grow (or a call with millions of arguments be parsed in
        # full before the checker says the action takes two).
        parens = braces = commas = 0
        row = self.start
        stack: list[_Row] = [row]
        values: list[Any] = []
        push_row = stack.append
        push_value = values.append
        pos, line, line_start, length = 0, 1, 0, len(text)
        tok: Tok | Token | None = None  # the $END token is Lark's
        while True:
            m = match(text, pos) if pos < length else None
            if m is None:
                if text[pos:].strip(_WHITESPACE):
                    raise self._bad_character(text, pos, line, line_start)
                kind = "$END"
                if tok is not None:
                    tok = Token.new_borrow_pos("$END", "", lark_token(tok))
                else:
                    tok = Token("$END", "", 0, 1, 1)
            else:
                # The terminal groups are the only groups, so the index names the terminal.
                index = m.lastindex or 0
                kind = kinds[index]
                value = m[index]
                end = m.end()
                start = end - len(value)
                if start > pos:
                    newlines = text.count("\n", pos, start)
                    if newlines:
                        line += newlines
                        line_start = text.rindex("\n", pos, start) + 1
                pos = end
                if kind == "NAME":
                    kind = keywords.get(value.lower(), "NAME")
                col = start - line_start + 1
                # Tokens never span lines (strings and comments stop at a line break).
                tok = (kind, value, start, line, col, line, col + end - start, end)
                special = specials[index]
                if special:
                    if special == _LPAR:
                        commas = 0
                        parens += 1
                        if parens > MAX_DEPTH:
                            raise TooDeepError(tok)
                    elif special == _RPAR:
                        parens -= 1
                    elif special == _LBRACE:
                        braces += 1
                        if braces > MAX_DEPTH:
                            raise TooDeepError(tok)
                    elif special == _RBRACE:
                        braces -= 1
                    elif special == _COMMA:
                        commas += 1
                        if commas > MAX_ARGS:
                            raise TooDeepError(tok)
                    else:
                        tok = hooks[index](tok)
                        if index == comment:  # kept aside by the callback, never parsed
                            continue
            while True:
                try:
                    action = row[kind]
                except KeyError:
                    raise UnexpectedToken(lark_token(tok), _expected(row)) from None
                cls = type(action)
                if cls is dict:
                    push_row(action)
                    push_value(tok)
                    row = action
                    break
                if cls is str:
                    # A single-child rule whose value is its child: only the state changes.
                    row = stack[-2][action]
                    stack[-1] = row
                    continue
                if cls is tuple:
                    size, origin, reduce = action
                    if size:
                        children = values[-size:]
                        del stack[-size:]
                        del values[-size:]
                    else:
                        children = []
                    push_value(reduce(children))
                    row = stack[-1][origin]
                    push_row(row)
                    continue
                return values[-1]  # _ACCEPT

    @staticmethod
    def _bad_character(text: str, pos: int, line: int, line_start: int) -> UnexpectedCharacters:
        # The regex failed somewhere after optional whitespace: find the offending character.
        while text[pos] in _WHITESPACE:
            if text[pos] == "\n":
                line, line_start = line + 1, pos + 1
            pos += 1
        return UnexpectedCharacters(text, pos, line, pos - line_start + 1)

    def lex(self, text: str, start: int, stop: int) -> list[Token]:
        """The significant tokens that start in ``text[start:stop]`` (for error messages).

        ``start`` must be a line start (strings and comments never span lines, so lexing can
        begin at any line); lexing ends quietly at the first character it cannot match.
        """
        match = self.master.match
        line = text.count("\n", 0, start) + 1
        line_start = start
        out: list[Token] = []
        pos = start
        while pos < stop:
            m = match(text, pos)
            if m is None:
                break
            kind = m.lastgroup or ""
            begin, end = m.span(kind)
            if begin >= stop:
                break
            newlines = text.count("\n", pos, begin)
            if newlines:
                line += newlines
                line_start = text.rindex("\n", pos, begin) + 1
            pos = end
            if kind == "COMMENT":
                continue
            value = m.group(kind)
            if kind == "NAME":
                kind = self.keywords.get(value.lower(), "NAME")
            col = begin - line_start + 1
            out.append(Token(kind, value, begin, line, col, line, col + end - begin, end))
        return out
