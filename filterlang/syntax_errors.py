"""Translate every Lark exception into one F1xx diagnostic, in the user's words.

This is the only place that looks at Lark's exceptions. A small table of friendly labels, in
the spirit of Lark's ``match_examples``, recognises the typical mistakes of filter authors by
the offending token and the token before it: ``=`` for ``==``, an unquoted regex, a missing
``;`` or ``}``, ``else if``, an empty block, an unterminated string. Anything else gets a plain
"unexpected X; expected Y".
"""

from __future__ import annotations

from attrs import frozen
from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from filterlang.ast import Span
from filterlang.build import MAX_ARGS, MAX_DEPTH, TooDeepError
from filterlang.diagnostics import Diagnostic, Fix, Severity
from filterlang.fastparse import FastParser
from filterlang.fmt import quote

# How each terminal is called in a message; order is the order of listing.
_WORDS = {
    "NAME": "a name",
    "IF": "'if'",
    "CONTENT_FILTER": "'content-filter'",
    "ACTIVE": "':'",
    "INACTIVE": "'!'",
    "DESCRIPTION": "'description'",
    "DIRECTION": "'direction'",
    "INCOMING": "'incoming'",
    "OUTGOING": "'outgoing'",
    "APPLY": "'apply'",
    "ALL": "'all'",
    "ANY": "'any'",
    "NOT": "'not'",
    "LPAR": "'('",
    "STRING": "a quoted string",
    "NUMBER": "a number",
    "SIZE": "a size",
    "LSQB": "'['",
    "COMPARATOR": "a comparator (==, !=, <, <=, >, >=)",
    "_AND": "'and'",
    "_OR": "'or'",
    "COMMA": "','",
    "_COMMA": "','",
    "RSQB": "']'",
    "RPAR": "')'",
    "SEMI": "';'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "ELSE": "'else'",
    "$END": "the end of the file",
    "_CLI_END": "a '.' line",
}
_SOFT_KEYWORDS = {"DESCRIPTION", "DIRECTION", "APPLY", "INCOMING", "OUTGOING", "ALL", "ANY"}
_NAMES = {"NAME", *_SOFT_KEYWORDS}
_BARE_STOP = set(" \t\r\n(),{};[]<>=!'\"#")

NESTED_ELSE_HINT = (
    "there is no 'else if'; nest the 'if' inside the else block: } else { if (...) { ... } }"
)


def _nested_hint(w: _Where, tok: Token) -> str:
    """The nested form, spelled with the author's own condition when it fits on the line."""
    text = w.chunk.text
    after = tok.end_pos or 0
    eol = text.find("\n", after)
    line = text[after : len(text) if eol < 0 else eol]
    condition = line.split("{", 1)[0].strip()
    if "{" not in line or not condition or len(condition) > 60:
        return NESTED_ELSE_HINT
    return (
        f"there is no 'else if'; nest the 'if' inside the else block: "
        f"}} else {{ if {condition} {{ ... }} }}"
    )


@frozen
class Chunk:
    """The piece of a file handed to one parse: text, where it starts, and whether it is last."""

    path: str
    text: str
    line_offset: int
    last: bool


