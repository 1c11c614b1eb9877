"""The filter regex dialect (reference 5) mapped onto RE2, with a named report of what RE2 lacks.

RE2 guarantees linear-time matching, so a hostile pattern or message cannot stall the pipeline.
A file may opt in to Python's backtracking engine with the pragma comment
``# filterlang: regex-engine=backtracking`` (W505); that is for trusted files only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Literal

import re2
from attrs import frozen

PRAGMA = re.compile(r"^\s*#\s*filterlang:\s*regex-engine\s*=\s*(re2|backtracking)\s*$", re.I)

# Constructs RE2 refuses, named for the author (F302); checked before compiling.
_UNSUPPORTED: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]"), "back-reference"),
    (re.compile(r"\(\?P=\w+\)"), "named back-reference"),
    (re.compile(r"\(\?<?[=!]"), "look-around assertion"),
    (re.compile(r"\(\?>"), "atomic group"),
    (re.compile(r"[*+?}]\+"), "possessive quantifier"),
    (re.compile(r"\(\?\("), "conditional group"),
    (re.compile(r"\(\?R\)|\(\?\d\)"), "recursion"),
)

# Smart identifiers (reference 5.7) stand in place of a whole pattern: a candidate regex here, the
# validator (checksum/format) in the runtime. Written exactly, case-insensitively.
SMART_IDENTIFIERS: dict[str, str] = {
    "*credit": r"\b\d{4}[ -]?\d{4,6}[ -]?\d{4,5}(?:[ -]?\d{1,4})?\b",
    "*aba": r"\b\d{9}\b",
    "*ssn": r"\b\d{3}[-. ]\d{2}[-. ]\d{4}\b",
    "*cusip": r"\b[0-9]{3}[0-9A-Za-z*@#]{5}[0-9]\b",
}


def smart_identifier(pattern: str) -> str | None:
    """The canonical smart identifier `pattern` names, or None when it is a regex."""
    key = pattern.strip().lower()
    return key if key in SMART_IDENTIFIERS else None


# Python/PCRE spellings RE2 lacks but that mean the same thing: rewritten before compiling.
_TRANSLATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\\Z"), r"\\z"),
)



def _options(ignore_case: bool = False) -> Any:
    # RE2 logs every compile error to stderr; the diagnostic already tells the user.
    opts = re2.Options()
    opts.log_errors = False
    opts.case_sensitive = not ignore_case
    return opts


def _re2_message(exc: Exception, pattern: str) -> str:
    """RE2's message as text, with the offset of the offending fragment when it can be found."""
    raw = exc.args[0] if exc.args else str(exc)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    what, _, fragment = text.partition(": ")
    at = pattern.find(fragment) if fragment else -1
    return f"{what} at offset {at}: {fragment}" if at >= 0 else text


@frozen
class Problem:
    """A regex problem as a diagnostic code, a message and a hint."""

    code: str
    message: str
    hint: str | None = None


def translate(pattern: str) -> str:
    """Rewrite the few safe spellings RE2 does not accept."""
    for rx, repl in _TRANSLATIONS:
        pattern = rx.sub(repl, pattern)
    return pattern


# Real filter files repeat patterns; caching keeps check and compile linear in distinct patterns.
@functools.lru_cache(maxsize=4096)
def problems(pattern: str, *, engine: str = "re2") -> tuple[Problem, ...]:
    """What is wrong with `pattern` for the given engine (empty when it compiles)."""
    if smart_identifier(pattern):
        return ()
    if engine == "backtracking":
        try:
            re.compile(pattern)
        except re.error as exc:
            return (Problem("F301", f"invalid regular expression: {exc.msg} at offset {exc.pos}"),)
        return ()
    for rx, what in _UNSUPPORTED:
        if rx.search(pattern):
            return (Problem("F302", f"{what} is not supported by the linear-time engine",
                            "rewrite the pattern, or opt in with "
                            "'# filterlang: regex-engine=backtracking'"),)
    try:
        re2.compile(translate(pattern), _options())
    except re2.error as exc:
        return (Problem("F301", f"invalid regular expression: {_re2_message(exc, pattern)}"),)
    return ()


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str, *, ignore_case: bool = False,
                    engine: str = "re2") -> Callable[[str], Any]:
    """A compiled pattern's `search`; per-rule case folding is applied as an inline flag."""
    return compile_raw(pattern, ignore_case=ignore_case, engine=engine).search


@functools.lru_cache(maxsize=4096)
def compile_raw(pattern: str, *, ignore_case: bool = False, multiline: bool = False,
                data: Literal["text", "utf8", "latin1"] = "text", engine: str = "re2") -> Any:
    """The compiled pattern object (``search``/``finditer``/``sub``) for one use of a pattern.

    The runtime needs variants of one filter pattern: multi-line for line-by-line content
    scans, UTF-8 bytes so a part's text is encoded once per message rather than per pattern,
    Latin-1 bytes for binary scans where each character is one byte (reference 5.6). A smart
    identifier compiles to its candidate pattern.
    """
    smart = smart_identifier(pattern)
    src = SMART_IDENTIFIERS[smart] if smart else pattern
    if engine == "backtracking":
        flags = (re.IGNORECASE if ignore_case else 0) | (re.MULTILINE if multiline else 0)
        if data == "text":
            return re.compile(src, flags)
        return re.compile(src.encode("latin-1" if data == "latin1" else "utf-8", "replace"), flags)
    src = translate(src)
    opts = _options(ignore_case)
    if multiline:
        # this RE2 binding has no multi-line option; the inline flag at the front does it
        src = "(?m)" + src
    if data == "latin1":
        opts.encoding = re2.Options.Encoding.LATIN1
        return re2.compile(src.encode("latin-1", "replace"), opts)
    if data == "utf8":
        return re2.compile(src.encode("utf-8"), opts)
    return re2.compile(src, opts)


def engine_for(source: str) -> str:
    """The engine a file asks for with the pragma comment (default re2)."""
    for line in source.splitlines():
        m = PRAGMA.match(line)
        if m:
            return m.group(1).lower()
    return "re2"
