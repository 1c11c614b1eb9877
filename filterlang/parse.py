"""Source text → ``Script``: the grammar, error recovery, and the few syntax-level limits.

``parse`` first runs the whole file through the LALR parser in one go (so a file that is fine
is parsed exactly once). If that fails, it splits the file at every line that starts a filter
(``name:``, ``name!``, ``content-filter name:``) and parses each piece on its own, so every
broken filter gets its own diagnostic and every good filter still reaches the checker.

Lark compiles ``grammar.lark`` into the LALR table; ``fastparse`` walks that table, calling the
``build.Builder`` for every reduction; ``syntax_errors`` explains failures.
"""

from __future__ import annotations

import gc
import re
import threading
from bisect import bisect_left
from collections.abc import Iterator

from attrs import evolve
from lark import Lark, Token
from lark.exceptions import LarkError

from filterlang import pasted
from filterlang.ast import Comment, Filter, Script, Span
from filterlang.build import MAX_DEPTH, Builder, Context, TooDeepError, unescape
from filterlang.diagnostics import MAX_DIAGNOSTICS, Diagnostic, Fix, Severity
from filterlang.fastparse import FastParser
from filterlang.fmt import quote
from filterlang.syntax_errors import Chunk, translate

MAX_NAME = 128

# A line that starts a filter; `!=` is a comparator, not the inactive mark.
_FILTER_START = re.compile(
    r"^[ \t]*(?:content-filter[ \t]+)?[^\s:!#'\"(){};,\[\]=<>]+[ \t]*(?::|!(?!=))",
    re.MULTILINE | re.IGNORECASE,
)
# A run of `not`s passes no bracket (whose lexer callbacks stop deep nesting early), so it is
# found up front: left to the parser, millions would all be shifted before the depth check.
# Searched in text where only N, O and T are lower-cased (positions unchanged): a literal,
# case-sensitive prefix lets `re` skip ahead many times faster than re.IGNORECASE.
_NOT_RUN = re.compile(rf"not(?:\s+not\b){{{MAX_DEPTH}}}")
_NOT_LOWER = str.maketrans("NOT", "not")
_BINARY = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# The same characters one by one: a substring test per character is a tenth of the class search.
_BINARY_CHARS = tuple(c for c in map(chr, range(128)) if _BINARY.match(c))
_DESCRIPTION = re.compile(r"^ ?description:[ \t]*(.*?)\s*$")
# The CLI's end-of-input line, as the grammar's _CLI_END accepts it (column 1, spaces after).
_CLI_END = re.compile(r"^\.[ \t\r]*$", re.MULTILINE)


_IDLE = Context("<string>", "")


class _Parser:
    """The compiled grammar plus its inline builder; Lark objects are not re-entrant."""

    def __init__(self) -> None:
        self.builder = Builder()
        self.lark = Lark.open_from_package(
            "filterlang",
            "grammar.lark",
            parser="lalr",
            lexer="basic",
            propagate_positions=False,
            maybe_placeholders=False,
            # Lark's own driver is not used here (tests run it, as the reference the fast one
            # must match): only its terminals, table and the callbacks made for the builder.
            transformer=self.builder,
        )
        self.fast = FastParser(self.lark, self.builder.lexer_callbacks(), self.builder)
        self.lock = threading.Lock()

    def attempt(self, chunk: Chunk) -> tuple[list[Filter] | None, Context, Exception | None]:
        """Parse one chunk; on failure, the exception (not yet explained)."""
        ctx = Context(chunk.path, chunk.text, chunk.line_offset)
        self.builder.ctx = ctx
        try:
            _check_not_run(chunk.text)
            return self.fast.parse(chunk.text), ctx, None
        except (LarkError, TooDeepError) as exc:
            return None, ctx, exc
        finally:
            # The context holds every filter built (``done``): left on the shared builder, the
            # last file's whole tree would stay alive until the next parse, and the cyclic
            # collector would scan it when the front end turns it back on.
            self.builder.ctx = _IDLE

    def run(self, chunk: Chunk) -> tuple[list[Filter] | None, Context]:
        """Parse one chunk; on failure the context holds the one syntax diagnostic."""
        filters, ctx, failure = self.attempt(chunk)
        if failure is not None:
            ctx.diagnostics.append(translate(self.fast, chunk, failure))
        return filters, ctx