def expected_words(expected: set[str]) -> str:
    """List the expected terminals in the user's words: "'{', 'and' or 'or'"."""
    # The '.' line is accepted where a filter may start, but it is never what the author missed.
    names = set(expected) - {"_CLI_END"}
    if "NAME" in names:
        names -= _SOFT_KEYWORDS
    words = [w for k, w in _WORDS.items() if k in names and k != "COMMA"]
    words += sorted(repr(n) for n in names if n not in _WORDS)
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _found(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "STRING":
        return f"string {tok.value}"
    return f"'{tok.value}'"


@frozen
class _Where:
    """What surrounds an error: the tokens before it and the chunk it sits in."""

    chunk: Chunk
    pos: int
    before: tuple[Token, ...]

    @property
    def prev(self) -> Token | None:
        return self.before[-1] if self.before else None

    def prev_is(self, *types: str) -> bool:
        return self.prev is not None and self.prev.type in types

    def span_at(self, line: int, col: int, width: int = 1) -> Span:
        line += self.chunk.line_offset
        return Span(self.chunk.path, line, col, line, col + max(width, 1))

    def token_span(self, tok: Token) -> Span:
        off = self.chunk.line_offset
        return Span(
            self.chunk.path,
            tok.line + off,  # type: ignore[operator]
            tok.column,  # type: ignore[arg-type]
            tok.end_line + off,  # type: ignore[operator]
            tok.end_column,  # type: ignore[arg-type]
        )

    def bare_word(self, stop: str = "") -> tuple[int, int]:
        """The run of non-separator characters around the error position."""
        text = self.chunk.text
        stops = _BARE_STOP | set(stop)
        start = self.pos
        while start > 0 and text[start - 1] not in stops:
            start -= 1
        end = self.pos
        while end < len(text) and text[end] not in stops:
            end += 1
        return start, max(end, self.pos + 1)

    def token_before(self, pos: int) -> Token | None:
        found = None
        for tok in self.before:
            if (tok.start_pos or 0) >= pos:
                break
            found = tok
        return found

    def line_col(self, pos: int) -> tuple[int, int]:
        text = self.chunk.text
        return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


# Error context is lexed from at most this far back, so that one error at the end of a huge
# single chunk costs milliseconds, not a second lexing of the whole file.
_CONTEXT = 20_000


def _lex_before(lexer: FastParser, text: str, pos: int) -> tuple[Token, ...]:
    """The tokens of ``text`` that start before ``pos``, from a line start near it."""
    start = 0
    if pos > _CONTEXT:
        start = text.find("\n", pos - _CONTEXT, pos) + 1
    return tuple(lexer.lex(text, start, pos))


def _unclosed_brace(before: tuple[Token, ...]) -> Token | None:
    stack: list[Token] = []
    for tok in before:
        if tok.type == "LBRACE":
            stack.append(tok)
        elif tok.type == "RBRACE" and stack:
            stack.pop()
    return stack[-1] if stack else None


def _diag(
    code: str, message: str, span: Span, hint: str | None = None, fix: Fix | None = None
) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, span, hint, fix=fix)


_LEFT_STOP = set(" \t\r\n=<>!(,'\"")
_RIGHT_STOP = {"COMPARATOR": set(" \t\r\n{;'\"#"), "ARG": set(" \t\r\n{;,'\"#")}


def _token_end(text: str, pos: int, stops: set[str]) -> int:
    """Where an unquoted value starting at ``pos`` ends.

    A ``)`` ends it unless the value opened that parenthesis itself (``^(a|b)$`` is one regex,
    but in ``if (subject == ^x) {`` the ``)`` closes the condition); an escaped one never does.
    """
    depth, end = 0, pos
    while end < len(text):
        c = text[end]
        if c == "\\":
            end += 2
            continue
        if c in stops:
            break
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                break
            depth -= 1
        end += 1
    return min(end, len(text))


def _unquoted(w: _Where) -> Diagnostic | None:
    """F111: a value written without quotes where a rule or action wants one."""
    text = w.chunk.text
    start = w.pos
    while start > 0 and text[start - 1] not in _LEFT_STOP:
        start -= 1
    before = w.token_before(start)
    if before is None or before.type not in ("COMPARATOR", "LPAR", "_COMMA"):
        return None
    if before.type == "LPAR" and w.token_before(before.start_pos or 0) is None:
        return None
    stops = _RIGHT_STOP["COMPARATOR" if before.type == "COMPARATOR" else "ARG"]
    end = max(_token_end(text, start, stops), w.pos + 1)
    word = text[start:end]
    line, col = w.line_col(start)
    span = w.span_at(line, col, end - start)
    return _diag(
        "F111",
        f"unquoted value: {word}",
        span,
        f"values are quoted strings: write {quote(word)}",
        Fix(f"quote as {quote(word)}", span, quote(word)),
    )


# Word processors and chat tools turn quotes into these; the filter parser knows only ' and ".
_TYPOGRAPHIC = "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb"


