"""How the runtime runs filter patterns: a thin use of ``filterlang.regex``, the one adapter.

Filter patterns arrive compiled (``CompiledRegex``: RE2 unless the file opted in to the
backtracking engine). Content scans need variants of a pattern (multi-line, over UTF-8 or
Latin-1 bytes); they come from ``filterlang.regex.compile_raw`` for the same engine, cached, so
each variant is compiled once per process. Plain strings (dictionary terms, suite expectations)
always run on RE2.

Backtracking patterns run under a per-stage time budget (``budget``): when it is spent the rule
raises ``RegexTimeout``, which marks the filter as failed (reference 4.7) instead of stalling the
pipeline. On the main thread a timer interrupts a match in progress; elsewhere the budget is
checked between matches.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import re2

from filterlang import regex as fre
from filterlang.compile import CompiledRegex

Pattern = CompiledRegex | str

#: Seconds of backtracking-engine matching one stage of one message may use.
BACKTRACKING_BUDGET = 1.0

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("rx_deadline", default=None)


#: What a plain-string pattern that is not valid RE2 raises (dictionary terms are not linted).
PatternError = re2.error


class RegexTimeout(Exception):
    """A backtracking pattern used up the message's time budget."""


def engine_of(p: Pattern) -> str:
    """The engine a compiled pattern was built for (the search function's owner tells)."""
    return "backtracking" if _backtracking(p) else "re2"


def _backtracking(p: Pattern) -> bool:
    return not isinstance(p, str) and isinstance(getattr(p.search, "__self__", None), re.Pattern)


# The binding's `search` runs a generator per call and decodes offsets; a yes/no test needs
# only RE2's own Match, which costs less than that wrapper on a short header (issue 6).
_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)


def _raw_re2(compiled: Any) -> Any:
    """The RE2 object behind a compiled pattern of the binding, or None."""
    return compiled._regexp if isinstance(compiled, re2._Regexp) else None


def text_test(p: Pattern) -> Callable[[str], bool] | None:
    """``search(p, text)`` as a plain function for an RE2 pattern; None for other engines."""
    if isinstance(p, str) or _backtracking(p):
        return None
    regexp = _raw_re2(getattr(p.search, "__self__", None))
    if regexp is None:
        return None
    match = regexp.Match

    def found(text: str) -> bool:
        data = text.encode("utf-8")
        return bool(match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH)

    return found


def utf8_test(p: Pattern) -> Callable[[bytes], bool] | None:
    """Whether ``count_utf8(p, data)`` could find anything: one RE2 pass, no match objects.

    None for the backtracking engine (its counting path is different)."""
    if engine_of(p) == "backtracking":
        return None
    regexp = _raw_re2(variant(p, multiline=True, data="utf8"))
    if regexp is None:
        return None
    match = regexp.Match

    def found(data: bytes) -> bool:
        return bool(match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH)

    return found


# A pattern that is only words (letters, digits, spaces) and alternatives of them, optionally
# case-insensitive as a whole: it matches exactly where one of the words occurs.
_PLAIN_WORDS = re.compile(r"(\(\?i\))?([A-Za-z0-9 ]+(?:\|[A-Za-z0-9 ]+)*)")


def plain_words(p: Pattern) -> tuple[bool, tuple[bytes, ...]] | None:
    """(case-insensitive, words) when ``p`` is an alternation of plain words, else None.

    A byte search finds such words faster than the regex engine runs; the words are
    lower-cased when case-insensitive. Smart identifiers are never plain words.
    """
    m = _PLAIN_WORDS.fullmatch(source(p))
    if m is None:
        return None
    fold = m.group(1) is not None
    words = m.group(2).lower() if fold else m.group(2)
    return fold, tuple(w.encode("ascii") for w in words.split("|"))


def source(p: Pattern) -> str:
    return p if isinstance(p, str) else p.source


def variant(p: Pattern, *, multiline: bool = False,
            data: Literal["text", "utf8", "latin1"] = "text") -> Any:
    return fre.compile_raw(source(p), multiline=multiline, data=data, engine=engine_of(p))


def recompile(p: Pattern, new_source: str) -> CompiledRegex:
    """The same engine and options over a rewritten source (e.g. DN spellings normalised)."""
    return CompiledRegex(new_source, fre.compile_pattern(new_source, engine=engine_of(p)))


class budget:  # lower-case: used like the function it was, `with rx.budget():`
    """Start the time budget for backtracking patterns for one stage of one message.

    A class rather than a generator context manager: it is entered for every stage of every
    message, and the generator machinery cost more than the budget itself.
    """

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float | None = None) -> None:
        self._seconds = BACKTRACKING_BUDGET if seconds is None else seconds
        self._token: contextvars.Token[float | None] | None = None

    def __enter__(self) -> None:
        self._token = _deadline.set(time.monotonic() + self._seconds)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _deadline.reset(self._token)


def _on_alarm(signum: int, frame: Any) -> None:
    raise RegexTimeout("backtracking regex time budget exceeded")


@contextlib.contextmanager
def _guard(engine: str) -> Iterator[None]:
    if engine != "backtracking":
        yield
        return
    deadline = _deadline.get()
    if deadline is None:
        yield
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise RegexTimeout("backtracking regex time budget exceeded")
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, left)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def search(p: Pattern, text: str) -> bool:
    if isinstance(p, str):
        return fre.compile_raw(p).search(text) is not None
    if not _backtracking(p):  # the common case: no budget bookkeeping per match
        return p.search(text) is not None
    with _guard("backtracking"):
        return p.search(text) is not None


def sub(p: Pattern, repl: str, text: str) -> str:
    with _guard(engine_of(p)):
        return str(variant(p).sub(repl, text))


def search_bytes(p: Pattern, data: bytes) -> bool:
    """``attachment-binary-contains``: each pattern character is one byte (reference 5.6)."""
    with _guard(engine_of(p)):
        return variant(p, data="latin1").search(data) is not None


def count_utf8(p: Pattern, data: bytes, limit: int | None = None) -> tuple[int, list[str]]:
    """``count_lines`` over UTF-8 bytes (the per-part cached encoding of its text)."""
    if engine_of(p) == "backtracking":
        return count_lines(p, data.decode("utf-8", "replace"), limit)
    found: list[str] = []
    for m in variant(p, multiline=True, data="utf8").finditer(data):
        s = m.group(0)
        if b"\n" in s:
            return count_lines(p, data.decode("utf-8", "replace"), limit)
        found.append(s.decode("utf-8", "replace"))
        if limit is not None and len(found) >= limit:
            break
    return len(found), found


def count_lines(p: Pattern, text: str, limit: int | None = None) -> tuple[int, list[str]]:
    """Count matches line by line (reference 5.2: no multi-line matching); return the texts.

    Fast path: one pass over the whole text in multi-line mode; only if a match spans a newline
    (possible with ``\\s`` or negated classes) is the text re-scanned line by line.
    """
    with _guard(engine_of(p)):
        found: list[str] = []
        for m in variant(p, multiline=True).finditer(text):
            s = m.group(0)
            if "\n" in s:
                break
            found.append(s)
            if limit is not None and len(found) >= limit:
                return len(found), found
        else:
            return len(found), found
        found = []
        line_rx = variant(p)
        for line in text.splitlines():
            for m in line_rx.finditer(line):
                found.append(m.group(0))
                if limit is not None and len(found) >= limit:
                    return len(found), found
        return len(found), found