def _check_not_run(text: str) -> None:
    found = _NOT_RUN.search(text.translate(_NOT_LOWER))
    if found is not None:
        start = found.end() - 3
        line, col = _position(text, start)
        token = Token("NOT", text[start : start + 3], start, line, col, line, col + 3, start + 3)
        raise TooDeepError(token)


_parser: _Parser | None = None
_parser_lock = threading.Lock()


def _get_parser() -> _Parser:
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = _Parser()
        return _parser


def grammar_text() -> str:
    """The grammar source, for documentation and the strict-mode test."""
    from importlib.resources import files

    return (files("filterlang") / "grammar.lark").read_text(encoding="utf-8")


def filter_starts(text: str) -> list[int]:
    """Where each filter starts (and 0): the resynchronisation points after an error."""
    starts = [m.start() for m in _FILTER_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return starts


def _position(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _binary(text: str, path: str) -> Diagnostic | None:
    if not any(c in text for c in _BINARY_CHARS):
        return None
    found = _BINARY.search(text)
    if found is None:
        return None
    line, col = _position(text, found.start())
    char = found.group()
    what = "a NUL byte" if char == "\0" else f"the control character U+{ord(char):04X}"
    return Diagnostic(
        "F107",
        Severity.ERROR,
        f"unreadable source: {what} (is this a binary file?)",
        Span(path, line, col, line, col + 1),
        "filter files are UTF-8 text",
    )


def _name_checks(filters: list[Filter]) -> Iterator[Diagnostic]:
    for f in filters:
        if len(f.name) > MAX_NAME:
            yield Diagnostic(
                "F109",
                Severity.ERROR,
                f"invalid filter name: longer than {MAX_NAME} characters",
                f.name_span,
                "choose a shorter name",
            )


def _cli_end_notes(text: str, path: str, reported: set[int]) -> Iterator[Diagnostic]:
    """N603 for each '.' line: harmless, but it belongs to the appliance's CLI, not the file."""
    if not (text.startswith(".") or "\n." in text):
        return
    for found in _CLI_END.finditer(text):
        line, col = _position(text, found.start())
        if line in reported:  # inside a filter: the syntax error says it all
            continue
        yield Diagnostic(
            "N603",
            Severity.NOTE,
            "a '.' line ends input at the appliance's CLI; it is not part of the filters",
            Span(path, line, col, line, col + 1),
            "'filterlang fmt' removes it",
        )


def _with_descriptions(filters: list[Filter], comments: list[Comment]) -> list[Filter]:
    """Reference 13.5: `# description: text` directly above a filter sets its description."""
    # Looked up from the description comments, which are few, rather than from every filter.
    below: dict[int, str] = {}  # line after a description comment -> its text
    for c in comments:
        found = _DESCRIPTION.match(c.text)
        if found:
            below[c.span.line + 1] = found.group(1)
    if not below:
        return filters
    first_on_line: dict[int, int] = {}
    for i, f in enumerate(filters):
        first_on_line.setdefault(f.span.line, i)
    out = list(filters)
    for line, text in below.items():
        at = first_on_line.get(line)
        if at is None or filters[at].description is not None:
            continue
        # Directly above means nothing in between: not even the end of the previous filter.
        if at == 0 or filters[at - 1].span.end_line < line - 1:
            out[at] = evolve(filters[at], description=text)
    return out


def parse(text: str, path: str = "<string>") -> tuple[Script | None, list[Diagnostic]]:
    """Parse filter source; return the script (good filters only) and syntax diagnostics.

    The script is None only when the text cannot be read as filter source at all (F107).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    bad = _binary(text, path)
    if bad is not None:
        return None, [bad]
    damage: list[Diagnostic] = []
    if pasted.has_damage(text):
        found = pasted.find(text)
        damage = [_damage_diagnostic(text, path, d) for d in found]
        text = pasted.repair(text, found)
    parser = _get_parser()
    # Parsing allocates hundreds of thousands of small acyclic objects; the cyclic collector
    # would keep rescanning them for nothing (about a fifth of the parse time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        script, diags = _parse_locked(parser, text, path)
    finally:
        if collecting:
            gc.enable()
    if damage:
        diags = sorted(damage + diags, key=Diagnostic.sort_key)
    return script, diags


def _damage_diagnostic(text: str, path: str, damage: pasted.Damage) -> Diagnostic:
    """F115: one run of a typographic character, named, with its ASCII replacement."""
    line, col = _position(text, damage.offset)
    hint = "'filterlang fmt --fix' replaces every one in the file"
    if damage.close >= 0:
        # A whole string between typographic quotes: one diagnostic, one repair.
        raw = text[damage.offset + 1 : damage.close]
        span = Span(path, line, col, line, col + damage.close + 1 - damage.offset)
        value = unescape(raw)
        return Diagnostic(
            "F115",
            Severity.ERROR,
            f"typographic quotes around {value!r} (pasted text?)",
            span,
            f"write strings between straight quotes: {quote(value)}; {hint}",
            fix=Fix(f"use straight quotes: {quote(value)}", span, quote(value)),
        )
    wanted = "a space" if damage.replacement == " " else damage.replacement
    span = Span(path, line, col, line, col + damage.length)
    return Diagnostic(
        "F115",
        Severity.ERROR,
        f"{damage.describe()} where {wanted} belongs (pasted text?)",
        span,
        f"replace it with {wanted}; {hint}",
        fix=Fix(f"replace with {wanted}", span, damage.replacement * damage.length),
    )


def _parse_locked(parser: _Parser, text: str, path: str) -> tuple[Script | None, list[Diagnostic]]:
    with parser.lock:
        # One pass over the whole file first: a file without errors is parsed exactly once
        # (and is never split into filters: finding the starts costs a few per cent).
        whole = Chunk(path, text, 0, True)
        filters, ctx, failure = parser.attempt(whole)
        if failure is None:
            found, comments, diags = filters or [], ctx.comments, ctx.diagnostics
        else:
            found, comments, diags = _recover(parser, text, path, ctx, failure)
    diags.extend(_name_checks(found))
    diags.extend(_cli_end_notes(text, path, {d.span.line for d in diags}))
    found = _with_descriptions(found, comments)
    diags.sort(key=Diagnostic.sort_key)
    return Script(tuple(found), tuple(comments), path), diags


def parse_piece(
    text: str, path: str = "<string>", *, line_offset: int = 0, last: bool = True
) -> tuple[list[Filter], list[Comment], list[Diagnostic]]:
    """One piece of a file cut at ``filter_starts``, parsed as ``parse`` parses it on recovery.

    ``line_offset`` is the number of lines before the piece. ``last`` says whether the piece
    ends the file (a cut-short filter is then "unexpected end of file"). For an incremental re-check
    that parses only the pieces that changed; the caller handles the byte-order mark and
    binary text (``parse`` does both for a whole file).
    """
    parser = _get_parser()
    collecting = gc.isenabled()
    gc.disable()
    try:
        with parser.lock:
            filters, ctx = parser.run(Chunk(path, text, line_offset, last))
    finally:
        if collecting:
            gc.enable()
    found = filters or []
    diags = ctx.diagnostics + list(_name_checks(found))
    return found, ctx.comments, diags


def _recover(
    parser: _Parser, text: str, path: str, ctx: Context, failure: Exception | None
) -> tuple[list[Filter], list[Comment], list[Diagnostic]]:
    """Every filter that parses and one diagnostic per broken one, without parsing twice.

    The file is cut at every filter start. What a failed attempt completed before its error is
    kept; only the filter where it stopped is parsed again on its own (for a diagnostic that
    speaks of that filter alone), and parsing goes on behind it in windows of filters that
    double while they parse, so the text between two errors is read about once. Recovery
    stops at ``MAX_DIAGNOSTICS`` with a note (N602): a file of a million broken lines must
    not take minutes.
    """
    starts = filter_starts(text)
    lines, line, previous = [], 0, 0
    for start in starts:
        line += text.count("\n", previous, start)
        lines.append(line)
        previous = start
    count = len(starts)
    found: list[Filter] = []
    comments: list[Comment] = []
    diags: list[Diagnostic] = []
    first, width = 0, count  # the failed attempt covered chunks [first, first + width)
    attempt = Chunk(path, text, 0, True)
    while True:
        if failure is None:
            found += ctx.done
            comments += ctx.comments
            diags += ctx.diagnostics
            first += width
            width *= 2
        else:
            # The first chunk the attempt did not complete: the broken filter starts there.
            broken = bisect_left(lines, ctx.done_line, first, first + width)
            cut = lines[broken] + 1 if broken < count else len(text) + 1
            found += ctx.done
            comments += [c for c in ctx.comments if c.span.line < cut]
            diags += [d for d in ctx.diagnostics if d.span.line < cut]
            if broken == first + width or (broken == first and width == 1):
                # The error follows the last filter completed, or the attempt was the broken
                # filter alone: either way the attempt's own failure is the diagnostic.
                diags.append(translate(parser.fast, attempt, failure))
                first, width = min(broken + 1, first + width), 1
            elif broken > first and (error := translate(parser.fast, attempt, failure)).span.line <= lines[broken]:
                # The attempt failed between its last completed filter and the next filter
                # start: text no start pattern recognises (a mistyped name line such as
                # `hold_archiv==es:`) is the broken piece. Without this its error was dropped
                # and the next filter, parsed alone, hid it: lint passed a file that lost a filter.
                diags.append(error)
                first, width = broken, 1
            else:
                end = starts[broken + 1] if broken + 1 < count else len(text)
                alone = Chunk(path, text[starts[broken] : end], lines[broken], end == len(text))
                part, actx = parser.run(alone)
                found += part or ()
                comments += actx.comments
                diags += actx.diagnostics
                first, width = broken + 1, 1
        if first >= count:
            break
        if len(diags) >= MAX_DIAGNOSTICS:
            at = Span(path, lines[first] + 1, 1, lines[first] + 1, 2)
            diags.append(
                Diagnostic(
                    "N602",
                    Severity.NOTE,
                    f"stopped after {len(diags)} syntax errors; the rest of the file is not checked",
                    at,
                    "fix the errors above and run lint again",
                )
            )
            break
        width = min(width, count - first)
        last = first + width == count
        attempt = Chunk(
            path, text[starts[first] : len(text) if last else starts[first + width]], lines[first], last
        )
        filters, ctx, failure = parser.attempt(attempt)
    return found, comments, diags


def parse_bytes(data: bytes, path: str = "<string>") -> tuple[Script | None, list[Diagnostic]]:
    """Decode UTF-8 (F107 with the position of the first bad byte) and parse."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start]
        line = prefix.count(b"\n") + 1
        col = len(prefix[prefix.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        return None, [
            Diagnostic(
                "F107",
                Severity.ERROR,
                f"unreadable source: invalid UTF-8 byte 0x{data[exc.start]:02x}",
                Span(path, line, col, line, col + 1),
                "filter files are UTF-8 text; re-save the file as UTF-8",
            )
        ]
    return parse(text, path)