def _typographic(w: _Where, line: int, col: int) -> Diagnostic:
    """F115: a string written with typographic quotes (‘Policy’, “x”)."""
    text = w.chunk.text
    eol = text.find("\n", w.pos)
    eol = len(text) if eol < 0 else eol
    close = next((i for i in range(w.pos + 1, eol) if text[i] in _TYPOGRAPHIC), -1)
    if close < 0:
        return _diag(
            "F115",
            f"typographic quote '{text[w.pos]}' is not a string quote",
            w.span_at(line, col),
            "write strings between straight quotes: ' or \"",
            Fix("replace with a straight quote", w.span_at(line, col), "'"),
        )
    value = text[w.pos + 1 : close]
    span = w.span_at(line, col, close + 1 - w.pos)
    return _diag(
        "F115",
        f"typographic quotes around {value!r}",
        span,
        f"write strings between straight quotes: {quote(value)}",
        Fix(f"use straight quotes: {quote(value)}", span, quote(value)),
    )


def _in_content_filter(w: _Where) -> bool:
    for i in range(len(w.before) - 1, -1, -1):
        if w.before[i].type in ("ACTIVE", "INACTIVE"):
            return i >= 2 and w.before[i - 2].type == "CONTENT_FILTER"
    return False


def _at_filter_start(w: _Where, index: int) -> bool:
    """Whether ``w.before[index]`` is the first token of a filter."""
    return index == 0 or w.before[index - 1].type == "RBRACE"


def _bad_filter_name(w: _Where) -> Diagnostic | None:
    """F109: something that is not a name where a filter starts (``1st-filter:``, ``a.b:``)."""
    start, end = w.bare_word(":")
    before = w.token_before(start)
    if before is not None and before.type != "RBRACE":
        return None
    rest = w.chunk.text[end : end + 40].lstrip(" \t")
    word = w.chunk.text[start:end]
    if not rest.startswith((":", "!")) or not word:
        return None
    line, col = w.line_col(start)
    return _diag(
        "F109",
        f"invalid filter name '{word}'",
        w.span_at(line, col, end - start),
        "a filter name starts with a letter or '_' and continues with letters, digits, '_' or '-'",
    )


def _from_characters(w: _Where, exc: UnexpectedCharacters) -> Diagnostic:
    char = exc.char
    line, col = exc.line, exc.column
    text = w.chunk.text
    if char in "'\"":
        eol = text.find("\n", w.pos)
        width = (len(text) if eol < 0 else eol) - w.pos
        return _diag(
            "F102",
            "unterminated string",
            w.span_at(line, col, len(text[w.pos : w.pos + width].rstrip("\r"))),
            f"close the string with {char} on the same line; a string cannot span lines",
        )
    if char in _TYPOGRAPHIC:
        return _typographic(w, line, col)
    if char == "=" and text[w.pos + 1 : w.pos + 2] != "=":
        return _diag(
            "F110",
            "'=' is not a comparator",
            w.span_at(line, col),
            "use '==' to compare",
        )
    found = _unquoted(w) or _bad_filter_name(w)
    if found is not None:
        return found
    shown = char if char.isprintable() else f"U+{ord(char):04X}"
    return _diag("F101", f"unexpected character '{shown}'", w.span_at(line, col))


def _from_token(w: _Where, exc: UnexpectedToken) -> Diagnostic:
    tok: Token = exc.token
    expected: set[str] = set(exc.expected)
    prev = w.prev
    if tok.type == "$END":
        return _at_end(w, expected)
    span = w.token_span(tok)
    if tok.type == "_CLI_END":
        return _diag(
            "F101",
            "a '.' line inside a filter",
            span,
            "the '.' line ends input at the appliance's CLI; it may stand only between filters "
            "and after the last one",
        )
    if tok.type == "IF" and w.prev_is("ELSE"):
        return _diag("F106", "'else if' is not part of the language", span, _nested_hint(w, tok))
    if tok.type == "RBRACE" and prev is not None and prev.type == "LBRACE":
        block = w.token_span(prev)
        return _diag(
            "F105",
            "empty block",
            Span(block.file, block.line, block.col, span.end_line, span.end_col),
            "a block needs at least one action; write no-op(); to do nothing on purpose",
        )
    if "SEMI" in expected and w.prev_is("RPAR"):
        assert prev is not None
        return _diag(
            "F112",
            "missing ';' after an action",
            w.token_span(prev),
            "end every action call with ';'",
        )
    if tok.type in _NAMES | {"NUMBER", "SIZE"} and w.prev_is("COMPARATOR", "LPAR", "_COMMA"):
        found = _unquoted(w)
        if found is not None:
            return found
    if tok.type in ("SEMI", "RBRACE") and w.prev_is(*_NAMES) and "LPAR" in expected:
        assert prev is not None
        if not _at_filter_start(w, len(w.before) - 1):
            return _diag(
                "F101",
                f"unexpected {_found(tok)}; expected '(' after '{prev.value}'",
                span,
                f"actions always take parentheses, even when empty: {prev.value}();",
            )
    # LALR merges states, so the expected set can hold tokens that only fit elsewhere.
    if not _in_content_filter(w):
        expected -= {"DESCRIPTION", "DIRECTION", "APPLY"}
    if w.prev_is(*_NAMES) and not _at_filter_start(w, len(w.before) - 1):
        expected -= {"ACTIVE", "INACTIVE"}
    if expected & {"ACTIVE", "INACTIVE"} and w.prev_is(*_NAMES):
        assert prev is not None
        return _diag(
            "F101",
            f"expected ':' or '!' after the filter name '{prev.value}', found {_found(tok)}",
            span,
            "write 'name:' for an active filter or 'name!' for an inactive one",
        )
    if "CONTENT_FILTER" in expected and tok.type not in _NAMES:
        found = _bad_filter_name(w)
        if found is not None:
            return found
    return _diag("F101", f"unexpected {_found(tok)}; expected {expected_words(expected)}", span)


def _at_end(w: _Where, expected: set[str]) -> Diagnostic:
    last = w.prev
    if last is None:
        line, col = w.line_col(len(w.chunk.text))
        span = w.span_at(line, col)
    else:
        end = w.token_span(last)
        span = Span(end.file, end.end_line, end.end_col, end.end_line, end.end_col + 1)
    where = "the end of the file" if w.chunk.last else "the start of the next filter"
    opened = _unclosed_brace(w.before)
    if "RBRACE" in expected and opened is not None:
        at = w.token_span(opened)
        return _diag(
            "F113",
            f"missing '}}' before {where}",
            span,
            f"the block opened at line {at.line}, column {at.col} is never closed",
        )
    if w.chunk.last:
        return _diag("F104", f"unexpected end of file; expected {expected_words(expected)}", span)
    return _diag(
        "F101",
        f"the filter is cut short before the next filter; expected {expected_words(expected)}",
        span,
    )


def _too_deep(w: _Where, exc: TooDeepError) -> Diagnostic:
    if exc.token.type == "_COMMA":
        return _diag(
            "F114",
            f"more than {MAX_ARGS} arguments in one call",
            w.token_span(exc.token),
            "no rule or action takes that many; split the call",
        )
    if exc.token.type == "LPAR":
        kind, hint = "parentheses", "simplify the condition or split it over nested 'if's"
    elif exc.token.type == "NOT":
        kind, hint = "'not's", "two 'not's cancel out; remove them in pairs"
    else:
        kind, hint = "blocks", "move the innermost branches into filters of their own"
    return _diag(
        "F108", f"{kind} nested deeper than {MAX_DEPTH} levels", w.token_span(exc.token), hint
    )


def translate(lexer: FastParser, chunk: Chunk, exc: Exception) -> Diagnostic:
    """The one place where a Lark (or nesting) exception becomes a diagnostic."""
    if isinstance(exc, TooDeepError):
        pos = exc.token.start_pos or 0
    elif isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
    elif isinstance(exc, UnexpectedToken):
        end = exc.token.type == "$END"
        pos = len(chunk.text) if end else (exc.token.start_pos or 0)
    else:
        pos = 0
    where = _Where(chunk, pos, _lex_before(lexer, chunk.text, pos))
    if isinstance(exc, TooDeepError):
        return _too_deep(where, exc)
    if isinstance(exc, UnexpectedCharacters):
        return _from_characters(where, exc)
    if isinstance(exc, UnexpectedToken):
        return _from_token(where, exc)
    line, col = where.line_col(pos)
    return _diag("F101", f"syntax error: {exc}", where.span_at(line, col))
